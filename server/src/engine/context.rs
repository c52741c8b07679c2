//! The context rule. A context is a JSON object; a task's output is a delta
//! of top-level keys (set, remove), values replaced whole. A task's input is
//! the run's input plus the deltas of its succeeded ancestors applied in
//! canonical order.
//!
//! Applying deltas in canonical order means that, for each key, the write of
//! the ancestor latest in canonical order wins. So every [`Context`] records,
//! per key, which task wrote it last (its canonical index), and the input of
//! a task with several dependencies is the per-key "latest writer wins" merge
//! of its dependencies' outputs. That merge is exactly the canonical result,
//! and it needs no re-reading of ancestors: contexts are persistent maps
//! shared between tasks (copy-on-write), so a chain of 10,000 tasks never
//! copies a context.
//!
//! Values are kept as raw JSON text, never parsed into numbers, so integers
//! beyond 2^53 pass through the server unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::plan::TaskIndex;

/// Why a JSON text is not a usable context or delta.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("{field} is not valid JSON: {message}")]
    InvalidJson {
        field: &'static str,
        message: String,
    },
    #[error("{field} must be a JSON object, got {found}")]
    NotAnObject {
        field: &'static str,
        found: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    /// `None`: the value comes from the run's input.
    writer: Option<TaskIndex>,
    /// `None`: the key was removed.
    value: Option<Arc<RawValue>>,
}

/// A context with the latest writer of every key.
#[derive(Debug, Clone, Default)]
pub struct Context {
    entries: imbl::OrdMap<Arc<str>, Entry>,
}

/// A top-level key and its value as raw JSON text.
pub type Field = (Arc<str>, Arc<RawValue>);

/// The writes of one attempt.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub set: Vec<Field>,
    pub removed: Vec<Arc<str>>,
}

/// What kind of JSON value `json` is, for messages (`an array`, `null`).
pub fn kind_of(json: &str) -> &'static str {
    match json.trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Parses a JSON object into its top-level keys and raw values. An empty
/// text counts as `{}`.
pub fn parse_object(field: &'static str, json: &str) -> Result<Vec<Field>, ContextError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: &RawValue = serde_json::from_str(json).map_err(|error| ContextError::InvalidJson {
        field,
        message: error.to_string(),
    })?;
    if !raw.get().starts_with('{') {
        return Err(ContextError::NotAnObject {
            field,
            found: kind_of(raw.get()),
        });
    }
    let object: HashMap<String, Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|error| ContextError::InvalidJson {
            field,
            message: error.to_string(),
        })?;
    Ok(object
        .into_iter()
        .map(|(key, value)| (Arc::from(key), Arc::from(value)))
        .collect())
}

impl Delta {
    pub fn parse(set_json: &str, removed_keys: &[String]) -> Result<Delta, ContextError> {
        Ok(Delta {
            set: parse_object("set_json", set_json)?,
            removed: removed_keys
                .iter()
                .map(|key| Arc::from(key.as_str()))
                .collect(),
        })
    }

    /// The keys this delta writes (sets or removes).
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.set
            .iter()
            .map(|(key, _)| key)
            .chain(self.removed.iter())
    }

    /// The `set` part as a JSON object text, keys sorted.
    pub fn set_json(&self) -> String {
        let mut sorted: Vec<&Field> = self.set.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        write_object(sorted.into_iter().map(|(key, value)| (&**key, &**value)))
    }
}

/// A JSON object text of `entries`, in their order.
pub fn write_object<'a>(entries: impl Iterator<Item = (&'a str, &'a RawValue)>) -> String {
    let mut json = String::from("{");
    for (index, (key, value)) in entries.enumerate() {
        if index > 0 {
            json.push(',');
        }
        // Serializing a string cannot fail.
        json.push_str(&serde_json::to_string(key).unwrap_or_default());
        json.push(':');
        json.push_str(value.get());
    }
    json.push('}');
    json
}

impl Context {
    /// The run's input context.
    pub fn from_input(input_json: &str) -> Result<Context, ContextError> {
        let entries = parse_object("input_context_json", input_json)?
            .into_iter()
            .map(|(key, value)| {
                (
                    key,
                    Entry {
                        writer: None,
                        value: Some(value),
                    },
                )
            })
            .collect();
        Ok(Context { entries })
    }

    /// Applies the delta of `writer`, which must come after every writer
    /// already in this context in canonical order (it is their dependant).
    pub fn apply(&mut self, writer: TaskIndex, delta: &Delta) {
        for (key, value) in &delta.set {
            self.entries.insert(
                key.clone(),
                Entry {
                    writer: Some(writer),
                    value: Some(value.clone()),
                },
            );
        }
        for key in &delta.removed {
            self.entries.insert(
                key.clone(),
                Entry {
                    writer: Some(writer),
                    value: None,
                },
            );
        }
    }

    /// Merges another dependency's output into this one: per key, the write
    /// latest in canonical order wins.
    pub fn merge(&mut self, other: &Context) {
        if self.entries.ptr_eq(&other.entries) {
            return;
        }
        for (key, entry) in other.entries.iter() {
            let newer = match self.entries.get(key) {
                None => true,
                Some(existing) => entry.writer > existing.writer,
            };
            if newer {
                self.entries.insert(key.clone(), entry.clone());
            }
        }
    }

    /// The input of a task whose dependencies produced `outputs` (in any
    /// order): the shared output itself for one dependency, the merge for
    /// several, the run's input for none.
    pub fn merged<'a>(input: &Context, outputs: impl IntoIterator<Item = &'a Context>) -> Context {
        let mut outputs = outputs.into_iter();
        let Some(first) = outputs.next() else {
            return input.clone();
        };
        let mut merged = first.clone();
        for output in outputs {
            merged.merge(output);
        }
        merged
    }

    /// The context without `key` at all (not even a removal).
    pub fn without(&self, key: &str) -> Context {
        let mut entries = self.entries.clone();
        entries.remove(key);
        Context { entries }
    }

    /// Sets `key` to `value` as written by `writer`, whatever wrote it
    /// before: for values the engine adds to an input itself.
    pub fn put(&mut self, key: Arc<str>, writer: Option<TaskIndex>, value: Arc<RawValue>) {
        self.entries.insert(
            key,
            Entry {
                writer,
                value: Some(value),
            },
        );
    }

    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.entries
            .get(key)
            .and_then(|entry| entry.value.as_deref())
    }

    /// The value of `key`, shared.
    pub fn get_shared(&self, key: &str) -> Option<&Arc<RawValue>> {
        self.entries.get(key).and_then(|entry| entry.value.as_ref())
    }

    /// Every present key, keys sorted, with the task that wrote it (`None`
    /// for the run's input) and its value.
    pub fn values(&self) -> impl Iterator<Item = (&Arc<str>, Option<TaskIndex>, &Arc<RawValue>)> {
        self.entries
            .iter()
            .filter_map(|(key, entry)| entry.value.as_ref().map(|value| (key, entry.writer, value)))
    }

    /// The context as JSON object text, keys sorted.
    pub fn to_json(&self) -> String {
        write_object(
            self.entries
                .iter()
                .filter_map(|(key, entry)| entry.value.as_deref().map(|value| (&**key, value))),
        )
    }
}

/// The canonical context of a set of succeeded tasks: the input plus their
/// deltas applied in canonical order. `deltas` pairs each task's canonical
/// index with its delta, in any order.
pub fn canonical_context(input: &Context, deltas: &mut [(TaskIndex, Delta)]) -> Context {
    deltas.sort_by_key(|(index, _)| *index);
    let mut context = input.clone();
    for (index, delta) in deltas.iter() {
        context.apply(*index, delta);
    }
    context
}

/// The context of a stored run: its input plus the stored deltas applied
/// in the order of their tasks' canonical positions. `deltas` pairs each
/// delta's task position with its `set_json` and removed keys.
pub fn context_from_stored(
    input_json: &str,
    deltas: impl IntoIterator<Item = (TaskIndex, String, Vec<String>)>,
) -> Result<Context, ContextError> {
    let input = Context::from_input(input_json)?;
    let mut parsed = Vec::new();
    for (position, set_json, removed_keys) in deltas {
        parsed.push((position, Delta::parse(&set_json, &removed_keys)?));
    }
    Ok(canonical_context(&input, &mut parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(set_json: &str, removed: &[&str]) -> Delta {
        let removed: Vec<String> = removed.iter().map(|k| (*k).to_owned()).collect();
        Delta::parse(set_json, &removed).expect("valid delta")
    }

    #[test]
    fn input_must_be_an_object() {
        assert_eq!(
            Context::from_input("").expect("empty is {}").to_json(),
            "{}"
        );
        let error = Context::from_input("[1, 2]").expect_err("array");
        assert_eq!(
            error.to_string(),
            "input_context_json must be a JSON object, got an array"
        );
        let error = Context::from_input("{\"a\": }").expect_err("syntax");
        assert_eq!(
            error.to_string(),
            "input_context_json is not valid JSON: expected value at line 1 column 7"
        );
        let error = Context::from_input("42").expect_err("number");
        assert!(error.to_string().ends_with("got a number"));
    }

    #[test]
    fn big_integers_and_odd_values_survive_unchanged() {
        let input = r#"{"big": 123456789012345678901234567890, "max": 18446744073709551615, "neg": -9007199254740993, "s": "\u0000x"}"#;
        let context = Context::from_input(input).expect("valid");
        assert_eq!(
            context.to_json(),
            r#"{"big":123456789012345678901234567890,"max":18446744073709551615,"neg":-9007199254740993,"s":"\u0000x"}"#
        );
    }

    #[test]
    fn values_are_replaced_whole_never_deep_merged() {
        let mut context = Context::from_input(r#"{"cfg": {"a": 1, "b": 2}}"#).expect("valid");
        context.apply(0, &delta(r#"{"cfg": {"c": 3}}"#, &[]));
        assert_eq!(context.to_json(), r#"{"cfg":{"c": 3}}"#);
    }

    #[test]
    fn removal_hides_an_input_key() {
        let mut context = Context::from_input(r#"{"a": 1, "b": 2}"#).expect("valid");
        context.apply(0, &delta("{}", &["a"]));
        assert_eq!(context.to_json(), r#"{"b":2}"#);
        assert!(context.get("a").is_none());
    }

    #[test]
    fn merge_takes_the_latest_writer_per_key_in_any_order() {
        let input = Context::from_input(r#"{"k": "input", "x": 0}"#).expect("valid");
        let mut left = input.clone();
        left.apply(1, &delta(r#"{"k": "from 1", "l": true}"#, &[]));
        let mut right = input.clone();
        right.apply(2, &delta(r#"{"k": "from 2"}"#, &["x"]));
        let one_way = Context::merged(&input, [&left, &right]).to_json();
        let other_way = Context::merged(&input, [&right, &left]).to_json();
        assert_eq!(one_way, r#"{"k":"from 2","l":true}"#);
        assert_eq!(one_way, other_way);
    }

    #[test]
    fn merged_outputs_equal_canonical_application() {
        // a(0) -> b(1), a -> c(2), b,c -> d(3); every task writes "k".
        let input = Context::from_input(r#"{"k": 0}"#).expect("valid");
        let deltas = [
            delta(r#"{"k": "a", "a": 1}"#, &[]),
            delta(r#"{"k": "b"}"#, &["a"]),
            delta(r#"{"k": "c", "c": 3}"#, &[]),
        ];
        let mut a = input.clone();
        a.apply(0, &deltas[0]);
        let mut b = a.clone();
        b.apply(1, &deltas[1]);
        let mut c = a.clone();
        c.apply(2, &deltas[2]);
        let d_input = Context::merged(&input, [&c, &b]);
        let mut all: Vec<(TaskIndex, Delta)> = deltas.iter().cloned().enumerate().collect();
        all.reverse();
        let canonical = canonical_context(&input, &mut all);
        assert_eq!(d_input.to_json(), canonical.to_json());
        assert_eq!(canonical.to_json(), r#"{"c":3,"k":"c"}"#);
    }

    #[test]
    fn no_dependencies_means_the_input() {
        let input = Context::from_input(r#"{"a": 1}"#).expect("valid");
        assert_eq!(Context::merged(&input, []).to_json(), r#"{"a":1}"#);
    }

    #[test]
    fn delta_set_json_is_sorted_and_rejects_non_objects() {
        assert_eq!(
            delta(r#"{"b": 1, "a": [2]}"#, &[]).set_json(),
            r#"{"a":[2],"b":1}"#
        );
        let error = Delta::parse("\"text\"", &[]).expect_err("not an object");
        assert_eq!(
            error.to_string(),
            "set_json must be a JSON object, got a string"
        );
    }

    #[derive(serde::Deserialize)]
    struct VectorDelta {
        position: usize,
        set: Box<RawValue>,
        removed: Vec<String>,
    }

    #[derive(serde::Deserialize)]
    struct VectorCase {
        name: String,
        input: Box<RawValue>,
        deltas: Vec<VectorDelta>,
        expected: Box<RawValue>,
        expected_json: Option<String>,
    }

    #[derive(serde::Deserialize)]
    struct Vectors {
        cases: Vec<VectorCase>,
    }

    /// The shared context vectors, which every SDK's tests also read.
    #[test]
    fn shared_context_vectors() {
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../../tests/vectors/context.json"))
                .expect("valid vectors");
        assert!(vectors.cases.len() >= 8);
        for case in vectors.cases {
            let deltas = case.deltas.iter().map(|delta| {
                (
                    delta.position,
                    delta.set.get().to_owned(),
                    delta.removed.clone(),
                )
            });
            let context = context_from_stored(case.input.get(), deltas).expect(&case.name);
            let ours: serde_json::Value = serde_json::from_str(&context.to_json()).expect("json");
            let expected: serde_json::Value =
                serde_json::from_str(case.expected.get()).expect("json");
            assert_eq!(ours, expected, "{}", case.name);
            if let Some(expected_json) = case.expected_json {
                assert_eq!(context.to_json(), expected_json, "{}", case.name);
            }
        }
    }
}
