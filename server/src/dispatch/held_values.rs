//! The context values one executor connection holds, so that an `Assign`
//! can name a value instead of sending it again.
//!
//! An executor that registers with `value_cache_bytes` > 0 keeps the values
//! it produced (in an accepted `completed`) and received (in an `Assign` or
//! `values`), each under its name: the run, the top-level key and the
//! attempt that wrote it (empty for the run's input). This tracker mirrors
//! that cache from the server's side, least recently used first out, and
//! never assumes more bytes held than the executor offered. When the
//! executor evicted a value anyway it asks for it again, so a wrong guess
//! here costs a round trip, never a task. A run none of whose values are
//! tracked any more is reported, so that the executor can be told to drop
//! what it still keeps of it (`ForgetRun`).
//!
//! The tracker lives and dies with the connection: a reconnected executor
//! starts with nothing held.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::engine::context::{Context, write_object};
use crate::engine::plan::TaskIndex;

/// The name of one context value of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueName {
    /// The top-level key.
    pub key: Arc<str>,
    /// The attempt whose result set the value; empty for the run's input.
    pub writer_attempt_id: Arc<str>,
}

/// An attempt's input context as it goes on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireInput {
    /// The keys sent by value, as JSON text of an object.
    pub input_context_json: String,
    /// For a caching executor, the name of each key sent by value.
    pub inline_values: Vec<ValueName>,
    /// For a caching executor, the keys it already holds.
    pub references: Vec<ValueName>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    bytes: u64,
    /// When it was last sent or referenced; the key of `by_age`.
    tick: u64,
}

/// What one executor connection holds, and what was sent to it.
#[derive(Debug, Default)]
pub struct HeldValues {
    capacity_bytes: u64,
    used_bytes: u64,
    clock: u64,
    runs: HashMap<Arc<str>, HashMap<ValueName, Slot>>,
    by_age: BTreeMap<u64, (Arc<str>, ValueName)>,
    /// Bytes of context JSON sent by value (`input_context_json`, and
    /// `value_json` in `values`).
    pub context_bytes_sent: u64,
    /// Values named in `references` instead of sent.
    pub values_sent_by_reference: u64,
}

impl HeldValues {
    /// A tracker for an executor that keeps up to `capacity_bytes` of
    /// values (0: it keeps none and always receives whole contexts).
    pub fn new(capacity_bytes: u64) -> HeldValues {
        HeldValues {
            capacity_bytes,
            ..HeldValues::default()
        }
    }

    pub fn is_caching(&self) -> bool {
        self.capacity_bytes > 0
    }

    /// Whether any value of the run is tracked as held.
    pub fn holds_run(&self, run_id: &str) -> bool {
        self.runs.contains_key(run_id)
    }

    /// Bytes of values tracked as held; never above the capacity.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Whether the value is held; if so it becomes the most recently used.
    fn touch(&mut self, run_id: &str, name: &ValueName) -> bool {
        self.clock += 1;
        let tick = self.clock;
        let Some(slot) = self
            .runs
            .get_mut(run_id)
            .and_then(|values| values.get_mut(name))
        else {
            return false;
        };
        let previous = std::mem::replace(&mut slot.tick, tick);
        if let Some(entry) = self.by_age.remove(&previous) {
            self.by_age.insert(tick, entry);
        }
        true
    }

    /// Records that the executor holds a value of `bytes` bytes. Evicts the
    /// least recently used values to stay within the capacity; a run left
    /// with nothing tracked is pushed on `emptied`. A value larger than the
    /// whole capacity is not tracked.
    pub fn hold(
        &mut self,
        run_id: &Arc<str>,
        name: ValueName,
        bytes: u64,
        emptied: &mut Vec<Arc<str>>,
    ) {
        if bytes > self.capacity_bytes || self.touch(run_id, &name) {
            return;
        }
        self.clock += 1;
        let tick = self.clock;
        self.runs
            .entry(run_id.clone())
            .or_default()
            .insert(name.clone(), Slot { bytes, tick });
        self.by_age.insert(tick, (run_id.clone(), name));
        self.used_bytes += bytes;
        while self.used_bytes > self.capacity_bytes {
            let Some((_, (run, name))) = self.by_age.pop_first() else {
                break;
            };
            let Some(values) = self.runs.get_mut(&run) else {
                continue;
            };
            if let Some(slot) = values.remove(&name) {
                self.used_bytes -= slot.bytes;
            }
            if values.is_empty() {
                self.runs.remove(&run);
                emptied.push(run);
            }
        }
    }

    /// Forgets every value of the run; true if any was tracked.
    pub fn forget_run(&mut self, run_id: &str) -> bool {
        let Some(values) = self.runs.remove(run_id) else {
            return false;
        };
        for slot in values.values() {
            self.by_age.remove(&slot.tick);
            self.used_bytes -= slot.bytes;
        }
        true
    }

    /// The wire form of an attempt's input: for a caching executor, each
    /// key it holds by reference and the others by value (named, and
    /// tracked as held from now on); for the others the whole context.
    /// `writer_of` names the attempt that wrote a task's values; a value
    /// whose writer has no name is sent by value, unnamed.
    pub fn assign_input(
        &mut self,
        run_id: &str,
        input: &Context,
        writer_of: impl Fn(TaskIndex) -> Option<Arc<str>>,
        emptied: &mut Vec<Arc<str>>,
    ) -> WireInput {
        if !self.is_caching() {
            let input_context_json = input.to_json();
            self.context_bytes_sent += input_context_json.len() as u64;
            return WireInput {
                input_context_json,
                ..WireInput::default()
            };
        }
        let run: Arc<str> = Arc::from(run_id);
        let input_writer: Arc<str> = Arc::from("");
        let mut inline: Vec<(&str, &RawValue)> = Vec::new();
        let mut wire = WireInput::default();
        let mut to_hold = Vec::new();
        for (key, writer, value) in input.values() {
            let writer_attempt_id = match writer {
                None => Some(input_writer.clone()),
                Some(task) => writer_of(task),
            };
            let Some(writer_attempt_id) = writer_attempt_id else {
                inline.push((key, value));
                continue;
            };
            let name = ValueName {
                key: key.clone(),
                writer_attempt_id,
            };
            if self.touch(run_id, &name) {
                wire.references.push(name);
            } else {
                inline.push((key, value));
                to_hold.push((name.clone(), value.get().len() as u64));
                wire.inline_values.push(name);
            }
        }
        // References first: the values this Assign names are the most
        // recent, so holding its new values cannot evict them.
        for (name, bytes) in to_hold {
            self.hold(&run, name, bytes, emptied);
        }
        wire.input_context_json = write_object(inline.into_iter());
        self.context_bytes_sent += wire.input_context_json.len() as u64;
        self.values_sent_by_reference += wire.references.len() as u64;
        wire
    }

    /// Records values sent in answer to `fetch_values`.
    pub fn sent_values(
        &mut self,
        run_id: &str,
        values: &[(ValueName, Arc<RawValue>)],
        emptied: &mut Vec<Arc<str>>,
    ) {
        let run: Arc<str> = Arc::from(run_id);
        for (name, value) in values {
            let bytes = value.get().len() as u64;
            self.context_bytes_sent += bytes;
            self.hold(&run, name.clone(), bytes, emptied);
        }
    }

    /// Records values the executor produced (its accepted result).
    pub fn produced(
        &mut self,
        run_id: &str,
        attempt_id: &str,
        set: &[(Arc<str>, Arc<RawValue>)],
        emptied: &mut Vec<Arc<str>>,
    ) {
        if !self.is_caching() {
            return;
        }
        let run: Arc<str> = Arc::from(run_id);
        let writer: Arc<str> = Arc::from(attempt_id);
        for (key, value) in set {
            let name = ValueName {
                key: key.clone(),
                writer_attempt_id: writer.clone(),
            };
            self.hold(&run, name, value.get().len() as u64, emptied);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::context::Delta;

    fn name(key: &str, writer: &str) -> ValueName {
        ValueName {
            key: Arc::from(key),
            writer_attempt_id: Arc::from(writer),
        }
    }

    fn raw(json: &str) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(json.to_owned()).expect("json"))
    }

    #[test]
    fn a_non_caching_executor_gets_the_whole_context() {
        let mut held = HeldValues::new(0);
        let input = Context::from_input(r#"{"a": 1, "b": [2]}"#).expect("valid");
        let mut emptied = Vec::new();
        for _ in 0..2 {
            let wire = held.assign_input("r", &input, |_| None, &mut emptied);
            assert_eq!(wire.input_context_json, r#"{"a":1,"b":[2]}"#);
            assert!(wire.inline_values.is_empty() && wire.references.is_empty());
        }
        assert_eq!(held.context_bytes_sent, 30);
        assert_eq!(held.values_sent_by_reference, 0);
        held.produced("r", "x", &[(Arc::from("c"), raw("3"))], &mut emptied);
        assert!(!held.holds_run("r"));
    }

    #[test]
    fn values_sent_or_produced_are_referenced_afterwards() {
        let mut held = HeldValues::new(1024);
        let mut emptied = Vec::new();
        let mut context = Context::from_input(r#"{"in": "x"}"#).expect("valid");
        let first = held.assign_input("r", &context, |_| None, &mut emptied);
        assert_eq!(first.input_context_json, r#"{"in":"x"}"#);
        assert_eq!(first.inline_values, [name("in", "")]);
        assert!(first.references.is_empty());
        // Task 0 (attempt "a0", on this executor) sets "big".
        let delta = Delta::parse(r#"{"big": [1, 2, 3]}"#, &[]).expect("delta");
        held.produced("r", "a0", &delta.set, &mut emptied);
        context.apply(0, &delta);
        let second = held.assign_input("r", &context, |_| Some(Arc::from("a0")), &mut emptied);
        assert_eq!(second.input_context_json, "{}");
        assert!(second.inline_values.is_empty());
        assert_eq!(second.references, [name("big", "a0"), name("in", "")]);
        assert_eq!(held.values_sent_by_reference, 2);
        // Another run's values are its own.
        let other = held.assign_input("s", &context, |_| Some(Arc::from("a0")), &mut emptied);
        assert_eq!(other.inline_values.len(), 2);
        assert!(emptied.is_empty());
        assert!(held.forget_run("r"));
        assert!(!held.forget_run("r"));
        assert!(held.holds_run("s"));
        let again = held.assign_input("r", &context, |_| Some(Arc::from("a0")), &mut emptied);
        assert_eq!(again.input_context_json, r#"{"big":[1, 2, 3],"in":"x"}"#);
    }

    #[test]
    fn the_capacity_bounds_what_is_assumed_held() {
        let mut held = HeldValues::new(10);
        let mut emptied = Vec::new();
        let r: Arc<str> = Arc::from("r");
        let s: Arc<str> = Arc::from("s");
        held.hold(&r, name("a", ""), 4, &mut emptied);
        held.hold(&s, name("b", ""), 4, &mut emptied);
        // Larger than everything: never tracked, nothing evicted.
        held.hold(&s, name("huge", ""), 11, &mut emptied);
        assert_eq!(held.used_bytes(), 8);
        // "a" becomes the most recent, so "b" goes first.
        assert!(held.touch("r", &name("a", "")));
        held.hold(&r, name("c", ""), 4, &mut emptied);
        assert_eq!(held.used_bytes(), 8);
        assert_eq!(emptied, std::slice::from_ref(&s));
        assert!(!held.holds_run("s"));
        assert!(held.touch("r", &name("a", "")));
        assert!(!held.touch("s", &name("b", "")));
        held.forget_run("r");
        assert_eq!(held.used_bytes(), 0);
        assert!(held.by_age.is_empty());
    }

    #[test]
    fn fetched_values_count_and_are_held_again() {
        let mut held = HeldValues::new(100);
        let mut emptied = Vec::new();
        held.sent_values("r", &[(name("k", "w"), raw("\"abc\""))], &mut emptied);
        assert_eq!(held.context_bytes_sent, 5);
        assert!(held.touch("r", &name("k", "w")));
    }
}
