//! Why READY tasks wait, and how loaded each handler is: what `GetRun`,
//! the metrics and the "nobody can take this task" warning are made of.
//! Pure functions over the executor registry and the ready queue.

use std::collections::{BTreeMap, HashSet};

use tributary_core::{Labels, format_labels};

use super::executors::{Executor, ExecutorRegistration, ExecutorRegistry};
use super::handler_in_flight::HandlerInFlight;
use super::ready_queue::{HandlerKey, ReadyKey, ReadyQueue};

/// Why a READY task has not been assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingReason {
    /// No connected executor of the namespace serves the handler.
    NoExecutor,
    /// Executors serve it, and every one of their slots is taken.
    AllSlotsBusy,
    /// The only executors serving it are draining (capacity 0).
    ExecutorsDraining,
    /// Executors serve the handler, but none has the labels the task
    /// requires.
    NoMatchingLabels,
    /// The task's `max_in_flight` attempts of its handler are in flight.
    HandlerLimit,
}

/// A READY task's wait, as `GetRun` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWait {
    pub task_id: String,
    /// Set for an instance of a mapped task: its element index.
    pub map_index: Option<u32>,
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
    /// waits for lack of a free slot (or for its handler's limit): a turn
    /// assigns while it can.
    pub ready_waiting: usize,
    /// Attempts of the handler in flight across the namespace, what a
    /// task's `max_in_flight` is compared with.
    pub attempts_in_flight: usize,
}

/// What the coordinator reports for the metrics, between two turns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchSnapshot {
    pub active_runs: usize,
    /// Runs QUEUED for their concurrency key, by namespace.
    pub queued_runs_by_namespace: BTreeMap<String, usize>,
    pub executors_by_namespace: BTreeMap<String, usize>,
    /// Every handler served by an executor or waited for by a task, sorted.
    pub handlers: Vec<HandlerLoad>,
}

/// The load of one handler, with `ready_waiting` tasks queued for it.
pub fn handler_load(
    key: &HandlerKey,
    executors: &ExecutorRegistry,
    ready_waiting: usize,
    in_flight: &HandlerInFlight,
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
        ready_waiting,
        attempts_in_flight: in_flight.count(key),
    }
}

/// The executors a task of `key` may go to: those serving its handler with
/// the labels it requires.
fn eligible<'a>(key: &ReadyKey, executors: &'a ExecutorRegistry) -> Vec<&'a Executor> {
    let mut serving = executors.serving(&key.handler);
    serving.retain(|executor| executor.has_labels(key.required()));
    serving
}

/// Why a task of `key` waits, given the executors connected now; `None`
/// when one of them can take it (the task goes out this turn).
pub fn classify(key: &ReadyKey, executors: &ExecutorRegistry) -> Option<WaitingReason> {
    if !executors.serves(&key.handler, None) {
        return Some(WaitingReason::NoExecutor);
    }
    let eligible = eligible(key, executors);
    if eligible.is_empty() {
        Some(WaitingReason::NoMatchingLabels)
    } else if eligible.iter().all(|executor| executor.capacity == 0) {
        Some(WaitingReason::ExecutorsDraining)
    } else if eligible.iter().all(|executor| executor.free_slots() == 0) {
        Some(WaitingReason::AllSlotsBusy)
    } else {
        None
    }
}

/// The reason in words, naming the handler and the labels required.
pub fn describe(reason: WaitingReason, key: &ReadyKey, executors: &ExecutorRegistry) -> String {
    let handler = &key.handler;
    // The executors that count are those with the labels: say so.
    let with_labels = match key.required() {
        Some(required) => format!(" with labels {}", format_labels(required)),
        None => String::new(),
    };
    match reason {
        WaitingReason::NoExecutor => format!(
            "no connected executor serves handler {:?} in namespace {:?}",
            handler.handler, handler.namespace
        ),
        WaitingReason::NoMatchingLabels => {
            let serving = executors.serving(handler).len();
            format!(
                "none of the {serving} executor(s) serving handler {:?} has the required labels {}",
                handler.handler,
                format_labels(key.required().unwrap_or(&Labels::new()))
            )
        }
        WaitingReason::AllSlotsBusy => {
            let eligible = eligible(key, executors);
            let slots: usize = eligible
                .iter()
                .map(|executor| executor.capacity as usize)
                .sum();
            format!(
                "all {slots} slots of the {} executor(s) serving handler {:?}{with_labels} are busy",
                eligible.len(),
                handler.handler
            )
        }
        WaitingReason::ExecutorsDraining => format!(
            "the executors serving handler {:?}{with_labels} are draining (capacity 0)",
            handler.handler
        ),
        WaitingReason::HandlerLimit => format!(
            "the task's max_in_flight of {} attempts of handler {:?} in flight in namespace {:?} is reached",
            key.max_in_flight.unwrap_or_default(),
            handler.handler,
            handler.namespace
        ),
    }
}

/// Why a task of `key` waits, given the executors connected now and
/// whether its handler is at the task's limit of attempts in flight; `None`
/// when it goes out this turn. Without an executor that could take it, that
/// is the reason, whatever the limit: a free place under the limit would
/// not start it.
pub fn classify_limited(
    key: &ReadyKey,
    executors: &ExecutorRegistry,
    at_limit: bool,
) -> Option<WaitingReason> {
    match classify(key, executors) {
        Some(reason @ (WaitingReason::NoExecutor | WaitingReason::NoMatchingLabels)) => {
            Some(reason)
        }
        _ if at_limit => Some(WaitingReason::HandlerLimit),
        other => other,
    }
}

/// The snapshot of every handler known to the registry or the queue.
pub fn snapshot(
    active_runs: usize,
    queued_runs_by_namespace: BTreeMap<String, usize>,
    executors: &ExecutorRegistry,
    ready: &ReadyQueue,
    in_flight: &HandlerInFlight,
) -> DispatchSnapshot {
    let waiting = ready.waiting_by_handler();
    let mut keys: Vec<HandlerKey> = executors.handler_keys();
    let known: HashSet<HandlerKey> = keys.iter().cloned().collect();
    keys.extend(
        waiting
            .keys()
            .filter(|key| !known.contains(**key))
            .map(|key| (*key).clone()),
    );
    keys.sort();
    let mut executors_by_namespace = BTreeMap::new();
    for namespace in executors.namespaces() {
        *executors_by_namespace.entry(namespace).or_insert(0) += 1;
    }
    DispatchSnapshot {
        active_runs,
        queued_runs_by_namespace,
        executors_by_namespace,
        handlers: keys
            .iter()
            .map(|key| {
                let waiting = waiting.get(key).copied().unwrap_or(0);
                handler_load(key, executors, waiting, in_flight)
            })
            .collect(),
    }
}

/// Queues already warned about as taken by no executor (a handler nobody
/// serves, or required labels no executor serving it has), so that the
/// warning is logged once per handler and labels until an executor that
/// could take them connects.
#[derive(Debug, Default)]
pub struct UnservedWarnings {
    warned: HashSet<ReadyKey>,
}

impl UnservedWarnings {
    /// Why no executor can take a task of `key`, the first time one becomes
    /// ready while none can; `None` when one can, or after the first time.
    pub fn should_warn(
        &mut self,
        key: &ReadyKey,
        executors: &ExecutorRegistry,
    ) -> Option<WaitingReason> {
        if executors.serves(&key.handler, key.required()) || self.warned.contains(key) {
            return None;
        }
        self.warned.insert(key.clone());
        Some(if executors.serves(&key.handler, None) {
            WaitingReason::NoMatchingLabels
        } else {
            WaitingReason::NoExecutor
        })
    }

    /// An executor connected: warn again about what it could take if that
    /// is ever without an executor again.
    pub fn served(&mut self, namespace: &str, registration: &ExecutorRegistration) {
        if self.warned.is_empty() {
            return;
        }
        let handlers: HashSet<&str> = registration.handlers.iter().map(String::as_str).collect();
        self.warned.retain(|key| {
            let takes = key.handler.namespace == namespace
                && handlers.contains(key.handler.handler.as_str())
                && key.required().is_none_or(|required| {
                    tributary_core::labels_satisfy(&registration.labels, required)
                });
            !takes
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::dispatch::executors::{LastHeard, StreamHandles};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn registration(id: &str, capacity: u32, labels: Labels) -> ExecutorRegistration {
        ExecutorRegistration {
            name: "test".into(),
            instance_id: id.into(),
            handlers: vec!["h".into()],
            capacity,
            labels,
            held_attempt_ids: Vec::new(),
            value_cache_bytes: 0,
        }
    }

    fn add_labeled(registry: &mut ExecutorRegistry, id: &str, capacity: u32, labels: Labels) {
        let (outbound, _) = mpsc::channel(1);
        registry.add(
            id.into(),
            "default".into(),
            registration(id, capacity, labels),
            StreamHandles {
                outbound,
                stream_guard: watch::channel(false).0,
                last_heard: LastHeard::default(),
            },
            0,
        );
    }

    fn add(registry: &mut ExecutorRegistry, id: &str, capacity: u32) {
        add_labeled(registry, id, capacity, Labels::new());
    }

    fn key() -> ReadyKey {
        ReadyKey {
            handler: HandlerKey {
                namespace: "default".into(),
                handler: "h".into(),
            },
            labels: None,
            max_in_flight: None,
        }
    }

    fn key_requiring(pairs: &[(&str, &str)]) -> ReadyKey {
        ReadyKey {
            labels: Some(Arc::new(labels(pairs))),
            ..key()
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
        let load = handler_load(&key().handler, &registry, 0, &HandlerInFlight::default());
        assert_eq!(
            (load.executors, load.slots_used, load.slots_free),
            (2, 1, 0)
        );
    }

    #[test]
    fn a_task_requiring_labels_waits_for_an_executor_with_them() {
        let gpu = key_requiring(&[("gpu", "true"), ("region", "eu")]);
        let mut registry = ExecutorRegistry::default();
        assert_eq!(
            classify(&gpu, &registry),
            Some(WaitingReason::NoExecutor),
            "no executor serves the handler at all"
        );
        add_labeled(&mut registry, "plain", 4, labels(&[("gpu", "true")]));
        assert_eq!(
            classify(&gpu, &registry),
            Some(WaitingReason::NoMatchingLabels)
        );
        assert_eq!(
            describe(WaitingReason::NoMatchingLabels, &gpu, &registry),
            "none of the 1 executor(s) serving handler \"h\" has the required labels gpu=true, region=eu"
        );
        assert_eq!(classify(&key(), &registry), None, "others still go out");
        add_labeled(
            &mut registry,
            "gpu",
            1,
            labels(&[("gpu", "true"), ("region", "eu"), ("zone", "b")]),
        );
        assert_eq!(classify(&gpu, &registry), None);
        registry
            .get_mut("gpu")
            .expect("added")
            .in_flight
            .insert("a".into());
        assert_eq!(
            classify(&gpu, &registry),
            Some(WaitingReason::AllSlotsBusy),
            "the free slots of an executor without the labels do not count"
        );
        assert_eq!(
            describe(WaitingReason::AllSlotsBusy, &gpu, &registry),
            "all 1 slots of the 1 executor(s) serving handler \"h\" with labels gpu=true, region=eu are busy"
        );
    }

    #[test]
    fn an_unserved_handler_is_warned_about_once_until_served() {
        let mut registry = ExecutorRegistry::default();
        let mut warnings = UnservedWarnings::default();
        assert_eq!(
            warnings.should_warn(&key(), &registry),
            Some(WaitingReason::NoExecutor)
        );
        assert_eq!(warnings.should_warn(&key(), &registry), None);
        add(&mut registry, "e1", 1);
        warnings.served("default", &registration("e1", 1, Labels::new()));
        assert_eq!(warnings.should_warn(&key(), &registry), None);
        registry.remove("e1");
        assert_eq!(
            warnings.should_warn(&key(), &registry),
            Some(WaitingReason::NoExecutor)
        );
    }

    #[test]
    fn labels_no_executor_has_are_warned_about_once_until_one_has_them() {
        let mut registry = ExecutorRegistry::default();
        let mut warnings = UnservedWarnings::default();
        let gpu = key_requiring(&[("gpu", "true")]);
        add(&mut registry, "plain", 1);
        assert_eq!(
            warnings.should_warn(&gpu, &registry),
            Some(WaitingReason::NoMatchingLabels)
        );
        assert_eq!(warnings.should_warn(&gpu, &registry), None);
        // Another executor without the labels changes nothing.
        warnings.served(
            "default",
            &registration("other", 1, labels(&[("gpu", "no")])),
        );
        assert_eq!(warnings.should_warn(&gpu, &registry), None);
        let with_gpu = labels(&[("gpu", "true")]);
        add_labeled(&mut registry, "gpu", 1, with_gpu.clone());
        warnings.served("default", &registration("gpu", 1, with_gpu));
        assert_eq!(warnings.should_warn(&gpu, &registry), None);
        registry.remove("gpu");
        assert_eq!(
            warnings.should_warn(&gpu, &registry),
            Some(WaitingReason::NoMatchingLabels)
        );
    }
}
