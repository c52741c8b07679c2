//! The context a task sees, with the seed's API: `get` deserializes a key to
//! the asked type, `insert` adds a key that must not exist yet, `remove`
//! drops one. It records the task's writes as a delta (keys set, keys
//! removed), which is what an executor sends back in `Completed`.
//!
//! This is a stand-in for the Rust SDK's `Context` until that exists; the
//! task functions in `tasks.rs` only use this API, so switching them over is
//! a change of imports.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// Why a task failed. `retryable` follows the protocol: the zero value of
/// `non_retryable` means "retry if the budget allows".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub message: String,
    pub retryable: bool,
}

impl TaskError {
    /// A failure another attempt may not meet (a flaky service, a timeout).
    pub fn retryable(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that every attempt would repeat (bad input, a bug).
    pub fn permanent(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retryable: false,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

/// A task's view of the run's context: its input plus its own writes.
///
/// Values are kept as raw JSON text and decoded only when a task asks for
/// them, straight into the asked type: the catalog and its partitions are
/// 1.6 MB of JSON that most tasks never read.
#[derive(Debug, Default)]
pub struct Context {
    /// The current view: the input with this task's writes applied.
    data: HashMap<String, Box<RawValue>>,
    /// Keys this task set, in the order it first set them.
    written: Vec<String>,
    /// Keys of the input this task removed.
    removed: Vec<String>,
    /// The input's keys, to tell a removal of an input key from the undoing
    /// of this task's own write.
    input_keys: HashSet<String>,
}

/// A task's writes: what `Completed` carries.
#[derive(Debug, Default)]
pub struct Delta {
    /// Top-level keys set, with their new values, in the order first set.
    pub set: Vec<(String, Box<RawValue>)>,
    /// Top-level keys removed.
    pub removed: Vec<String>,
}

impl Delta {
    /// The keys set, as the JSON text of an object (`Completed.set_json`).
    pub fn set_json(&self) -> String {
        let mut json = String::from("{");
        for (index, (key, value)) in self.set.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            json.push_str(&serde_json::Value::from(key.as_str()).to_string());
            json.push(':');
            json.push_str(value.get());
        }
        json.push('}');
        json
    }
}

impl Context {
    /// Parses an input context sent as JSON text; it must be an object.
    pub fn from_json(text: &str) -> Result<Context, TaskError> {
        let data: HashMap<String, Box<RawValue>> = serde_json::from_str(text).map_err(|error| {
            TaskError::permanent(format!("the input context is not a JSON object: {error}"))
        })?;
        Ok(Context {
            input_keys: data.keys().cloned().collect(),
            data,
            written: Vec::new(),
            removed: Vec::new(),
        })
    }

    /// The value of `key` as a `T`; an error names the key when it is
    /// missing or of another type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, TaskError> {
        let value = self
            .data
            .get(key)
            .ok_or_else(|| TaskError::permanent(format!("the context has no key {key:?}")))?;
        serde_json::from_str(value.get()).map_err(|error| {
            TaskError::permanent(format!(
                "the context key {key:?} is not a {}: {error}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Adds `key`; fails if it exists (in the input or already written).
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), TaskError> {
        if self.data.contains_key(key) {
            return Err(TaskError::permanent(format!(
                "the context already has a key {key:?}"
            )));
        }
        let value = serde_json::value::to_raw_value(value).map_err(|error| {
            TaskError::permanent(format!("cannot serialize the value of {key:?}: {error}"))
        })?;
        self.data.insert(key.to_owned(), value);
        self.removed.retain(|removed| removed != key);
        self.written.push(key.to_owned());
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        if self.data.remove(key).is_none() {
            return false;
        }
        self.written.retain(|written| written != key);
        if self.input_keys.contains(key) {
            self.removed.push(key.to_owned());
        }
        true
    }

    /// The task's writes, consuming the context.
    pub fn into_delta(mut self) -> Delta {
        let set = self
            .written
            .into_iter()
            .filter_map(|key| self.data.remove(&key).map(|value| (key, value)))
            .collect();
        Delta {
            set,
            removed: self.removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn context(input: Value) -> Context {
        Context::from_json(&input.to_string()).expect("test input is an object")
    }

    fn set_of(delta: &Delta) -> Value {
        serde_json::from_str(&delta.set_json()).expect("set_json is JSON")
    }

    #[test]
    fn get_reads_typed_values_and_names_the_key_on_error() {
        let context = context(json!({"n": 7, "s": "text", "none": null}));
        assert_eq!(context.get::<u64>("n"), Ok(7));
        assert_eq!(context.get::<Option<f64>>("none"), Ok(None));
        let missing = context.get::<u64>("absent").expect_err("missing key");
        assert!(missing.message.contains("\"absent\""), "{missing}");
        let wrong = context.get::<u64>("s").expect_err("wrong type");
        assert!(wrong.message.contains("\"s\""), "{wrong}");
        assert!(!wrong.retryable);
    }

    #[test]
    fn insert_refuses_existing_keys_and_records_new_ones_in_order() {
        let mut context = context(json!({"a": 1}));
        assert!(context.insert("a", &2).is_err());
        context.insert("z", &[1, 2]).expect("new key");
        context.insert("b \"quoted\"", "text").expect("new key");
        assert!(context.insert("z", &3).is_err());
        assert_eq!(context.get::<Vec<u32>>("z"), Ok(vec![1, 2]));
        let delta = context.into_delta();
        assert_eq!(delta.set_json(), r#"{"z":[1,2],"b \"quoted\"":"text"}"#);
        assert_eq!(set_of(&delta), json!({"z": [1, 2], "b \"quoted\"": "text"}));
        assert!(delta.removed.is_empty());
    }

    #[test]
    fn remove_reports_input_keys_and_undoes_own_writes() {
        let mut context = context(json!({"a": 1, "b": 2}));
        context.insert("c", &3).expect("new key");
        assert!(context.remove("a"));
        assert!(context.remove("c"));
        assert!(!context.remove("absent"));
        assert!(context.get::<u32>("a").is_err());
        let delta = context.into_delta();
        assert_eq!(set_of(&delta), json!({}));
        assert_eq!(delta.removed, ["a"]);
    }

    #[test]
    fn a_removed_input_key_set_again_is_a_write_not_a_removal() {
        let mut context = context(json!({"a": 1}));
        assert!(context.remove("a"));
        context
            .insert("a", &10)
            .expect("removed key can be set again");
        let delta = context.into_delta();
        assert_eq!(set_of(&delta), json!({"a": 10}));
        assert!(delta.removed.is_empty());
    }

    #[test]
    fn input_must_be_a_json_object() {
        assert!(Context::from_json("{}").is_ok());
        for bad in ["[1]", "7", "{", ""] {
            let error = Context::from_json(bad).expect_err(bad);
            assert!(
                error
                    .message
                    .starts_with("the input context is not a JSON object"),
                "{error}"
            );
        }
    }
}
