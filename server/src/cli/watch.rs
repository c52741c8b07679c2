//! Following a run's events over `WatchRun` on the command's one
//! connection, resuming after a disconnect from the last sequence seen (as
//! the Rust SDK's `Client::wait` does), and the lines `run watch` prints.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tributary_proto::unix_ms_from_timestamp;
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;

use super::CliError;
use super::client::NamespacedChannel;
use super::output;

/// How long to wait before watching again after the stream broke.
const REWATCH_DELAY: Duration = Duration::from_millis(500);

/// How long the server may stay unreachable while following a run before
/// the command gives up.
const REWATCH_LIMIT: Duration = Duration::from_secs(60);

/// How long a task may stay READY with no executor taking it before
/// `run start --wait` says so.
pub const STALL_HINT_AFTER: Duration = Duration::from_secs(5);

/// Follows `run_id`'s events after `after`, handing each to `on_event`,
/// until the run's final event; returns the run's final status. A stream
/// that breaks (a server restart, a dropped connection) is watched again
/// from the last sequence seen, so no event is missed or repeated.
/// `on_idle` is called once `stall_hint` has passed with a task READY and
/// not assigned, with the ids of the tasks waiting.
pub async fn follow(
    runs: &mut RunServiceClient<NamespacedChannel>,
    run_id: &str,
    after: u64,
    stall_hint: Option<Duration>,
    mut on_event: impl FnMut(&pb::RunEvent) -> Result<(), CliError>,
    mut on_idle: impl FnMut(&[String]),
) -> Result<pb::RunStatus, CliError> {
    let mut after_sequence = after;
    let mut waiting = ReadyTasks::default();
    let mut broken_since: Option<Instant> = None;
    loop {
        let opened = runs
            .watch_run(pb::WatchRunRequest {
                run_id: run_id.to_owned(),
                after_sequence,
            })
            .await;
        let cause: Option<tonic::Status> = match opened {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    let next = match (stall_hint, waiting.oldest()) {
                        (Some(limit), Some(since)) if !waiting.hinted => {
                            tokio::select! {
                                next = stream.message() => next,
                                () = tokio::time::sleep_until(since + limit) => {
                                    waiting.hinted = true;
                                    on_idle(&waiting.ids());
                                    continue;
                                }
                            }
                        }
                        _ => stream.message().await,
                    };
                    match next {
                        Ok(Some(response)) => {
                            broken_since = None;
                            let Some(event) = response.event else {
                                continue;
                            };
                            after_sequence = event.sequence;
                            waiting.note(&event);
                            on_event(&event)?;
                            if event.r#type == pb::RunEventType::RunFinished as i32 {
                                return Ok(pb::RunStatus::try_from(event.run_status)
                                    .unwrap_or(pb::RunStatus::Unspecified));
                            }
                        }
                        // The server ended the stream before the run ended:
                        // it is stopping.
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                }
            }
            Err(status) => Some(status),
        };
        if let Some(status) = &cause
            && !is_transient(status)
        {
            return Err(CliError::Rpc(status.clone()));
        }
        let since = *broken_since.get_or_insert_with(Instant::now);
        if since.elapsed() > REWATCH_LIMIT {
            return Err(CliError::Unreachable(format!(
                "lost the server while following run {run_id} and could not watch it again \
                 for {REWATCH_LIMIT:?}{}",
                cause
                    .map(|status| format!(": {:?}: {}", status.code(), status.message()))
                    .unwrap_or_default()
            )));
        }
        eprintln!(
            "the watch of run {run_id} broke{}; watching again after event {after_sequence}",
            cause
                .map(|status| format!(" ({:?}: {})", status.code(), status.message()))
                .unwrap_or_default()
        );
        tokio::time::sleep(REWATCH_DELAY).await;
    }
}

/// Errors after which watching again may work: the server restarting or
/// the connection dropping, not a wrong request.
fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::Internal
    )
}

/// The tasks READY and not yet assigned, with when this command saw them
/// become so.
#[derive(Debug, Default)]
struct ReadyTasks {
    since: BTreeMap<String, Instant>,
    hinted: bool,
}

impl ReadyTasks {
    fn note(&mut self, event: &pb::RunEvent) {
        match pb::RunEventType::try_from(event.r#type) {
            Ok(pb::RunEventType::TaskReady) => {
                self.since
                    .entry(task_name(event))
                    .or_insert_with(Instant::now);
            }
            Ok(
                pb::RunEventType::TaskAssigned
                | pb::RunEventType::TaskCancelled
                | pb::RunEventType::TaskFailed,
            ) => {
                self.since.remove(&task_name(event));
                if self.since.is_empty() {
                    self.hinted = false;
                }
            }
            _ => {}
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.since.values().min().copied()
    }

    fn ids(&self) -> Vec<String> {
        self.since.keys().cloned().collect()
    }
}

/// A run's status as `run get` and `run list` show it: a queued run with
/// its position, `queued (position 2 for key "acme")`.
pub fn run_status_text(run: &pb::Run) -> String {
    let name = run_status_name(run.status);
    if run.queue_position == 0 {
        return name;
    }
    format!(
        "{name} (position {} for key {:?})",
        run.queue_position, run.concurrency_key
    )
}

/// `succeeded`, `failed`, ... for a run status number.
pub fn run_status_name(status: i32) -> String {
    pb::RunStatus::try_from(status)
        .map(|status| {
            status
                .as_str_name()
                .trim_start_matches("RUN_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown({status})"))
}

/// `upstream_failed` or `rule_not_met`; `None` when unset.
pub fn skip_reason_name(reason: i32) -> Option<String> {
    pb::SkipReason::try_from(reason)
        .ok()
        .filter(|reason| *reason != pb::SkipReason::Unspecified)
        .map(|reason| {
            reason
                .as_str_name()
                .trim_start_matches("SKIP_REASON_")
                .to_ascii_lowercase()
        })
}

/// Turns events into the lines of `run watch`: each with its time, and the
/// durations it can tell from the events before it (an attempt's run time,
/// the run's).
#[derive(Debug, Default)]
pub struct EventPrinter {
    /// When each attempt was reported started (or assigned, until then).
    attempt_start_ms: HashMap<String, i64>,
    run_started_ms: Option<i64>,
}

impl EventPrinter {
    /// The text line of one event.
    pub fn line(&mut self, event: &pb::RunEvent) -> String {
        let time_ms = event.time.as_ref().map(unix_ms_from_timestamp);
        let took = self.note(event, time_ms);
        let mut line = format!(
            "{}  {:>4}  {:<22}",
            time_ms.map(output::time_ms).unwrap_or_default(),
            event.sequence,
            event_type_name(event.r#type)
        );
        if !event.task_id.is_empty() {
            line.push_str(&format!(" {}", task_name(event)));
        }
        if event.map_size > 0 {
            line.push_str(&format!(" into {} instances", event.map_size));
        }
        if event.attempt_number > 0 {
            line.push_str(&format!(" (attempt {})", event.attempt_number));
        }
        if event.run_status != 0 {
            line.push_str(&format!(" {}", run_status_name(event.run_status)));
        }
        if let Some(took) = took {
            line.push_str(&format!(" in {}", output::duration(took)));
        }
        if let Some(reason) = skip_reason_name(event.skip_reason) {
            line.push_str(&format!(" ({})", reason.replace('_', " ")));
        }
        if event.queue_position > 0 {
            line.push_str(&format!(
                " at position {} of key {:?}",
                event.queue_position, event.concurrency_key
            ));
        }
        if let Some(conflict) = &event.conflict {
            line.push_str(&format!(
                " key {:?}: {} overrides {}",
                conflict.key, conflict.winning_task_id, conflict.overridden_task_id
            ));
        }
        if !event.error.is_empty() {
            line.push_str(&format!(": {}", event.error));
        }
        if let Some(next) = event.next_attempt_at.as_ref().map(unix_ms_from_timestamp) {
            let delay = time_ms.map(|now| next - now).unwrap_or_default();
            line.push_str(&format!(
                "; next attempt at {} (in {})",
                output::time_ms(next),
                output::duration(delay)
            ));
        }
        line.trim_end().to_owned()
    }

    /// The JSON object of one event (one line of `run watch --json`).
    pub fn json(&mut self, event: &pb::RunEvent) -> serde_json::Value {
        let time_ms = event.time.as_ref().map(unix_ms_from_timestamp);
        let took = self.note(event, time_ms);
        json!({
            "sequence": event.sequence,
            "cursor": event.cursor,
            "type": event_type_name(event.r#type),
            "time": time_ms.map(output::time_ms),
            "time_ms": time_ms,
            "task_id": event.task_id,
            "attempt_id": event.attempt_id,
            "attempt_number": event.attempt_number,
            "executor_id": event.executor_id,
            "error": event.error,
            "skip_reason": skip_reason_name(event.skip_reason),
            "next_attempt_at_ms": event.next_attempt_at.as_ref().map(unix_ms_from_timestamp),
            "duration_ms": took,
            "run_status": (event.run_status != 0).then(|| run_status_name(event.run_status)),
            "concurrency_key": (!event.concurrency_key.is_empty()).then_some(&event.concurrency_key),
            "queue_position": (event.queue_position > 0).then_some(event.queue_position),
            "map_index": event.map_index,
            "map_size": (event.map_size > 0).then_some(event.map_size),
        })
    }

    /// Records what later events measure from; returns how long the
    /// attempt (or, for RUN_FINISHED, the run) this event ends took.
    fn note(&mut self, event: &pb::RunEvent, time_ms: Option<i64>) -> Option<i64> {
        let time_ms = time_ms?;
        use pb::RunEventType as T;
        match pb::RunEventType::try_from(event.r#type).ok()? {
            T::RunStarted => {
                self.run_started_ms = Some(time_ms);
                None
            }
            T::TaskAssigned => {
                self.attempt_start_ms
                    .insert(event.attempt_id.clone(), time_ms);
                None
            }
            T::TaskStarted => {
                self.attempt_start_ms
                    .insert(event.attempt_id.clone(), time_ms);
                None
            }
            T::TaskSucceeded
            | T::TaskFailed
            | T::TaskRetryScheduled
            | T::TaskTimedOut
            | T::ExecutorLost => self
                .attempt_start_ms
                .get(&event.attempt_id)
                .map(|start| time_ms - start),
            T::RunFinished => self.run_started_ms.map(|start| time_ms - start),
            _ => None,
        }
    }
}

/// The task an event is about as `run watch` names it: its id, and for an
/// instance of a mapped task its element index, `fetch[3]`.
fn task_name(event: &pb::RunEvent) -> String {
    match event.map_index {
        Some(index) => format!("{}[{index}]", event.task_id),
        None => event.task_id.clone(),
    }
}

/// `task_succeeded`, ... for an event type number.
fn event_type_name(event_type: i32) -> String {
    pb::RunEventType::try_from(event_type)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("RUN_EVENT_TYPE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown({event_type})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_proto::timestamp_from_unix_ms;

    fn event(sequence: u64, kind: pb::RunEventType, time_ms: i64) -> pb::RunEvent {
        pb::RunEvent {
            sequence,
            r#type: kind as i32,
            time: Some(timestamp_from_unix_ms(time_ms)),
            task_id: "t".into(),
            attempt_id: "a1".into(),
            attempt_number: 1,
            ..Default::default()
        }
    }

    #[test]
    fn lines_carry_times_durations_skip_reasons_and_retry_times() {
        let mut printer = EventPrinter::default();
        let base = 1_796_157_014_000;
        let mut started = event(1, pb::RunEventType::RunStarted, base);
        started.task_id.clear();
        started.attempt_number = 0;
        printer.line(&started);
        printer.line(&event(2, pb::RunEventType::TaskStarted, base + 100));
        let mut retry = event(3, pb::RunEventType::TaskRetryScheduled, base + 1_300);
        retry.error = "boom".into();
        retry.next_attempt_at = Some(timestamp_from_unix_ms(base + 2_300));
        assert_eq!(
            printer.line(&retry),
            "2026-12-01T20:30:15.300Z     3  task_retry_scheduled   t (attempt 1) in 1.2s: boom; \
             next attempt at 2026-12-01T20:30:16.300Z (in 1.0s)"
        );
        let mut skipped = event(4, pb::RunEventType::TaskSkipped, base + 1_400);
        skipped.attempt_number = 0;
        skipped.skip_reason = pb::SkipReason::UpstreamFailed as i32;
        assert!(
            printer
                .line(&skipped)
                .ends_with("task_skipped           t (upstream failed)"),
            "{}",
            printer.line(&skipped)
        );
        let mut finished = event(5, pb::RunEventType::RunFinished, base + 3_000);
        finished.task_id.clear();
        finished.attempt_number = 0;
        finished.run_status = pb::RunStatus::Failed as i32;
        let line = printer.line(&finished);
        assert!(
            line.ends_with("run_finished           failed in 3.0s"),
            "{line}"
        );
    }

    #[test]
    fn instances_are_named_by_their_index_and_expansions_by_their_size() {
        let mut printer = EventPrinter::default();
        let base = 1_796_157_014_000;
        let mut mapped = event(1, pb::RunEventType::TaskMapped, base);
        mapped.task_id = "fetch".into();
        mapped.attempt_number = 0;
        mapped.map_size = 3;
        assert!(
            printer
                .line(&mapped)
                .ends_with("task_mapped            fetch into 3 instances"),
            "{}",
            printer.line(&mapped)
        );
        let mut ready = event(2, pb::RunEventType::TaskReady, base);
        ready.task_id = "fetch".into();
        ready.attempt_number = 0;
        ready.map_index = Some(2);
        assert!(
            printer
                .line(&ready)
                .ends_with("task_ready             fetch[2]")
        );
        assert_eq!(printer.json(&ready)["map_index"], 2);
    }

    #[test]
    fn queued_runs_show_their_position_and_key() {
        let mut run = pb::Run {
            status: pb::RunStatus::Queued as i32,
            queue_position: 2,
            concurrency_key: "acme".into(),
            ..Default::default()
        };
        assert_eq!(
            run_status_text(&run),
            "queued (position 2 for key \"acme\")"
        );
        run.status = pb::RunStatus::Pending as i32;
        run.queue_position = 0;
        assert_eq!(run_status_text(&run), "pending");
        let mut queued = event(1, pb::RunEventType::RunQueued, 1_000);
        queued.queue_position = 3;
        queued.concurrency_key = "acme".into();
        queued.task_id = String::new();
        queued.attempt_id = String::new();
        queued.attempt_number = 0;
        let line = EventPrinter::default().line(&queued);
        assert!(
            line.ends_with("run_queued             at position 3 of key \"acme\""),
            "{line}"
        );
    }
}
