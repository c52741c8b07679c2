//! Tests of mapped tasks: expansion by the array in the input, instances
//! scheduled, retried and fenced one by one, gathering in element order,
//! the mapped task's outcome for its dependants, and a restore halfway.

use tributary_core::{DefinitionLimits, TaskDefinition, WorkflowDefinition, validate};

use super::*;
use crate::engine::records::RunRecord;

const SETTINGS: RunSettings = RunSettings {
    default_timeout_ms: 60_000,
    max_reassignments: 2,
    max_run_context_bytes: 1024 * 1024,
};

fn task(id: &str, dependencies: &[&str]) -> TaskDefinition {
    TaskDefinition {
        id: id.into(),
        dependencies: dependencies.iter().map(|d| (*d).into()).collect(),
        ..TaskDefinition::default()
    }
}

fn mapped(id: &str, dependencies: &[&str], over: &str) -> TaskDefinition {
    TaskDefinition {
        map_over: over.into(),
        map_output: "out".into(),
        ..task(id, dependencies)
    }
}

/// A run driven by hand, its changes folded into what the store would
/// hold, so that it can be restored at any point.
struct Harness {
    run: RunState,
    /// READY units not yet taken by `ready`.
    queue: Vec<TaskIndex>,
    other_actions: Vec<Action>,
    attempts: u32,
    now: i64,
    detail: RunDetail,
    events: Vec<NewEvent>,
}

impl Harness {
    fn new(tasks: Vec<TaskDefinition>, input: &str) -> Harness {
        Harness::with_settings(tasks, input, SETTINGS)
    }

    fn with_settings(tasks: Vec<TaskDefinition>, input: &str, settings: RunSettings) -> Harness {
        let definition = WorkflowDefinition {
            name: "wf".into(),
            tasks,
            ..WorkflowDefinition::default()
        };
        let spec = validate(&definition, 0, DefinitionLimits::default()).expect("valid");
        let plan = Arc::new(WorkflowPlan::new(&spec, &spec.version()));
        let (run, new_run, actions) = RunState::start(
            "run-1".into(),
            "default".into(),
            plan,
            settings,
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
        let mut harness = Harness {
            run,
            queue: Vec::new(),
            other_actions: Vec::new(),
            attempts: 0,
            now: 1_000,
            detail,
            events: new_run.events,
        };
        harness.apply(actions);
        harness
    }

    fn index(&self, id: &str) -> TaskIndex {
        self.run.plan().index_of(id).expect("known task")
    }

    fn state(&self, id: &str) -> TaskState {
        self.run.task_state(self.index(id))
    }

    /// Carries out actions as the coordinator does: expansions at once.
    fn apply(&mut self, actions: Vec<Action>) {
        let mut pending = actions;
        while !pending.is_empty() {
            let mut next = Vec::new();
            for action in pending {
                match action {
                    Action::Expand(task) => self.run.expand(task, self.now, &mut next),
                    Action::Enqueue(unit) => self.queue.push(unit),
                    other => self.other_actions.push(other),
                }
            }
            pending = next;
        }
        self.store();
    }

    /// The units made READY since the last call, by task id and index.
    fn ready(&mut self) -> Vec<(String, Option<u32>)> {
        std::mem::take(&mut self.queue)
            .into_iter()
            .map(|unit| {
                (
                    self.run.task_id_of(unit).to_owned(),
                    self.run.map_index_of(unit),
                )
            })
            .collect()
    }

    fn unit(&self, id: &str, index: u32) -> TaskIndex {
        self.run
            .unit_by_key(&instance_key(id, index))
            .expect("known instance")
    }

    fn assign(&mut self, unit: TaskIndex) -> Assignment {
        self.attempts += 1;
        self.now += 10;
        let attempt_id = format!("attempt-{}", self.attempts);
        let (assignment, _timeout) = self
            .run
            .assign(unit, attempt_id, "executor-1", "instance-1", self.now)
            .expect("ready unit");
        self.store();
        assignment
    }

    fn complete(&mut self, attempt_id: &str, set_json: &str) -> ResultDisposition {
        let delta = Delta::parse(set_json, &[]).expect("valid delta");
        let mut actions = Vec::new();
        let disposition = self
            .run
            .on_completed(attempt_id, delta, self.now, &mut actions);
        self.apply(actions);
        disposition
    }

    fn fail(&mut self, attempt_id: &str, retryable: bool) -> ResultDisposition {
        let mut actions = Vec::new();
        let disposition =
            self.run
                .on_failed(attempt_id, "boom", retryable, 1.0, self.now, &mut actions);
        self.apply(actions);
        disposition
    }

    /// Folds the pending changes into the stored detail, as a commit would.
    fn store(&mut self) {
        let changes = self.run.take_changes();
        if let Some(status) = &changes.status {
            self.detail.run.status = status.status;
        }
        for record in changes.tasks.iter().chain(&changes.new_tasks) {
            match self
                .detail
                .tasks
                .iter_mut()
                .find(|task| task.task_id == record.task_id)
            {
                Some(slot) => *slot = record.clone(),
                None => self.detail.tasks.push(record.clone()),
            }
        }
        self.detail
            .attempts
            .extend(changes.new_attempts.iter().cloned());
        for update in &changes.attempt_updates {
            if let Some(attempt) = self
                .detail
                .attempts
                .iter_mut()
                .find(|attempt| attempt.id == update.id)
            {
                attempt.state = update.state;
                attempt.error = update.error.clone();
            }
        }
        self.detail.deltas.extend(changes.deltas.iter().cloned());
        self.events.extend(changes.events);
    }

    fn events_of(&self, event_type: EventType) -> Vec<&NewEvent> {
        self.events
            .iter()
            .filter(|event| event.event_type == event_type)
            .collect()
    }

    fn finished(&self) -> Option<RunStatus> {
        self.other_actions.iter().find_map(|action| match action {
            Action::Finished(status) => Some(*status),
            _ => None,
        })
    }

    /// The run as a restarted server rebuilds it from the stored detail.
    fn restored(&self) -> Harness {
        let next_sequence = self.events.last().map_or(1, |event| event.sequence + 1);
        let (run, actions) = RunState::restore(
            self.run.plan().clone(),
            SETTINGS,
            &self.detail,
            next_sequence,
        )
        .expect("restorable");
        let mut harness = Harness {
            run,
            queue: Vec::new(),
            other_actions: Vec::new(),
            attempts: self.attempts + 100,
            now: self.now + 1_000,
            detail: self.detail.clone(),
            events: self.events.clone(),
        };
        harness.apply(actions);
        harness
    }
}

fn fetch_workflow() -> Vec<TaskDefinition> {
    vec![
        task("src", &[]),
        mapped("fetch", &["src"], "items"),
        task("sink", &["fetch"]),
    ]
}

#[test]
fn instances_run_one_per_element_and_outputs_gather_in_element_order() {
    let mut h = Harness::new(fetch_workflow(), r#"{"keep": 1}"#);
    assert_eq!(h.ready(), [("src".to_owned(), None)]);
    let src = h.assign(h.index("src"));
    h.complete(
        &src.attempt_id,
        r#"{"items": [12345678901234567890, "b", {"c": 1}]}"#,
    );
    assert_eq!(h.state("fetch"), TaskState::Running);
    assert_eq!(
        h.ready(),
        [
            ("fetch".to_owned(), Some(0)),
            ("fetch".to_owned(), Some(1)),
            ("fetch".to_owned(), Some(2)),
        ]
    );
    let mapped = h.events_of(EventType::TaskMapped);
    assert_eq!(mapped.len(), 1);
    assert_eq!(mapped[0].details.map_size, Some(3));
    assert_eq!(mapped[0].details.task_id.as_deref(), Some("fetch"));
    let ready_indexes: Vec<Option<u32>> = h
        .events_of(EventType::TaskReady)
        .iter()
        .filter(|event| event.details.task_id.as_deref() == Some("fetch"))
        .map(|event| event.details.map_index)
        .collect();
    assert_eq!(ready_indexes, [None, Some(0), Some(1), Some(2)]);

    let assignments: Vec<Assignment> = (0..3).map(|i| h.assign(h.unit("fetch", i))).collect();
    // Each instance sees its element and index, the rest of the task's
    // input, and not the array.
    assert_eq!(
        assignments[0].input.to_json(),
        r#"{"keep":1,"map_element":12345678901234567890,"map_index":0}"#
    );
    assert_eq!(
        assignments[2].input.to_json(),
        r#"{"keep":1,"map_element":{"c": 1},"map_index":2}"#
    );
    assert_eq!(assignments[1].task_id, "fetch");
    assert_eq!(assignments[1].map_index, Some(1));
    // They end in any order; one sets nothing.
    h.complete(&assignments[2].attempt_id, r#"{"out": [3]}"#);
    h.complete(&assignments[1].attempt_id, "{}");
    assert_eq!(h.state("fetch"), TaskState::Running);
    assert!(h.ready().is_empty(), "sink waits for every instance");
    h.complete(&assignments[0].attempt_id, r#"{"out": 1.50}"#);
    assert_eq!(h.state("fetch"), TaskState::Succeeded);
    assert_eq!(h.ready(), [("sink".to_owned(), None)]);
    let sink = h.assign(h.index("sink"));
    assert_eq!(
        sink.input.to_json(),
        r#"{"items":[12345678901234567890, "b", {"c": 1}],"keep":1,"out":[1.50,null,[3]]}"#
    );
    h.complete(&sink.attempt_id, "{}");
    assert_eq!(h.finished(), Some(RunStatus::Succeeded));
    // The gathered output is stored as the task's delta, without attempt;
    // the instances' as theirs.
    let gathered = h
        .detail
        .deltas
        .iter()
        .find(|delta| delta.task_id == "fetch")
        .expect("gathered delta");
    assert_eq!(gathered.attempt_id, "");
    assert_eq!(gathered.set_json, r#"{"out":[1.50,null,[3]]}"#);
    assert!(
        h.detail
            .deltas
            .iter()
            .any(|delta| delta.task_id == "fetch[2]")
    );
    let instance_rows: Vec<(&str, Option<u32>, u32)> = h
        .detail
        .tasks
        .iter()
        .filter(|task| task.map_index.is_some())
        .map(|task| (task.task_id.as_str(), task.map_index, task.position))
        .collect();
    let position = u32::try_from(h.index("fetch")).expect("small");
    assert_eq!(
        instance_rows,
        [
            ("fetch[0]", Some(0), position),
            ("fetch[1]", Some(1), position),
            ("fetch[2]", Some(2), position),
        ]
    );
}

#[test]
fn an_empty_array_succeeds_at_once_with_an_empty_gathered_array() {
    let mut h = Harness::new(
        vec![mapped("fetch", &[], "items"), task("sink", &["fetch"])],
        r#"{"items": []}"#,
    );
    assert_eq!(h.state("fetch"), TaskState::Succeeded);
    assert!(h.events_of(EventType::TaskMapped).is_empty());
    assert_eq!(h.ready(), [("sink".to_owned(), None)]);
    let sink = h.assign(h.index("sink"));
    assert_eq!(sink.input.to_json(), r#"{"items":[],"out":[]}"#);
}

#[test]
fn a_missing_or_wrong_or_too_long_array_fails_the_task_naming_the_key() {
    let cases = [
        ("{}", r#"map_over key "items" is not in the task's input"#),
        (
            r#"{"items": {"a": 1}}"#,
            r#"map_over key "items" holds an object, not an array"#,
        ),
        (
            r#"{"items": "abc"}"#,
            r#"map_over key "items" holds a string, not an array"#,
        ),
        (
            r#"{"items": [1, 2, 3]}"#,
            r#"map_over key "items" holds 3 elements, over the limit of 2 (map_max_instances)"#,
        ),
    ];
    for (input, message) in cases {
        let limited = TaskDefinition {
            map_max_instances: Some(2),
            ..mapped("fetch", &[], "items")
        };
        let mut h = Harness::new(vec![limited, task("sink", &["fetch"])], input);
        assert_eq!(h.state("fetch"), TaskState::Failed, "{input}");
        let failed = h.events_of(EventType::TaskFailed);
        assert_eq!(failed[0].details.error.as_deref(), Some(message));
        assert_eq!(h.state("sink"), TaskState::Skipped);
        assert_eq!(h.finished(), Some(RunStatus::Failed));
        assert!(h.ready().is_empty());
    }
}

#[test]
fn instances_retry_and_are_fenced_one_by_one_and_a_failure_fails_the_task_once_all_end() {
    let flaky = TaskDefinition {
        retry_attempts: Some(1),
        ..mapped("fetch", &[], "items")
    };
    let alert = TaskDefinition {
        trigger_rule: "one_failed".into(),
        ..task("alert", &["fetch"])
    };
    let mut h = Harness::new(
        vec![flaky, task("sink", &["fetch"]), alert],
        r#"{"items": ["a", "b"]}"#,
    );
    assert_eq!(h.ready().len(), 2);
    let first = h.assign(h.unit("fetch", 0));
    let other = h.assign(h.unit("fetch", 1));
    assert_eq!(first.attempt_number, 1);
    // Instance 0 fails and is retried; instance 1 is unaffected.
    h.fail(&first.attempt_id, true);
    assert_eq!(
        h.run.task_state(h.unit("fetch", 0)),
        TaskState::RetryScheduled
    );
    assert_eq!(h.run.task_state(h.unit("fetch", 1)), TaskState::Assigned);
    let unit = h.unit("fetch", 0);
    let mut actions = Vec::new();
    h.run.on_retry_due(unit, h.now + 5_000, &mut actions);
    h.apply(actions);
    assert_eq!(h.ready(), [("fetch".to_owned(), Some(0))]);
    let second = h.assign(unit);
    assert_eq!(second.attempt_number, 2);
    // The replaced attempt's late result is stale.
    assert_eq!(
        h.complete(&first.attempt_id, r#"{"out": 0}"#),
        ResultDisposition::Stale
    );
    // A non-retryable failure ends instance 0; the task waits for 1.
    h.fail(&second.attempt_id, false);
    assert_eq!(h.run.task_state(unit), TaskState::Failed);
    assert_eq!(h.state("fetch"), TaskState::Running);
    h.complete(&other.attempt_id, r#"{"out": 1}"#);
    assert_eq!(h.state("fetch"), TaskState::Failed);
    let failed = h
        .events_of(EventType::TaskFailed)
        .into_iter()
        .find(|event| event.details.map_index.is_none())
        .expect("the task's failure");
    assert_eq!(
        failed.details.error.as_deref(),
        Some("1 of 2 map instances failed; the first, instance 0: boom")
    );
    // Trigger rules see the mapped task as one failed task.
    assert_eq!(h.state("sink"), TaskState::Skipped);
    assert_eq!(h.ready(), [("alert".to_owned(), None)]);
}

#[test]
fn an_instance_may_set_only_the_output_key() {
    let mut h = Harness::new(vec![mapped("fetch", &[], "items")], r#"{"items": [1]}"#);
    let attempt = h.assign(h.unit("fetch", 0));
    assert_eq!(
        h.complete(&attempt.attempt_id, r#"{"out": 1, "other": 2}"#),
        ResultDisposition::Accepted
    );
    assert_eq!(h.state("fetch"), TaskState::Failed);
    let instance_failure = h.events_of(EventType::TaskFailed)[0];
    assert_eq!(instance_failure.details.map_index, Some(0));
    assert_eq!(
        instance_failure.details.error.as_deref(),
        Some(r#"map instance 0 of task "fetch" wrote key "other"; an instance may only set "out""#)
    );
}

#[test]
fn gathered_outputs_count_against_the_run_context_limit() {
    let small = RunSettings {
        max_run_context_bytes: 64,
        ..SETTINGS
    };
    let mut h = Harness::with_settings(
        vec![mapped("fetch", &[], "items")],
        r#"{"items": [1, 2]}"#,
        small,
    );
    let a = h.assign(h.unit("fetch", 0));
    let b = h.assign(h.unit("fetch", 1));
    h.complete(
        &a.attempt_id,
        &format!(r#"{{"out": "{}"}}"#, "x".repeat(30)),
    );
    h.complete(
        &b.attempt_id,
        &format!(r#"{{"out": "{}"}}"#, "y".repeat(30)),
    );
    assert_eq!(h.state("fetch"), TaskState::Failed);
    let error = h.events_of(EventType::TaskFailed)[0]
        .details
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("with the gathered outputs, above the limit of 64 bytes"),
        "{error}"
    );
}

#[test]
fn a_restored_run_continues_its_instances_and_gathers() {
    let mut h = Harness::new(fetch_workflow(), "{}");
    let src = h.assign(h.index("src"));
    h.complete(&src.attempt_id, r#"{"items": ["a", "b", "c"]}"#);
    let done = h.assign(h.unit("fetch", 0));
    h.complete(&done.attempt_id, r#"{"out": "A"}"#);
    let in_flight = h.assign(h.unit("fetch", 1));
    // Instance 2 is still READY when the server stops.
    let mut r = h.restored();
    assert_eq!(r.state("fetch"), TaskState::Running);
    assert_eq!(r.ready(), [("fetch".to_owned(), Some(2))]);
    assert_eq!(
        r.run.attempts_in_flight(),
        [(r.unit("fetch", 1), in_flight.attempt_id.clone())]
    );
    // The held attempt's result still counts after the restart.
    assert_eq!(
        r.complete(&in_flight.attempt_id, r#"{"out": "B"}"#),
        ResultDisposition::Accepted
    );
    let last = r.assign(r.unit("fetch", 2));
    assert_eq!(last.input.to_json(), r#"{"map_element":"c","map_index":2}"#);
    r.complete(&last.attempt_id, r#"{"out": "C"}"#);
    assert_eq!(r.state("fetch"), TaskState::Succeeded);
    let sink = r.assign(r.index("sink"));
    assert_eq!(
        sink.input.to_json(),
        r#"{"items":["a", "b", "c"],"out":["A","B","C"]}"#
    );
    // And once more after the gathering: the output comes back from the
    // stored delta.
    let mut again = r.restored();
    assert_eq!(
        again.run.current_context().to_json(),
        r#"{"items":["a", "b", "c"],"out":["A","B","C"]}"#
    );
    assert!(again.ready().is_empty(), "sink's attempt is in flight");
}

#[test]
fn a_mapped_task_made_ready_before_a_restart_is_expanded_after_it() {
    let mut h = Harness::new(vec![mapped("fetch", &[], "items")], r#"{"items": [7]}"#);
    // Drop the expansion, as if the server stopped right after storing
    // the new run.
    h.detail.tasks.retain(|task| task.map_index.is_none());
    for task in &mut h.detail.tasks {
        task.state = TaskState::Ready;
        task.map_size = None;
    }
    h.detail.run.status = RunStatus::Pending;
    let mut r = h.restored();
    assert_eq!(r.ready(), [("fetch".to_owned(), Some(0))]);
}

#[test]
fn cancelling_the_run_cancels_the_instances_and_their_attempts() {
    let mut h = Harness::new(vec![mapped("fetch", &[], "items")], r#"{"items": [1, 2]}"#);
    let attempt = h.assign(h.unit("fetch", 0));
    let mut actions = Vec::new();
    h.run.cancel(h.now, &mut actions).expect("active");
    assert!(actions.iter().any(|action| matches!(
        action,
        Action::Cancel { attempt_id, .. } if *attempt_id == attempt.attempt_id
    )));
    h.apply(actions);
    for index in 0..2 {
        assert_eq!(
            h.run.task_state(h.unit("fetch", index)),
            TaskState::Cancelled
        );
    }
    assert_eq!(h.state("fetch"), TaskState::Cancelled);
    assert_eq!(h.finished(), Some(RunStatus::Cancelled));
}

#[test]
fn instance_keys_round_trip() {
    assert_eq!(instance_key("fetch", 12), "fetch[12]");
    assert_eq!(parse_instance_key("fetch[12]"), Some(("fetch", 12)));
    assert_eq!(parse_instance_key("fetch"), None);
    assert_eq!(parse_instance_key("fetch[x]"), None);
}

#[test]
fn a_retried_mapped_task_drops_its_instances_and_is_expanded_again() {
    let mut h = Harness::new(
        vec![mapped("fetch", &[], "items"), task("sink", &["fetch"])],
        r#"{"items": [1, 2]}"#,
    );
    let first = h.assign(h.unit("fetch", 0));
    let second = h.assign(h.unit("fetch", 1));
    h.complete(&first.attempt_id, r#"{"out": "one"}"#);
    h.fail(&second.attempt_id, false);
    assert_eq!(h.finished(), Some(RunStatus::Failed));
    h.queue.clear();
    let mut actions = Vec::new();
    let summary = h.run.retry(None, h.now, &mut actions).expect("retried");
    assert_eq!(summary.dropped_maps, [h.index("fetch")]);
    let reset = h.run.take_changes();
    let fetch_row = reset
        .tasks
        .iter()
        .find(|task| task.task_id == "fetch")
        .expect("fetch reset");
    assert_eq!(
        (fetch_row.state, fetch_row.map_size),
        (TaskState::Ready, None)
    );
    // Expanded again: new instances, attempts numbered from 1, both run.
    h.apply(actions);
    assert_eq!(
        h.ready(),
        [("fetch".to_owned(), Some(0)), ("fetch".to_owned(), Some(1))]
    );
    let again: Vec<Assignment> = (0..2).map(|i| h.assign(h.unit("fetch", i))).collect();
    assert_eq!(again[0].attempt_number, 1);
    // A late copy of the dropped instance's result changes nothing.
    assert_eq!(
        h.complete(&second.attempt_id, r#"{"out": "late"}"#),
        ResultDisposition::Stale
    );
    h.complete(&again[1].attempt_id, r#"{"out": "TWO"}"#);
    h.complete(&again[0].attempt_id, r#"{"out": "ONE"}"#);
    assert_eq!(h.state("fetch"), TaskState::Succeeded);
    let sink = h.assign(h.index("sink"));
    assert_eq!(
        sink.input.to_json(),
        r#"{"items":[1, 2],"out":["ONE","TWO"]}"#
    );
    h.other_actions.clear();
    h.complete(&sink.attempt_id, "{}");
    // The dropped instance's failure is history: the run succeeds.
    assert_eq!(h.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn a_mapped_task_that_never_expanded_may_be_retried() {
    // The array is missing: the task fails without instances, and a retry
    // expands it again from the (unchanged) input.
    let mut h = Harness::new(vec![mapped("fetch", &[], "items")], "{}");
    assert_eq!(h.finished(), Some(RunStatus::Failed));
    let mut actions = Vec::new();
    h.run.retry(None, h.now, &mut actions).expect("retried");
    h.apply(actions);
    assert_eq!(h.state("fetch"), TaskState::Failed);
}

#[test]
fn a_mapped_task_may_map_over_another_ones_gathered_outputs() {
    let second = TaskDefinition {
        map_output: "final".into(),
        ..mapped("double", &["fetch"], "out")
    };
    let mut h = Harness::new(
        vec![mapped("fetch", &[], "items"), second],
        r#"{"items": [1, 2]}"#,
    );
    for index in 0..2 {
        let attempt = h.assign(h.unit("fetch", index));
        h.complete(
            &attempt.attempt_id,
            &format!(r#"{{"out": {}}}"#, index + 10),
        );
    }
    assert_eq!(
        h.ready(),
        [
            ("fetch".to_owned(), Some(0)),
            ("fetch".to_owned(), Some(1)),
            ("double".to_owned(), Some(0)),
            ("double".to_owned(), Some(1)),
        ]
    );
    let first = h.assign(h.unit("double", 1));
    assert_eq!(
        first.input.to_json(),
        r#"{"items":[1, 2],"map_element":11,"map_index":1}"#
    );
    h.complete(&first.attempt_id, r#"{"final": 22}"#);
    let other = h.assign(h.unit("double", 0));
    h.complete(&other.attempt_id, r#"{"final": 20}"#);
    assert_eq!(h.finished(), Some(RunStatus::Succeeded));
    assert_eq!(
        h.run.current_context().to_json(),
        r#"{"final":[20,22],"items":[1, 2],"out":[10,11]}"#
    );
}
