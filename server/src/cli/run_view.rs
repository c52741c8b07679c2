//! How `run get` (and `run start --wait`, at the end) shows a run: its
//! times, its tasks in canonical order with their durations and next retry
//! times, and its context whole, summarized, or not at all.

use serde_json::json;
use tributary_proto::unix_ms_from_timestamp;
use tributary_proto::v1 as pb;

use super::CliError;
use super::output::{self, Align, Table, say};
use super::watch::{run_status_name, run_status_text, skip_reason_name};

/// A context larger than this, or longer than [`CONTEXT_SUMMARY_LINES`]
/// once pretty-printed, is summarized (its keys with their sizes) unless
/// `--context` asks for all of it.
pub const CONTEXT_SUMMARY_BYTES: usize = 4 * 1024;

/// See [`CONTEXT_SUMMARY_BYTES`].
pub const CONTEXT_SUMMARY_LINES: usize = 40;

/// How much of a run's context to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextView {
    /// All of it when small, its keys and their sizes when larger than
    /// [`CONTEXT_SUMMARY_BYTES`] or [`CONTEXT_SUMMARY_LINES`] (text); all of
    /// it in JSON.
    Auto,
    /// All of it.
    All,
    /// None of it.
    Omit,
}

impl ContextView {
    /// The view the flags `--context` and `--no-context` ask for.
    pub fn from_flags(all: bool, omit: bool) -> ContextView {
        match (all, omit) {
            (_, true) => ContextView::Omit,
            (true, false) => ContextView::All,
            (false, false) => ContextView::Auto,
        }
    }
}

/// `succeeded`, `skipped`, ... for a task state number.
fn task_state_name(state: i32) -> String {
    pb::TaskState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("TASK_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown({state})"))
}

fn ms(timestamp: Option<&prost_types::Timestamp>) -> Option<i64> {
    timestamp.map(unix_ms_from_timestamp)
}

/// From the run's creation to its end, or to now while it is active.
pub fn run_duration_ms(run: &pb::Run) -> Option<i64> {
    let created = ms(run.created_at.as_ref())?;
    let end = ms(run.finished_at.as_ref()).unwrap_or_else(output::now_ms);
    Some(end - created)
}

/// From the task's first attempt's start (or assignment) to its last
/// attempt's end; `None` before it ran or while it runs.
fn task_duration_ms(task: &pb::TaskRun) -> Option<i64> {
    let first = task.attempts.first()?;
    let start = ms(first.started_at.as_ref()).or(ms(first.assigned_at.as_ref()))?;
    let end = ms(task.attempts.last()?.finished_at.as_ref())?;
    Some(end - start)
}

/// The short summary of a run `run list` and the JSON output share.
pub fn run_summary_json(run: &pb::Run) -> serde_json::Value {
    let created = ms(run.created_at.as_ref());
    let finished = ms(run.finished_at.as_ref());
    json!({
        "run_id": run.id,
        "workflow_name": run.workflow_name,
        "workflow_version": run.workflow_version,
        "status": run_status_name(run.status),
        "concurrency_key": (!run.concurrency_key.is_empty()).then_some(&run.concurrency_key),
        "queue_position": (run.queue_position > 0).then_some(run.queue_position),
        "created": created.map(output::time_ms),
        "created_at_ms": created,
        "finished": finished.map(output::time_ms),
        "finished_at_ms": finished,
        "duration_ms": run_duration_ms(run),
    })
}

/// Prints a run, as JSON or as text.
pub fn print_run(run: &pb::Run, as_json: bool, view: ContextView) -> Result<(), CliError> {
    if as_json {
        let mut value = run_summary_json(run);
        if view != ContextView::Omit {
            value["context"] =
                serde_json::from_str(&run.context_json).unwrap_or(serde_json::Value::Null);
        }
        value["tasks"] = run.tasks.iter().map(task_json).collect();
        say!("{value}");
        return Ok(());
    }
    say!("run:       {}", run.id);
    say!(
        "workflow:  {} ({})",
        run.workflow_name,
        run.workflow_version
    );
    say!("status:    {}", run_status_text(run));
    if let Some(created) = ms(run.created_at.as_ref()) {
        say!("created:   {}", output::time(created));
    }
    let duration = run_duration_ms(run).map(output::duration);
    match (ms(run.finished_at.as_ref()), duration) {
        (Some(finished), Some(duration)) => {
            say!("finished:  {} (took {duration})", output::time(finished));
        }
        (None, Some(duration)) => say!("running:   for {duration}"),
        _ => {}
    }
    say!("");
    let mut table = Table::new(&[
        ("TASK", Align::Left),
        ("STATE", Align::Left),
        ("ATTEMPTS", Align::Right),
        ("DURATION", Align::Right),
        ("NEXT ATTEMPT", Align::Left),
        ("ERROR OR WAIT", Align::Left),
    ]);
    let mut summaries = Vec::new();
    for task in &run.tasks {
        table.row(task_row(task, task.task_id.clone()));
        for instance in task.instances.iter().take(SHOWN_INSTANCES) {
            let name = format!("  [{}]", instance.map_index.unwrap_or_default());
            table.row(task_row(instance, name));
        }
        summaries.extend(instances_summary(task));
    }
    table.emit()?;
    for summary in summaries {
        say!("{summary}");
    }
    for conflict in &run.conflicts {
        say!(
            "conflict:  key {:?} written by {} and {}; {} won (canonical order)",
            conflict.key,
            conflict.overridden_task_id,
            conflict.winning_task_id,
            conflict.winning_task_id
        );
    }
    if run.contexts_omitted && view != ContextView::Omit {
        say!("");
        say!(
            "context: {}, too large to send with the run (the server left it out)",
            output::bytes(run.context_bytes as usize)
        );
        return Ok(());
    }
    print_context(&run.context_json, view)
}

/// Instances of a mapped task listed one by one by `run get`; the rest are
/// counted by state.
pub const SHOWN_INSTANCES: usize = 20;

/// A task's (or an instance's) row of the `run get` table, named `name`.
fn task_row(task: &pb::TaskRun, name: String) -> Vec<String> {
    let mut state = task_state_name(task.state);
    if let Some(reason) = skip_reason_name(task.skip_reason) {
        state = format!("{state} ({})", reason.replace('_', " "));
    }
    if task.map_size > 0 {
        state = format!("{state} ({} instances)", task.map_size);
    }
    vec![
        name,
        state,
        task.attempts.len().to_string(),
        task_duration_ms(task)
            .map(output::duration)
            .unwrap_or_default(),
        ms(task.next_attempt_at.as_ref())
            .map(output::time)
            .unwrap_or_default(),
        super::waiting::task_note(task),
    ]
}

/// A mapped task's instances counted by state, when not all are listed:
/// `fetch: 10000 instances: 980 running, 9020 succeeded; [0] to [19] listed`.
fn instances_summary(task: &pb::TaskRun) -> Option<String> {
    let listed = &task.instances[..task.instances.len().min(SHOWN_INSTANCES)];
    if listed.len() >= task.map_size as usize {
        return None;
    }
    let counts: Vec<String> = task
        .instance_counts
        .iter()
        .map(|count| format!("{} {}", count.count, task_state_name(count.state)))
        .collect();
    let window = match (listed.first(), listed.last()) {
        (Some(first), Some(last)) => format!(
            "[{}] to [{}] listed",
            first.map_index.unwrap_or_default(),
            last.map_index.unwrap_or_default()
        ),
        _ => "none listed".to_owned(),
    };
    Some(format!(
        "{}: {} instances: {}; {window} (--instances-from N lists others)",
        task.task_id,
        task.map_size,
        counts.join(", ")
    ))
}

/// A task of `run get --json`, with its instances when it is mapped.
fn task_json(task: &pb::TaskRun) -> serde_json::Value {
    let mut value = json!({
        "task_id": task.task_id,
        "state": task_state_name(task.state),
        "skip_reason": skip_reason_name(task.skip_reason),
        "attempts": task.attempts.len(),
        "duration_ms": task_duration_ms(task),
        "next_attempt_at_ms": ms(task.next_attempt_at.as_ref()),
        "error": task.error,
        "waiting": super::waiting::waiting_json(task),
    });
    if let Some(index) = task.map_index {
        value["map_index"] = json!(index);
    }
    if task.map_size > 0 {
        value["map_size"] = json!(task.map_size);
        value["instances"] = task.instances.iter().map(task_json).collect();
        value["instance_counts"] = task
            .instance_counts
            .iter()
            .map(|count| (task_state_name(count.state), json!(count.count)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    value
}

fn print_context(context_json: &str, view: ContextView) -> Result<(), CliError> {
    if view == ContextView::Omit {
        return Ok(());
    }
    say!("");
    let context: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(context_json).unwrap_or_default();
    let pretty = serde_json::to_string_pretty(&context).unwrap_or_default();
    let small = context_json.len() <= CONTEXT_SUMMARY_BYTES
        && pretty.lines().count() <= CONTEXT_SUMMARY_LINES;
    if view == ContextView::All || small {
        say!("context: {pretty}");
        return Ok(());
    }
    say!(
        "context: {} keys, {} (--context prints all of it, --no-context none)",
        context.len(),
        output::bytes(context_json.len())
    );
    let mut table = Table::new(&[("KEY", Align::Left), ("SIZE", Align::Right)]);
    for (key, value) in &context {
        let size = serde_json::to_string(value)
            .map(|text| text.len())
            .unwrap_or(0);
        table.row(vec![key.clone(), output::bytes(size)]);
    }
    table.emit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapped task of `size` instances, half succeeded and half running,
    /// listing those from `from` on, counted as the server counts them.
    fn mapped(size: usize, from: usize) -> pb::TaskRun {
        let state = |index: usize| {
            if index.is_multiple_of(2) {
                pb::TaskState::Succeeded as i32
            } else {
                pb::TaskState::Running as i32
            }
        };
        let succeeded = (0..size).filter(|index| index.is_multiple_of(2)).count();
        let count = |state: pb::TaskState, count: usize| pb::TaskStateCount {
            state: state as i32,
            count: u32::try_from(count).unwrap_or(u32::MAX),
        };
        pb::TaskRun {
            task_id: "fetch".into(),
            state: pb::TaskState::Running as i32,
            map_size: u32::try_from(size).unwrap_or(u32::MAX),
            instances: (from..size)
                .map(|index| pb::TaskRun {
                    task_id: "fetch".into(),
                    map_index: u32::try_from(index).ok(),
                    state: state(index),
                    ..Default::default()
                })
                .collect(),
            instance_counts: vec![
                count(pb::TaskState::Running, size - succeeded),
                count(pb::TaskState::Succeeded, succeeded),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn instances_not_listed_are_counted_by_state() {
        assert_eq!(instances_summary(&mapped(SHOWN_INSTANCES, 0)), None);
        assert_eq!(
            instances_summary(&mapped(SHOWN_INSTANCES + 5, 0)).as_deref(),
            Some(
                "fetch: 25 instances: 12 running, 13 succeeded; [0] to [19] listed \
                 (--instances-from N lists others)"
            )
        );
        assert_eq!(
            instances_summary(&mapped(100, 40)).as_deref(),
            Some(
                "fetch: 100 instances: 50 running, 50 succeeded; [40] to [59] listed \
                 (--instances-from N lists others)"
            )
        );
        assert_eq!(
            instances_summary(&mapped(4, 4)).as_deref(),
            Some(
                "fetch: 4 instances: 2 running, 2 succeeded; none listed \
                 (--instances-from N lists others)"
            )
        );
        let json = task_json(&mapped(2, 0));
        assert_eq!(json["map_size"], 2);
        assert_eq!(json["instances"][1]["map_index"], 1);
        assert_eq!(json["instances"][1]["state"], "running");
        assert_eq!(json["instance_counts"]["succeeded"], 1);
        assert_eq!(
            task_row(&mapped(2, 0), "fetch".into())[1],
            "running (2 instances)"
        );
    }
}
