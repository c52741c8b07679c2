//! A workflow's concurrency policy: the key that groups its runs (a JSON
//! pointer into the run's input, or a fixed string), how many runs of one key
//! may be active at once, and what happens to a run started beyond that. The
//! definition a client writes, its validated form, and the key of a run.

use serde::{Deserialize, Serialize};

use crate::shown::shown;

/// The longest `key_pointer` and `fixed_key`, in bytes: short enough that
/// every message shows them whole.
///
/// ```
/// assert_eq!(tributary_core::MAX_POLICY_KEY_BYTES, 128);
/// ```
pub const MAX_POLICY_KEY_BYTES: usize = 128;
/// The longest key computed from a run's input, in bytes.
///
/// ```
/// assert_eq!(tributary_core::MAX_CONCURRENCY_KEY_BYTES, 256);
/// ```
pub const MAX_CONCURRENCY_KEY_BYTES: usize = 256;
/// The largest `max_active_runs`.
///
/// ```
/// assert_eq!(tributary_core::MAX_ACTIVE_RUNS_LIMIT, 10_000);
/// ```
pub const MAX_ACTIVE_RUNS_LIMIT: i64 = 10_000;
/// Default of `max_active_runs`.
pub const DEFAULT_MAX_ACTIVE_RUNS: u32 = 1;

/// A concurrency policy as a client writes it. Field names follow
/// `tributary.v1.ConcurrencyPolicy`.
///
/// ```
/// let policy: tributary_core::ConcurrencyDefinition =
///     serde_json::from_str(r#"{"key_pointer": "/customer", "max_active_runs": 2}"#).unwrap();
/// assert_eq!(policy.strategy, "");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyDefinition {
    /// A JSON pointer into the run's input; exclusive with `fixed_key`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_pointer: String,
    /// One key for every run; exclusive with `key_pointer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fixed_key: String,
    /// Active runs allowed per key (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_runs: Option<i64>,
    /// `queue`, `cancel_newest` or `cancel_in_progress`; empty means `queue`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub strategy: String,
}

/// A validated concurrency policy with its default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrencySpec {
    /// Where a run's key comes from.
    pub key: ConcurrencyKey,
    /// Active runs allowed per key, at least 1.
    pub max_active_runs: u32,
    /// What happens to a run started while its key is full.
    pub strategy: ConcurrencyStrategy,
}

/// Where a run's concurrency key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyKey {
    /// The value at this JSON pointer in the run's input.
    Pointer(String),
    /// The same key for every run.
    Fixed(String),
}

/// What happens to a run started while its key has `max_active_runs` active
/// runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyStrategy {
    /// The run waits QUEUED, started in FIFO order per key as active runs
    /// end.
    Queue,
    /// The new run is created CANCELLED.
    CancelNewest,
    /// The key's oldest active run is cancelled and the new one starts.
    CancelInProgress,
}

impl ConcurrencyStrategy {
    /// Every strategy, in the order of [`CONCURRENCY_STRATEGIES`].
    pub const ALL: [ConcurrencyStrategy; 3] = [
        ConcurrencyStrategy::Queue,
        ConcurrencyStrategy::CancelNewest,
        ConcurrencyStrategy::CancelInProgress,
    ];

    /// The name used in definitions.
    ///
    /// ```
    /// assert_eq!(tributary_core::ConcurrencyStrategy::CancelNewest.as_str(), "cancel_newest");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            ConcurrencyStrategy::Queue => "queue",
            ConcurrencyStrategy::CancelNewest => "cancel_newest",
            ConcurrencyStrategy::CancelInProgress => "cancel_in_progress",
        }
    }

    /// The strategy called `text`, if any.
    ///
    /// ```
    /// use tributary_core::ConcurrencyStrategy;
    /// assert_eq!(ConcurrencyStrategy::parse("queue"), Some(ConcurrencyStrategy::Queue));
    /// assert_eq!(ConcurrencyStrategy::parse("Queue"), None);
    /// ```
    pub fn parse(text: &str) -> Option<ConcurrencyStrategy> {
        ConcurrencyStrategy::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == text)
    }
}

/// The names of the concurrency strategies.
///
/// ```
/// assert!(tributary_core::CONCURRENCY_STRATEGIES.contains(&"cancel_in_progress"));
/// ```
pub const CONCURRENCY_STRATEGIES: [&str; 3] = [
    ConcurrencyStrategy::ALL[0].as_str(),
    ConcurrencyStrategy::ALL[1].as_str(),
    ConcurrencyStrategy::ALL[2].as_str(),
];

/// Why a concurrency policy was refused; the caller says which workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConcurrencyError {
    /// Neither `key_pointer` nor `fixed_key` is set.
    #[error("needs one of key_pointer and fixed_key")]
    NoKey,
    /// Both are set.
    #[error("has both key_pointer and fixed_key; set one")]
    TwoKeys,
    /// `key_pointer` is longer than [`MAX_POLICY_KEY_BYTES`].
    #[error("key_pointer is {0} bytes, over the limit of {MAX_POLICY_KEY_BYTES}")]
    PointerTooLong(usize),
    /// `key_pointer` is not a JSON pointer this policy accepts.
    #[error(
        "key_pointer {} is not a JSON pointer: must start with / and use ~ only in ~0 and ~1",
        shown(.0)
    )]
    InvalidPointer(String),
    /// `fixed_key` is longer than [`MAX_POLICY_KEY_BYTES`].
    #[error("fixed_key is {0} bytes, over the limit of {MAX_POLICY_KEY_BYTES}")]
    FixedKeyTooLong(usize),
    /// `fixed_key` contains U+0000, which Postgres cannot store.
    #[error("fixed_key contains U+0000")]
    FixedKeyNul,
    /// `max_active_runs` is out of range.
    #[error("max_active_runs must be between 1 and {MAX_ACTIVE_RUNS_LIMIT}, got {0}")]
    MaxActiveRunsOutOfRange(i64),
    /// An unknown strategy.
    #[error(
        "unknown strategy {}; expected one of queue, cancel_newest, cancel_in_progress",
        shown(.0)
    )]
    UnknownStrategy(String),
}

impl ConcurrencyDefinition {
    /// Checks the policy and fills in its default.
    ///
    /// ```
    /// use tributary_core::{ConcurrencyDefinition, ConcurrencyKey};
    /// let policy = ConcurrencyDefinition { fixed_key: "all".into(), ..Default::default() };
    /// let spec = policy.normalize().unwrap();
    /// assert_eq!(spec.key, ConcurrencyKey::Fixed("all".into()));
    /// assert_eq!(spec.max_active_runs, 1);
    /// ```
    pub fn normalize(&self) -> Result<ConcurrencySpec, ConcurrencyError> {
        let key = match (self.key_pointer.is_empty(), self.fixed_key.is_empty()) {
            (true, true) => return Err(ConcurrencyError::NoKey),
            (false, false) => return Err(ConcurrencyError::TwoKeys),
            (false, true) => {
                if self.key_pointer.len() > MAX_POLICY_KEY_BYTES {
                    return Err(ConcurrencyError::PointerTooLong(self.key_pointer.len()));
                }
                if !is_valid_pointer(&self.key_pointer) {
                    return Err(ConcurrencyError::InvalidPointer(self.key_pointer.clone()));
                }
                ConcurrencyKey::Pointer(self.key_pointer.clone())
            }
            (true, false) => {
                if self.fixed_key.len() > MAX_POLICY_KEY_BYTES {
                    return Err(ConcurrencyError::FixedKeyTooLong(self.fixed_key.len()));
                }
                if self.fixed_key.contains('\0') {
                    return Err(ConcurrencyError::FixedKeyNul);
                }
                ConcurrencyKey::Fixed(self.fixed_key.clone())
            }
        };
        let max_active_runs = match self.max_active_runs {
            None => DEFAULT_MAX_ACTIVE_RUNS,
            Some(value) if (1..=MAX_ACTIVE_RUNS_LIMIT).contains(&value) => {
                u32::try_from(value).unwrap_or(DEFAULT_MAX_ACTIVE_RUNS)
            }
            Some(value) => return Err(ConcurrencyError::MaxActiveRunsOutOfRange(value)),
        };
        let strategy = if self.strategy.is_empty() {
            ConcurrencyStrategy::Queue
        } else {
            ConcurrencyStrategy::parse(&self.strategy)
                .ok_or_else(|| ConcurrencyError::UnknownStrategy(self.strategy.clone()))?
        };
        Ok(ConcurrencySpec {
            key,
            max_active_runs,
            strategy,
        })
    }
}

impl From<&ConcurrencySpec> for ConcurrencyDefinition {
    /// The fully explicit definition: normalizing it gives the spec back.
    fn from(spec: &ConcurrencySpec) -> Self {
        let (key_pointer, fixed_key) = match &spec.key {
            ConcurrencyKey::Pointer(pointer) => (pointer.clone(), String::new()),
            ConcurrencyKey::Fixed(key) => (String::new(), key.clone()),
        };
        ConcurrencyDefinition {
            key_pointer,
            fixed_key,
            max_active_runs: Some(i64::from(spec.max_active_runs)),
            strategy: spec.strategy.as_str().to_owned(),
        }
    }
}

/// Whether `text` is a JSON pointer (RFC 6901) a policy accepts: not empty
/// (the whole input is an object, never a key), starting with `/`, `~` only
/// in `~0` and `~1`, no U+0000.
fn is_valid_pointer(text: &str) -> bool {
    if !text.starts_with('/') || text.contains('\0') {
        return false;
    }
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(index, byte)| *byte != b'~' || matches!(bytes.get(index + 1), Some(b'0' | b'1')))
}

/// Why a run's input gives no concurrency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunKeyError {
    /// Nothing at the pointer.
    #[error("the input has no value at {}, the workflow's concurrency key_pointer", shown(.0))]
    Missing(String),
    /// The value there is too long to be a key.
    #[error(
        "the concurrency key at {} is {bytes} bytes, over the limit of {MAX_CONCURRENCY_KEY_BYTES}",
        shown(pointer)
    )]
    TooLong {
        /// The pointer.
        pointer: String,
        /// The size of the key found there.
        bytes: usize,
    },
    /// The value there is a string containing U+0000, which Postgres cannot
    /// store.
    #[error("the concurrency key at {} contains U+0000", shown(.0))]
    Nul(String),
}

impl ConcurrencySpec {
    /// The key of a run whose input context is `input`: the fixed key, or
    /// the value at the pointer (a string as is, anything else as compact
    /// JSON text).
    ///
    /// ```
    /// use tributary_core::{ConcurrencyKey, ConcurrencySpec, ConcurrencyStrategy};
    /// let spec = ConcurrencySpec {
    ///     key: ConcurrencyKey::Pointer("/customer/id".into()),
    ///     max_active_runs: 1,
    ///     strategy: ConcurrencyStrategy::Queue,
    /// };
    /// let input = serde_json::json!({"customer": {"id": "acme"}});
    /// assert_eq!(spec.run_key(&input).unwrap(), "acme");
    /// let input = serde_json::json!({"customer": {"id": 42}});
    /// assert_eq!(spec.run_key(&input).unwrap(), "42");
    /// ```
    pub fn run_key(&self, input: &serde_json::Value) -> Result<String, RunKeyError> {
        let pointer = match &self.key {
            ConcurrencyKey::Fixed(key) => return Ok(key.clone()),
            ConcurrencyKey::Pointer(pointer) => pointer,
        };
        let value = input
            .pointer(pointer)
            .ok_or_else(|| RunKeyError::Missing(pointer.clone()))?;
        let key = match value {
            serde_json::Value::String(text) => text.clone(),
            // Serializing a parsed value cannot fail.
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        if key.len() > MAX_CONCURRENCY_KEY_BYTES {
            return Err(RunKeyError::TooLong {
                pointer: pointer.clone(),
                bytes: key.len(),
            });
        }
        if key.contains('\0') {
            return Err(RunKeyError::Nul(pointer.clone()));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(text: &str) -> ConcurrencyDefinition {
        ConcurrencyDefinition {
            key_pointer: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn pointers_follow_rfc_6901_and_the_empty_pointer_is_refused() {
        for valid in ["/a", "/a/0", "/a~0b/c~1d", "/", "//"] {
            assert!(pointer(valid).normalize().is_ok(), "{valid}");
        }
        assert_eq!(
            pointer(&format!("/{}", "a".repeat(128))).normalize(),
            Err(ConcurrencyError::PointerTooLong(129))
        );
        for invalid in ["", "a", "/a~", "/a~2", "/~x", "/a\0"] {
            let policy = pointer(invalid);
            if invalid.is_empty() {
                assert_eq!(policy.normalize(), Err(ConcurrencyError::NoKey));
            } else {
                assert_eq!(
                    policy.normalize(),
                    Err(ConcurrencyError::InvalidPointer(invalid.into())),
                    "{invalid}"
                );
            }
        }
    }

    #[test]
    fn defaults_ranges_and_strategies() {
        let mut policy = ConcurrencyDefinition {
            fixed_key: "k".into(),
            ..Default::default()
        };
        let spec = policy.normalize().unwrap();
        assert_eq!(spec.max_active_runs, DEFAULT_MAX_ACTIVE_RUNS);
        assert_eq!(spec.strategy, ConcurrencyStrategy::Queue);
        for bad in [0, -1, MAX_ACTIVE_RUNS_LIMIT + 1] {
            policy.max_active_runs = Some(bad);
            assert_eq!(
                policy.normalize(),
                Err(ConcurrencyError::MaxActiveRunsOutOfRange(bad))
            );
        }
        policy.max_active_runs = Some(MAX_ACTIVE_RUNS_LIMIT);
        for strategy in ConcurrencyStrategy::ALL {
            policy.strategy = strategy.as_str().into();
            let spec = policy.normalize().unwrap();
            assert_eq!(spec.strategy, strategy);
            assert_eq!(ConcurrencyDefinition::from(&spec).normalize(), Ok(spec));
        }
        policy.strategy = "newest".into();
        assert_eq!(
            policy.normalize().unwrap_err().to_string(),
            "unknown strategy \"newest\"; expected one of queue, cancel_newest, cancel_in_progress"
        );
    }

    #[test]
    fn run_keys_from_the_input() {
        let spec = pointer("/c").normalize().unwrap();
        let key = |input: serde_json::Value| spec.run_key(&input);
        assert_eq!(key(serde_json::json!({"c": "x"})), Ok("x".into()));
        assert_eq!(key(serde_json::json!({"c": 42})), Ok("42".into()));
        assert_eq!(key(serde_json::json!({"c": null})), Ok("null".into()));
        assert_eq!(
            key(serde_json::json!({"c": {"b": [1, true]}})),
            Ok(r#"{"b":[1,true]}"#.into())
        );
        assert_eq!(
            key(serde_json::json!({"d": 1})),
            Err(RunKeyError::Missing("/c".into()))
        );
        assert_eq!(
            key(serde_json::json!({"c": "a".repeat(257)})),
            Err(RunKeyError::TooLong {
                pointer: "/c".into(),
                bytes: 257
            })
        );
        assert_eq!(
            key(serde_json::json!({"c": "a\u{0}"})),
            Err(RunKeyError::Nul("/c".into()))
        );
        let fixed = ConcurrencyDefinition {
            fixed_key: "all".into(),
            ..Default::default()
        };
        assert_eq!(
            fixed.normalize().unwrap().run_key(&serde_json::json!({})),
            Ok("all".into())
        );
    }
}
