//! Tests of the run state machine, driven by hand like an executor would.

use std::sync::Arc;

use tributary_core::{DefinitionLimits, TaskDefinition, WorkflowDefinition, validate};

use super::*;

const SETTINGS: RunSettings = RunSettings {
    default_timeout_ms: 60_000,
    max_reassignments: 2,
    max_run_context_bytes: 1024 * 1024,
};

struct Harness {
    run: RunState,
    actions: Vec<Action>,
    next_attempt: u32,
    now: i64,
    /// Events written with the run's creation, until `history` takes them.
    creation_events: Vec<NewEvent>,
}

fn task(id: &str, dependencies: &[&str]) -> TaskDefinition {
    TaskDefinition {
        id: id.into(),
        dependencies: dependencies.iter().map(|d| (*d).into()).collect(),
        ..TaskDefinition::default()
    }
}

fn harness_with(tasks: Vec<TaskDefinition>, input: &str) -> Harness {
    let spec = validate(
        &WorkflowDefinition {
            name: "wf".into(),
            description: String::new(),
            tasks,
            concurrency: None,
        },
        0,
        DefinitionLimits::default(),
    )
    .expect("valid");
    let plan = Arc::new(WorkflowPlan::new(&spec, &spec.version()));
    let (run, new_run, actions) = RunState::start(
        "run-1".into(),
        "default".into(),
        plan,
        SETTINGS,
        input,
        None,
        "hash".into(),
        1_000,
    )
    .expect("valid input");
    assert_eq!(new_run.tasks.len(), spec.tasks.len());
    Harness {
        run,
        actions,
        next_attempt: 0,
        now: 1_000,
        creation_events: new_run.events,
    }
}

fn harness(tasks: &[(&str, &[&str])]) -> Harness {
    harness_with(
        tasks.iter().map(|(id, deps)| task(id, deps)).collect(),
        "{}",
    )
}

impl Harness {
    fn index(&self, id: &str) -> TaskIndex {
        self.run.plan().index_of(id).expect("known task")
    }

    fn state(&self, id: &str) -> TaskState {
        self.run.task_state(self.index(id))
    }

    /// The ids of tasks enqueued since the last call, in order.
    fn enqueued(&mut self) -> Vec<String> {
        let plan = self.run.plan().clone();
        let ids = self
            .actions
            .iter()
            .filter_map(|action| match action {
                Action::Enqueue(task) => Some(plan.tasks[*task].id.clone()),
                _ => None,
            })
            .collect();
        self.actions
            .retain(|action| !matches!(action, Action::Enqueue(_)));
        ids
    }

    fn assign(&mut self, id: &str) -> Assignment {
        self.next_attempt += 1;
        let attempt_id = format!("attempt-{}", self.next_attempt);
        let index = self.index(id);
        let (assignment, timeout) = self
            .run
            .assign(index, attempt_id, "executor-1", "instance-1", self.now)
            .expect("task is ready");
        self.actions.push(timeout);
        assignment
    }

    fn complete(&mut self, attempt_id: &str, set_json: &str) -> ResultDisposition {
        let delta = Delta::parse(set_json, &[]).expect("valid delta");
        self.run
            .on_completed(attempt_id, delta, self.now, &mut self.actions)
    }

    fn fail(&mut self, attempt_id: &str, retryable: bool) -> ResultDisposition {
        self.run.on_failed(
            attempt_id,
            "boom",
            retryable,
            1.0,
            self.now,
            &mut self.actions,
        )
    }

    /// Assigns and completes a task in one go.
    fn succeed(&mut self, id: &str, set_json: &str) -> Assignment {
        let assignment = self.assign(id);
        assert_eq!(
            self.complete(&assignment.attempt_id, set_json),
            ResultDisposition::Accepted
        );
        assignment
    }

    /// Every event not yet taken, the creation's first: together with
    /// earlier calls, the run's whole history.
    fn history(&mut self) -> Vec<NewEvent> {
        let mut events = std::mem::take(&mut self.creation_events);
        events.extend(self.run.take_changes().events);
        events
    }

    fn finished(&self) -> Option<RunStatus> {
        self.actions.iter().find_map(|action| match action {
            Action::Finished(status) => Some(*status),
            _ => None,
        })
    }
}

#[test]
fn a_diamond_runs_in_dependency_order_and_merges_contexts() {
    let mut h = harness(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
    assert_eq!(h.enqueued(), ["a"]);
    assert_eq!(h.run.status(), RunStatus::Pending);
    h.succeed("a", r#"{"from_a": 1}"#);
    assert_eq!(h.run.status(), RunStatus::Running);
    assert_eq!(h.enqueued(), ["b", "c"]);
    assert_eq!(h.state("d"), TaskState::Waiting);
    let b = h.succeed("b", r#"{"from_b": 2}"#);
    assert_eq!(b.input.to_json(), r#"{"from_a":1}"#);
    assert!(h.enqueued().is_empty(), "d waits for c");
    h.succeed("c", r#"{"from_c": 3}"#);
    assert_eq!(h.enqueued(), ["d"]);
    let d = h.succeed("d", "{}");
    assert_eq!(d.input.to_json(), r#"{"from_a":1,"from_b":2,"from_c":3}"#);
    assert_eq!(h.finished(), Some(RunStatus::Succeeded));
    let changes = h.run.take_changes();
    assert_eq!(
        changes
            .status
            .expect("status")
            .final_context_json
            .as_deref(),
        Some(r#"{"from_a":1,"from_b":2,"from_c":3}"#)
    );
}

#[test]
fn fan_in_sees_every_partition_like_the_seed() {
    let mut h = harness(&[
        ("partition_data", &[]),
        ("process_partition_1", &["partition_data"]),
        ("process_partition_2", &["partition_data"]),
        ("process_partition_3", &["partition_data"]),
        (
            "combine_results",
            &[
                "process_partition_1",
                "process_partition_2",
                "process_partition_3",
            ],
        ),
    ]);
    assert_eq!(h.enqueued(), ["partition_data"]);
    h.succeed(
        "partition_data",
        r#"{"partition_1": [1], "partition_2": [2], "partition_3": [3]}"#,
    );
    let partitions = h.enqueued();
    assert_eq!(partitions.len(), 3);
    // All three are assigned before any completes: they run in parallel.
    let assignments: Vec<Assignment> = partitions.iter().map(|id| h.assign(id)).collect();
    for (index, assignment) in assignments.iter().enumerate().rev() {
        let n = index + 1;
        h.complete(&assignment.attempt_id, &format!(r#"{{"stats_{n}": {n}}}"#));
    }
    let combine = h.succeed("combine_results", "{}");
    let input: serde_json::Value = serde_json::from_str(&combine.input.to_json()).expect("json");
    for key in ["stats_1", "stats_2", "stats_3", "partition_1"] {
        assert!(input.get(key).is_some(), "{key} missing from {input}");
    }
}

#[test]
fn results_from_other_attempts_are_stale_and_change_nothing() {
    let mut h = harness(&[("a", &[]), ("b", &["a"])]);
    let a = h.assign("a");
    assert_eq!(h.complete("not-an-attempt", "{}"), ResultDisposition::Stale);
    assert_eq!(h.state("a"), TaskState::Assigned);
    assert_eq!(
        h.complete(&a.attempt_id, r#"{"x": 1}"#),
        ResultDisposition::Accepted
    );
    // A duplicate of an accepted result is accepted again, without effect.
    let events_before = h.run.take_changes().events.len();
    assert!(events_before > 0);
    assert_eq!(
        h.complete(&a.attempt_id, r#"{"x": 2}"#),
        ResultDisposition::Accepted
    );
    assert!(h.run.take_changes().is_empty());
    // A failure report for a finished attempt is stale.
    assert_eq!(h.fail(&a.attempt_id, true), ResultDisposition::Stale);
    assert_eq!(h.state("a"), TaskState::Succeeded);
}

#[test]
fn retries_wait_their_delay_then_succeed() {
    let mut flaky = task("flaky", &[]);
    flaky.retry_attempts = Some(2);
    flaky.retry_delay_ms = Some(500);
    flaky.retry_jitter = Some(false);
    let mut h = harness_with(vec![flaky], "{}");
    let first = h.assign("flaky");
    h.fail(&first.attempt_id, true);
    assert_eq!(h.state("flaky"), TaskState::RetryScheduled);
    let index = h.index("flaky");
    assert!(h.actions.contains(&Action::RetryAt {
        task: index,
        at_ms: 1_500
    }));
    // Exponential: the second retry waits twice as long.
    h.now = 1_500;
    h.run.on_retry_due(index, h.now, &mut h.actions);
    assert_eq!(h.state("flaky"), TaskState::Ready);
    let second = h.assign("flaky");
    assert_eq!(second.attempt_number, 2);
    h.fail(&second.attempt_id, true);
    assert!(h.actions.contains(&Action::RetryAt {
        task: index,
        at_ms: 2_500
    }));
    h.now = 2_500;
    h.run.on_retry_due(index, h.now, &mut h.actions);
    let third = h.succeed("flaky", "{}");
    assert_eq!(third.attempt_number, 3);
    assert_eq!(h.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn retry_budget_counts_retries_after_the_first_attempt() {
    let mut once = task("once", &[]);
    once.retry_attempts = Some(1);
    let mut h = harness_with(vec![once], "{}");
    let index = h.index("once");
    let first = h.assign("once");
    h.fail(&first.attempt_id, true);
    h.run.on_retry_due(index, h.now, &mut h.actions);
    let second = h.assign("once");
    h.fail(&second.attempt_id, true);
    assert_eq!(h.state("once"), TaskState::Failed);
    assert_eq!(h.finished(), Some(RunStatus::Failed));
}

#[test]
fn non_retryable_failures_fail_at_once() {
    let mut task_with_budget = task("a", &[]);
    task_with_budget.retry_attempts = Some(5);
    let mut h = harness_with(vec![task_with_budget], "{}");
    let a = h.assign("a");
    h.fail(&a.attempt_id, false);
    assert_eq!(h.state("a"), TaskState::Failed);
}

#[test]
fn failure_is_isolated_to_its_branch_and_cleanup_still_runs() {
    let mut cleanup = task("cleanup", &["report", "other"]);
    cleanup.trigger_rule = "all_done".into();
    let mut h = harness_with(
        vec![
            task("root", &[]),
            task("bad", &["root"]),
            task("report", &["bad"]),
            task("other", &["root"]),
            cleanup,
        ],
        "{}",
    );
    h.succeed("root", r#"{"r": 1}"#);
    let bad = h.assign("bad");
    h.fail(&bad.attempt_id, false);
    assert_eq!(h.state("report"), TaskState::Skipped);
    h.succeed("other", r#"{"o": 1}"#);
    let cleanup = h.succeed("cleanup", "{}");
    // Cleanup sees the writes of the succeeded ancestors, through the skipped task too.
    assert_eq!(cleanup.input.to_json(), r#"{"o":1,"r":1}"#);
    assert_eq!(h.finished(), Some(RunStatus::Failed));
    let changes = h.run.take_changes();
    let report = changes
        .tasks
        .iter()
        .find(|t| t.task_id == "report")
        .expect("report");
    assert_eq!(report.skip_reason, Some(SkipReason::UpstreamFailed));
}

#[test]
fn skips_cascade_with_the_right_reasons() {
    let mut only_on_failure = task("fallback", &["main"]);
    only_on_failure.trigger_rule = "one_failed".into();
    let mut h = harness_with(
        vec![
            task("main", &[]),
            only_on_failure,
            task("after_fallback", &["fallback"]),
        ],
        "{}",
    );
    h.succeed("main", "{}");
    assert_eq!(h.state("fallback"), TaskState::Skipped);
    assert_eq!(h.state("after_fallback"), TaskState::Skipped);
    let changes = h.run.take_changes();
    let reasons: Vec<Option<SkipReason>> = changes
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Skipped)
        .map(|t| t.skip_reason)
        .collect();
    assert_eq!(
        reasons,
        [Some(SkipReason::RuleNotMet), Some(SkipReason::RuleNotMet)]
    );
    assert_eq!(h.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn a_handled_failure_still_fails_the_run() {
    let mut fallback = task("fallback", &["main"]);
    fallback.trigger_rule = "one_failed".into();
    let mut h = harness_with(vec![task("main", &[]), fallback], "{}");
    let main = h.assign("main");
    h.fail(&main.attempt_id, false);
    assert_eq!(h.enqueued(), ["main", "fallback"]);
    h.succeed("fallback", "{}");
    assert_eq!(h.finished(), Some(RunStatus::Failed));
}

#[test]
fn timeout_cancels_the_attempt_and_retries() {
    let mut slow = task("slow", &[]);
    slow.timeout_ms = Some(100);
    slow.retry_attempts = Some(1);
    slow.retry_delay_ms = Some(0);
    let mut h = harness_with(vec![slow], "{}");
    let first = h.assign("slow");
    assert_eq!(first.deadline_ms, 1_100);
    h.now = 1_100;
    h.run
        .on_timeout(&first.attempt_id, 1.0, h.now, &mut h.actions);
    assert!(h.actions.iter().any(|action| matches!(
        action,
        Action::Cancel { attempt_id, .. } if *attempt_id == first.attempt_id
    )));
    assert_eq!(h.state("slow"), TaskState::RetryScheduled);
    // The late result of the timed-out attempt is stale.
    assert_eq!(
        h.complete(&first.attempt_id, "{}"),
        ResultDisposition::Stale
    );
    let index = h.index("slow");
    h.run.on_retry_due(index, h.now, &mut h.actions);
    h.succeed("slow", "{}");
    assert_eq!(h.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn a_timeout_after_completion_does_nothing() {
    let mut h = harness(&[("a", &[])]);
    let a = h.succeed("a", "{}");
    h.run.take_changes();
    h.run.on_timeout(&a.attempt_id, 1.0, h.now, &mut h.actions);
    assert!(h.run.take_changes().is_empty());
}

#[test]
fn cancel_stops_everything_and_evaluates_no_rule() {
    let mut cleanup = task("cleanup", &["a"]);
    cleanup.trigger_rule = "all_done".into();
    let mut h = harness_with(vec![task("a", &[]), cleanup, task("b", &[])], "{}");
    let a = h.assign("a");
    h.run.cancel(h.now, &mut h.actions).expect("cancellable");
    assert!(h.actions.iter().any(|action| matches!(
        action,
        Action::Cancel { attempt_id, .. } if *attempt_id == a.attempt_id
    )));
    for id in ["a", "b", "cleanup"] {
        assert_eq!(h.state(id), TaskState::Cancelled, "{id}");
    }
    assert_eq!(h.finished(), Some(RunStatus::Cancelled));
    assert_eq!(h.complete(&a.attempt_id, "{}"), ResultDisposition::Stale);
    let error = h
        .run
        .cancel(h.now, &mut h.actions)
        .expect_err("already cancelled");
    assert_eq!(error.to_string(), "run \"run-1\" is already cancelled");
}

#[test]
fn losing_executors_does_not_consume_retries_until_the_bound() {
    let mut h = harness(&[("a", &[])]);
    for round in 1..=SETTINGS.max_reassignments {
        let attempt = h.assign("a");
        h.run
            .on_attempt_lost(&attempt.attempt_id, h.now, &mut h.actions);
        assert_eq!(h.state("a"), TaskState::Ready, "round {round}");
    }
    let last = h.assign("a");
    h.run
        .on_attempt_lost(&last.attempt_id, h.now, &mut h.actions);
    assert_eq!(h.state("a"), TaskState::Failed);
    let changes = h.run.take_changes();
    let record = changes.tasks.iter().find(|t| t.task_id == "a").expect("a");
    assert_eq!(record.failures, 0, "no retry consumed");
    assert_eq!(
        record.error.as_deref(),
        Some("the task lost its executor 3 times (max_reassignments is 2)")
    );
}

#[test]
fn conflicting_parallel_writes_resolve_by_canonical_order_whatever_the_timing() {
    for first in ["left", "right"] {
        let mut h = harness(&[
            ("root", &[]),
            ("left", &["root"]),
            ("right", &["root"]),
            ("join", &["left", "right"]),
        ]);
        h.succeed("root", "{}");
        let left = h.assign("left");
        let right = h.assign("right");
        let (one, two) = if first == "left" {
            (&left, &right)
        } else {
            (&right, &left)
        };
        let value = |a: &Assignment| format!(r#"{{"k": "{}"}}"#, a.task_id);
        h.complete(&one.attempt_id, &value(one));
        h.complete(&two.attempt_id, &value(two));
        let join = h.succeed("join", "{}");
        assert_eq!(join.input.to_json(), r#"{"k":"right"}"#, "{first} first");
        let changes = h.run.take_changes();
        assert_eq!(
            changes.conflicts,
            [ConflictRecord {
                key: "k".into(),
                winning_task_id: "right".into(),
                overridden_task_id: "left".into()
            }]
        );
        assert!(
            changes
                .events
                .iter()
                .any(|e| e.event_type == EventType::ContextConflict)
        );
    }
}

#[test]
fn a_dependant_overwriting_its_ancestor_is_no_conflict() {
    let mut h = harness(&[("a", &[]), ("b", &["a"])]);
    h.succeed("a", r#"{"k": 1}"#);
    h.succeed("b", r#"{"k": 2}"#);
    assert!(h.run.take_changes().conflicts.is_empty());
    assert_eq!(h.run.current_context().to_json(), r#"{"k":2}"#);
}

#[test]
fn events_are_numbered_in_order_and_changes_coalesce_per_task() {
    let mut h = harness(&[("a", &[])]);
    let a = h.assign("a");
    h.run.on_started(&a.attempt_id, h.now);
    h.complete(&a.attempt_id, "{}");
    let changes = h.run.take_changes();
    let types: Vec<EventType> = changes.events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            EventType::TaskAssigned,
            EventType::TaskStarted,
            EventType::TaskSucceeded,
            EventType::RunFinished
        ]
    );
    let sequences: Vec<u64> = changes.events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        [3, 4, 5, 6],
        "1 and 2 went with the run's creation"
    );
    assert_eq!(changes.tasks.len(), 1);
    assert_eq!(changes.new_attempts.len(), 1);
    assert_eq!(changes.new_attempts[0].state, AttemptState::Succeeded);
    assert!(changes.attempt_updates.is_empty(), "folded into the insert");
}

#[test]
fn removed_keys_disappear_downstream() {
    let mut h = harness_with(
        vec![task("a", &[]), task("b", &["a"])],
        r#"{"secret": 1, "keep": 2}"#,
    );
    let a = h.assign("a");
    let delta = Delta::parse("{}", &["secret".to_owned()]).expect("valid");
    h.run
        .on_completed(&a.attempt_id, delta, h.now, &mut h.actions);
    let b = h.assign("b");
    assert_eq!(b.input.to_json(), r#"{"keep":2}"#);
}

#[test]
fn input_must_be_an_object() {
    let spec = validate(
        &WorkflowDefinition {
            name: "wf".into(),
            description: String::new(),
            tasks: vec![task("a", &[])],
            concurrency: None,
        },
        0,
        DefinitionLimits::default(),
    )
    .expect("valid");
    let plan = Arc::new(WorkflowPlan::new(&spec, "v"));
    let result = RunState::start(
        "r".into(),
        "default".into(),
        plan,
        SETTINGS,
        "[]",
        None,
        "h".into(),
        0,
    );
    assert!(result.is_err());
}

/// Folds everything a run has asked to persist into what the store would
/// return, as a restart would read it.
fn stored_detail(new_run: &NewRun, batches: &[RunChanges]) -> RunDetail {
    use crate::engine::records::RunRecord;
    let mut run = RunRecord {
        id: new_run.id.clone(),
        namespace: new_run.namespace.clone(),
        workflow_name: new_run.workflow_name.clone(),
        workflow_version: new_run.workflow_version.clone(),
        status: RunStatus::Pending,
        input_context_json: new_run.input_context_json.clone(),
        final_context_json: None,
        idempotency_key: None,
        request_hash: new_run.request_hash.clone(),
        created_at_ms: new_run.created_at_ms,
        started_at_ms: None,
        finished_at_ms: None,
        retry_count: 0,
        retry_request_id: None,
        concurrency_key: None,
        queue_position: None,
    };
    let mut tasks = new_run.tasks.clone();
    let mut attempts: Vec<AttemptRecord> = Vec::new();
    let mut deltas = Vec::new();
    for changes in batches {
        if let Some(status) = &changes.status {
            run.status = status.status;
        }
        for record in &changes.tasks {
            let slot = tasks
                .iter_mut()
                .find(|t| t.task_id == record.task_id)
                .expect("known task");
            *slot = record.clone();
        }
        attempts.extend(changes.new_attempts.iter().cloned());
        for update in &changes.attempt_updates {
            let attempt = attempts
                .iter_mut()
                .find(|a| a.id == update.id)
                .expect("known attempt");
            attempt.state = update.state;
            attempt.error = update.error.clone();
        }
        deltas.extend(changes.deltas.iter().cloned());
    }
    RunDetail {
        run,
        tasks,
        attempts,
        deltas,
        conflicts: Vec::new(),
    }
}

#[test]
fn a_restored_run_continues_exactly_where_it_stopped() {
    let tasks = vec![
        task("a", &[]),
        task("b", &["a"]),
        task("c", &["a"]),
        task("d", &["b", "c"]),
    ];
    let spec = validate(
        &WorkflowDefinition {
            name: "wf".into(),
            description: String::new(),
            tasks,
            concurrency: None,
        },
        0,
        DefinitionLimits::default(),
    )
    .expect("valid");
    let plan = Arc::new(WorkflowPlan::new(&spec, &spec.version()));
    let (mut run, new_run, _) = RunState::start(
        "run-1".into(),
        "default".into(),
        plan.clone(),
        SETTINGS,
        r#"{"seed": 0}"#,
        None,
        "hash".into(),
        1_000,
    )
    .expect("valid input");
    let mut actions = Vec::new();
    let mut batches = Vec::new();
    let index = |id: &str| plan.index_of(id).expect("known");
    // a succeeds; b is in flight; c waits for a retry.
    let (a, _) = run
        .assign(
            index("a"),
            "attempt-a".into(),
            "executor-1",
            "instance-1",
            1_000,
        )
        .expect("ready");
    run.on_completed(
        &a.attempt_id,
        Delta::parse(r#"{"a": 1}"#, &[]).expect("delta"),
        1_001,
        &mut actions,
    );
    let (b, _) = run
        .assign(
            index("b"),
            "attempt-b".into(),
            "executor-1",
            "instance-1",
            1_002,
        )
        .expect("ready");
    run.on_started(&b.attempt_id, 1_003);
    let (c, _) = run
        .assign(
            index("c"),
            "attempt-c".into(),
            "executor-1",
            "instance-1",
            1_002,
        )
        .expect("ready");
    run.on_failed(&c.attempt_id, "boom", false, 1.0, 1_004, &mut actions);
    batches.push(run.take_changes());
    let detail = stored_detail(&new_run, &batches);

    let (mut restored, restore_actions) =
        RunState::restore(plan.clone(), SETTINGS, &detail, 100).expect("restores");
    assert_eq!(restored.task_state(index("a")), TaskState::Succeeded);
    assert_eq!(restored.task_state(index("b")), TaskState::Running);
    assert_eq!(restored.task_state(index("c")), TaskState::Failed);
    assert_eq!(
        restored.attempts_in_flight(),
        [(index("b"), "attempt-b".to_owned())]
    );
    assert!(restore_actions.iter().any(|action| matches!(
        action,
        Action::TimeoutAt { attempt_id, .. } if attempt_id == "attempt-b"
    )));
    // The reclaimed attempt completes; d is skipped because c failed.
    assert!(
        !restored.rebind_attempt("attempt-b", "executor-3", "instance-2", 1_999),
        "only the instance that held the attempt may reclaim it"
    );
    assert!(restored.rebind_attempt("attempt-b", "executor-2", "instance-1", 1_999));
    let reclaimed = restored.take_changes();
    assert_eq!(reclaimed.events.len(), 1);
    assert_eq!(reclaimed.events[0].event_type, EventType::ExecutorConnected);
    assert_eq!(
        reclaimed.events[0].sequence, 100,
        "sequences continue after the stored ones"
    );
    assert_eq!(
        reclaimed.events[0].details.executor_id.as_deref(),
        Some("executor-2")
    );
    let mut actions = Vec::new();
    let disposition = restored.on_completed(
        "attempt-b",
        Delta::parse(r#"{"b": 2}"#, &[]).expect("delta"),
        2_000,
        &mut actions,
    );
    assert_eq!(disposition, ResultDisposition::Accepted);
    assert_eq!(restored.task_state(index("d")), TaskState::Skipped);
    assert!(actions.contains(&Action::Finished(RunStatus::Failed)));
    let changes = restored.take_changes();
    assert_eq!(changes.events[0].sequence, 101);
    assert_eq!(
        changes
            .status
            .expect("finished")
            .final_context_json
            .as_deref(),
        Some(r#"{"a":1,"b":2,"seed":0}"#)
    );
    // A copy of the failure that ended a stored attempt is accepted again
    // and changes nothing; a success for it is stale.
    let mut more = Vec::new();
    assert_eq!(
        restored.on_failed("attempt-c", "late", true, 1.0, 2_001, &mut more),
        ResultDisposition::Accepted
    );
    assert_eq!(
        restored.on_completed(
            "attempt-c",
            Delta::parse("{}", &[]).expect("delta"),
            2_001,
            &mut more
        ),
        ResultDisposition::Stale
    );
    assert!(more.is_empty());
    assert!(restored.take_changes().is_empty());
}

/// The types of events that end a task's history.
fn is_terminal_task_event(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::TaskSucceeded
            | EventType::TaskFailed
            | EventType::TaskSkipped
            | EventType::TaskCancelled
    )
}

/// Checks what every history must satisfy: sequences 1..=n without a gap,
/// RUN_FINISHED last and only once, and for every task exactly one terminal
/// task event whose type matches the task's final state.
fn assert_complete_history(h: &Harness, events: &[NewEvent]) {
    let sequences: Vec<u64> = events.iter().map(|event| event.sequence).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(sequences, expected, "sequences have a gap or repeat");
    let finished: Vec<&NewEvent> = events
        .iter()
        .filter(|event| event.event_type == EventType::RunFinished)
        .collect();
    assert_eq!(finished.len(), 1, "one RUN_FINISHED");
    assert_eq!(
        events.last().map(|event| event.event_type),
        Some(EventType::RunFinished)
    );
    assert_eq!(finished[0].details.run_status, Some(h.run.status()));
    for task in &h.run.plan().tasks {
        let terminal: Vec<EventType> = events
            .iter()
            .filter(|event| event.details.task_id.as_deref() == Some(task.id.as_str()))
            .map(|event| event.event_type)
            .filter(|event_type| is_terminal_task_event(*event_type))
            .collect();
        let expected = match h.state(&task.id) {
            TaskState::Succeeded => EventType::TaskSucceeded,
            TaskState::Failed => EventType::TaskFailed,
            TaskState::Skipped => EventType::TaskSkipped,
            TaskState::Cancelled => EventType::TaskCancelled,
            other => panic!("task {} is not terminal: {other:?}", task.id),
        };
        assert_eq!(terminal, [expected], "terminal events of task {}", task.id);
    }
}

/// The events of one task, as (type, attempt id, error) triples.
fn task_events(
    events: &[NewEvent],
    task_id: &str,
) -> Vec<(EventType, Option<String>, Option<String>)> {
    events
        .iter()
        .filter(|event| event.details.task_id.as_deref() == Some(task_id))
        .map(|event| {
            (
                event.event_type,
                event.details.attempt_id.clone(),
                event.details.error.clone(),
            )
        })
        .collect()
}

#[test]
fn a_timed_out_attempt_with_no_retry_left_fails_the_task_with_an_event() {
    let mut slow = task("slow", &[]);
    slow.timeout_ms = Some(100);
    let mut h = harness_with(vec![slow, task("after", &["slow"])], "{}");
    let attempt = h.assign("slow");
    h.now = 1_100;
    h.run
        .on_timeout(&attempt.attempt_id, 1.0, h.now, &mut h.actions);
    assert_eq!(h.state("slow"), TaskState::Failed);
    let events = h.history();
    let error = Some("attempt timed out after 100 ms".to_owned());
    let id = Some(attempt.attempt_id.clone());
    assert_eq!(
        task_events(&events, "slow"),
        [
            (EventType::TaskReady, None, None),
            (EventType::TaskAssigned, id.clone(), None),
            (EventType::TaskTimedOut, id.clone(), error.clone()),
            (EventType::TaskFailed, id, error),
        ]
    );
    assert_complete_history(&h, &events);
}

#[test]
fn a_retried_failure_is_one_retry_event_carrying_the_attempt_and_error() {
    let mut flaky = task("flaky", &[]);
    flaky.retry_attempts = Some(1);
    flaky.retry_delay_ms = Some(500);
    flaky.retry_jitter = Some(false);
    let mut h = harness_with(vec![flaky], "{}");
    let first = h.assign("flaky");
    h.fail(&first.attempt_id, true);
    let index = h.index("flaky");
    h.run.on_retry_due(index, h.now, &mut h.actions);
    let second = h.assign("flaky");
    h.fail(&second.attempt_id, true);
    assert_eq!(h.state("flaky"), TaskState::Failed);
    let events = h.history();
    let boom = Some("boom".to_owned());
    assert_eq!(
        task_events(&events, "flaky"),
        [
            (EventType::TaskReady, None, None),
            (
                EventType::TaskAssigned,
                Some(first.attempt_id.clone()),
                None
            ),
            (
                EventType::TaskRetryScheduled,
                Some(first.attempt_id),
                boom.clone()
            ),
            (EventType::TaskReady, None, None),
            (
                EventType::TaskAssigned,
                Some(second.attempt_id.clone()),
                None
            ),
            (EventType::TaskFailed, Some(second.attempt_id), boom),
        ]
    );
    let retry = events
        .iter()
        .find(|event| event.event_type == EventType::TaskRetryScheduled)
        .expect("retry event");
    assert_eq!(retry.details.next_attempt_at_ms, Some(1_500));
    assert_complete_history(&h, &events);
}

#[test]
fn every_path_to_a_terminal_task_writes_exactly_one_terminal_event() {
    let mut slow = task("slow", &[]);
    slow.timeout_ms = Some(100);
    let mut cleanup = task("cleanup", &["ok", "failing", "slow", "lost"]);
    cleanup.trigger_rule = "all_done".into();
    let mut h = harness_with(
        vec![
            task("ok", &[]),
            task("failing", &[]),
            task("skipped", &["failing"]),
            slow,
            task("lost", &[]),
            cleanup,
        ],
        "{}",
    );
    h.succeed("ok", "{}");
    let failing = h.assign("failing");
    h.fail(&failing.attempt_id, false);
    let slow = h.assign("slow");
    h.run
        .on_timeout(&slow.attempt_id, 1.0, h.now, &mut h.actions);
    for _ in 0..=SETTINGS.max_reassignments {
        let attempt = h.assign("lost");
        h.run
            .on_attempt_lost(&attempt.attempt_id, h.now, &mut h.actions);
    }
    assert_eq!(h.state("skipped"), TaskState::Skipped);
    h.succeed("cleanup", "{}");
    assert_eq!(h.finished(), Some(RunStatus::Failed));
    let events = h.history();
    assert_complete_history(&h, &events);
    let lost: Vec<EventType> = task_events(&events, "lost")
        .into_iter()
        .map(|(event_type, ..)| event_type)
        .filter(|event_type| *event_type == EventType::ExecutorLost)
        .collect();
    assert_eq!(lost.len(), 3, "one EXECUTOR_LOST per lost attempt");
}

#[test]
fn cancelling_writes_one_event_per_unfinished_task_naming_its_attempt() {
    let mut h = harness(&[("done", &[]), ("running", &[]), ("waiting", &["running"])]);
    h.succeed("done", "{}");
    let running = h.assign("running");
    h.run.cancel(h.now, &mut h.actions).expect("cancellable");
    let events = h.history();
    assert_complete_history(&h, &events);
    let cancelled: Vec<(Option<String>, Option<String>)> = events
        .iter()
        .filter(|event| event.event_type == EventType::TaskCancelled)
        .map(|event| {
            (
                event.details.task_id.clone(),
                event.details.attempt_id.clone(),
            )
        })
        .collect();
    assert_eq!(
        cancelled,
        [
            (Some("running".to_owned()), Some(running.attempt_id)),
            (Some("waiting".to_owned()), None),
        ]
    );
}

#[test]
fn a_copy_of_the_result_that_ended_an_attempt_is_accepted_again_and_nothing_else() {
    let mut h = harness(&[("a", &[]), ("b", &[])]);
    let a = h.assign("a");
    assert_eq!(h.fail(&a.attempt_id, false), ResultDisposition::Accepted);
    h.run.take_changes();
    assert_eq!(h.fail(&a.attempt_id, false), ResultDisposition::Accepted);
    assert!(h.run.take_changes().is_empty(), "applied once");
    assert_eq!(h.complete(&a.attempt_id, "{}"), ResultDisposition::Stale);
    assert_eq!(h.state("a"), TaskState::Failed);
}

#[test]
fn only_the_instance_an_attempt_was_assigned_to_may_report_it() {
    let mut h = harness(&[("a", &[])]);
    let a = h.assign("a");
    assert_eq!(h.run.holder_of(&a.attempt_id), Some("instance-1"));
    assert!(h.run.may_report(&a.attempt_id, "instance-1"));
    assert!(!h.run.may_report(&a.attempt_id, "instance-2"));
    assert!(!h.run.may_report("no-such-attempt", "instance-1"));
}

#[test]
fn abort_fails_every_unfinished_task_with_the_reason_and_ends_the_run_failed() {
    let mut h = harness(&[("a", &[]), ("b", &[]), ("c", &["a", "b"])]);
    let a = h.assign("a");
    assert_eq!(
        h.complete(&a.attempt_id, r#"{"a": 1}"#),
        ResultDisposition::Accepted
    );
    let b = h.assign("b");
    h.run.take_changes();
    let mut actions = Vec::new();
    h.run
        .abort("cannot store", h.now, &mut actions)
        .expect("active");
    assert_eq!(h.state("a"), TaskState::Succeeded);
    assert_eq!(h.state("b"), TaskState::Failed);
    assert_eq!(h.state("c"), TaskState::Failed);
    assert_eq!(h.run.status(), RunStatus::Failed);
    assert!(actions.iter().any(|action| matches!(
        action,
        Action::Cancel { attempt_id, .. } if *attempt_id == b.attempt_id
    )));
    assert!(actions.contains(&Action::Finished(RunStatus::Failed)));
    let changes = h.run.take_changes();
    let finished = changes
        .events
        .iter()
        .find(|event| event.event_type == EventType::RunFinished)
        .expect("RUN_FINISHED");
    assert_eq!(finished.details.error.as_deref(), Some("cannot store"));
    assert_eq!(
        changes
            .tasks
            .iter()
            .filter(|task| task.error.as_deref() == Some("cannot store"))
            .count(),
        2
    );
    assert!(h.run.abort("again", h.now, &mut actions).is_err());
}

#[test]
fn a_result_taking_the_run_context_over_its_limit_fails_its_task_and_the_run_goes_on() {
    // Three parallel writers of 400 KiB each under a 1 MiB limit: the
    // third would make the join's input (and the final context) 1.2 MiB.
    let mut join = task("join", &["w1", "w2", "w3"]);
    join.trigger_rule = "all_done".into();
    let mut writer = task("w3", &[]);
    writer.retry_attempts = Some(3);
    let mut h = harness_with(vec![task("w1", &[]), task("w2", &[]), writer, join], "{}");
    let value = "x".repeat(400 * 1024);
    h.succeed("w1", &format!(r#"{{"a": "{value}"}}"#));
    h.succeed("w2", &format!(r#"{{"b": "{value}"}}"#));
    let third = h.assign("w3");
    assert_eq!(
        h.complete(&third.attempt_id, &format!(r#"{{"c": "{value}"}}"#)),
        ResultDisposition::Accepted
    );
    assert_eq!(h.state("w3"), TaskState::Failed, "failed without retry");
    let changes = h.run.take_changes();
    let error = changes
        .tasks
        .iter()
        .find(|t| t.task_id == "w3")
        .and_then(|t| t.error.clone())
        .expect("an error");
    let would_be = 2 + 3 * (3 + 1 + value.len() + 2) + 2;
    let limit = SETTINGS.max_run_context_bytes;
    assert_eq!(
        error,
        format!(
            "context of run {} would be {would_be} bytes, above the limit of {limit} bytes (max_run_context_bytes) by {}",
            h.run.id(),
            would_be - limit
        )
    );
    // The join runs by its rule, with what fit.
    let join = h.succeed("join", "{}");
    assert_eq!(
        join.input.to_json().len(),
        2 + 2 * (3 + 1 + value.len() + 2) + 1
    );
    assert_eq!(h.finished(), Some(RunStatus::Failed));
}
