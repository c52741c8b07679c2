//! Why READY tasks wait, and how loaded each handler is: what `GetRun`,
//! the metrics and the "nobody serves this handler" warning are made of.
//! Pure functions over the executor registry and the ready queue.

use std::collections::{BTreeMap, HashSet};

use super::executors::ExecutorRegistry;
use super::ready_queue::{HandlerKey, ReadyQueue};

/// Why a READY task has not been assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingReason {
    /// No connected executor of the namespace serves the handler.
    NoExecutor,
    /// Executors serve it, and every one of their slots is taken.
    AllSlotsBusy,
    /// The only executors serving it are draining (capacity 0).
    ExecutorsDraining,
}

/// A READY task's wait, as `GetRun` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWait {
    pub task_id: String,
    pub reason: WaitingReason,
    /// The reason in words, naming the handler.
    pub message: String,
}

/// The executors and slots serving one handler, and the tasks waiting for
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerLoad {
    pub namespace: String,
    pub handler: String,
    pub executors: usize,
    pub slots_used: usize,
    pub slots_free: usize,
    /// READY tasks queued for the handler. Between turns every one of them
    /// waits for lack of a free slot: a turn assigns while it can.
    pub ready_waiting: usize,
}

/// What the coordinator reports for the metrics, between two turns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchSnapshot {
    pub active_runs: usize,
    pub executors_by_namespace: BTreeMap<String, usize>,
    /// Every handler served by an executor or waited for by a task, sorted.
    pub handlers: Vec<HandlerLoad>,
}

/// The load of one handler.
pub fn handler_load(
    key: &HandlerKey,
    executors: &ExecutorRegistry,
    ready: &ReadyQueue,
) -> HandlerLoad {
    let serving = executors.serving(key);
    let slots_used = serving
        .iter()
        .map(|executor| executor.in_flight.len())
        .sum();
    let slots_free = serving.iter().map(|executor| executor.free_slots()).sum();
    HandlerLoad {
        namespace: key.namespace.clone(),
        handler: key.handler.clone(),
        executors: serving.len(),
        slots_used,
        slots_free,
        ready_waiting: ready.len(key),
    }
}

/// Why a task of `key` waits, given the executors connected now; `None`
/// when one of them has a free slot (the task goes out this turn).
pub fn classify(key: &HandlerKey, executors: &ExecutorRegistry) -> Option<WaitingReason> {
    let serving = executors.serving(key);
    if serving.is_empty() {
        Some(WaitingReason::NoExecutor)
    } else if serving.iter().all(|executor| executor.capacity == 0) {
        Some(WaitingReason::ExecutorsDraining)
    } else if serving.iter().all(|executor| executor.free_slots() == 0) {
        Some(WaitingReason::AllSlotsBusy)
    } else {
        None
    }
}

/// The reason in words.
pub fn describe(reason: WaitingReason, key: &HandlerKey, executors: &ExecutorRegistry) -> String {
    match reason {
        WaitingReason::NoExecutor => format!(
            "no connected executor serves handler {:?} in namespace {:?}",
            key.handler, key.namespace
        ),
        WaitingReason::AllSlotsBusy => {
            let serving = executors.serving(key);
            let slots: usize = serving
                .iter()
                .map(|executor| executor.capacity as usize)
                .sum();
            format!(
                "all {slots} slots of the {} executor(s) serving handler {:?} are busy",
                serving.len(),
                key.handler
            )
        }
        WaitingReason::ExecutorsDraining => format!(
            "the executors serving handler {:?} are draining (capacity 0)",
            key.handler
        ),
    }
}

/// The snapshot of every handler known to the registry or the queue.
pub fn snapshot(
    active_runs: usize,
    executors: &ExecutorRegistry,
    ready: &ReadyQueue,
) -> DispatchSnapshot {
    let mut keys: Vec<HandlerKey> = executors.handler_keys();
    let known: HashSet<HandlerKey> = keys.iter().cloned().collect();
    keys.extend(ready.keys().into_iter().filter(|key| !known.contains(key)));
    keys.sort();
    let mut executors_by_namespace = BTreeMap::new();
    for namespace in executors.namespaces() {
        *executors_by_namespace.entry(namespace).or_insert(0) += 1;
    }
    DispatchSnapshot {
        active_runs,
        executors_by_namespace,
        handlers: keys
            .iter()
            .map(|key| handler_load(key, executors, ready))
            .collect(),
    }
}

/// Handlers already warned about as served by nobody, so that the warning
/// is logged once per handler until an executor for it connects.
#[derive(Debug, Default)]
pub struct UnservedWarnings {
    warned: HashSet<HandlerKey>,
}

impl UnservedWarnings {
    /// True the first time a task of an unserved `key` becomes ready.
    pub fn should_warn(&mut self, key: &HandlerKey, executors: &ExecutorRegistry) -> bool {
        if executors.serves(key) || self.warned.contains(key) {
            return false;
        }
        self.warned.insert(key.clone());
        true
    }

    /// An executor serving these handlers connected: warn again if they are
    /// ever unserved again.
    pub fn served<'a>(&mut self, keys: impl IntoIterator<Item = &'a HandlerKey>) {
        if self.warned.is_empty() {
            return;
        }
        for key in keys {
            self.warned.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::dispatch::executors::{ExecutorRegistration, LastHeard, StreamHandles};

    fn add(registry: &mut ExecutorRegistry, id: &str, capacity: u32) {
        let (outbound, _) = mpsc::channel(1);
        registry.add(
            id.into(),
            "default".into(),
            ExecutorRegistration {
                name: "test".into(),
                instance_id: id.into(),
                handlers: vec!["h".into()],
                capacity,
                labels: BTreeMap::new(),
                held_attempt_ids: Vec::new(),
                value_cache_bytes: 0,
            },
            StreamHandles {
                outbound,
                stream_guard: watch::channel(false).0,
                last_heard: LastHeard::default(),
            },
            0,
        );
    }

    fn key() -> HandlerKey {
        HandlerKey {
            namespace: "default".into(),
            handler: "h".into(),
        }
    }

    #[test]
    fn a_task_waits_for_no_executor_then_draining_then_busy_slots() {
        let mut registry = ExecutorRegistry::default();
        assert_eq!(classify(&key(), &registry), Some(WaitingReason::NoExecutor));
        add(&mut registry, "e1", 0);
        assert_eq!(
            classify(&key(), &registry),
            Some(WaitingReason::ExecutorsDraining)
        );
        add(&mut registry, "e2", 1);
        assert_eq!(classify(&key(), &registry), None);
        registry
            .get_mut("e2")
            .expect("added")
            .in_flight
            .insert("a".into());
        assert_eq!(
            classify(&key(), &registry),
            Some(WaitingReason::AllSlotsBusy)
        );
        assert_eq!(
            describe(WaitingReason::AllSlotsBusy, &key(), &registry),
            "all 1 slots of the 2 executor(s) serving handler \"h\" are busy"
        );
        let load = handler_load(&key(), &registry, &ReadyQueue::default());
        assert_eq!(
            (load.executors, load.slots_used, load.slots_free),
            (2, 1, 0)
        );
    }

    #[test]
    fn an_unserved_handler_is_warned_about_once_until_served() {
        let mut registry = ExecutorRegistry::default();
        let mut warnings = UnservedWarnings::default();
        assert!(warnings.should_warn(&key(), &registry));
        assert!(!warnings.should_warn(&key(), &registry));
        add(&mut registry, "e1", 1);
        warnings.served([&key()]);
        assert!(!warnings.should_warn(&key(), &registry));
        registry.remove("e1");
        assert!(warnings.should_warn(&key(), &registry));
    }
}
