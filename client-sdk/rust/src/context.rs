//! The task context: a JSON object a task reads and writes, with the seed's
//! rules (`insert` never overwrites, `update` never creates) and a record of
//! what the task changed, which the worker sends back as the attempt's delta.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use indexmap::{IndexMap, IndexSet};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Why a [`Context`] operation was refused.
///
/// Every variant names the key, so `?` in a task gives a message a person can
/// act on.
///
/// ```
/// use tributary::{Context, ContextError};
/// let mut context = Context::new();
/// context.insert("a", 1).unwrap();
/// assert_eq!(
///     context.insert("a", 2),
///     Err(ContextError::KeyExists { key: "a".into() })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// `insert` on a key that is already present.
    #[error("context key {key:?} already exists; use update or upsert to change it")]
    KeyExists {
        /// The key.
        key: String,
    },
    /// `get` or `update` on a key that is absent.
    #[error("context key {key:?} not found")]
    KeyNotFound {
        /// The key.
        key: String,
    },
    /// `get` of a value that does not deserialize into the asked type.
    #[error("context key {key:?} cannot be read as {type_name}: {message}")]
    WrongType {
        /// The key.
        key: String,
        /// The Rust type that was asked for.
        type_name: &'static str,
        /// serde's explanation.
        message: String,
    },
    /// A value that cannot be represented as JSON, or a context that is not a
    /// JSON object.
    #[error("invalid context value: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
}

/// A task's view of the run's context: a JSON object.
///
/// The type parameter is kept for compatibility with the seed's
/// `Context<serde_json::Value>`; only `serde_json::Value` is supported.
///
/// A task starts from its input (the run's input plus the writes of its
/// succeeded ancestors). Writes are recorded as a delta of top-level keys —
/// the keys set and the keys removed — and only the delta travels back to
/// the server. Values are replaced whole, never deep-merged.
///
/// Integers travel as JSON text; every integer that fits an `i64` or a `u64`
/// (so everything up to 2^64 − 1, well beyond 2^53) is kept exactly. Larger
/// integers become floating-point numbers when read as a `Value` (the crate
/// does not enable serde_json's `arbitrary_precision`); to pass any value on
/// exactly, use the raw methods ([`Context::get_raw`],
/// [`Context::upsert_raw`] and its siblings), which move JSON text without
/// parsing it. An input value the task does not overwrite is never
/// re-encoded, so it is never altered either.
///
/// ```
/// use serde_json::json;
/// use tributary::Context;
///
/// let mut context = Context::from_value(json!({"n": 1})).unwrap();
/// let n: i64 = context.get("n").unwrap();
/// context.insert("doubled", json!(n * 2)).unwrap();
/// context.update("n", 5).unwrap();
/// let (set, removed) = context.delta();
/// assert_eq!(serde_json::Value::Object(set.clone()), json!({"doubled": 2, "n": 5}));
/// assert!(removed.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Context<T = Value> {
    /// Input values stay as the JSON text they arrived in until a task reads
    /// them, so a task that reads one key of a large context parses only
    /// that key; written values are held as `Value`s.
    entries: IndexMap<String, Entry>,
    input_keys: BTreeSet<String>,
    /// Keys this task set, in the order it set them.
    set: IndexSet<String>,
    removed: BTreeSet<String>,
    cancellation: Option<crate::worker::Cancellation>,
    attempt: Option<Arc<crate::worker::Attempt>>,
    _value: PhantomData<fn() -> T>,
}

/// One value of a context: raw JSON text (from the input, or written raw),
/// parsed on first use, or a value a task wrote. When both are present the
/// text is the original and the value a possibly lossy parse of it.
#[derive(Debug, Clone)]
struct Entry {
    raw: Option<Arc<RawValue>>,
    value: OnceLock<Value>,
}

impl Entry {
    fn raw(raw: Arc<RawValue>) -> Entry {
        Entry {
            raw: Some(raw),
            value: OnceLock::new(),
        }
    }

    fn written(value: Value) -> Entry {
        Entry {
            raw: None,
            value: OnceLock::from(value),
        }
    }

    fn value(&self) -> &Value {
        self.value.get_or_init(|| match &self.raw {
            // The text was checked to be JSON when the context was read, by
            // the same parser, so this cannot fail.
            Some(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            None => Value::Null,
        })
    }

    fn into_value(self) -> Value {
        self.value();
        self.value.into_inner().unwrap_or(Value::Null)
    }

    fn raw_text(&self) -> Option<Cow<'_, RawValue>> {
        match &self.raw {
            Some(raw) => Some(Cow::Borrowed(&**raw)),
            None => serde_json::value::to_raw_value(self.value())
                .ok()
                .map(Cow::Owned),
        }
    }

    fn deserialize<V: DeserializeOwned>(&self) -> Result<V, serde_json::Error> {
        match (self.value.get(), &self.raw) {
            (Some(value), _) => V::deserialize(value),
            // Straight from the text: no intermediate `Value`.
            (None, Some(raw)) => serde_json::from_str(raw.get()),
            (None, None) => V::deserialize(Value::Null),
        }
    }
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The text first: the parsed value may have lost digits.
        match (&self.raw, self.value.get()) {
            (Some(raw), _) => (**raw).serialize(serializer),
            (None, Some(value)) => value.serialize(serializer),
            (None, None) => serializer.serialize_unit(),
        }
    }
}

impl Default for Context<Value> {
    fn default() -> Self {
        Context::new()
    }
}

impl PartialEq for Context<Value> {
    fn eq(&self, other: &Self) -> bool {
        self.data() == other.data() && self.delta() == other.delta()
    }
}
impl Context<Value> {
    /// An empty context.
    ///
    /// ```
    /// let context = tributary::Context::new();
    /// assert!(context.is_empty());
    /// ```
    pub fn new() -> Context<Value> {
        Context::from_map(Map::new())
    }

    /// A context whose input is `map`; nothing is recorded as written.
    ///
    /// ```
    /// let mut map = serde_json::Map::new();
    /// map.insert("a".into(), 1.into());
    /// assert!(tributary::Context::from_map(map).contains("a"));
    /// ```
    pub fn from_map(map: Map<String, Value>) -> Context<Value> {
        Context::from_entries(
            map.into_iter()
                .map(|(key, value)| (key, Entry::written(value)))
                .collect(),
        )
    }

    fn from_entries(entries: IndexMap<String, Entry>) -> Context<Value> {
        Context {
            input_keys: entries.keys().cloned().collect(),
            entries,
            set: IndexSet::new(),
            removed: BTreeSet::new(),
            cancellation: None,
            attempt: None,
            _value: PhantomData,
        }
    }

    /// A context whose input is `value`, which must be a JSON object.
    ///
    /// ```
    /// use serde_json::json;
    /// assert!(tributary::Context::from_value(json!({"a": 1})).is_ok());
    /// assert!(tributary::Context::from_value(json!([1])).is_err());
    /// ```
    pub fn from_value(value: Value) -> Result<Context<Value>, ContextError> {
        match value {
            Value::Object(map) => Ok(Context::from_map(map)),
            other => Err(ContextError::Invalid {
                message: format!("a context must be a JSON object, got {other}"),
            }),
        }
    }

    /// A context whose input is JSON text of an object (as on the wire).
    ///
    /// ```
    /// let context = tributary::Context::from_json(r#"{"big": 18446744073709551615}"#).unwrap();
    /// assert_eq!(context.get::<u64>("big").unwrap(), u64::MAX);
    /// ```
    pub fn from_json(text: &str) -> Result<Context<Value>, ContextError> {
        if text.trim().is_empty() {
            return Ok(Context::new());
        }
        if !text.trim_start().starts_with('{') {
            let value: Value =
                serde_json::from_str(text).map_err(|error| ContextError::Invalid {
                    message: error.to_string(),
                })?;
            return Context::from_value(value);
        }
        let raw: IndexMap<String, Box<RawValue>> =
            serde_json::from_str(text).map_err(|error| ContextError::Invalid {
                message: error.to_string(),
            })?;
        Ok(Context::from_entries(
            raw.into_iter()
                .map(|(key, raw)| (key, Entry::raw(Arc::from(raw))))
                .collect(),
        ))
    }

    /// A context whose input is these raw values (shared with the worker's
    /// value cache), keys sorted as the server sorts them.
    pub(crate) fn from_raw_entries(mut entries: Vec<(String, Arc<RawValue>)>) -> Context<Value> {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Context::from_entries(
            entries
                .into_iter()
                .map(|(key, raw)| (key, Entry::raw(raw)))
                .collect(),
        )
    }

    /// Reads `key` as a `T`. Fails with [`ContextError::KeyNotFound`] when
    /// the key is absent and [`ContextError::WrongType`] (naming the key and
    /// the type) when the value does not deserialize.
    ///
    /// ```
    /// use serde_json::json;
    /// let context = tributary::Context::from_value(json!({"n": "x"})).unwrap();
    /// let error = context.get::<u32>("n").unwrap_err();
    /// assert!(error.to_string().contains("\"n\" cannot be read as u32"));
    /// ```
    pub fn get<V: DeserializeOwned>(&self, key: &str) -> Result<V, ContextError> {
        let entry = self
            .entries
            .get(key)
            .ok_or_else(|| ContextError::KeyNotFound {
                key: key.to_owned(),
            })?;
        entry
            .deserialize()
            .map_err(|error| ContextError::WrongType {
                key: key.to_owned(),
                type_name: std::any::type_name::<V>(),
                message: error.to_string(),
            })
    }

    /// The raw JSON value of `key`, if present.
    ///
    /// ```
    /// use serde_json::json;
    /// let context = tributary::Context::from_value(json!({"a": [1]})).unwrap();
    /// assert_eq!(context.get_value("a"), Some(&json!([1])));
    /// assert_eq!(context.get_value("b"), None);
    /// ```
    pub fn get_value(&self, key: &str) -> Option<&Value> {
        self.entries.get(key).map(Entry::value)
    }

    /// The JSON text of `key`'s value, if present: for an input value (or one
    /// written with a raw method) exactly the text received, unparsed, so
    /// integers beyond 2^64 and long decimals survive; for a value written
    /// as a `Value`, its encoding.
    ///
    /// ```
    /// let context = tributary::Context::from_json(r#"{"n": 18446744073709551617}"#).unwrap();
    /// assert_eq!(context.get_raw("n").unwrap().get(), "18446744073709551617");
    /// assert!(context.get_raw("m").is_none());
    /// ```
    pub fn get_raw(&self, key: &str) -> Option<Cow<'_, RawValue>> {
        self.entries.get(key).and_then(Entry::raw_text)
    }

    /// [`Context::insert`] of JSON text, kept exactly as given (see
    /// [`Context::get_raw`]).
    ///
    /// ```
    /// use serde_json::value::RawValue;
    /// let mut context = tributary::Context::new();
    /// let big = RawValue::from_string("-36893488147419103233".into()).unwrap();
    /// context.insert_raw("m", big.clone()).unwrap();
    /// assert!(context.insert_raw("m", big).is_err());
    /// assert_eq!(context.get_raw("m").unwrap().get(), "-36893488147419103233");
    /// ```
    pub fn insert_raw(
        &mut self,
        key: impl Into<String>,
        value: Box<RawValue>,
    ) -> Result<(), ContextError> {
        let key = key.into();
        if self.entries.contains_key(&key) {
            return Err(ContextError::KeyExists { key });
        }
        self.write_entry(key, Entry::raw(Arc::from(value)));
        Ok(())
    }

    /// [`Context::update`] of JSON text, kept exactly as given.
    ///
    /// ```
    /// use serde_json::value::RawValue;
    /// let mut context = tributary::Context::from_json(r#"{"n": 1}"#).unwrap();
    /// let big = RawValue::from_string("340282366920938463463374607431768211457".into()).unwrap();
    /// context.update_raw("n", big.clone()).unwrap();
    /// assert!(context.update_raw("absent", big).is_err());
    /// ```
    pub fn update_raw(
        &mut self,
        key: impl Into<String>,
        value: Box<RawValue>,
    ) -> Result<(), ContextError> {
        let key = key.into();
        if !self.entries.contains_key(&key) {
            return Err(ContextError::KeyNotFound { key });
        }
        self.write_entry(key, Entry::raw(Arc::from(value)));
        Ok(())
    }

    /// [`Context::upsert`] of JSON text, kept exactly as given; the delta
    /// sent back carries the same text.
    ///
    /// ```
    /// use serde_json::value::RawValue;
    /// let mut context = tributary::Context::new();
    /// context.upsert_raw("x", RawValue::from_string("1.0000000000000000000001".into()).unwrap());
    /// assert_eq!(context.get_raw("x").unwrap().get(), "1.0000000000000000000001");
    /// assert!(context.delta().0.contains_key("x"));
    /// ```
    pub fn upsert_raw(&mut self, key: impl Into<String>, value: Box<RawValue>) {
        self.write_entry(key.into(), Entry::raw(Arc::from(value)));
    }

    /// Whether `key` is present (in the input or written by this task).
    ///
    /// ```
    /// let mut context = tributary::Context::new();
    /// context.insert("a", 1).unwrap();
    /// assert!(context.contains("a") && !context.contains("b"));
    /// ```
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Adds `key`; fails with [`ContextError::KeyExists`] if it is present,
    /// whether in the input or written earlier by this task.
    ///
    /// ```
    /// use serde_json::json;
    /// let mut context = tributary::Context::from_value(json!({"a": 1})).unwrap();
    /// assert!(context.insert("a", 2).is_err());
    /// assert!(context.insert("b", json!({"x": 1})).is_ok());
    /// ```
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<(), ContextError> {
        let key = key.into();
        if self.entries.contains_key(&key) {
            return Err(ContextError::KeyExists { key });
        }
        self.write(key, value.into());
        Ok(())
    }

    /// Replaces the value of `key`; fails with [`ContextError::KeyNotFound`]
    /// if it is absent.
    ///
    /// ```
    /// let mut context = tributary::Context::new();
    /// assert!(context.update("a", 1).is_err());
    /// context.insert("a", 1).unwrap();
    /// context.update("a", 2).unwrap();
    /// assert_eq!(context.get::<i32>("a").unwrap(), 2);
    /// ```
    pub fn update(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<(), ContextError> {
        let key = key.into();
        if !self.entries.contains_key(&key) {
            return Err(ContextError::KeyNotFound { key });
        }
        self.write(key, value.into());
        Ok(())
    }

    /// Sets `key` whether or not it is present (insert or update). Returns
    /// the previous value.
    ///
    /// ```
    /// let mut context = tributary::Context::new();
    /// assert_eq!(context.upsert("a", 1), None);
    /// assert_eq!(context.upsert("a", 2), Some(1.into()));
    /// ```
    pub fn upsert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.write(key.into(), value.into())
    }

    /// Removes `key` and returns its value, or `None` if it was absent. The
    /// removal is part of the delta when the key came from the input; a key
    /// this task wrote and then removed leaves no trace.
    ///
    /// ```
    /// use serde_json::json;
    /// let mut context = tributary::Context::from_value(json!({"a": 1})).unwrap();
    /// assert_eq!(context.remove("a"), Some(json!(1)));
    /// assert_eq!(context.remove("a"), None);
    /// assert!(context.delta().1.contains("a"));
    /// ```
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let previous = self.entries.shift_remove(key)?;
        self.forget(key);
        Some(previous.into_value())
    }

    /// Removes `key` like [`Context::remove`], without reading its value
    /// (which, for an input value, is never parsed); true if it was there.
    ///
    /// ```
    /// use serde_json::json;
    /// let mut context = tributary::Context::from_value(json!({"rows": [1, 2, 3]})).unwrap();
    /// assert!(context.discard("rows"));
    /// assert!(!context.discard("rows"));
    /// assert_eq!(context.delta().1.into_iter().collect::<Vec<_>>(), ["rows"]);
    /// ```
    pub fn discard(&mut self, key: &str) -> bool {
        if self.entries.shift_remove(key).is_none() {
            return false;
        }
        self.forget(key);
        true
    }

    /// Records the removal of `key` from the entries in the delta.
    fn forget(&mut self, key: &str) {
        self.set.shift_remove(key);
        if self.input_keys.contains(key) {
            self.removed.insert(key.to_owned());
        }
    }

    /// The keys present now, in insertion order.
    ///
    /// ```
    /// let mut context = tributary::Context::new();
    /// context.insert("b", 1).unwrap();
    /// context.insert("a", 1).unwrap();
    /// assert_eq!(context.keys().collect::<Vec<_>>(), ["b", "a"]);
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The number of keys present now.
    ///
    /// ```
    /// assert_eq!(tributary::Context::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is present.
    ///
    /// ```
    /// assert!(tributary::Context::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A copy of the whole context as it is now (input plus this task's
    /// writes), every value parsed; prefer [`Context::get`] for large
    /// contexts.
    ///
    /// ```
    /// use serde_json::json;
    /// let mut context = tributary::Context::from_value(json!({"a": 1})).unwrap();
    /// context.insert("b", 2).unwrap();
    /// assert_eq!(serde_json::Value::Object(context.data().clone()), json!({"a": 1, "b": 2}));
    /// ```
    pub fn data(&self) -> Map<String, Value> {
        self.entries
            .iter()
            .map(|(key, entry)| (key.clone(), entry.value().clone()))
            .collect()
    }

    /// A copy of this task's delta: the keys it set (with their values) and
    /// the input keys it removed.
    ///
    /// ```
    /// use serde_json::json;
    /// let mut context = tributary::Context::from_value(json!({"a": 1, "b": 2})).unwrap();
    /// context.update("a", 3).unwrap();
    /// context.remove("b");
    /// let (set, removed) = context.delta();
    /// assert_eq!(set.get("a"), Some(&json!(3)));
    /// assert_eq!(removed.iter().collect::<Vec<_>>(), ["b"]);
    /// ```
    pub fn delta(&self) -> (Map<String, Value>, BTreeSet<String>) {
        let set = self
            .set
            .iter()
            .filter_map(|key| Some((key.clone(), self.entries.get(key)?.value().clone())))
            .collect();
        (set, self.removed.clone())
    }

    /// The keys set by this task and their values as one JSON object, and
    /// the input keys it removed: what the worker sends back. Serialized
    /// straight from the context, without copying the values.
    pub(crate) fn delta_json(&self) -> Result<(String, Vec<String>), serde_json::Error> {
        let set: IndexMap<&str, &Entry> = self
            .set
            .iter()
            .filter_map(|key| Some((key.as_str(), self.entries.get(key)?)))
            .collect();
        Ok((
            serde_json::to_string(&set)?,
            self.removed.iter().cloned().collect(),
        ))
    }

    /// Like [`Context::delta_json`], with each set value also as its own
    /// JSON text, for the worker's value cache.
    #[allow(clippy::type_complexity)]
    pub(crate) fn delta_raw(
        &self,
    ) -> Result<(String, Vec<String>, Vec<(String, Arc<RawValue>)>), serde_json::Error> {
        let mut values = Vec::with_capacity(self.set.len());
        let mut set_json = String::from("{");
        for key in &self.set {
            let Some(entry) = self.entries.get(key) else {
                continue;
            };
            let raw: Arc<RawValue> = match (&entry.raw, entry.value.get()) {
                (Some(raw), None) => raw.clone(),
                _ => Arc::from(serde_json::value::to_raw_value(entry)?),
            };
            if set_json.len() > 1 {
                set_json.push(',');
            }
            set_json.push_str(&serde_json::to_string(key)?);
            set_json.push(':');
            set_json.push_str(raw.get());
            values.push((key.clone(), raw));
        }
        set_json.push('}');
        Ok((set_json, self.removed.iter().cloned().collect(), values))
    }

    /// Whether the attempt running this task was cancelled (the run was
    /// cancelled or the attempt timed out). Always `false` outside a worker.
    /// Long synchronous work should check it; an `.await` point is dropped on
    /// cancellation anyway.
    ///
    /// ```
    /// assert!(!tributary::Context::new().is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.cancellation
            .as_ref()
            .is_some_and(crate::worker::Cancellation::is_cancelled)
    }

    /// A handle on the attempt's cancellation that can be moved into other
    /// tasks or threads (for example into `spawn_blocking`); `None` outside
    /// a worker.
    ///
    /// ```
    /// assert!(tributary::Context::new().cancellation().is_none());
    /// ```
    pub fn cancellation(&self) -> Option<crate::worker::Cancellation> {
        self.cancellation.clone()
    }

    pub(crate) fn set_cancellation(&mut self, cancellation: crate::worker::Cancellation) {
        self.cancellation = Some(cancellation);
    }

    /// The attempt running this task (its ids and number); `None` outside a
    /// worker.
    ///
    /// ```
    /// assert!(tributary::Context::new().attempt().is_none());
    /// ```
    pub fn attempt(&self) -> Option<&crate::worker::Attempt> {
        self.attempt.as_deref()
    }

    /// The W3C `traceparent` of the server's span for this attempt, to make
    /// the task's own span its child (e.g. with an OpenTelemetry propagator);
    /// `None` outside a worker or when the server exports no traces.
    ///
    /// ```
    /// assert!(tributary::Context::new().traceparent().is_none());
    /// ```
    pub fn traceparent(&self) -> Option<&str> {
        self.attempt
            .as_deref()
            .map(|attempt| attempt.traceparent.as_str())
            .filter(|traceparent| !traceparent.is_empty())
    }

    pub(crate) fn set_attempt(&mut self, attempt: Arc<crate::worker::Attempt>) {
        self.attempt = Some(attempt);
    }

    /// Sets `key`, returning the value it replaced.
    fn write(&mut self, key: String, value: Value) -> Option<Value> {
        self.write_entry(key, Entry::written(value))
            .map(Entry::into_value)
    }

    fn write_entry(&mut self, key: String, entry: Entry) -> Option<Entry> {
        // A set replaces the value whole, so an earlier removal is moot.
        self.removed.remove(&key);
        self.set.insert(key.clone());
        self.entries.insert(key, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(value: Value) -> Context<Value> {
        Context::from_value(value).expect("object")
    }

    #[test]
    fn insert_refuses_a_key_of_the_input() {
        let mut context = context(json!({"a": 1}));
        assert_eq!(
            context.insert("a", 2),
            Err(ContextError::KeyExists { key: "a".into() })
        );
        assert_eq!(context.get::<i32>("a"), Ok(1));
        assert!(context.delta().0.is_empty());
    }

    #[test]
    fn insert_refuses_a_key_already_written() {
        let mut context = Context::new();
        context.insert("a", 1).expect("first insert");
        assert!(matches!(
            context.insert("a", 2),
            Err(ContextError::KeyExists { .. })
        ));
        assert_eq!(context.delta().0.get("a"), Some(&json!(1)));
    }

    #[test]
    fn insert_after_remove_is_allowed() {
        let mut context = context(json!({"a": 1}));
        context.remove("a");
        context.insert("a", 2).expect("key is free again");
        assert_eq!(context.get::<i32>("a"), Ok(2));
    }

    #[test]
    fn update_refuses_a_missing_key_and_replaces_present_ones() {
        let mut context = context(json!({"a": {"x": 1, "y": 2}}));
        assert_eq!(
            context.update("b", 1),
            Err(ContextError::KeyNotFound { key: "b".into() })
        );
        assert!(!context.contains("b"));
        context.update("a", json!({"x": 5})).expect("present");
        // Replaced whole, never merged.
        assert_eq!(context.get_value("a"), Some(&json!({"x": 5})));
        assert_eq!(context.delta().0.get("a"), Some(&json!({"x": 5})));
    }

    #[test]
    fn update_of_a_removed_key_fails() {
        let mut context = context(json!({"a": 1}));
        context.remove("a");
        assert!(matches!(
            context.update("a", 2),
            Err(ContextError::KeyNotFound { .. })
        ));
    }

    #[test]
    fn get_reports_missing_keys_and_wrong_types_with_key_and_type() {
        let context = context(json!({"n": "seven", "list": [1, 2]}));
        let missing = context.get::<i64>("absent").unwrap_err();
        assert_eq!(
            missing,
            ContextError::KeyNotFound {
                key: "absent".into()
            }
        );
        assert_eq!(missing.to_string(), "context key \"absent\" not found");
        let wrong = context.get::<i64>("n").unwrap_err();
        match &wrong {
            ContextError::WrongType { key, type_name, .. } => {
                assert_eq!(key, "n");
                assert_eq!(*type_name, "i64");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            wrong
                .to_string()
                .starts_with("context key \"n\" cannot be read as i64: invalid type"),
            "{wrong}"
        );
        assert_eq!(context.get::<Vec<u8>>("list"), Ok(vec![1, 2]));
    }

    #[test]
    fn get_deserializes_structs() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Product {
            id: u32,
            name: String,
        }
        let context = context(json!({"p": {"id": 1, "name": "x"}}));
        assert_eq!(
            context.get::<Product>("p"),
            Ok(Product {
                id: 1,
                name: "x".into()
            })
        );
        let error = context.get::<Vec<Product>>("p").unwrap_err();
        assert!(error.to_string().contains("alloc::vec::Vec<"), "{error}");
    }

    #[test]
    fn upsert_inserts_or_updates() {
        let mut context = context(json!({"a": 1}));
        assert_eq!(context.upsert("a", 2), Some(json!(1)));
        assert_eq!(context.upsert("b", 3), None);
        assert_eq!(
            Value::Object(context.delta().0.clone()),
            json!({"a": 2, "b": 3})
        );
    }

    #[test]
    fn remove_records_only_input_keys() {
        let mut context = context(json!({"a": 1, "b": 2}));
        context.insert("c", 3).expect("new");
        assert_eq!(context.remove("c"), Some(json!(3)));
        assert_eq!(context.remove("a"), Some(json!(1)));
        assert_eq!(context.remove("missing"), None);
        let (set, removed) = context.delta();
        assert!(set.is_empty());
        assert_eq!(
            removed.iter().cloned().collect::<Vec<_>>(),
            vec!["a".to_owned()]
        );
        assert!(!context.contains("a"));
    }

    #[test]
    fn a_removed_input_key_written_again_is_set() {
        let mut context = context(json!({"a": 1}));
        context.remove("a");
        context.upsert("a", 9);
        let (set, removed) = context.delta();
        assert_eq!(set.get("a"), Some(&json!(9)));
        // The set replaces the value, so the removal is not sent.
        assert!(!removed.contains("a"));
        assert!(context.contains("a"));
    }

    #[test]
    fn contains_len_and_keys_follow_writes() {
        let mut context = context(json!({"a": 1}));
        assert!(context.contains("a"));
        context.insert("b", 2).expect("new");
        assert_eq!(context.len(), 2);
        context.remove("a");
        assert_eq!(context.keys().collect::<Vec<_>>(), ["b"]);
        assert!(!context.is_empty());
    }

    #[test]
    fn input_values_are_read_from_their_text_and_the_delta_is_only_the_writes() {
        let mut context =
            Context::from_json(r#"{"big": {"nested": [1, 2, 3]}, "n": 18446744073709551615}"#)
                .expect("object");
        assert_eq!(context.get::<u64>("n"), Ok(u64::MAX));
        assert_eq!(
            context.get_value("big"),
            Some(&json!({"nested": [1, 2, 3]}))
        );
        context.insert("sum", 6).expect("new");
        context.update("n", 1).expect("present");
        context.remove("big");
        let (set_json, removed) = context.delta_json().expect("encodes");
        assert_eq!(set_json, r#"{"sum":6,"n":1}"#);
        assert_eq!(removed, ["big"]);
        assert_eq!(Value::Object(context.data()), json!({"n": 1, "sum": 6}));
    }

    #[test]
    fn raw_values_travel_exactly_through_the_delta() {
        let mut context = Context::from_json(r#"{"n": 18446744073709551617}"#).expect("object");
        let n = context.get_raw("n").expect("present").into_owned();
        context.insert_raw("copy", n).expect("new");
        // Reading the parsed (lossy) value must not change what is sent back.
        assert!(context.get_value("copy").is_some());
        let (set_json, _) = context.delta_json().expect("encodes");
        assert_eq!(set_json, r#"{"copy":18446744073709551617}"#);
        assert_eq!(
            context.get_raw("copy").expect("written").get(),
            "18446744073709551617"
        );
    }

    #[test]
    fn only_objects_are_contexts() {
        assert!(Context::from_value(json!(1)).is_err());
        assert!(Context::from_json("[]").is_err());
        assert!(Context::from_json("{").is_err());
        assert!(Context::from_json("").expect("empty is {}").is_empty());
    }

    #[test]
    fn integers_beyond_two_to_the_53_survive_parsing_and_printing() {
        let text =
            r#"{"big":9007199254740993,"max":18446744073709551615,"min":-9223372036854775808}"#;
        let context = Context::from_json(text).expect("parses");
        assert_eq!(context.get::<u64>("big"), Ok(9_007_199_254_740_993));
        assert_eq!(context.get::<u64>("max"), Ok(u64::MAX));
        assert_eq!(context.get::<i64>("min"), Ok(i64::MIN));
        assert_eq!(Value::Object(context.data().clone()).to_string(), text);
    }

    #[test]
    fn context_errors_become_non_retryable_task_errors() {
        fn task(context: &mut Context<Value>) -> Result<(), crate::TaskError> {
            let _: u32 = context.get("absent")?;
            Ok(())
        }
        let error = task(&mut Context::new()).unwrap_err();
        assert!(!error.is_retryable());
        assert_eq!(error.message(), "context key \"absent\" not found");
    }
}
