//! The size of a run's accumulated context: the run's input plus the delta
//! of every succeeded task, applied by the context rule (per key, the
//! writer latest in canonical order wins). Every task's input is drawn from
//! these writes and the final context is exactly this, so bounding it
//! keeps every `Assign` and `GetRun` encodable; the engine refuses a result
//! that would take it over the limit (see `RunState::on_completed`).
//!
//! Sizes are those of the JSON object text the server writes
//! (`write_object`): `{`, `}`, and per key its quoted text, `:`, its raw
//! value, and a `,` between entries.

use std::collections::HashMap;
use std::sync::Arc;

use super::context::{Context, Delta};
use super::plan::TaskIndex;

#[derive(Debug, Clone, Copy)]
struct Sized {
    /// `None`: from the run's input, before every task.
    writer: Option<TaskIndex>,
    /// Bytes of the entry, 0 when the latest writer removed the key.
    bytes: usize,
}

/// The accumulated context's size, kept up to date as deltas are applied.
#[derive(Debug, Clone, Default)]
pub struct ContextSize {
    entries: HashMap<Arc<str>, Sized>,
    /// Bytes of the present entries, each with its separator.
    entry_bytes: usize,
    present: usize,
}

/// Bytes of `"key":value` as the server writes it.
fn entry_bytes(key: &str, value_bytes: usize) -> usize {
    // Serializing a string cannot fail.
    serde_json::to_string(key).map_or(key.len() + 2, |quoted| quoted.len()) + 1 + value_bytes
}

impl ContextSize {
    /// The size of the run's input context.
    pub fn of_input(input: &Context) -> ContextSize {
        let mut size = ContextSize::default();
        for (key, writer, value) in input.values() {
            size.set(key, writer, entry_bytes(key, value.get().len()));
        }
        size
    }

    /// Bytes of the accumulated context as JSON text.
    pub fn bytes(&self) -> usize {
        2 + self.entry_bytes + self.present.saturating_sub(1)
    }

    /// The size after `writer`'s delta were applied, without applying it.
    pub fn with_delta(&self, writer: TaskIndex, delta: &Delta) -> usize {
        let mut total = self.entry_bytes as i128;
        let mut present = self.present as i128;
        // A key both set and removed ends removed, as `apply` leaves it.
        let changes = delta.removed.iter().map(|key| (key, 0)).chain(
            delta
                .set
                .iter()
                .map(|(key, value)| (key, entry_bytes(key, value.get().len()))),
        );
        let mut seen = std::collections::HashSet::new();
        for (key, bytes) in changes {
            if !seen.insert(key) {
                continue;
            }
            let old = self.entries.get(key);
            if old.is_some_and(|old| old.writer > Some(writer)) {
                continue;
            }
            let old_bytes = old.map_or(0, |old| old.bytes);
            total += bytes as i128 - old_bytes as i128;
            present += i128::from(bytes > 0) - i128::from(old_bytes > 0);
        }
        let total = usize::try_from(total).unwrap_or(0);
        let present = usize::try_from(present).unwrap_or(0);
        2 + total + present.saturating_sub(1)
    }

    /// Applies `writer`'s delta.
    pub fn apply(&mut self, writer: TaskIndex, delta: &Delta) {
        for (key, value) in &delta.set {
            self.set(key, Some(writer), entry_bytes(key, value.get().len()));
        }
        for key in &delta.removed {
            self.set(key, Some(writer), 0);
        }
    }

    fn set(&mut self, key: &Arc<str>, writer: Option<TaskIndex>, bytes: usize) {
        if let Some(old) = self.entries.get(key) {
            if old.writer > writer {
                return;
            }
            self.entry_bytes -= old.bytes;
            self.present -= usize::from(old.bytes > 0);
        }
        self.entry_bytes += bytes;
        self.present += usize::from(bytes > 0);
        self.entries.insert(key.clone(), Sized { writer, bytes });
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::{Context, Delta, canonical_context};
    use super::*;

    fn delta(set_json: &str, removed: &[&str]) -> Delta {
        let removed: Vec<String> = removed.iter().map(|key| (*key).to_owned()).collect();
        Delta::parse(set_json, &removed).expect("delta")
    }

    #[test]
    fn the_size_is_that_of_the_canonical_context_whatever_the_order_of_results() {
        let input = Context::from_input(r#"{"a": 1, "b": "two", "é\"": null}"#).expect("input");
        let deltas = vec![
            (0, delta(r#"{"c": [1, 2, 3]}"#, &["a"])),
            (1, delta(r#"{"a": "xxx"}"#, &[])),
            (2, delta(r#"{"c": {}, "d": true}"#, &["b"])),
            (3, delta("{}", &["d", "missing"])),
        ];
        // Results arrive in every rotation of the canonical order.
        for start in 0..deltas.len() {
            let mut size = ContextSize::of_input(&input);
            assert_eq!(size.bytes(), input.to_json().len());
            for offset in 0..deltas.len() {
                let (writer, delta) = &deltas[(start + offset) % deltas.len()];
                let predicted = size.with_delta(*writer, delta);
                size.apply(*writer, delta);
                assert_eq!(predicted, size.bytes());
            }
            let mut all = deltas.clone();
            let expected = canonical_context(&input, &mut all).to_json();
            assert_eq!(size.bytes(), expected.len(), "{expected}");
        }
    }

    #[test]
    fn an_empty_context_is_two_bytes() {
        let size = ContextSize::of_input(&Context::default());
        assert_eq!(size.bytes(), 2);
        assert_eq!(
            size.with_delta(0, &delta(r#"{"k": 1}"#, &[])),
            r#"{"k":1}"#.len()
        );
    }
}
