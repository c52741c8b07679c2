//! Executor labels: the one rule for the labels an executor registers with
//! and the labels a task requires, and the match between them. The server
//! checks both with it, so a task can only require what an executor could
//! have registered.

use std::collections::BTreeMap;

use crate::shown::shown;

/// Labels by key: what an executor registers, or what a task requires.
pub type Labels = BTreeMap<String, String>;

/// The most labels in one set.
///
/// ```
/// assert_eq!(tributary_core::MAX_LABELS, 64);
/// ```
pub const MAX_LABELS: usize = 64;
/// The longest label key, in bytes (keys are at least 1 byte).
pub const MAX_LABEL_KEY_BYTES: usize = 63;
/// The longest label value, in bytes (values may be empty).
pub const MAX_LABEL_VALUE_BYTES: usize = 256;

/// Why a set of labels was refused. The message says what is wrong with the
/// set and names the label; the caller says which set it is.
///
/// ```
/// use tributary_core::{LabelError, check_labels};
/// let labels = [("gpu".to_owned(), "a\0".to_owned())].into();
/// let error = check_labels(&labels).unwrap_err();
/// assert_eq!(error.to_string(), "value of \"gpu\" contains U+0000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// More labels than [`MAX_LABELS`].
    #[error("has {0} labels, over the limit of {MAX_LABELS}")]
    TooMany(usize),
    /// A key is empty.
    #[error("has an empty key")]
    EmptyKey,
    /// A key is longer than [`MAX_LABEL_KEY_BYTES`].
    #[error("key {} is {} bytes, over the limit of {MAX_LABEL_KEY_BYTES}", shown(.0), .0.len())]
    KeyTooLong(String),
    /// A value is longer than [`MAX_LABEL_VALUE_BYTES`]; the label's key.
    #[error(
        "value of {} is {bytes} bytes, over the limit of {MAX_LABEL_VALUE_BYTES}",
        shown(key)
    )]
    ValueTooLong {
        /// The label's key.
        key: String,
        /// The value's size.
        bytes: usize,
    },
    /// A key contains U+0000, which Postgres cannot store.
    #[error("key {} contains U+0000", shown(.0))]
    NulInKey(String),
    /// A value contains U+0000; the label's key.
    #[error("value of {} contains U+0000", shown(.0))]
    NulInValue(String),
}

/// Checks a set of labels: at most [`MAX_LABELS`], keys of 1 to
/// [`MAX_LABEL_KEY_BYTES`] bytes, values of at most
/// [`MAX_LABEL_VALUE_BYTES`] bytes, no U+0000 anywhere. Labels are checked
/// in key order, so the first problem reported is the same for every
/// client.
///
/// ```
/// let labels = [("gpu".to_owned(), "true".to_owned())].into();
/// assert!(tributary_core::check_labels(&labels).is_ok());
/// ```
pub fn check_labels(labels: &Labels) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany(labels.len()));
    }
    for (key, value) in labels {
        if key.is_empty() {
            return Err(LabelError::EmptyKey);
        }
        if key.len() > MAX_LABEL_KEY_BYTES {
            return Err(LabelError::KeyTooLong(key.clone()));
        }
        if key.contains('\0') {
            return Err(LabelError::NulInKey(key.clone()));
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(LabelError::ValueTooLong {
                key: key.clone(),
                bytes: value.len(),
            });
        }
        if value.contains('\0') {
            return Err(LabelError::NulInValue(key.clone()));
        }
    }
    Ok(())
}

/// Whether an executor with `labels` may run a task that requires
/// `required`: it has every required key, with the same value.
///
/// ```
/// use tributary_core::labels_satisfy;
/// let executor = [("gpu".to_owned(), "true".to_owned()), ("region".to_owned(), "eu".to_owned())].into();
/// assert!(labels_satisfy(&executor, &[("gpu".to_owned(), "true".to_owned())].into()));
/// assert!(!labels_satisfy(&executor, &[("gpu".to_owned(), "false".to_owned())].into()));
/// assert!(labels_satisfy(&executor, &Default::default()));
/// ```
pub fn labels_satisfy(labels: &Labels, required: &Labels) -> bool {
    required
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// Labels as `key=value` pairs in key order, separated by `, `, for
/// messages and listings.
///
/// ```
/// let labels = [("region".to_owned(), "eu".to_owned()), ("gpu".to_owned(), "true".to_owned())].into();
/// assert_eq!(tributary_core::format_labels(&labels), "gpu=true, region=eu");
/// ```
pub fn format_labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn each_rule_names_the_label() {
        let cases = [
            (labels(&[("", "x")]), "has an empty key"),
            (
                labels(&[(&"k".repeat(64), "")]),
                &*format!(
                    "key \"{}\" is 64 bytes, over the limit of 63",
                    "k".repeat(64)
                ),
            ),
            (labels(&[("a\0", "")]), "key \"a\\0\" contains U+0000"),
            (
                labels(&[("big", &"v".repeat(257))]),
                "value of \"big\" is 257 bytes, over the limit of 256",
            ),
            (labels(&[("n", "\0")]), "value of \"n\" contains U+0000"),
        ];
        for (set, message) in cases {
            assert_eq!(
                check_labels(&set).expect_err("refused").to_string(),
                message
            );
        }
        let many: Labels = (0..65).map(|n| (format!("k{n}"), String::new())).collect();
        assert_eq!(
            check_labels(&many).expect_err("refused").to_string(),
            "has 65 labels, over the limit of 64"
        );
        let limits = labels(&[(&"k".repeat(63), &"v".repeat(256)), ("empty", "")]);
        assert!(check_labels(&limits).is_ok());
    }

    #[test]
    fn an_executor_satisfies_a_task_with_every_required_label() {
        let executor = labels(&[("gpu", "true"), ("region", "eu")]);
        assert!(labels_satisfy(&executor, &labels(&[])));
        assert!(labels_satisfy(&executor, &labels(&[("region", "eu")])));
        assert!(labels_satisfy(&executor, &executor));
        assert!(!labels_satisfy(&executor, &labels(&[("region", "us")])));
        assert!(!labels_satisfy(
            &executor,
            &labels(&[("gpu", "true"), ("zone", "a")])
        ));
        assert!(!labels_satisfy(&labels(&[]), &labels(&[("gpu", "")])));
        assert!(labels_satisfy(
            &labels(&[("gpu", "")]),
            &labels(&[("gpu", "")])
        ));
    }
}
