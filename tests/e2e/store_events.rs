//! The `Store` conformance suite for the event log and retention: reading
//! events by cursor or by run sequence with filters, and deleting expired
//! runs in batches with every row under them, against whichever backend the
//! environment selects.

use std::sync::Arc;

use sqlx::Connection;
use tributary_e2e::TestDatabase;
use tributary_server::engine::records::{
    AttemptState, ConflictRecord, DeltaRecord, EventDetails, EventFilter, EventPosition,
    EventQuery, EventRecord, EventType, NewEvent, NewRun, RunChanges, RunStatus, RunStatusChange,
    TaskRecord, TaskState,
};
use tributary_server::store::{Store, StoreError};

use crate::store_conformance::open;
use crate::store_runs::{NS, attempt, changes_of, create, event, new_run, run_id, status};

fn query(position: EventPosition, filter: EventFilter, limit: u32) -> EventQuery {
    EventQuery {
        position,
        filter,
        limit,
    }
}

fn everything_after(cursor: u64) -> EventQuery {
    query(
        EventPosition::AfterCursor(cursor),
        EventFilter::default(),
        1_000,
    )
}

async fn list(store: &Arc<dyn Store>, namespace: &str, query: &EventQuery) -> Vec<EventRecord> {
    store.list_events(namespace, query).await.expect("lists")
}

fn cursors(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|event| event.cursor).collect()
}

/// A run of workflow `workflow` whose creation writes RUN_STARTED and a
/// TASK_READY for `extract`.
fn started_run(namespace: &str, n: u32, workflow: &str) -> NewRun {
    NewRun {
        events: vec![
            NewEvent {
                sequence: 1,
                event_type: EventType::RunStarted,
                details: EventDetails::default(),
                created_at_ms: 1_000,
            },
            event(2, EventType::TaskReady, "extract", 1_000),
        ],
        ..new_run(namespace, &run_id(n), workflow, None)
    }
}

#[tokio::test]
async fn list_events_reads_by_cursor_or_run_sequence_with_filters_and_pages() {
    let (_database, store) = open().await;
    let etl = started_run(NS, 1, "etl");
    let report = started_run(NS, 2, "report");
    let elsewhere = started_run("other", 3, "etl");
    let mut written = Vec::new();
    for run in [&etl, &report, &elsewhere] {
        written.extend(create(&store, run).await);
    }
    // One batch interleaving two runs, as the coordinator commits them.
    written.extend(
        store
            .commit_changes(&[
                RunChanges {
                    events: vec![event(3, EventType::TaskAssigned, "extract", 2_000)],
                    ..changes_of(&report)
                },
                RunChanges {
                    events: vec![
                        event(3, EventType::TaskAssigned, "extract", 2_000),
                        NewEvent {
                            sequence: 4,
                            event_type: EventType::TaskFailed,
                            details: EventDetails {
                                task_id: Some("extract".to_owned()),
                                attempt_id: Some("a-1".to_owned()),
                                attempt_number: Some(1),
                                executor_id: Some("executor-1".to_owned()),
                                error: Some("exit 3".to_owned()),
                                ..EventDetails::default()
                            },
                            created_at_ms: 2_500,
                        },
                    ],
                    ..changes_of(&etl)
                },
            ])
            .await
            .expect("commits"),
    );
    let of_namespace: Vec<EventRecord> = written
        .iter()
        .filter(|event| event.namespace == NS)
        .cloned()
        .collect();

    // Everything, in cursor order, exactly as written.
    let all = list(&store, NS, &everything_after(0)).await;
    assert_eq!(all, of_namespace);
    assert!(cursors(&all).windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(
        list(&store, "other", &everything_after(0)).await,
        written
            .iter()
            .filter(|event| event.namespace == "other")
            .cloned()
            .collect::<Vec<_>>()
    );

    // Pages of two, each starting after the last cursor read, add up to the
    // whole log.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = list(
            &store,
            NS,
            &query(EventPosition::AfterCursor(after), EventFilter::default(), 2),
        )
        .await;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.cursor;
        paged.extend(page);
    }
    assert_eq!(paged, all);

    let filtered = |filter: EventFilter| {
        let store = store.clone();
        async move {
            list(
                &store,
                NS,
                &query(EventPosition::AfterCursor(0), filter, 1_000),
            )
            .await
        }
    };
    let expect = |keep: &dyn Fn(&EventRecord) -> bool| -> Vec<EventRecord> {
        all.iter().filter(|event| keep(event)).cloned().collect()
    };
    assert_eq!(
        filtered(EventFilter {
            workflow_names: vec!["report".to_owned()],
            ..EventFilter::default()
        })
        .await,
        expect(&|event| event.workflow_name == "report")
    );
    assert_eq!(
        filtered(EventFilter {
            run_ids: vec![etl.id.clone(), "no-such-run".to_owned()],
            ..EventFilter::default()
        })
        .await,
        expect(&|event| event.run_id == etl.id)
    );
    assert_eq!(
        filtered(EventFilter {
            types: vec![EventType::TaskAssigned, EventType::TaskFailed],
            ..EventFilter::default()
        })
        .await,
        expect(&|event| matches!(
            event.event_type,
            EventType::TaskAssigned | EventType::TaskFailed
        ))
    );
    let combined = EventFilter {
        workflow_names: vec!["etl".to_owned(), "report".to_owned()],
        run_ids: vec![etl.id.clone(), report.id.clone()],
        types: vec![EventType::TaskAssigned],
    };
    let expected = expect(&|event| event.event_type == EventType::TaskAssigned);
    assert_eq!(expected.len(), 2);
    assert_eq!(filtered(combined.clone()).await, expected);
    assert!(expected.iter().all(|event| combined.matches(event)));

    // One run by sequence: after 1, in sequence order; not from another
    // namespace.
    let of_etl = list(
        &store,
        NS,
        &query(
            EventPosition::AfterSequence {
                run_id: etl.id.clone(),
                sequence: 1,
            },
            EventFilter::default(),
            1_000,
        ),
    )
    .await;
    let sequences: Vec<u64> = of_etl.iter().map(|event| event.sequence).collect();
    assert_eq!(sequences, [2, 3, 4]);
    assert_eq!(of_etl, expect(&|event| event.run_id == etl.id)[1..]);
    let hidden = list(
        &store,
        "other",
        &query(
            EventPosition::AfterSequence {
                run_id: etl.id.clone(),
                sequence: 0,
            },
            EventFilter::default(),
            1_000,
        ),
    )
    .await;
    assert!(hidden.is_empty());
    assert!(
        list(&store, NS, &everything_after(u64::MAX))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn run_status_reads_the_status_and_misses_other_namespaces() {
    let (_database, store) = open().await;
    let run = started_run(NS, 1, "etl");
    create(&store, &run).await;
    assert_eq!(
        store.run_status(NS, &run.id).await.expect("exists"),
        RunStatus::Pending
    );
    for (namespace, id) in [("other", run.id.as_str()), (NS, "no-such-run")] {
        let error = store.run_status(namespace, id).await.expect_err("missing");
        assert!(matches!(error, StoreError::NotFound(_)), "{error}");
    }
}

/// The tables that hold a run's rows, and the column naming the run.
const RUN_TABLES: [(&str, &str); 6] = [
    ("runs", "id"),
    ("task_runs", "run_id"),
    ("attempts", "run_id"),
    ("context_deltas", "run_id"),
    ("context_conflicts", "run_id"),
    ("events", "run_id"),
];

/// How many rows each of [`RUN_TABLES`] holds for a run, read with SQL so
/// that nothing the store's own reads skip goes unnoticed.
async fn row_counts(database: &TestDatabase, run_id: &str) -> Vec<i64> {
    let mut counts = Vec::new();
    for (table, column) in RUN_TABLES {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        let count: i64 = if database.is_postgres() {
            let mut connection = sqlx::PgConnection::connect(database.url())
                .await
                .expect("connects");
            let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(run_id)
                .fetch_one(&mut connection)
                .await
                .expect("counts");
            let _ = connection.close().await;
            count
        } else {
            let mut connection = sqlx::SqliteConnection::connect(database.url())
                .await
                .expect("connects");
            let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(run_id)
                .fetch_one(&mut connection)
                .await
                .expect("counts");
            let _ = connection.close().await;
            count
        };
        counts.push(count);
    }
    counts
}

/// Writes a run with a row in every table under it: an attempt of
/// `extract` with its delta, a conflict and events; then, if `finish` is
/// given, the run's terminal status at that time.
async fn run_with_every_row(
    store: &Arc<dyn Store>,
    namespace: &str,
    n: u32,
    finish: Option<(RunStatus, i64)>,
) -> NewRun {
    let run = started_run(namespace, n, "etl");
    create(store, &run).await;
    let attempt_id = format!("attempt-of-run-{n}");
    let extract = TaskRecord {
        state: TaskState::Succeeded,
        attempts_started: 1,
        updated_at_ms: 2_000,
        ..crate::store_runs::task("extract", 0)
    };
    let mut changes = RunChanges {
        status: Some(RunStatusChange {
            started_at_ms: Some(1_500),
            ..status(RunStatus::Running)
        }),
        tasks: vec![extract],
        new_attempts: vec![tributary_server::engine::records::AttemptRecord {
            state: AttemptState::Succeeded,
            finished_at_ms: Some(2_000),
            ..attempt(&run, &attempt_id, "extract", 1)
        }],
        deltas: vec![DeltaRecord {
            task_id: "extract".to_owned(),
            attempt_id: attempt_id.clone(),
            set_json: r#"{"rows":3}"#.to_owned(),
            removed_keys: Vec::new(),
        }],
        conflicts: vec![ConflictRecord {
            key: "rows".to_owned(),
            winning_task_id: "transform".to_owned(),
            overridden_task_id: "extract".to_owned(),
        }],
        events: vec![
            event(3, EventType::TaskAssigned, "extract", 1_500),
            event(4, EventType::TaskSucceeded, "extract", 2_000),
        ],
        ..changes_of(&run)
    };
    if let Some((final_status, finished_at_ms)) = finish {
        changes.status = Some(RunStatusChange {
            status: final_status,
            started_at_ms: Some(1_500),
            finished_at_ms: Some(finished_at_ms),
            final_context_json: Some(r#"{"rows":3}"#.to_owned()),
        });
        changes.events.push(NewEvent {
            sequence: 5,
            event_type: EventType::RunFinished,
            details: EventDetails {
                run_status: Some(final_status),
                ..EventDetails::default()
            },
            created_at_ms: finished_at_ms,
        });
    }
    store.commit_changes(&[changes]).await.expect("commits");
    run
}

#[tokio::test]
async fn expired_runs_are_deleted_oldest_first_in_batches_with_all_their_rows() {
    let (database, store) = open().await;
    let expired = [
        run_with_every_row(&store, NS, 1, Some((RunStatus::Succeeded, 1_000))).await,
        run_with_every_row(&store, "other", 2, Some((RunStatus::Failed, 2_000))).await,
        run_with_every_row(&store, NS, 3, Some((RunStatus::Cancelled, 3_000))).await,
    ];
    let kept = [
        // Finished after the cut-off.
        run_with_every_row(&store, NS, 4, Some((RunStatus::Succeeded, 9_000))).await,
        // Started long ago and still running: never deleted.
        run_with_every_row(&store, NS, 5, None).await,
        // Never started.
        started_run(NS, 6, "etl"),
    ];
    create(&store, &kept[2]).await;
    for run in &expired[..1] {
        assert!(
            row_counts(&database, &run.id)
                .await
                .iter()
                .all(|count| *count > 0)
        );
    }
    let mut kept_counts = Vec::new();
    for run in &kept {
        kept_counts.push(row_counts(&database, &run.id).await);
    }
    assert!(
        kept_counts[0].iter().all(|count| *count > 0),
        "every table has rows"
    );

    // Batches of two: the oldest two, then the last one, then nothing.
    let cut_off = 5_000;
    assert_eq!(
        store
            .delete_finished_runs(cut_off, 2)
            .await
            .expect("deletes"),
        2
    );
    assert_eq!(row_counts(&database, &expired[0].id).await, [0; 6]);
    assert_eq!(row_counts(&database, &expired[1].id).await, [0; 6]);
    assert!(
        row_counts(&database, &expired[2].id)
            .await
            .iter()
            .all(|count| *count > 0)
    );
    assert_eq!(
        store
            .delete_finished_runs(cut_off, 2)
            .await
            .expect("deletes"),
        1
    );
    assert_eq!(
        store
            .delete_finished_runs(cut_off, 2)
            .await
            .expect("deletes"),
        0
    );

    for run in &expired {
        assert_eq!(row_counts(&database, &run.id).await, [0; 6], "{}", run.id);
        let error = store
            .get_run(&run.namespace, &run.id)
            .await
            .expect_err("gone");
        assert!(matches!(error, StoreError::NotFound(_)), "{error}");
    }
    for (run, counts) in kept.iter().zip(&kept_counts) {
        assert_eq!(&row_counts(&database, &run.id).await, counts, "{}", run.id);
    }
    let remaining = list(&store, NS, &everything_after(0)).await;
    assert!(
        remaining
            .iter()
            .all(|event| kept.iter().any(|run| run.id == event.run_id))
    );
}
