//! Concurrency keys: which runs of a workflow may be active at once. For
//! every key of a workflow (`KeyScope`: namespace, workflow name, key) it
//! holds the active runs in the order they were admitted and the queued runs
//! in FIFO order, and decides what a new run does (start, queue, be
//! cancelled, or cancel older runs) and which queued runs start when an
//! active one ends. Pure: the coordinator applies the decisions, records them
//! as events and persists them; after a restart it rebuilds this state from
//! the stored runs with [`ConcurrencyKeys::restore`].
//!
//! The rules, all deterministic functions of the state:
//! - A key is *full* for a new run when it has at least the run's own
//!   `max_active_runs` active runs, or when runs are queued (a new run never
//!   overtakes queued ones).
//! - `queue`: not full, start; full, queue at the tail.
//! - `cancel_newest`: not full, start; full, the new run is cancelled.
//! - `cancel_in_progress`: the key's oldest active runs are cancelled until
//!   fewer than `max_active_runs` remain, and the new run starts.
//! - When an active run ends (or a queued one is cancelled), queued runs start
//!   from the head while the key has fewer active runs than the head's own
//!   `max_active_runs`.
//!
//! Keys never share slots, so one key's queue never waits for another key's
//! runs; fairness between keys competing for executors is the ready queue's
//! round-robin between runs.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tributary_core::ConcurrencyStrategy;

use super::records::{EventDetails, EventType, NewEvent, NewRun, RunStatus};

/// The runs that share a limit: one key of one workflow (every version) in
/// one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyScope {
    pub namespace: String,
    pub workflow_name: String,
    pub key: String,
}

/// The policy a run is admitted by: its own workflow version's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    pub max_active_runs: u32,
    pub strategy: ConcurrencyStrategy,
}

/// What happens to a new run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The run starts now.
    Start,
    /// The run starts now, and these older active runs of its key are
    /// cancelled with `reason` (oldest first).
    StartCancelling {
        cancelled: Vec<String>,
        reason: String,
    },
    /// The run is QUEUED at this 1-based position.
    Queue { position: usize },
    /// The run is created CANCELLED with this reason.
    Cancel { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct QueuedRun {
    run_id: String,
    max_active_runs: u32,
}

#[derive(Debug, Default)]
struct KeyRuns {
    /// Admission order, oldest first.
    active: Vec<String>,
    queued: VecDeque<QueuedRun>,
}

impl KeyRuns {
    fn is_empty(&self) -> bool {
        self.active.is_empty() && self.queued.is_empty()
    }

    /// Moves runs from the head of the queue to the active runs while the
    /// head's own limit allows; returns them in start order.
    fn dequeue(&mut self) -> Vec<String> {
        let mut started = Vec::new();
        while let Some(head) = self.queued.front() {
            if self.active.len() >= head.max_active_runs as usize {
                break;
            }
            let Some(head) = self.queued.pop_front() else {
                break;
            };
            self.active.push(head.run_id.clone());
            started.push(head.run_id);
        }
        started
    }
}

/// Every key with active or queued runs, and where each run is.
#[derive(Debug, Default)]
pub struct ConcurrencyKeys {
    keys: BTreeMap<KeyScope, KeyRuns>,
    /// The key of every active or queued run, so that a run can be found by
    /// its id alone (CancelRun of a queued run names only the run).
    scopes: HashMap<String, KeyScope>,
}

impl ConcurrencyKeys {
    pub fn new() -> ConcurrencyKeys {
        ConcurrencyKeys::default()
    }

    /// Decides what the new run `run_id` of `scope` does, and records it:
    /// active, queued, or (cancelled) nowhere. Older runs it cancels are
    /// removed from the active runs; the caller ends them, and must not call
    /// [`ConcurrencyKeys::finish`] for them (their slots are already given
    /// to the new run).
    pub fn admit(&mut self, scope: &KeyScope, run_id: &str, policy: RunPolicy) -> Admission {
        let limit = policy.max_active_runs.max(1) as usize;
        let runs = self.keys.entry(scope.clone()).or_default();
        let full = runs.active.len() >= limit || !runs.queued.is_empty();
        let admission = match (full, policy.strategy) {
            (false, _) => {
                runs.active.push(run_id.to_owned());
                Admission::Start
            }
            (true, ConcurrencyStrategy::Queue) => {
                runs.queued.push_back(QueuedRun {
                    run_id: run_id.to_owned(),
                    max_active_runs: policy.max_active_runs.max(1),
                });
                Admission::Queue {
                    position: runs.queued.len(),
                }
            }
            (true, ConcurrencyStrategy::CancelNewest) => Admission::Cancel {
                reason: format!(
                    "concurrency limit of {} active runs for key {:?} reached",
                    policy.max_active_runs, scope.key
                ),
            },
            (true, ConcurrencyStrategy::CancelInProgress) => {
                let excess = (runs.active.len() + 1).saturating_sub(limit);
                let cancelled: Vec<String> = runs.active.drain(..excess).collect();
                runs.active.push(run_id.to_owned());
                if cancelled.is_empty() {
                    Admission::Start
                } else {
                    Admission::StartCancelling {
                        cancelled,
                        reason: format!(
                            "cancelled by newer run {run_id} (concurrency key {:?})",
                            scope.key
                        ),
                    }
                }
            }
        };
        if runs.is_empty() {
            self.keys.remove(scope);
        }
        match &admission {
            Admission::Start | Admission::Queue { .. } => {
                self.scopes.insert(run_id.to_owned(), scope.clone());
            }
            Admission::StartCancelling { cancelled, .. } => {
                for id in cancelled {
                    self.scopes.remove(id);
                }
                self.scopes.insert(run_id.to_owned(), scope.clone());
            }
            Admission::Cancel { .. } => {}
        }
        admission
    }

    /// Takes back the admission of `run_id`, which was never stored (the
    /// store failed, its idempotency key found another run, a quota refused
    /// it): it leaves its key as [`ConcurrencyKeys::finish`] does, and the
    /// runs its admission was to cancel (`spared`, oldest first) keep their
    /// slots, first in admission order as before.
    pub fn withdraw(&mut self, scope: &KeyScope, run_id: &str, spared: &[String]) -> Vec<String> {
        if !spared.is_empty() {
            let runs = self.keys.entry(scope.clone()).or_default();
            for (index, id) in spared.iter().enumerate() {
                runs.active.insert(index, id.clone());
                self.scopes.insert(id.clone(), scope.clone());
            }
        }
        self.finish(scope, run_id)
    }

    /// `run_id` of `scope` ended (finished, cancelled or aborted) or, if it
    /// was queued, was cancelled: it leaves its key, and the queued runs that
    /// may now start are returned in start order (already counted as active).
    /// An unknown run changes nothing.
    pub fn finish(&mut self, scope: &KeyScope, run_id: &str) -> Vec<String> {
        let Some(runs) = self.keys.get_mut(scope) else {
            return Vec::new();
        };
        if let Some(index) = runs.active.iter().position(|id| id == run_id) {
            runs.active.remove(index);
        } else if let Some(index) = runs
            .queued
            .iter()
            .position(|queued| queued.run_id == run_id)
        {
            runs.queued.remove(index);
        } else {
            return Vec::new();
        }
        self.scopes.remove(run_id);
        let started = runs.dequeue();
        if runs.is_empty() {
            self.keys.remove(scope);
        }
        started
    }

    /// Rebuilds a key after a restart from its stored runs: the active ones
    /// (in admission order) and the queued ones in FIFO order with each one's
    /// limit. Returns the queued runs that may start at once (a version
    /// registered before the restart may have raised the limit; normally
    /// none).
    pub fn restore(
        &mut self,
        scope: &KeyScope,
        active: Vec<String>,
        queued: Vec<(String, u32)>,
    ) -> Vec<String> {
        for run_id in active.iter().chain(queued.iter().map(|(run_id, _)| run_id)) {
            self.scopes.insert(run_id.clone(), scope.clone());
        }
        let runs = self.keys.entry(scope.clone()).or_default();
        runs.active = active;
        runs.queued = queued
            .into_iter()
            .map(|(run_id, max_active_runs)| QueuedRun {
                run_id,
                max_active_runs: max_active_runs.max(1),
            })
            .collect();
        let started = runs.dequeue();
        if runs.is_empty() {
            self.keys.remove(scope);
        }
        started
    }

    /// Whether a run admitted with `max_active_runs` would start now: the
    /// key has fewer active runs and nothing queued. Changes nothing.
    pub fn has_room(&self, scope: &KeyScope, max_active_runs: u32) -> bool {
        self.keys.get(scope).is_none_or(|runs| {
            runs.active.len() < max_active_runs.max(1) as usize && runs.queued.is_empty()
        })
    }

    /// The key of an active or queued run.
    pub fn scope_of(&self, run_id: &str) -> Option<&KeyScope> {
        self.scopes.get(run_id)
    }

    /// Whether `run_id` is queued (not yet started).
    pub fn is_queued(&self, run_id: &str) -> bool {
        self.scope_of(run_id)
            .is_some_and(|scope| self.position(scope, run_id).is_some())
    }

    /// The 1-based queue position of `run_id`, if it is queued.
    pub fn position(&self, scope: &KeyScope, run_id: &str) -> Option<usize> {
        self.keys
            .get(scope)?
            .queued
            .iter()
            .position(|queued| queued.run_id == run_id)
            .map(|index| index + 1)
    }

    /// The active runs of `scope`, oldest first.
    pub fn active(&self, scope: &KeyScope) -> &[String] {
        self.keys
            .get(scope)
            .map(|runs| runs.active.as_slice())
            .unwrap_or(&[])
    }

    /// The queued runs of `scope`, head first.
    pub fn queued(&self, scope: &KeyScope) -> Vec<&str> {
        self.keys
            .get(scope)
            .map(|runs| {
                runs.queued
                    .iter()
                    .map(|queued| queued.run_id.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many runs are queued, by namespace (namespaces without queued
    /// runs are left out).
    pub fn queued_by_namespace(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (scope, runs) in &self.keys {
            if !runs.queued.is_empty() {
                *counts.entry(scope.namespace.clone()).or_default() += runs.queued.len();
            }
        }
        counts
    }

    /// How many keys have active or queued runs.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// The rows of a run created QUEUED, from those [`RunState::start`] built
/// for it: its row (status QUEUED, its key) and RUN_QUEUED, no tasks yet
/// (they are written when it leaves the queue).
///
/// [`RunState::start`]: super::run::RunState::start
pub fn queued_run(run: NewRun, key: &str, position: usize) -> NewRun {
    let created_at_ms = run.created_at_ms;
    NewRun {
        status: RunStatus::Queued,
        concurrency_key: Some(key.to_owned()),
        tasks: Vec::new(),
        events: vec![NewEvent {
            sequence: 1,
            event_type: EventType::RunQueued,
            details: EventDetails {
                concurrency_key: Some(key.to_owned()),
                queue_position: Some(u32::try_from(position).unwrap_or(u32::MAX)),
                ..EventDetails::default()
            },
            created_at_ms,
        }],
        ..run
    }
}

/// The rows of a run created CANCELLED because its key was full
/// (`cancel_newest`): its row and RUN_FINISHED with the reason, no tasks.
pub fn refused_run(run: NewRun, key: &str, reason: String) -> NewRun {
    let created_at_ms = run.created_at_ms;
    NewRun {
        status: RunStatus::Cancelled,
        concurrency_key: Some(key.to_owned()),
        tasks: Vec::new(),
        events: vec![NewEvent {
            sequence: 1,
            event_type: EventType::RunFinished,
            details: EventDetails {
                run_status: Some(RunStatus::Cancelled),
                error: Some(reason),
                ..EventDetails::default()
            },
            created_at_ms,
        }],
        ..run
    }
}

/// The RUN_FINISHED (CANCELLED) of a run cancelled while QUEUED: the event
/// after its RUN_QUEUED, carried in a [`NewRun`] naming the run.
pub fn cancelled_queued_run(
    namespace: &str,
    run_id: &str,
    workflow_name: &str,
    now_ms: i64,
) -> NewRun {
    NewRun {
        id: run_id.to_owned(),
        namespace: namespace.to_owned(),
        workflow_name: workflow_name.to_owned(),
        workflow_version: String::new(),
        input_context_json: String::new(),
        idempotency_key: None,
        request_hash: String::new(),
        created_at_ms: now_ms,
        status: RunStatus::Cancelled,
        concurrency_key: None,
        tasks: Vec::new(),
        events: vec![NewEvent {
            sequence: 2,
            event_type: EventType::RunFinished,
            details: EventDetails {
                run_status: Some(RunStatus::Cancelled),
                ..EventDetails::default()
            },
            created_at_ms: now_ms,
        }],
    }
}

#[cfg(test)]
#[path = "concurrency_tests.rs"]
mod tests;
