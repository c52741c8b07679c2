//! The pieces of the multi-row statements the run writes are made of: the
//! statement shapes, their placeholders, how many rows go in each, and a
//! batch's rows gathered by table.
//!
//! Both SQLite and Postgres name the columns of a `VALUES` list `column1`,
//! `column2`, …, which is what the updates join on.

use std::collections::BTreeSet;
use std::ops::Range;

use sqlx::Database;

use super::StoreError;
use crate::engine::records::{
    AttemptRecord, AttemptUpdate, DeltaRecord, EventRecord, NewEvent, NewRun, RunChanges,
    RunStatusChange, TaskRecord,
};

/// Rows per multi-row statement at most. 256 rows of the widest table (13
/// columns) stay far below SQLite's and Postgres's parameter limits.
pub(super) const MAX_ROWS_PER_STATEMENT: usize = 256;

/// A statement over any number of rows: `head`, then one placeholder tuple
/// of `columns` values per row, then `tail`.
pub(super) struct MultiRow {
    head: &'static str,
    tail: &'static str,
    columns: usize,
}

impl MultiRow {
    pub(super) const fn new(head: &'static str, tail: &'static str, columns: usize) -> MultiRow {
        MultiRow {
            head,
            tail,
            columns,
        }
    }

    /// The statement for `rows` rows, followed by `returning` (empty, or a
    /// `RETURNING` clause).
    pub(super) fn sql<DB: Database>(&self, rows: usize, returning: &str) -> String {
        self.sql_from::<DB>(rows, returning, 1)
    }

    /// The same, numbering Postgres's placeholders from `first_param`, for a
    /// statement embedded in a larger one.
    pub(super) fn sql_from<DB: Database>(
        &self,
        rows: usize,
        returning: &str,
        first_param: usize,
    ) -> String {
        format!(
            "{}{}{}{returning}",
            self.head,
            placeholders::<DB>(rows, self.columns, first_param),
            self.tail
        )
    }

    /// Parameters of a statement of `rows` rows.
    pub(super) fn parameters(&self, rows: usize) -> usize {
        rows * self.columns
    }
}

pub(super) const INSERT_RUNS: MultiRow = MultiRow {
    head: "INSERT INTO runs (id, namespace, workflow_name, workflow_version, status, \
           input_context_json, idempotency_key, request_hash, created_at_ms, concurrency_key) \
           VALUES ",
    tail: "",
    columns: 10,
};

pub(super) const INSERT_TASKS: MultiRow = MultiRow {
    head: "INSERT INTO task_runs (run_id, namespace, task_id, position, state, skip_reason, \
           attempts_started, failures, reassignments, current_attempt_id, next_attempt_at_ms, \
           error, updated_at_ms, map_index, map_size) VALUES ",
    tail: "",
    columns: 15,
};

// A retried status change must not erase what an earlier one recorded, so
// absent times and contexts keep the stored values.
pub(super) const UPDATE_RUNS: MultiRow = MultiRow {
    head: "UPDATE runs SET status = v.column3, \
           started_at_ms = COALESCE(v.column4, runs.started_at_ms), \
           finished_at_ms = COALESCE(v.column5, runs.finished_at_ms), \
           final_context_json = COALESCE(v.column6, runs.final_context_json) FROM (VALUES ",
    tail: ") AS v WHERE runs.id = v.column1 AND runs.namespace = v.column2",
    columns: 6,
};
pub(super) const RETURNING_RUNS: &str = " RETURNING runs.id, runs.workflow_name";

pub(super) const SELECT_RUNS: MultiRow = MultiRow {
    head: "SELECT runs.id, runs.workflow_name FROM runs JOIN (VALUES ",
    tail: ") AS v ON runs.id = v.column1 AND runs.namespace = v.column2",
    columns: 2,
};

pub(super) const UPDATE_TASKS: MultiRow = MultiRow {
    head: "UPDATE task_runs SET position = v.column4, state = v.column5, \
           skip_reason = v.column6, attempts_started = v.column7, failures = v.column8, \
           reassignments = v.column9, current_attempt_id = v.column10, \
           next_attempt_at_ms = v.column11, error = v.column12, updated_at_ms = v.column13, \
           map_index = v.column14, map_size = v.column15 FROM (VALUES ",
    tail: ") AS v WHERE task_runs.run_id = v.column1 AND task_runs.namespace = v.column2 \
           AND task_runs.task_id = v.column3",
    columns: 15,
};
/// One key per task updated: its run and its id.
pub(super) const RETURNING_TASKS: &str = " RETURNING task_runs.run_id || ' ' || task_runs.task_id";

pub(super) const INSERT_ATTEMPTS: MultiRow = MultiRow {
    head: "INSERT INTO attempts (id, namespace, run_id, task_id, number, executor_id, state, \
           error, assigned_at_ms, deadline_at_ms, started_at_ms, finished_at_ms, instance_id) VALUES ",
    tail: "",
    columns: 13,
};

// An update that does not know a time (a late result, say) leaves the
// recorded one in place.
pub(super) const UPDATE_ATTEMPTS: MultiRow = MultiRow {
    head: "UPDATE attempts SET state = v.column4, error = v.column5, \
           started_at_ms = COALESCE(v.column6, attempts.started_at_ms), \
           finished_at_ms = COALESCE(v.column7, attempts.finished_at_ms) FROM (VALUES ",
    tail: ") AS v WHERE attempts.id = v.column1 AND attempts.run_id = v.column2 \
           AND attempts.namespace = v.column3",
    columns: 7,
};
pub(super) const RETURNING_ATTEMPTS: &str = " RETURNING attempts.id";

// A second delta for a task violates the primary key: each task succeeds
// once, so that is the caller's bug and fails the batch.
pub(super) const INSERT_DELTAS: MultiRow = MultiRow {
    head: "INSERT INTO context_deltas (run_id, namespace, task_id, attempt_id, set_json, \
           removed_json) VALUES ",
    tail: "",
    columns: 6,
};

// A mapped task's gathered output; like a delta, at most one per task.
pub(super) const INSERT_MAP_OUTPUTS: MultiRow = MultiRow {
    head: "INSERT INTO map_outputs (run_id, namespace, task_id, set_json) VALUES ",
    tail: "",
    columns: 4,
};

pub(super) const INSERT_EVENTS: MultiRow = MultiRow {
    head: "INSERT INTO events (cursor, namespace, run_id, workflow_name, sequence, event_type, \
           payload_json, created_at_ms) VALUES ",
    tail: "",
    columns: 8,
};

/// Inserts only the events whose run exists in their namespace and is of
/// their workflow, so the number of rows inserted checks all three.
pub(super) const INSERT_CHECKED_EVENTS: MultiRow = MultiRow {
    head: "INSERT INTO events (cursor, namespace, run_id, workflow_name, sequence, event_type, \
           payload_json, created_at_ms) SELECT v.column1, v.column2, v.column3, v.column4, \
           v.column5, v.column6, v.column7, v.column8 FROM (VALUES ",
    tail: ") AS v JOIN runs ON runs.id = v.column3 AND runs.namespace = v.column2 \
           AND runs.workflow_name = v.column4",
    columns: 8,
};

/// `rows` rows of `columns` placeholders: `($1, $2), ($3, $4)` for
/// Postgres (numbered from `first`), `(?, ?), (?, ?)` for SQLite. SQLite gets anonymous ones because
/// sqlx looks up the name of every numbered parameter, and SQLite finds a
/// name by scanning all of them: quadratic in a statement's parameters.
pub(super) fn placeholders<DB: Database>(rows: usize, columns: usize, first: usize) -> String {
    let numbered = DB::NAME != "SQLite";
    let mut text = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for column in 0..columns {
            if column > 0 {
                text.push_str(", ");
            }
            if numbered {
                text.push('$');
                text.push_str(&(first + row * columns + column).to_string());
            } else {
                text.push('?');
            }
        }
        text.push(')');
    }
    text
}

/// Splits `0..len` into chunks of power-of-two sizes, largest first, none
/// above [`MAX_ROWS_PER_STATEMENT`].
pub(super) fn chunks(len: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < len {
        let remaining = len - start;
        let size = if remaining >= MAX_ROWS_PER_STATEMENT {
            MAX_ROWS_PER_STATEMENT
        } else {
            1 << remaining.ilog2()
        };
        ranges.push(start..start + size);
        start += size;
    }
    ranges
}

/// A task row with the run it belongs to.
pub(super) struct TaskRow<'a> {
    pub(super) run_id: &'a str,
    pub(super) namespace: &'a str,
    pub(super) task: &'a TaskRecord,
}

impl<'a> TaskRow<'a> {
    /// Every task of `runs`, in order.
    pub(super) fn of_runs(runs: &'a [NewRun]) -> Vec<TaskRow<'a>> {
        runs.iter()
            .flat_map(|run| {
                run.tasks.iter().map(|task| TaskRow {
                    run_id: &run.id,
                    namespace: &run.namespace,
                    task,
                })
            })
            .collect()
    }
}

/// An event whose columns are computed, waiting for its cursor. Everything
/// that can fail is done before the sequencer row is locked.
pub(super) struct PendingEvent<'a> {
    pub(super) namespace: &'a str,
    pub(super) run_id: &'a str,
    pub(super) workflow_name: &'a str,
    pub(super) event: &'a NewEvent,
    pub(super) sequence: i64,
    pub(super) payload_json: String,
}

impl<'a> PendingEvent<'a> {
    pub(super) fn new(
        namespace: &'a str,
        run_id: &'a str,
        workflow_name: &'a str,
        event: &'a NewEvent,
    ) -> Result<PendingEvent<'a>, StoreError> {
        let sequence = i64::try_from(event.sequence).map_err(|_| {
            StoreError::Corrupt(format!(
                "sequence {} of an event of run {run_id:?} is out of range",
                event.sequence
            ))
        })?;
        let payload_json = serde_json::to_string(&event.details).map_err(|error| {
            StoreError::Corrupt(format!(
                "details of event {} of run {run_id:?}: {error}",
                event.sequence
            ))
        })?;
        Ok(PendingEvent {
            namespace,
            run_id,
            workflow_name,
            event,
            sequence,
            payload_json,
        })
    }
}

impl<'a> PendingEvent<'a> {
    /// The first events of `runs`, in order.
    pub(super) fn of_runs(runs: &'a [NewRun]) -> Result<Vec<PendingEvent<'a>>, StoreError> {
        runs.iter()
            .flat_map(|run| {
                run.events.iter().map(|event| {
                    PendingEvent::new(&run.namespace, &run.id, &run.workflow_name, event)
                })
            })
            .collect()
    }

    /// The records of `pending` once stored with cursors from `first` on.
    pub(super) fn records(
        first: i64,
        pending: &[PendingEvent<'_>],
    ) -> Result<Vec<EventRecord>, StoreError> {
        (first..)
            .zip(pending)
            .map(|(cursor, event)| {
                Ok(EventRecord {
                    cursor: u64::try_from(cursor).map_err(|_| {
                        StoreError::Corrupt(format!("event sequencer handed out cursor {cursor}"))
                    })?,
                    namespace: event.namespace.to_owned(),
                    run_id: event.run_id.to_owned(),
                    workflow_name: event.workflow_name.to_owned(),
                    sequence: event.event.sequence,
                    event_type: event.event.event_type,
                    details: event.event.details.clone(),
                    created_at_ms: event.event.created_at_ms,
                })
            })
            .collect()
    }
}

/// The rows of a batch, gathered by table, with what the checks need.
pub(super) struct BatchRows<'a> {
    pub(super) status_changes: Vec<(&'a RunChanges, &'a RunStatusChange)>,
    pub(super) unchanged_runs: Vec<&'a RunChanges>,
    pub(super) tasks: Vec<TaskRow<'a>>,
    /// Rows of instances created in this batch, inserted before the
    /// updates.
    pub(super) new_tasks: Vec<TaskRow<'a>>,
    pub(super) new_attempts: Vec<(&'a RunChanges, &'a AttemptRecord)>,
    pub(super) attempt_updates: Vec<(&'a RunChanges, &'a AttemptUpdate)>,
    pub(super) deltas: Vec<(&'a RunChanges, &'a DeltaRecord, String)>,
    /// The gathered outputs of mapped tasks (deltas without an attempt).
    pub(super) map_outputs: Vec<(&'a RunChanges, &'a DeltaRecord)>,
    pub(super) events: Vec<PendingEvent<'a>>,
}

impl<'a> BatchRows<'a> {
    /// Whether `batch` may be committed in one call (the fast paths of
    /// `sqlite_turn` and `postgres_turn`): small, so its statement text is
    /// one of few that stay prepared, and every run has events, on which the
    /// checks of the one call ride.
    pub(super) fn fits_one_call(&self, batch: &[RunChanges], max_rows: usize) -> bool {
        // A turn that expands or gathers a map is rare and may be large:
        // it goes the checked way, whose statements cover those rows.
        !batch.is_empty()
            && self.new_tasks.is_empty()
            && self.map_outputs.is_empty()
            && batch.iter().all(|changes| !changes.events.is_empty())
            && self.row_count() <= max_rows
    }

    /// The statements of a turn in one call, in the order
    /// `RunQueries::bind_turn` binds their rows: each with its row count
    /// (split into chunks by the caller). `events` inserts the events.
    pub(super) fn turn_statements<'s>(&self, events: &'s MultiRow) -> [(&'s MultiRow, usize); 6] {
        [
            (&UPDATE_RUNS, self.status_changes.len()),
            (&UPDATE_TASKS, self.tasks.len()),
            (&INSERT_ATTEMPTS, self.new_attempts.len()),
            (&UPDATE_ATTEMPTS, self.attempt_updates.len()),
            (&INSERT_DELTAS, self.deltas.len()),
            (events, self.events.len()),
        ]
    }

    /// Rows written by the multi-row statements (conflicts aside).
    pub(super) fn row_count(&self) -> usize {
        self.status_changes.len()
            + self.tasks.len()
            + self.new_attempts.len()
            + self.attempt_updates.len()
            + self.deltas.len()
            + self.events.len()
    }

    /// Every run of the batch.
    pub(super) fn runs(&self) -> impl Iterator<Item = &'a RunChanges> + '_ {
        self.status_changes
            .iter()
            .map(|(changes, _)| *changes)
            .chain(self.unchanged_runs.iter().copied())
    }

    pub(super) fn gather(batch: &'a [RunChanges]) -> Result<BatchRows<'a>, StoreError> {
        let mut rows = BatchRows {
            status_changes: Vec::new(),
            unchanged_runs: Vec::new(),
            tasks: Vec::new(),
            new_tasks: Vec::new(),
            new_attempts: Vec::new(),
            attempt_updates: Vec::new(),
            deltas: Vec::new(),
            map_outputs: Vec::new(),
            events: Vec::new(),
        };
        let mut runs_seen = BTreeSet::new();
        for changes in batch {
            let run_id = changes.run_id.as_str();
            // One entry per run: the multi-row updates could not say which
            // of two changes to one row came last.
            if !runs_seen.insert(run_id) {
                return Err(StoreError::Corrupt(format!(
                    "run {run_id:?} appears twice in one batch"
                )));
            }
            match &changes.status {
                Some(status) => rows.status_changes.push((changes, status)),
                None => rows.unchanged_runs.push(changes),
            }
            let mut tasks_seen = BTreeSet::new();
            for task in &changes.tasks {
                if !tasks_seen.insert(task.task_id.as_str()) {
                    return Err(StoreError::Corrupt(format!(
                        "task {:?} of run {run_id:?} appears twice in one batch",
                        task.task_id
                    )));
                }
                rows.tasks.push(TaskRow {
                    run_id,
                    namespace: &changes.namespace,
                    task,
                });
            }
            for task in &changes.new_tasks {
                if !tasks_seen.insert(task.task_id.as_str()) {
                    return Err(StoreError::Corrupt(format!(
                        "task {:?} of run {run_id:?} appears twice in one batch",
                        task.task_id
                    )));
                }
                rows.new_tasks.push(TaskRow {
                    run_id,
                    namespace: &changes.namespace,
                    task,
                });
            }
            for attempt in &changes.new_attempts {
                if attempt.run_id != changes.run_id {
                    return Err(StoreError::Corrupt(format!(
                        "attempt {:?} of run {:?} is in the changes of run {run_id:?}",
                        attempt.id, attempt.run_id
                    )));
                }
                rows.new_attempts.push((changes, attempt));
            }
            let mut attempts_seen = BTreeSet::new();
            for update in &changes.attempt_updates {
                if !attempts_seen.insert(update.id.as_str()) {
                    return Err(StoreError::Corrupt(format!(
                        "attempt {:?} of run {run_id:?} is updated twice in one batch",
                        update.id
                    )));
                }
                rows.attempt_updates.push((changes, update));
            }
            for delta in &changes.deltas {
                if delta.attempt_id.is_empty() {
                    rows.map_outputs.push((changes, delta));
                    continue;
                }
                let removed_json = serde_json::to_string(&delta.removed_keys).map_err(|error| {
                    StoreError::Corrupt(format!(
                        "removed keys of task {:?} of run {run_id:?}: {error}",
                        delta.task_id
                    ))
                })?;
                rows.deltas.push((changes, delta, removed_json));
            }
            for event in &changes.events {
                rows.events.push(PendingEvent::new(
                    &changes.namespace,
                    run_id,
                    &changes.workflow_name,
                    event,
                )?);
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_and_cover_every_row() {
        assert!(chunks(0).is_empty());
        assert_eq!(chunks(1), vec![Range { start: 0, end: 1 }]);
        assert_eq!(chunks(7), [0..4, 4..6, 6..7]);
        let many = chunks(600);
        assert_eq!(many, [0..256, 256..512, 512..576, 576..592, 592..600]);
        for len in 0..1100 {
            let ranges = chunks(len);
            assert_eq!(ranges.iter().map(|range| range.len()).sum::<usize>(), len);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            for range in &ranges {
                assert!(range.len().is_power_of_two() && range.len() <= MAX_ROWS_PER_STATEMENT);
            }
        }
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders::<sqlx::Postgres>(1, 2, 1), "($1, $2)");
        assert_eq!(
            placeholders::<sqlx::Postgres>(2, 3, 1),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders::<sqlx::Sqlite>(2, 2, 1), "(?, ?), (?, ?)");
        assert_eq!(placeholders::<sqlx::Postgres>(1, 2, 7), "($7, $8)");
    }
}
