//! Tests of re-running finished runs: the shared vectors
//! (`tests/vectors/retry.json`), then what they cannot show (inputs,
//! attempts, events, budgets). Every retry here is applied, as the
//! coordinator does, to a run restored from what it stored.

use std::collections::BTreeMap;

use serde::Deserialize;
use tributary_core::{DefinitionLimits, WorkflowDefinition, validate};

use super::*;
use crate::engine::records::RunRecord;

const SETTINGS: RunSettings = RunSettings {
    default_timeout_ms: 60_000,
    max_reassignments: 2,
    max_run_context_bytes: 16 * 1024 * 1024,
};

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    workflow: WorkflowDefinition,
    outcomes: BTreeMap<String, Outcome>,
    cancel: bool,
    status: RunStatus,
    retries: Vec<RetryCase>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Succeed,
    Fail,
}

#[derive(Deserialize)]
struct RetryCase {
    from_task: Option<String>,
    #[serde(default)]
    reset: Vec<String>,
    #[serde(default)]
    states: BTreeMap<String, TaskState>,
    status_after: Option<RunStatus>,
    status_when_done: Option<RunStatus>,
    error: Option<String>,
}

/// A run driven by hand, with everything it asked to store folded into
/// what the store would read back.
struct Driven {
    run: RunState,
    detail: RunDetail,
    last_sequence: u64,
    attempts: u32,
    now: i64,
}

impl Driven {
    /// Starts a run of `definition` and drives it with `outcome_of`.
    fn run(
        definition: &WorkflowDefinition,
        input: &str,
        outcome_of: &dyn Fn(&str) -> Option<Outcome>,
    ) -> Driven {
        let spec = validate(definition, 0, DefinitionLimits::default()).expect("valid workflow");
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
        let detail = RunDetail {
            run: RunRecord {
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
            },
            tasks: new_run.tasks.clone(),
            attempts: Vec::new(),
            deltas: Vec::new(),
            conflicts: Vec::new(),
        };
        let mut driven = Driven {
            run,
            detail,
            last_sequence: new_run.events.len() as u64,
            attempts: 0,
            now: 1_000,
        };
        driven.drive(&actions, outcome_of);
        driven
    }

    fn index(&self, id: &str) -> TaskIndex {
        self.run.plan().index_of(id).expect("known task")
    }

    /// Runs every enqueued task (and what it unblocks) with the outcome
    /// `outcome_of` gives; a task without one is left READY.
    fn drive(&mut self, first: &[Action], outcome_of: &dyn Fn(&str) -> Option<Outcome>) {
        let mut queue: Vec<TaskIndex> = enqueued(first);
        while !queue.is_empty() {
            let mut next = Vec::new();
            for task in queue {
                let task_id = self.run.plan().tasks[task].id.clone();
                let Some(outcome) = outcome_of(&task_id) else {
                    continue;
                };
                self.now += 10;
                self.attempts += 1;
                let attempt_id = format!("attempt-{}", self.attempts);
                self.run
                    .assign(task, attempt_id.clone(), "executor", "instance", self.now)
                    .expect("ready task");
                let mut actions = Vec::new();
                match outcome {
                    Outcome::Succeed => {
                        let delta = Delta::parse(&format!("{{\"{task_id}\": true}}"), &[])
                            .expect("valid delta");
                        self.run
                            .on_completed(&attempt_id, delta, self.now, &mut actions);
                    }
                    Outcome::Fail => {
                        self.run
                            .on_failed(&attempt_id, "boom", false, 1.0, self.now, &mut actions);
                    }
                }
                next.extend(enqueued(&actions));
            }
            queue = next;
            self.store();
        }
        self.store();
    }

    fn cancel(&mut self) {
        let mut actions = Vec::new();
        self.run.cancel(self.now, &mut actions).expect("active run");
        self.store();
    }

    /// Folds the run's pending changes into the stored detail.
    fn store(&mut self) {
        let changes = self.run.take_changes();
        fold(&mut self.detail, &changes);
        if let Some(last) = changes.events.last() {
            self.last_sequence = last.sequence;
        }
    }

    /// The run as the coordinator would rebuild it to retry it.
    fn restored(&self) -> Driven {
        let (run, actions) = RunState::restore(
            self.run.plan().clone(),
            SETTINGS,
            &self.detail,
            self.last_sequence + 1,
        )
        .expect("restorable");
        assert!(actions.is_empty(), "a finished run re-arms nothing");
        Driven {
            run,
            detail: self.detail.clone(),
            last_sequence: self.last_sequence,
            attempts: self.attempts + 1_000,
            now: self.now + 1_000,
        }
    }
}

fn enqueued(actions: &[Action]) -> Vec<TaskIndex> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Enqueue(task) => Some(*task),
            _ => None,
        })
        .collect()
}

fn fold(detail: &mut RunDetail, changes: &RunChanges) {
    if let Some(status) = &changes.status {
        detail.run.status = status.status;
        detail.run.finished_at_ms = status.finished_at_ms.or(detail.run.finished_at_ms);
    }
    for record in &changes.tasks {
        let slot = detail
            .tasks
            .iter_mut()
            .find(|task| task.task_id == record.task_id)
            .expect("known task");
        *slot = record.clone();
    }
    detail.attempts.extend(changes.new_attempts.iter().cloned());
    for update in &changes.attempt_updates {
        let attempt = detail
            .attempts
            .iter_mut()
            .find(|attempt| attempt.id == update.id)
            .expect("known attempt");
        attempt.state = update.state;
        attempt.error = update.error.clone();
    }
    detail.deltas.extend(changes.deltas.iter().cloned());
    detail.conflicts.extend(changes.conflicts.iter().cloned());
}

/// What the store does with a retry besides the changes: the reset tasks'
/// deltas go.
fn fold_retry(detail: &mut RunDetail, reset: &[String], changes: &RunChanges) {
    detail.run.status = RunStatus::Running;
    detail.run.finished_at_ms = None;
    detail.run.retry_count += 1;
    detail
        .deltas
        .retain(|delta| !reset.contains(&delta.task_id));
    fold(detail, changes);
}

fn load_vectors() -> Vectors {
    serde_json::from_str(include_str!("../../../../tests/vectors/retry.json"))
        .expect("valid vectors")
}

#[test]
fn shared_retry_vectors() {
    let vectors = load_vectors();
    assert!(vectors.cases.len() >= 5);
    for case in &vectors.cases {
        for retry in &case.retries {
            let mut original = run_case(case);
            assert_eq!(original.run.status(), case.status, "{}: status", case.name);
            let mut driven = original.restored();
            let mut actions = Vec::new();
            let result = driven
                .run
                .retry(retry.from_task.as_deref(), driven.now, &mut actions);
            let what = format!("{} from {:?}", case.name, retry.from_task);
            if let Some(expected) = &retry.error {
                let error = result.expect_err(&what);
                let kind = match error {
                    RetryError::Active { .. } => "active",
                    RetryError::NothingToRetry { .. } => "nothing_to_retry",
                    RetryError::UnknownTask { .. } => "unknown_task",
                };
                assert_eq!(kind, expected, "{what}");
                assert!(
                    driven.run.take_changes().is_empty(),
                    "{what}: a refusal changes nothing"
                );
                continue;
            }
            let summary = result.expect(&what);
            assert_eq!(summary.previous_status, case.status, "{what}");
            let reset: Vec<String> = summary
                .reset
                .iter()
                .map(|&task| driven.run.plan().tasks[task].id.clone())
                .collect();
            assert_eq!(reset, retry.reset, "{what}: reset");
            let states: BTreeMap<String, TaskState> = driven
                .run
                .plan()
                .tasks
                .iter()
                .enumerate()
                .map(|(index, task)| (task.id.clone(), driven.run.task_state(index)))
                .collect();
            assert_eq!(states, retry.states, "{what}: states");
            assert_eq!(
                Some(driven.run.status()),
                retry.status_after,
                "{what}: status after"
            );
            let changes = driven.run.take_changes();
            fold_retry(&mut driven.detail, &reset, &changes);
            let events = &changes.events;
            assert_eq!(events[0].event_type, EventType::RunRetried, "{what}");
            assert_eq!(events[0].sequence, original.last_sequence + 1, "{what}");
            assert_eq!(
                events[0].details.retried_task_ids.as_ref(),
                Some(&retry.reset),
                "{what}"
            );
            assert_eq!(events[0].details.task_id, retry.from_task, "{what}");
            if let Some(expected) = retry.status_when_done {
                driven.last_sequence = events.last().expect("events").sequence;
                driven.drive(&actions, &|_| Some(Outcome::Succeed));
                assert_eq!(driven.run.status(), expected, "{what}: when done");
                // Tasks outside the reset set ran once, before the retry.
                for task in &driven.run.plan().tasks {
                    let attempts = driven
                        .detail
                        .attempts
                        .iter()
                        .filter(|attempt| attempt.task_id == task.id)
                        .count();
                    let before = original
                        .detail
                        .attempts
                        .iter()
                        .filter(|attempt| attempt.task_id == task.id)
                        .count();
                    if !retry.reset.contains(&task.id) {
                        assert_eq!(attempts, before, "{what}: {} ran again", task.id);
                    }
                }
            }
            original.store();
        }
    }
}

/// Drives a case's run to its end with the case's outcomes.
fn run_case(case: &Case) -> Driven {
    let outcomes = case.outcomes.clone();
    let mut driven = Driven::run(&case.workflow, "{}", &move |task_id| {
        outcomes.get(task_id).copied()
    });
    if case.cancel {
        driven.cancel();
    }
    driven
}

fn definition(tasks: &[(&str, &[&str], u32)]) -> WorkflowDefinition {
    WorkflowDefinition {
        name: "wf".into(),
        description: String::new(),
        tasks: tasks
            .iter()
            .map(
                |(id, dependencies, retry_attempts)| tributary_core::TaskDefinition {
                    id: (*id).into(),
                    dependencies: dependencies.iter().map(|d| (*d).into()).collect(),
                    retry_attempts: Some(i64::from(*retry_attempts)),
                    ..tributary_core::TaskDefinition::default()
                },
            )
            .collect(),
        concurrency: None,
    }
}

/// Assigns a READY task of the driven run and returns its attempt.
fn assign(driven: &mut Driven, task_id: &str) -> Assignment {
    driven.attempts += 1;
    driven.now += 10;
    let task = driven.index(task_id);
    let (assignment, _) = driven
        .run
        .assign(
            task,
            format!("attempt-{}", driven.attempts),
            "executor",
            "instance",
            driven.now,
        )
        .expect("ready task");
    assignment
}

#[test]
fn reset_tasks_get_inputs_rebuilt_from_the_tasks_that_kept_their_output() {
    let workflow = definition(&[("a", &[], 0), ("b", &["a"], 0), ("c", &["b"], 0)]);
    let fail_b = |task_id: &str| {
        Some(if task_id == "b" {
            Outcome::Fail
        } else {
            Outcome::Succeed
        })
    };
    let original = Driven::run(&workflow, r#"{"seed": 7}"#, &fail_b);
    assert_eq!(original.run.status(), RunStatus::Failed);
    let mut driven = original.restored();
    let mut actions = Vec::new();
    driven
        .run
        .retry(None, driven.now, &mut actions)
        .expect("a failed run can be retried");
    let b = driven.index("b");
    assert_eq!(actions, vec![Action::Enqueue(b)]);
    let assignment = assign(&mut driven, "b");
    assert_eq!(
        assignment.input.to_json(),
        r#"{"a":true,"seed":7}"#,
        "b sees the input and a's delta"
    );
    // Attempt numbers keep counting across the retry.
    assert_eq!(assignment.attempt_number, 2);
    let mut actions = Vec::new();
    let delta = Delta::parse(r#"{"b": "second"}"#, &[]).expect("valid");
    driven
        .run
        .on_completed(&assignment.attempt_id, delta, driven.now, &mut actions);
    let assignment = assign(&mut driven, "c");
    assert_eq!(
        assignment.input.to_json(),
        r#"{"a":true,"b":"second","seed":7}"#
    );
    assert_eq!(assignment.attempt_number, 1, "c never ran before");
    let mut actions = Vec::new();
    let delta = Delta::parse(r#"{"c": 3}"#, &[]).expect("valid");
    driven
        .run
        .on_completed(&assignment.attempt_id, delta, driven.now, &mut actions);
    assert_eq!(actions, vec![Action::Finished(RunStatus::Succeeded)]);
    assert_eq!(
        driven.run.current_context().to_json(),
        r#"{"a":true,"b":"second","c":3,"seed":7}"#
    );
}

#[test]
fn a_reset_succeeded_task_loses_its_delta_and_writes_no_false_conflict() {
    // cleanup (all_done) ran after the failure and wrote "summary"; retried
    // from the failure, it runs again and writes it again: the same writer,
    // not a conflict.
    let mut workflow = definition(&[("work", &[], 0), ("cleanup", &["work"], 0)]);
    workflow.tasks[1].trigger_rule = "all_done".into();
    let fail_work = |task_id: &str| {
        Some(if task_id == "work" {
            Outcome::Fail
        } else {
            Outcome::Succeed
        })
    };
    let original = Driven::run(&workflow, "{}", &fail_work);
    assert_eq!(original.run.status(), RunStatus::Failed);
    let mut driven = original.restored();
    let mut actions = Vec::new();
    driven
        .run
        .retry(None, driven.now, &mut actions)
        .expect("retry");
    assert_eq!(driven.run.current_context().to_json(), "{}");
    assert_eq!(
        driven.run.context_size.bytes(),
        2,
        "the dropped delta no longer counts towards the context size limit"
    );
    let changes = driven.run.take_changes();
    fold_retry(
        &mut driven.detail,
        &["work".into(), "cleanup".into()],
        &changes,
    );
    driven.drive(&actions, &|_| Some(Outcome::Succeed));
    assert_eq!(driven.run.status(), RunStatus::Succeeded);
    assert!(driven.detail.conflicts.is_empty());
    let cleanup_deltas = driven
        .detail
        .deltas
        .iter()
        .filter(|delta| delta.task_id == "cleanup")
        .count();
    assert_eq!(cleanup_deltas, 1, "the old delta went with the retry");
    assert_eq!(
        driven.run.current_context().to_json(),
        r#"{"cleanup":true,"work":true}"#
    );
    assert_eq!(
        driven.run.context_size.bytes(),
        r#"{"cleanup":true,"work":true}"#.len()
    );
}

#[test]
fn retry_budgets_are_fresh_after_a_retry() {
    // One retry allowed: two failures end the task; after RetryRun the
    // first failure is retried again instead of failing the task.
    let workflow = definition(&[("flaky", &[], 1)]);
    let mut driven = Driven::run(&workflow, "{}", &|_| None);
    for _ in 0..2 {
        let assignment = assign(&mut driven, "flaky");
        let mut actions = Vec::new();
        driven.run.on_failed(
            &assignment.attempt_id,
            "boom",
            true,
            1.0,
            driven.now,
            &mut actions,
        );
        let flaky = driven.index("flaky");
        if driven.run.task_state(flaky) == TaskState::RetryScheduled {
            driven
                .run
                .on_retry_due(flaky, driven.now + 100_000, &mut actions);
        }
        driven.store();
    }
    assert_eq!(driven.run.status(), RunStatus::Failed);
    let mut retried = driven.restored();
    let mut actions = Vec::new();
    retried
        .run
        .retry(None, retried.now, &mut actions)
        .expect("retry");
    let assignment = assign(&mut retried, "flaky");
    assert_eq!(assignment.attempt_number, 3);
    let mut actions = Vec::new();
    retried.run.on_failed(
        &assignment.attempt_id,
        "boom",
        true,
        1.0,
        retried.now,
        &mut actions,
    );
    assert_eq!(
        retried.run.task_state(retried.index("flaky")),
        TaskState::RetryScheduled
    );
}

#[test]
fn an_active_run_is_refused_and_left_untouched() {
    let workflow = definition(&[("a", &[], 0)]);
    let mut driven = Driven::run(&workflow, "{}", &|_| None);
    let mut actions = Vec::new();
    let error = driven
        .run
        .retry(None, driven.now, &mut actions)
        .expect_err("the run is pending");
    assert_eq!(
        error.to_string(),
        "run run-1 is PENDING; only a finished run can be retried"
    );
    assert!(actions.is_empty());
    assert!(driven.run.take_changes().is_empty());
}

#[test]
fn a_late_copy_of_an_old_attempts_result_changes_nothing_after_a_retry() {
    let workflow = definition(&[("a", &[], 0)]);
    let original = Driven::run(&workflow, "{}", &|_| Some(Outcome::Fail));
    let mut driven = original.restored();
    let mut actions = Vec::new();
    driven
        .run
        .retry(None, driven.now, &mut actions)
        .expect("retry");
    driven.run.take_changes();
    let mut actions = Vec::new();
    let delta = Delta::parse(r#"{"late": 1}"#, &[]).expect("valid");
    let disposition = driven
        .run
        .on_completed("attempt-1", delta, driven.now, &mut actions);
    assert_eq!(disposition, ResultDisposition::Stale);
    assert!(actions.is_empty());
    assert!(driven.run.take_changes().is_empty());
    assert_eq!(driven.run.task_state(driven.index("a")), TaskState::Ready);
}
