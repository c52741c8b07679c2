//! Context values by reference, on the worker's side.
//!
//! A worker registered with a value cache keeps, per run, the values it
//! produced (its results' writes) and received (in `Assign` and `values`),
//! each under its name: the top-level key and the attempt that wrote it
//! (empty for the run's input). The server then sends a value this stream
//! already has as a reference. The cache is bounded: least recently used
//! values go first, and a referenced value that was evicted is fetched
//! from the server (`fetch_values`) before the attempt starts. `ForgetRun`
//! drops a run's values, and a new stream starts with an empty cache,
//! because the server forgets what a broken stream held.
//!
//! Values stay JSON text: a referenced value is shared, not copied, and
//! parsed only when the task reads it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::value::RawValue;
use tributary_proto::v1 as pb;

use crate::context::{Context, ContextError};

/// What the worker counts for one cached value besides its text: the name
/// and the bookkeeping. The server counts the text only, so a worker never
/// holds more than it offered.
const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// A value's name within its run: the key and the writer attempt.
type Name = (String, String);

struct Slot {
    value: Arc<RawValue>,
    bytes: u64,
    tick: u64,
}

/// The values kept per run, least recently used first out.
pub(crate) struct ValueCache {
    capacity_bytes: u64,
    used_bytes: u64,
    clock: u64,
    runs: HashMap<String, HashMap<Name, Slot>>,
    by_age: BTreeMap<u64, (String, Name)>,
}

impl ValueCache {
    pub(crate) fn new(capacity_bytes: u64) -> ValueCache {
        ValueCache {
            capacity_bytes,
            used_bytes: 0,
            clock: 0,
            runs: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// The value, which becomes the most recently used.
    pub(crate) fn get(&mut self, run_id: &str, name: &Name) -> Option<Arc<RawValue>> {
        self.clock += 1;
        let tick = self.clock;
        let slot = self.runs.get_mut(run_id)?.get_mut(name)?;
        let previous = std::mem::replace(&mut slot.tick, tick);
        if let Some(entry) = self.by_age.remove(&previous) {
            self.by_age.insert(tick, entry);
        }
        Some(slot.value.clone())
    }

    /// Keeps a value, evicting the least recently used ones to stay within
    /// the bound; a value larger than the bound is not kept.
    pub(crate) fn insert(&mut self, run_id: &str, name: Name, value: Arc<RawValue>) {
        let bytes =
            value.get().len() as u64 + (name.0.len() + name.1.len()) as u64 + ENTRY_OVERHEAD_BYTES;
        if bytes > self.capacity_bytes {
            return;
        }
        self.clock += 1;
        let tick = self.clock;
        let slot = Slot { value, bytes, tick };
        let run = self.runs.entry(run_id.to_owned()).or_default();
        if let Some(previous) = run.insert(name.clone(), slot) {
            self.by_age.remove(&previous.tick);
            self.used_bytes -= previous.bytes;
        }
        self.by_age.insert(tick, (run_id.to_owned(), name));
        self.used_bytes += bytes;
        while self.used_bytes > self.capacity_bytes {
            let Some((_, (run_id, name))) = self.by_age.pop_first() else {
                break;
            };
            if let Some(run) = self.runs.get_mut(&run_id) {
                if let Some(slot) = run.remove(&name) {
                    self.used_bytes -= slot.bytes;
                }
                if run.is_empty() {
                    self.runs.remove(&run_id);
                }
            }
        }
    }

    pub(crate) fn forget_run(&mut self, run_id: &str) {
        if let Some(run) = self.runs.remove(run_id) {
            for slot in run.values() {
                self.by_age.remove(&slot.tick);
                self.used_bytes -= slot.bytes;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.by_age.clear();
        self.used_bytes = 0;
    }
}

/// An attempt waiting for values it was sent by reference and no longer
/// has.
struct Pending {
    attempt_id: String,
    run_id: String,
    entries: Vec<(String, Arc<RawValue>)>,
    missing: Vec<pb::ValueRef>,
}

/// The input of an attempt: ready, or waiting for `values`.
pub(crate) enum Input {
    Ready(Result<Context, ContextError>),
    /// Send this and wait for the answer.
    Fetch(pb::FetchValues),
}

/// Builds attempts' input contexts from what the server sent and what the
/// cache holds.
pub(crate) struct Inputs {
    cache: ValueCache,
    /// Attempts whose `fetch_values` is unanswered, in the order sent: the
    /// server answers each with one `values`, in order.
    pending: VecDeque<Pending>,
}

impl Inputs {
    pub(crate) fn new(capacity_bytes: u64) -> Inputs {
        Inputs {
            cache: ValueCache::new(capacity_bytes),
            pending: VecDeque::new(),
        }
    }

    /// Whether values are kept (the worker registered a cache).
    pub(crate) fn is_caching(&self) -> bool {
        self.cache.capacity_bytes > 0
    }

    /// The input of an assigned attempt. Values sent by value and named
    /// are kept; referenced ones come from the cache, or, if it lost some,
    /// the attempt waits for them.
    pub(crate) fn resolve(&mut self, assign: &mut pb::Assign) -> Input {
        if !self.is_caching() || (assign.references.is_empty() && assign.inline_values.is_empty()) {
            return Input::Ready(Context::from_json(&assign.input_context_json));
        }
        let inline = match parse_object(&assign.input_context_json) {
            Ok(inline) => inline,
            Err(error) => return Input::Ready(Err(error)),
        };
        let mut entries = Vec::with_capacity(inline.len() + assign.references.len());
        let mut missing = Vec::new();
        // References first: inserting the new values must not evict them.
        for reference in std::mem::take(&mut assign.references) {
            let name = (reference.key, reference.writer_attempt_id);
            match self.cache.get(&assign.run_id, &name) {
                Some(value) => entries.push((name.0, value)),
                None => missing.push(pb::ValueRef {
                    key: name.0,
                    writer_attempt_id: name.1,
                }),
            }
        }
        let writers: HashMap<String, String> = std::mem::take(&mut assign.inline_values)
            .into_iter()
            .map(|name| (name.key, name.writer_attempt_id))
            .collect();
        for (key, value) in inline {
            if let Some(writer) = writers.get(&key) {
                self.cache
                    .insert(&assign.run_id, (key.clone(), writer.clone()), value.clone());
            }
            entries.push((key, value));
        }
        if missing.is_empty() {
            return Input::Ready(Ok(Context::from_raw_entries(entries)));
        }
        let fetch = pb::FetchValues {
            run_id: assign.run_id.clone(),
            refs: missing.clone(),
        };
        self.pending.push_back(Pending {
            attempt_id: assign.attempt_id.clone(),
            run_id: assign.run_id.clone(),
            entries,
            missing,
        });
        Input::Fetch(fetch)
    }

    /// The answer to the oldest `fetch_values`: the attempt that waited
    /// for it and its input. A value the server no longer has fails the
    /// attempt, retryably.
    pub(crate) fn values_arrived(
        &mut self,
        values: pb::Values,
    ) -> Option<(String, Result<Context, String>)> {
        let position = self
            .pending
            .iter()
            .position(|pending| pending.run_id == values.run_id)?;
        let pending = self.pending.remove(position)?;
        let mut found: HashMap<Name, Arc<RawValue>> = HashMap::new();
        for value in values.values {
            let Some(name) = value.r#ref else { continue };
            let Ok(raw) = RawValue::from_string(value.value_json) else {
                continue;
            };
            let raw: Arc<RawValue> = Arc::from(raw);
            let name = (name.key, name.writer_attempt_id);
            self.cache
                .insert(&pending.run_id, name.clone(), raw.clone());
            found.insert(name, raw);
        }
        let mut entries = pending.entries;
        for reference in pending.missing {
            let name = (reference.key, reference.writer_attempt_id);
            match found.remove(&name) {
                Some(value) => entries.push((name.0, value)),
                None => {
                    return Some((
                        pending.attempt_id,
                        Err(format!(
                            "the value of context key {:?} is no longer available on the server",
                            name.0
                        )),
                    ));
                }
            }
        }
        Some((pending.attempt_id, Ok(Context::from_raw_entries(entries))))
    }

    /// Keeps the values an attempt of this worker wrote.
    pub(crate) fn produced(
        &mut self,
        run_id: &str,
        attempt_id: &str,
        values: Vec<(String, Arc<RawValue>)>,
    ) {
        for (key, value) in values {
            self.cache
                .insert(run_id, (key, attempt_id.to_owned()), value);
        }
    }

    pub(crate) fn forget_run(&mut self, run_id: &str) {
        self.cache.forget_run(run_id);
    }

    /// A new stream: the server holds nothing of ours any more, and the
    /// fetches of the old stream went unanswered. Returns them, to be sent
    /// again.
    pub(crate) fn new_stream(&mut self) -> Vec<pb::FetchValues> {
        self.cache.clear();
        self.pending
            .iter()
            .map(|pending| pb::FetchValues {
                run_id: pending.run_id.clone(),
                refs: pending.missing.clone(),
            })
            .collect()
    }
}

fn parse_object(text: &str) -> Result<IndexMap<String, Arc<RawValue>>, ContextError> {
    if text.trim().is_empty() {
        return Ok(IndexMap::new());
    }
    let raw: IndexMap<String, Box<RawValue>> =
        serde_json::from_str(text).map_err(|error| ContextError::Invalid {
            message: error.to_string(),
        })?;
    Ok(raw
        .into_iter()
        .map(|(key, value)| (key, Arc::from(value)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(json.to_owned()).expect("json"))
    }

    fn name(key: &str, writer: &str) -> Name {
        (key.to_owned(), writer.to_owned())
    }

    #[test]
    fn the_cache_is_bounded_and_least_recently_used_goes_first() {
        // Each entry costs 1 + 2 + 64 = 67 bytes.
        let mut cache = ValueCache::new(140);
        cache.insert("r", name("a", "w"), raw("1"));
        cache.insert("r", name("b", "w"), raw("2"));
        assert!(cache.get("r", &name("a", "w")).is_some());
        cache.insert("s", name("c", "w"), raw("3"));
        assert!(cache.get("r", &name("b", "w")).is_none(), "evicted");
        assert_eq!(
            cache.get("r", &name("a", "w")).map(|v| v.get().to_owned()),
            Some("1".into())
        );
        cache.forget_run("r");
        assert!(cache.get("r", &name("a", "w")).is_none());
        assert_eq!(cache.used_bytes, 67);
        cache.insert("r", name("big", "w"), raw(&"7".repeat(200)));
        assert!(
            cache.get("r", &name("big", "w")).is_none(),
            "larger than the bound"
        );
        cache.clear();
        assert_eq!(cache.used_bytes, 0);
    }

    fn assign(json: &str, inline: &[(&str, &str)], references: &[(&str, &str)]) -> pb::Assign {
        let refs = |names: &[(&str, &str)]| {
            names
                .iter()
                .map(|(key, writer)| pb::ValueRef {
                    key: (*key).to_owned(),
                    writer_attempt_id: (*writer).to_owned(),
                })
                .collect()
        };
        pb::Assign {
            run_id: "r".into(),
            attempt_id: "x".into(),
            input_context_json: json.into(),
            inline_values: refs(inline),
            references: refs(references),
            ..pb::Assign::default()
        }
    }

    #[test]
    fn references_resolve_from_the_cache_or_are_fetched() {
        let mut inputs = Inputs::new(1 << 20);
        inputs.produced("r", "a0", vec![("p".into(), raw("[1,2]"))]);
        let mut first = assign(r#"{"in":"x"}"#, &[("in", "")], &[("p", "a0")]);
        let Input::Ready(Ok(context)) = inputs.resolve(&mut first) else {
            panic!("ready");
        };
        assert_eq!(context.keys().collect::<Vec<_>>(), ["in", "p"]);
        assert_eq!(context.get::<Vec<u32>>("p").expect("p"), [1, 2]);
        // "in" was kept from the first Assign; "q" is unknown.
        let mut second = assign("{}", &[], &[("in", ""), ("q", "a1")]);
        let Input::Fetch(fetch) = inputs.resolve(&mut second) else {
            panic!("fetch");
        };
        assert_eq!(fetch.refs.len(), 1);
        assert_eq!(fetch.refs[0].key, "q");
        let (attempt, context) = inputs
            .values_arrived(pb::Values {
                run_id: "r".into(),
                values: vec![pb::Value {
                    r#ref: Some(fetch.refs[0].clone()),
                    value_json: "true".into(),
                }],
            })
            .expect("pending");
        assert_eq!(attempt, "x");
        let context = context.expect("found");
        assert!(context.get::<bool>("q").expect("q"));
        assert_eq!(context.get::<String>("in").expect("in"), "x");
        // A value the server no longer has fails the attempt.
        inputs.forget_run("r");
        let mut third = assign("{}", &[], &[("q", "a1")]);
        assert!(matches!(inputs.resolve(&mut third), Input::Fetch(_)));
        assert_eq!(inputs.new_stream().len(), 1, "resent on a new stream");
        let (_, outcome) = inputs
            .values_arrived(pb::Values {
                run_id: "r".into(),
                values: vec![],
            })
            .expect("pending");
        assert!(outcome.expect_err("missing").contains("\"q\""));
    }

    #[test]
    fn without_a_cache_the_input_is_the_whole_context() {
        let mut inputs = Inputs::new(0);
        let mut whole = assign(r#"{"a":1}"#, &[("a", "")], &[]);
        let Input::Ready(Ok(context)) = inputs.resolve(&mut whole) else {
            panic!("ready");
        };
        assert_eq!(context.get::<u32>("a").expect("a"), 1);
    }
}
