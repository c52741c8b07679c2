//! What executors report: each result is fenced by the instance that
//! reports it, applied to its run, and acknowledged after the commit.

use super::{AfterCommit, Coordinator};
use crate::clock::now_unix_ms;
use crate::dispatch::ExecutorEvent;
use crate::dispatch::executors::{ExecutorCommand, ResultAnswer};
use crate::engine::context::Delta;
use crate::engine::retry::random_jitter_factor;
use crate::engine::run::{ResultDisposition, RunState};

/// The executor connection a result came from, and who it is.
pub(super) struct Reporter {
    pub(super) executor_id: String,
    pub(super) namespace: String,
    pub(super) instance_id: String,
}

/// How an executor says an attempt ended.
pub(super) enum ReportedEnd {
    Completed(Delta),
    Failed {
        message: String,
        retryable: bool,
    },
    /// Refused at the edge for its content, with the reason.
    Rejected(String),
}

/// A result for an attempt whose run is not in memory, answered from the
/// database after the turn's commit.
pub(super) struct UnresolvedResult {
    pub(super) reporter: Reporter,
    pub(super) attempt_id: String,
    pub(super) end: ReportedEnd,
}

impl Coordinator {
    pub(super) fn executor_event(&mut self, executor_id: &str, event: ExecutorEvent) {
        let now_ms = now_unix_ms();
        let Some(executor) = self.executors.get_mut(executor_id) else {
            // Dropped meanwhile (lease expired); its stream is being closed.
            return;
        };
        executor.last_heard.heard_at(now_ms);
        let reporter = Reporter {
            executor_id: executor_id.to_owned(),
            namespace: executor.namespace.clone(),
            instance_id: executor.registration.instance_id.clone(),
        };
        match event {
            ExecutorEvent::Heartbeat => {
                self.send_now(executor_id, ExecutorCommand::HeartbeatAck);
            }
            ExecutorEvent::CapacityChanged { capacity } => {
                executor.capacity = capacity;
            }
            ExecutorEvent::Started { attempt_id } => {
                if let Some(run) = self.run_held_by(&reporter, &attempt_id) {
                    let run_id = run.id().to_owned();
                    run.on_started(&attempt_id, now_ms);
                    self.mark_dirty(&run_id);
                }
            }
            ExecutorEvent::FetchValues { run_id, refs } => {
                self.fetch_values(executor_id, run_id, refs);
            }
            ExecutorEvent::Completed { attempt_id, delta } => {
                self.on_result(reporter, attempt_id, ReportedEnd::Completed(delta), now_ms);
            }
            ExecutorEvent::Failed {
                attempt_id,
                message,
                retryable,
            } => {
                let end = ReportedEnd::Failed { message, retryable };
                self.on_result(reporter, attempt_id, end, now_ms);
            }
            ExecutorEvent::Rejected { attempt_id, reason } => {
                self.on_result(reporter, attempt_id, ReportedEnd::Rejected(reason), now_ms);
            }
            ExecutorEvent::Unreadable { reason } => {
                let mut in_flight = executor.in_flight.iter();
                if let (Some(attempt_id), None) = (in_flight.next(), in_flight.next()) {
                    let attempt_id = attempt_id.clone();
                    self.on_result(reporter, attempt_id, ReportedEnd::Rejected(reason), now_ms);
                }
            }
        }
    }

    /// The run of an attempt that `reporter` holds, if it is in memory.
    /// An attempt of another namespace, or held by another instance, is
    /// treated exactly like one that does not exist.
    fn run_held_by(&mut self, reporter: &Reporter, attempt_id: &str) -> Option<&mut RunState> {
        let run = self.run_of_attempt(attempt_id)?;
        (run.namespace() == reporter.namespace && run.may_report(attempt_id, &reporter.instance_id))
            .then_some(run)
    }

    /// Fences a result by its reporter, applies it, and queues its
    /// acknowledgement for after the commit.
    fn on_result(&mut self, reporter: Reporter, attempt_id: String, end: ReportedEnd, now_ms: i64) {
        self.release_slot(&reporter.executor_id, &attempt_id);
        let in_memory = self
            .attempt_runs
            .get(&attempt_id)
            .is_some_and(|run_id| self.runs.contains_key(run_id));
        if !in_memory {
            // Its run finished, or the attempt never existed: the database
            // answers after the commit.
            self.unresolved_results.push(UnresolvedResult {
                reporter,
                attempt_id,
                end,
            });
            return;
        }
        let executor_id = reporter.executor_id.clone();
        // A caching executor keeps what it produced: once accepted, the
        // server may name those values instead of sending them back.
        let produced = match &end {
            ReportedEnd::Completed(delta)
                if self
                    .executors
                    .get(&executor_id)
                    .is_some_and(|executor| executor.held.is_caching()) =>
            {
                Some(delta.set.clone())
            }
            _ => None,
        };
        let mut actions = Vec::new();
        let Some(run) = self.run_held_by(&reporter, &attempt_id) else {
            self.acknowledge(&executor_id, attempt_id, ResultAnswer::NotHeld);
            return;
        };
        let run_id = run.id().to_owned();
        let jitter = random_jitter_factor();
        let answer = match end {
            ReportedEnd::Completed(delta) => run
                .on_completed(&attempt_id, delta, now_ms, &mut actions)
                .into(),
            ReportedEnd::Failed { message, retryable } => run
                .on_failed(
                    &attempt_id,
                    &message,
                    retryable,
                    jitter,
                    now_ms,
                    &mut actions,
                )
                .into(),
            ReportedEnd::Rejected(reason) => {
                let message = format!("the executor's result was rejected: {reason}");
                match run.on_failed(&attempt_id, &message, false, jitter, now_ms, &mut actions) {
                    ResultDisposition::Accepted => ResultAnswer::Rejected(reason),
                    ResultDisposition::Stale => ResultAnswer::Stale,
                }
            }
        };
        tracing::debug!(executor_id, attempt_id, ?answer, "result received");
        if let (Some(set), ResultAnswer::Accepted) = (&produced, &answer) {
            self.hold_produced(&executor_id, &run_id, &attempt_id, set);
        }
        self.apply_actions(&run_id, actions);
        self.mark_dirty(&run_id);
        self.acknowledge(&executor_id, attempt_id, answer);
    }

    /// Queues a result's acknowledgement: it is sent after the turn's
    /// commit, so that ACCEPTED never runs ahead of the database.
    pub(super) fn acknowledge(
        &mut self,
        executor_id: &str,
        attempt_id: String,
        answer: ResultAnswer,
    ) {
        self.after_commit.push(AfterCommit::Send {
            executor_id: executor_id.to_owned(),
            command: ExecutorCommand::ResultAck { attempt_id, answer },
        });
    }
}
