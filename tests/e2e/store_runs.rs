//! The `Store` conformance suite for runs: creating them, committing the
//! engine's changes with their events, and reading them back, through the
//! trait only, against whichever backend the environment selects. Event rows
//! are checked with SQL here, to see what was written independently of
//! `list_events` (which `store_events` tests).

use std::sync::Arc;

use sqlx::Connection;
use tributary_e2e::TestDatabase;
use tributary_server::engine::records::{
    AttemptRecord, AttemptState, AttemptUpdate, ConflictRecord, CreateRunOutcome, DeltaRecord,
    EventDetails, EventRecord, EventType, NewEvent, NewRun, RunChanges, RunDetail, RunFilter,
    RunRecord, RunStatus, RunStatusChange, SkipReason, TaskRecord, TaskState,
};
use tributary_server::store::{Store, StoreError};

use crate::store_conformance::open;

pub(crate) const NS: &str = "default";

/// Ids shaped like UUIDv7s whose order is `n`'s order, as the engine's are.
pub(crate) fn run_id(n: u32) -> String {
    format!("01930000-0000-7000-8000-{n:012}")
}

pub(crate) fn task(task_id: &str, position: u32) -> TaskRecord {
    TaskRecord {
        task_id: task_id.to_owned(),
        position,
        state: TaskState::Waiting,
        skip_reason: None,
        attempts_started: 0,
        failures: 0,
        reassignments: 0,
        current_attempt_id: None,
        next_attempt_at_ms: None,
        error: None,
        updated_at_ms: 1_000,
        map_index: None,
        map_size: None,
    }
}

pub(crate) fn event(
    sequence: u64,
    event_type: EventType,
    task_id: &str,
    created_at_ms: i64,
) -> NewEvent {
    NewEvent {
        sequence,
        event_type,
        details: EventDetails {
            task_id: Some(task_id.to_owned()),
            ..EventDetails::default()
        },
        created_at_ms,
    }
}

pub(crate) fn new_run(namespace: &str, id: &str, workflow_name: &str, key: Option<&str>) -> NewRun {
    NewRun {
        id: id.to_owned(),
        namespace: namespace.to_owned(),
        workflow_name: workflow_name.to_owned(),
        workflow_version: "0123456789abcdef".to_owned(),
        input_context_json: r#"{"region":"eu","n":1}"#.to_owned(),
        idempotency_key: key.map(str::to_owned),
        request_hash: format!("hash of {id}"),
        created_at_ms: 1_000,
        status: RunStatus::Pending,
        concurrency_key: None,
        tasks: vec![task("extract", 0), task("transform", 1), task("load", 2)],
        events: vec![event(1, EventType::TaskReady, "extract", 1_000)],
    }
}

/// The record a freshly created run reads back as.
fn pending_record(run: &NewRun) -> RunRecord {
    RunRecord {
        id: run.id.clone(),
        namespace: run.namespace.clone(),
        workflow_name: run.workflow_name.clone(),
        workflow_version: run.workflow_version.clone(),
        status: RunStatus::Pending,
        input_context_json: run.input_context_json.clone(),
        final_context_json: None,
        idempotency_key: run.idempotency_key.clone(),
        request_hash: run.request_hash.clone(),
        created_at_ms: run.created_at_ms,
        started_at_ms: None,
        finished_at_ms: None,
        retry_count: 0,
        retry_request_id: None,
        concurrency_key: None,
        queue_position: None,
    }
}

pub(crate) fn changes_of(run: &NewRun) -> RunChanges {
    RunChanges {
        run_id: run.id.clone(),
        namespace: run.namespace.clone(),
        workflow_name: run.workflow_name.clone(),
        ..RunChanges::default()
    }
}

pub(crate) fn attempt(run: &NewRun, id: &str, task_id: &str, number: u32) -> AttemptRecord {
    AttemptRecord {
        id: id.to_owned(),
        run_id: run.id.clone(),
        task_id: task_id.to_owned(),
        number,
        executor_id: "executor-1".to_owned(),
        instance_id: "instance-1".to_owned(),
        state: AttemptState::Assigned,
        error: None,
        assigned_at_ms: 2_000,
        deadline_at_ms: Some(62_000),
        started_at_ms: None,
        finished_at_ms: None,
    }
}

pub(crate) fn status(status: RunStatus) -> RunStatusChange {
    RunStatusChange {
        status,
        started_at_ms: None,
        finished_at_ms: None,
        final_context_json: None,
    }
}

pub(crate) async fn create(store: &Arc<dyn Store>, run: &NewRun) -> Vec<EventRecord> {
    match store.create_run(run).await.expect("creates") {
        CreateRunOutcome::Created(events) => events,
        CreateRunOutcome::IdempotencyKeyTaken(existing) => {
            panic!("key unexpectedly taken by {existing:?}")
        }
    }
}

fn cursors(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|event| event.cursor).collect()
}

fn assert_strictly_increasing(cursors: &[u64]) {
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "cursors not strictly increasing: {cursors:?}"
    );
}

/// An event row as stored: cursor, namespace, run, workflow, sequence, type,
/// payload, time.
type EventRow = (i64, String, String, String, i64, String, String, i64);

async fn stored_events(database: &TestDatabase) -> Vec<EventRow> {
    const SQL: &str = "SELECT cursor, namespace, run_id, workflow_name, sequence, event_type, \
         payload_json, created_at_ms FROM events ORDER BY cursor";
    if database.is_postgres() {
        let mut connection = sqlx::PgConnection::connect(database.url())
            .await
            .expect("connects");
        let rows = sqlx::query_as::<_, EventRow>(SQL)
            .fetch_all(&mut connection)
            .await
            .expect("reads events");
        let _ = connection.close().await;
        rows
    } else {
        let mut connection = sqlx::SqliteConnection::connect(database.url())
            .await
            .expect("connects");
        let rows = sqlx::query_as::<_, EventRow>(SQL)
            .fetch_all(&mut connection)
            .await
            .expect("reads events");
        let _ = connection.close().await;
        rows
    }
}

/// Checks that every returned event was stored exactly as returned, with
/// its details as the JSON payload.
async fn assert_stored(database: &TestDatabase, returned: &[EventRecord]) {
    let rows = stored_events(database).await;
    for record in returned {
        let cursor = i64::try_from(record.cursor).expect("cursor fits");
        let row = rows
            .iter()
            .find(|row| row.0 == cursor)
            .unwrap_or_else(|| panic!("event {cursor} not stored"));
        assert_eq!(row.1, record.namespace);
        assert_eq!(row.2, record.run_id);
        assert_eq!(row.3, record.workflow_name);
        assert_eq!(u64::try_from(row.4).expect("sequence"), record.sequence);
        assert_eq!(row.5, record.event_type.as_str());
        let details: EventDetails = serde_json::from_str(&row.6).expect("payload is JSON");
        assert_eq!(details, record.details);
        assert_eq!(row.7, record.created_at_ms);
    }
}

#[tokio::test]
async fn created_run_reads_back_with_every_field_and_tasks_by_position() {
    let (database, store) = open().await;
    let mut run = new_run(NS, &run_id(1), "etl", Some("key-1"));
    run.tasks = vec![
        TaskRecord {
            state: TaskState::Ready,
            ..task("transform", 1)
        },
        task("load", 2),
        TaskRecord {
            task_id: "extract".to_owned(),
            position: 0,
            state: TaskState::Skipped,
            skip_reason: Some(SkipReason::RuleNotMet),
            attempts_started: 3,
            failures: 2,
            reassignments: 1,
            current_attempt_id: Some("attempt-9".to_owned()),
            next_attempt_at_ms: Some(5_000),
            error: Some("boom".to_owned()),
            updated_at_ms: 1_234,
            map_index: None,
            map_size: None,
        },
    ];
    let full_details = EventDetails {
        task_id: Some("extract".to_owned()),
        attempt_id: Some("attempt-9".to_owned()),
        attempt_number: Some(3),
        executor_id: Some("executor-7".to_owned()),
        error: Some("boom".to_owned()),
        skip_reason: Some(SkipReason::RuleNotMet),
        next_attempt_at_ms: Some(5_000),
        run_status: Some(RunStatus::Pending),
        conflict_key: Some("rows".to_owned()),
        conflict_winning_task_id: Some("load".to_owned()),
        conflict_overridden_task_id: Some("transform".to_owned()),
        retried_task_ids: Some(vec!["load".to_owned(), "report".to_owned()]),
        concurrency_key: Some("acme".to_owned()),
        queue_position: Some(2),
        map_index: Some(4),
        map_size: Some(9),
    };
    run.events = vec![
        NewEvent {
            sequence: 1,
            event_type: EventType::TaskSkipped,
            details: full_details.clone(),
            created_at_ms: 1_001,
        },
        NewEvent {
            sequence: 2,
            event_type: EventType::TaskReady,
            details: EventDetails::default(),
            created_at_ms: 1_002,
        },
    ];

    let events = create(&store, &run).await;

    assert_eq!(events.len(), 2);
    assert_strictly_increasing(&cursors(&events));
    assert!(events[0].cursor >= 1);
    for (record, new) in events.iter().zip(&run.events) {
        assert_eq!(record.namespace, NS);
        assert_eq!(record.run_id, run.id);
        assert_eq!(record.workflow_name, "etl");
        assert_eq!(record.sequence, new.sequence);
        assert_eq!(record.event_type, new.event_type);
        assert_eq!(record.details, new.details);
        assert_eq!(record.created_at_ms, new.created_at_ms);
    }
    assert_stored(&database, &events).await;

    let mut by_position = run.tasks.clone();
    by_position.sort_by_key(|task| task.position);
    let detail = store.get_run(NS, &run.id).await.expect("reads");
    assert_eq!(
        detail,
        RunDetail {
            run: pending_record(&run),
            tasks: by_position,
            attempts: Vec::new(),
            deltas: Vec::new(),
            conflicts: Vec::new(),
        }
    );
    assert_eq!(
        store
            .find_run_by_idempotency_key(NS, "key-1")
            .await
            .expect("finds"),
        Some(pending_record(&run))
    );
    assert_eq!(
        store
            .find_run_by_idempotency_key(NS, "key-2")
            .await
            .expect("finds"),
        None
    );
}

#[tokio::test]
async fn taken_idempotency_key_returns_the_existing_run_and_writes_nothing() {
    let (database, store) = open().await;
    let first = new_run(NS, &run_id(1), "etl", Some("same-key"));
    let first_events = create(&store, &first).await;

    let mut second = new_run(NS, &run_id(2), "other-workflow", Some("same-key"));
    second
        .events
        .push(event(2, EventType::TaskReady, "load", 1_000));
    let outcome = store.create_run(&second).await.expect("answers");
    assert_eq!(
        outcome,
        CreateRunOutcome::IdempotencyKeyTaken(pending_record(&first))
    );
    let error = store
        .get_run(NS, &second.id)
        .await
        .expect_err("second run not written");
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");
    assert_eq!(
        stored_events(&database).await.len(),
        first_events.len(),
        "no events of the refused run"
    );

    // The refused run consumed no cursors either.
    let next = store
        .commit_changes(&[RunChanges {
            events: vec![event(2, EventType::TaskAssigned, "extract", 2_000)],
            ..changes_of(&first)
        }])
        .await
        .expect("commits");
    assert_eq!(next[0].cursor, first_events[0].cursor + 1);

    // Keys are per namespace, and runs without a key never collide.
    create(
        &store,
        &new_run("elsewhere", &run_id(3), "etl", Some("same-key")),
    )
    .await;
    create(&store, &new_run(NS, &run_id(4), "etl", None)).await;
    create(&store, &new_run(NS, &run_id(5), "etl", None)).await;
}

#[tokio::test]
async fn concurrent_creates_with_one_key_create_exactly_one_run() {
    let (_database, store) = open().await;
    let mut handles = Vec::new();
    for n in 1..=8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let run = new_run(NS, &run_id(n), "etl", Some("contended"));
            store.create_run(&run).await.expect("answers")
        }));
    }
    let mut created = Vec::new();
    let mut holders = Vec::new();
    for handle in handles {
        match handle.await.expect("task") {
            CreateRunOutcome::Created(events) => created.push(events[0].run_id.clone()),
            CreateRunOutcome::IdempotencyKeyTaken(existing) => holders.push(existing.id),
        }
    }
    assert_eq!(created.len(), 1, "exactly one run created");
    assert_eq!(holders.len(), 7);
    assert!(holders.iter().all(|holder| *holder == created[0]));
    let listed = store
        .list_runs(
            NS,
            &RunFilter {
                limit: 100,
                ..RunFilter::default()
            },
        )
        .await
        .expect("lists");
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn runs_created_together_read_back_like_runs_created_alone() {
    let (database, store) = open().await;
    // Enough runs (and three times as many tasks) to need several
    // multi-row statements.
    let runs: Vec<NewRun> = (1..=300)
        .map(|n| new_run(NS, &run_id(n), "etl", None))
        .collect();
    let events = store.create_runs(&runs).await.expect("creates");
    assert_eq!(events.len(), runs.len());
    assert_strictly_increasing(&cursors(&events));
    for (event, run) in events.iter().zip(&runs) {
        assert_eq!(event.run_id, run.id);
        assert_eq!(event.sequence, 1);
    }
    assert_stored(&database, &events).await;
    for run in [&runs[0], &runs[150], &runs[299]] {
        let detail = store.get_run(NS, &run.id).await.expect("reads");
        assert_eq!(detail.run, pending_record(run));
        let task_ids: Vec<&str> = detail
            .tasks
            .iter()
            .map(|task| task.task_id.as_str())
            .collect();
        assert_eq!(task_ids, ["extract", "transform", "load"]);
        assert_eq!(detail.tasks, run.tasks);
    }

    // A run with an idempotency key must go through create_run, which
    // checks the key; the whole call is refused and writes nothing.
    let keyed = [
        new_run(NS, &run_id(301), "etl", None),
        new_run(NS, &run_id(302), "etl", Some("key")),
    ];
    let error = store.create_runs(&keyed).await.expect_err("refused");
    assert!(
        matches!(&error, StoreError::Corrupt(what) if what.contains(&run_id(302))),
        "{error}"
    );
    for run in &keyed {
        assert!(matches!(
            store.get_run(NS, &run.id).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert_eq!(stored_events(&database).await.len(), runs.len());
}

#[tokio::test]
async fn committed_changes_read_back_through_get_run_up_to_the_final_context() {
    let (database, store) = open().await;
    let run = new_run(NS, &run_id(1), "etl", None);
    create(&store, &run).await;

    // Assignment: the run starts, extract gets its first attempt.
    let extract_assigned = TaskRecord {
        state: TaskState::Assigned,
        attempts_started: 1,
        current_attempt_id: Some("a-extract-1".to_owned()),
        updated_at_ms: 2_000,
        ..task("extract", 0)
    };
    let step1 = store
        .commit_changes(&[RunChanges {
            status: Some(RunStatusChange {
                started_at_ms: Some(2_000),
                ..status(RunStatus::Running)
            }),
            tasks: vec![extract_assigned.clone()],
            new_attempts: vec![attempt(&run, "a-extract-1", "extract", 1)],
            events: vec![
                event(2, EventType::RunStarted, "extract", 2_000),
                event(3, EventType::TaskAssigned, "extract", 2_000),
            ],
            ..changes_of(&run)
        }])
        .await
        .expect("step 1");
    assert_eq!(step1.len(), 2);
    let detail = store.get_run(NS, &run.id).await.expect("reads");
    assert_eq!(detail.run.status, RunStatus::Running);
    assert_eq!(detail.run.started_at_ms, Some(2_000));
    assert_eq!(detail.run.finished_at_ms, None);
    assert_eq!(detail.tasks[0], extract_assigned);
    assert_eq!(
        detail.attempts,
        [attempt(&run, "a-extract-1", "extract", 1)]
    );

    // The attempt starts.
    store
        .commit_changes(&[RunChanges {
            attempt_updates: vec![AttemptUpdate {
                id: "a-extract-1".to_owned(),
                state: AttemptState::Running,
                error: None,
                started_at_ms: Some(2_100),
                finished_at_ms: None,
            }],
            tasks: vec![TaskRecord {
                state: TaskState::Running,
                updated_at_ms: 2_100,
                ..extract_assigned.clone()
            }],
            events: vec![event(4, EventType::TaskStarted, "extract", 2_100)],
            ..changes_of(&run)
        }])
        .await
        .expect("step 2");

    // Everything finishes: a success with a delta, a failure, a lost attempt,
    // a conflict (reported twice), and the run's final status and context.
    let tasks = vec![
        TaskRecord {
            state: TaskState::Succeeded,
            current_attempt_id: None,
            updated_at_ms: 2_900,
            ..extract_assigned.clone()
        },
        TaskRecord {
            state: TaskState::Failed,
            attempts_started: 1,
            failures: 1,
            error: Some("exit 3".to_owned()),
            updated_at_ms: 2_950,
            ..task("transform", 1)
        },
        TaskRecord {
            state: TaskState::Skipped,
            skip_reason: Some(SkipReason::UpstreamFailed),
            attempts_started: 2,
            reassignments: 1,
            next_attempt_at_ms: Some(9_000),
            updated_at_ms: 2_960,
            ..task("load", 2)
        },
    ];
    let transform_attempt = AttemptRecord {
        state: AttemptState::Failed,
        error: Some("exit 3".to_owned()),
        started_at_ms: Some(2_200),
        finished_at_ms: Some(2_950),
        ..attempt(&run, "a-transform-1", "transform", 1)
    };
    let load_attempt_2 = AttemptRecord {
        state: AttemptState::Cancelled,
        deadline_at_ms: None,
        ..attempt(&run, "a-load-2", "load", 2)
    };
    let load_attempt_1 = AttemptRecord {
        state: AttemptState::Lost,
        ..attempt(&run, "a-load-1", "load", 1)
    };
    let delta = DeltaRecord {
        task_id: "extract".to_owned(),
        attempt_id: "a-extract-1".to_owned(),
        set_json: r#"{"rows":10,"nested":{"a":[1,2]}}"#.to_owned(),
        removed_keys: vec!["scratch".to_owned(), "tmp".to_owned()],
    };
    let conflict = ConflictRecord {
        key: "rows".to_owned(),
        winning_task_id: "extract".to_owned(),
        overridden_task_id: "transform".to_owned(),
    };
    let final_context = r#"{"region":"eu","n":1,"rows":10,"nested":{"a":[1,2]}}"#;
    store
        .commit_changes(&[RunChanges {
            // A status change without a start time keeps the recorded one.
            status: Some(RunStatusChange {
                finished_at_ms: Some(3_000),
                final_context_json: Some(final_context.to_owned()),
                ..status(RunStatus::Failed)
            }),
            tasks: tasks.clone(),
            // Inserted out of order: get_run orders by task, then number.
            new_attempts: vec![
                load_attempt_2.clone(),
                transform_attempt.clone(),
                load_attempt_1.clone(),
            ],
            attempt_updates: vec![AttemptUpdate {
                id: "a-extract-1".to_owned(),
                state: AttemptState::Succeeded,
                error: None,
                // Without a start time the recorded one stays.
                started_at_ms: None,
                finished_at_ms: Some(2_900),
            }],
            deltas: vec![delta.clone()],
            conflicts: vec![conflict.clone(), conflict.clone()],
            events: vec![
                event(5, EventType::TaskSucceeded, "extract", 2_900),
                event(6, EventType::RunFinished, "extract", 3_000),
            ],
            ..changes_of(&run)
        }])
        .await
        .expect("step 3");

    let detail = store.get_run(NS, &run.id).await.expect("reads");
    assert_eq!(
        detail,
        RunDetail {
            run: RunRecord {
                status: RunStatus::Failed,
                final_context_json: Some(final_context.to_owned()),
                started_at_ms: Some(2_000),
                finished_at_ms: Some(3_000),
                ..pending_record(&run)
            },
            tasks,
            attempts: vec![
                AttemptRecord {
                    state: AttemptState::Succeeded,
                    started_at_ms: Some(2_100),
                    finished_at_ms: Some(2_900),
                    ..attempt(&run, "a-extract-1", "extract", 1)
                },
                transform_attempt,
                load_attempt_1,
                load_attempt_2,
            ],
            deltas: vec![delta],
            conflicts: vec![conflict.clone()],
        }
    );

    // In a three-way race one task can be overridden by two winners: both
    // conflicts are kept.
    let second_winner = ConflictRecord {
        winning_task_id: "load".to_owned(),
        ..conflict.clone()
    };
    store
        .commit_changes(&[RunChanges {
            conflicts: vec![second_winner.clone()],
            ..changes_of(&run)
        }])
        .await
        .expect("a second winner over the same task is stored");
    let conflicts = store.get_run(NS, &run.id).await.expect("reads").conflicts;
    assert_eq!(conflicts.len(), 2);
    assert!(conflicts.contains(&conflict) && conflicts.contains(&second_winner));

    let sequences: Vec<i64> = stored_events(&database)
        .await
        .iter()
        .map(|row| row.4)
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn cursors_increase_across_commits_in_the_returned_order_with_run_sequences_stored() {
    let (database, store) = open().await;
    let a = new_run(NS, &run_id(1), "etl", None);
    let b = new_run("team-b", &run_id(2), "ml", None);
    let created_a = create(&store, &a).await;
    let created_b = create(&store, &b).await;
    assert!(created_a[0].cursor < created_b[0].cursor);

    let first = store
        .commit_changes(&[
            RunChanges {
                events: vec![
                    event(2, EventType::TaskAssigned, "extract", 2_000),
                    event(3, EventType::TaskStarted, "extract", 2_001),
                ],
                ..changes_of(&a)
            },
            RunChanges {
                events: vec![event(2, EventType::TaskAssigned, "extract", 2_002)],
                ..changes_of(&b)
            },
        ])
        .await
        .expect("first batch");
    let second = store
        .commit_changes(&[
            RunChanges {
                events: vec![event(3, EventType::TaskStarted, "extract", 3_000)],
                ..changes_of(&b)
            },
            RunChanges {
                events: vec![event(4, EventType::TaskSucceeded, "extract", 3_001)],
                ..changes_of(&a)
            },
        ])
        .await
        .expect("second batch");

    let order: Vec<(&str, u64)> = first
        .iter()
        .chain(&second)
        .map(|event| (event.run_id.as_str(), event.sequence))
        .collect();
    assert_eq!(
        order,
        [
            (a.id.as_str(), 2),
            (a.id.as_str(), 3),
            (b.id.as_str(), 2),
            (b.id.as_str(), 3),
            (a.id.as_str(), 4),
        ],
        "events come back in the order given"
    );
    let all: Vec<u64> = cursors(&created_a)
        .into_iter()
        .chain(cursors(&created_b))
        .chain(cursors(&first))
        .chain(cursors(&second))
        .collect();
    assert_strictly_increasing(&all);
    assert_eq!(first[2].namespace, "team-b");
    assert_eq!(first[2].workflow_name, "ml");
    assert_stored(&database, &first).await;
    assert_stored(&database, &second).await;

    let mut per_run: Vec<(String, i64)> = stored_events(&database)
        .await
        .into_iter()
        .map(|row| (row.2, row.4))
        .collect();
    per_run.sort();
    assert_eq!(
        per_run,
        [
            (a.id.clone(), 1),
            (a.id.clone(), 2),
            (a.id.clone(), 3),
            (a.id.clone(), 4),
            (b.id.clone(), 1),
            (b.id.clone(), 2),
            (b.id.clone(), 3),
        ]
    );
}

#[tokio::test]
async fn concurrent_commits_get_distinct_gapless_cursors_all_stored() {
    let (database, store) = open().await;
    let mut runs = Vec::new();
    for n in 1..=8 {
        let run = new_run(NS, &run_id(n), "etl", None);
        create(&store, &run).await;
        runs.push(run);
    }
    let before = stored_events(&database).await.len();
    let mut handles = Vec::new();
    for run in runs {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut returned = Vec::new();
            for sequence in 2..=4 {
                let batch = [RunChanges {
                    events: vec![
                        event(sequence * 10, EventType::TaskReady, "extract", 2_000),
                        event(sequence * 10 + 1, EventType::TaskReady, "load", 2_000),
                    ],
                    ..changes_of(&run)
                }];
                returned.extend(store.commit_changes(&batch).await.expect("commits"));
            }
            returned
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        let returned = handle.await.expect("task");
        // One run's commits are sequential, so its cursors follow its order.
        assert_strictly_increasing(&cursors(&returned));
        all.extend(returned);
    }
    assert_stored(&database, &all).await;
    let mut all = cursors(&all);
    all.sort_unstable();
    let first = all[0];
    let expected: Vec<u64> = (first..).take(8 * 3 * 2).collect();
    assert_eq!(all, expected, "distinct and without gaps");
    assert_eq!(stored_events(&database).await.len(), before + 48);
}

#[tokio::test]
async fn a_failing_batch_commits_none_of_its_changes() {
    let (database, store) = open().await;
    let a = new_run(NS, &run_id(1), "etl", None);
    let b = new_run(NS, &run_id(2), "etl", None);
    create(&store, &a).await;
    create(&store, &b).await;
    let delta = DeltaRecord {
        task_id: "extract".to_owned(),
        attempt_id: "b-extract-1".to_owned(),
        set_json: r#"{"k":1}"#.to_owned(),
        removed_keys: Vec::new(),
    };
    let committed = store
        .commit_changes(&[RunChanges {
            new_attempts: vec![attempt(&b, "b-extract-1", "extract", 1)],
            deltas: vec![delta.clone()],
            events: vec![event(2, EventType::TaskSucceeded, "extract", 2_000)],
            ..changes_of(&b)
        }])
        .await
        .expect("first delta");
    let a_before = store.get_run(NS, &a.id).await.expect("reads a");
    let b_before = store.get_run(NS, &b.id).await.expect("reads b");
    let events_before = stored_events(&database).await;

    // The first change is valid; the second repeats b's delta.
    let error = store
        .commit_changes(&[
            RunChanges {
                status: Some(RunStatusChange {
                    started_at_ms: Some(3_000),
                    ..status(RunStatus::Running)
                }),
                tasks: vec![TaskRecord {
                    state: TaskState::Assigned,
                    ..task("extract", 0)
                }],
                new_attempts: vec![attempt(&a, "a-extract-1", "extract", 1)],
                events: vec![event(2, EventType::TaskAssigned, "extract", 3_000)],
                ..changes_of(&a)
            },
            RunChanges {
                deltas: vec![DeltaRecord {
                    set_json: r#"{"k":2}"#.to_owned(),
                    ..delta
                }],
                events: vec![event(3, EventType::TaskSucceeded, "extract", 3_000)],
                ..changes_of(&b)
            },
        ])
        .await
        .expect_err("duplicate delta");
    assert!(matches!(error, StoreError::Database(_)), "{error}");

    // A change of a task the run does not have fails the same way.
    let error = store
        .commit_changes(&[RunChanges {
            status: Some(status(RunStatus::Running)),
            tasks: vec![task("no-such-task", 9)],
            events: vec![event(2, EventType::TaskReady, "no-such-task", 3_000)],
            ..changes_of(&a)
        }])
        .await
        .expect_err("unknown task");
    assert!(
        matches!(&error, StoreError::NotFound(what) if what.contains("no-such-task")),
        "{error}"
    );

    assert_eq!(store.get_run(NS, &a.id).await.expect("reads a"), a_before);
    assert_eq!(store.get_run(NS, &b.id).await.expect("reads b"), b_before);
    assert_eq!(stored_events(&database).await, events_before);

    // Nothing of the failed batches used up a cursor.
    let next = store
        .commit_changes(&[RunChanges {
            events: vec![event(2, EventType::TaskReady, "extract", 4_000)],
            ..changes_of(&a)
        }])
        .await
        .expect("commits after the failures");
    assert_eq!(next[0].cursor, committed[0].cursor + 1);
}

#[tokio::test]
async fn an_empty_batch_commits_nothing_and_returns_no_events() {
    let (database, store) = open().await;
    create(&store, &new_run(NS, &run_id(1), "etl", None)).await;
    let before = stored_events(&database).await;
    assert!(store.commit_changes(&[]).await.expect("commits").is_empty());
    assert_eq!(stored_events(&database).await, before);
}

#[tokio::test]
async fn list_runs_pages_newest_first_with_workflow_and_status_filters() {
    let (_database, store) = open().await;
    let workflows = ["etl", "ml", "etl", "etl", "ml"];
    let mut runs = Vec::new();
    // Created out of id order: the listing orders by id, not by insertion.
    for n in [3, 1, 5, 2, 4] {
        let run = new_run(NS, &run_id(n), workflows[n as usize - 1], None);
        create(&store, &run).await;
        runs.push(run);
    }
    runs.sort_by(|x, y| x.id.cmp(&y.id));
    create(&store, &new_run("elsewhere", &run_id(6), "etl", None)).await;
    store
        .commit_changes(&[
            RunChanges {
                status: Some(status(RunStatus::Running)),
                ..changes_of(&runs[2])
            },
            RunChanges {
                status: Some(status(RunStatus::Failed)),
                ..changes_of(&runs[3])
            },
        ])
        .await
        .expect("status changes");

    let list = |filter: RunFilter| {
        let store = store.clone();
        async move {
            store
                .list_runs(NS, &filter)
                .await
                .expect("lists")
                .into_iter()
                .map(|run| run.id)
                .collect::<Vec<String>>()
        }
    };
    let ids = |ns: &[u32]| ns.iter().map(|n| run_id(*n)).collect::<Vec<String>>();
    let page = |limit, before: Option<u32>| RunFilter {
        before_id: before.map(run_id),
        limit,
        ..RunFilter::default()
    };

    assert_eq!(list(page(10, None)).await, ids(&[5, 4, 3, 2, 1]));
    assert_eq!(list(page(2, None)).await, ids(&[5, 4]));
    assert_eq!(list(page(2, Some(4))).await, ids(&[3, 2]));
    assert_eq!(list(page(2, Some(2))).await, ids(&[1]));
    assert_eq!(list(page(2, Some(1))).await, ids(&[]));
    let etl = |limit, before: Option<u32>, status: Option<RunStatus>| RunFilter {
        workflow_name: Some("etl".to_owned()),
        status,
        ..page(limit, before)
    };
    assert_eq!(list(etl(10, None, None)).await, ids(&[4, 3, 1]));
    assert_eq!(list(etl(1, Some(4), None)).await, ids(&[3]));
    assert_eq!(
        list(etl(10, None, Some(RunStatus::Pending))).await,
        ids(&[1])
    );
    assert_eq!(
        list(RunFilter {
            status: Some(RunStatus::Running),
            ..page(10, None)
        })
        .await,
        ids(&[3])
    );
    assert_eq!(
        list(RunFilter {
            workflow_name: Some("ml".to_owned()),
            status: Some(RunStatus::Failed),
            ..page(10, None)
        })
        .await,
        ids(&[])
    );

    let records = store.list_runs(NS, &page(1, None)).await.expect("lists");
    assert_eq!(records, [pending_record(&runs[4])]);
    let elsewhere = store
        .list_runs("elsewhere", &page(10, None))
        .await
        .expect("lists");
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(elsewhere[0].id, run_id(6));
}

#[tokio::test]
async fn changes_naming_another_workflow_are_refused_and_write_nothing() {
    let (database, store) = open().await;
    let run = new_run(NS, &run_id(1), "etl", None);
    create(&store, &run).await;
    let before = store.get_run(NS, &run.id).await.expect("reads");
    let events_before = stored_events(&database).await;
    let error = store
        .commit_changes(&[RunChanges {
            workflow_name: "billing".to_owned(),
            tasks: vec![TaskRecord {
                state: TaskState::Ready,
                ..task("transform", 1)
            }],
            events: vec![event(2, EventType::TaskReady, "transform", 2_000)],
            ..changes_of(&run)
        }])
        .await
        .expect_err("wrong workflow");
    assert!(
        matches!(&error, StoreError::Corrupt(what) if what.contains("\"billing\"") && what.contains("\"etl\"")),
        "{error}"
    );
    assert_eq!(store.get_run(NS, &run.id).await.expect("reads"), before);
    assert_eq!(stored_events(&database).await, events_before);
}

#[tokio::test]
async fn runs_are_isolated_by_namespace() {
    let (database, store) = open().await;
    let run = new_run("team-a", &run_id(1), "etl", Some("key"));
    create(&store, &run).await;
    let before = store.get_run("team-a", &run.id).await.expect("reads");

    let error = store
        .get_run("team-b", &run.id)
        .await
        .expect_err("another namespace's run");
    assert!(
        matches!(&error, StoreError::NotFound(what) if *what == format!("run {:?}", run.id)),
        "{error}"
    );
    assert_eq!(
        store
            .find_run_by_idempotency_key("team-b", "key")
            .await
            .expect("finds"),
        None
    );
    assert!(
        store
            .list_runs(
                "team-b",
                &RunFilter {
                    limit: 10,
                    ..RunFilter::default()
                }
            )
            .await
            .expect("lists")
            .is_empty()
    );

    // Changes addressed to the run under another namespace are refused.
    let events_before = stored_events(&database).await;
    let error = store
        .commit_changes(&[RunChanges {
            namespace: "team-b".to_owned(),
            tasks: vec![TaskRecord {
                state: TaskState::Ready,
                ..task("extract", 0)
            }],
            events: vec![event(2, EventType::TaskReady, "extract", 2_000)],
            ..changes_of(&run)
        }])
        .await
        .expect_err("wrong namespace");
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");
    let error = store
        .commit_changes(&[RunChanges {
            run_id: run_id(99),
            events: vec![event(1, EventType::TaskReady, "extract", 2_000)],
            ..changes_of(&run)
        }])
        .await
        .expect_err("unknown run");
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");
    assert_eq!(
        store.get_run("team-a", &run.id).await.expect("reads"),
        before
    );
    assert_eq!(stored_events(&database).await, events_before);
}

#[tokio::test]
async fn integers_round_trip_at_the_limits_of_their_types() {
    let (database, store) = open().await;
    let mut run = new_run(NS, &run_id(1), "etl", None);
    run.created_at_ms = i64::MIN;
    let extreme = TaskRecord {
        task_id: "extreme".to_owned(),
        position: u32::MAX,
        state: TaskState::RetryScheduled,
        skip_reason: None,
        attempts_started: u32::MAX,
        failures: u32::MAX - 1,
        reassignments: u32::MAX - 2,
        current_attempt_id: None,
        next_attempt_at_ms: Some(i64::MAX),
        error: None,
        updated_at_ms: i64::MIN,
        map_index: None,
        map_size: None,
    };
    run.tasks.push(extreme.clone());
    run.events = vec![event(
        u64::try_from(i64::MAX).expect("fits"),
        EventType::TaskReady,
        "extreme",
        i64::MAX,
    )];
    let events = create(&store, &run).await;
    assert_eq!(events[0].sequence, u64::try_from(i64::MAX).expect("fits"));
    assert_stored(&database, &events).await;

    let extreme_attempt = AttemptRecord {
        number: u32::MAX,
        assigned_at_ms: i64::MIN,
        deadline_at_ms: Some(i64::MAX),
        started_at_ms: Some(i64::MIN),
        finished_at_ms: Some(0),
        ..attempt(&run, "a-extreme", "extreme", 0)
    };
    store
        .commit_changes(&[RunChanges {
            status: Some(RunStatusChange {
                started_at_ms: Some(i64::MIN),
                finished_at_ms: Some(i64::MAX),
                ..status(RunStatus::Running)
            }),
            new_attempts: vec![extreme_attempt.clone()],
            ..changes_of(&run)
        }])
        .await
        .expect("commits");

    let detail = store.get_run(NS, &run.id).await.expect("reads");
    assert_eq!(detail.run.created_at_ms, i64::MIN);
    assert_eq!(detail.run.started_at_ms, Some(i64::MIN));
    assert_eq!(detail.run.finished_at_ms, Some(i64::MAX));
    assert_eq!(detail.tasks.last(), Some(&extreme));
    assert_eq!(detail.attempts, [extreme_attempt]);

    // A sequence the column cannot hold is refused before anything is
    // written, on both paths.
    let mut too_far = new_run(NS, &run_id(2), "etl", None);
    too_far.events = vec![event(u64::MAX, EventType::TaskReady, "extract", 1)];
    let error = store.create_run(&too_far).await.expect_err("out of range");
    assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    assert!(matches!(
        store.get_run(NS, &too_far.id).await,
        Err(StoreError::NotFound(_))
    ));
    let error = store
        .commit_changes(&[RunChanges {
            status: Some(status(RunStatus::Cancelled)),
            events: vec![event(u64::MAX, EventType::RunFinished, "extract", 1)],
            ..changes_of(&run)
        }])
        .await
        .expect_err("out of range");
    assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    assert_eq!(
        store.get_run(NS, &run.id).await.expect("reads").run.status,
        RunStatus::Running
    );
}
