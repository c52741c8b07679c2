//! The `Store` conformance suite for QUEUED runs (concurrency keys): a queued
//! run is its row and its RUN_QUEUED event only; its position in its key's
//! queue is computed when read; it starts (row PENDING, tasks and events
//! written) or is cancelled only while still QUEUED; and every queued run is
//! listed for recovery, in queue order.

use tributary_server::engine::records::{
    EventDetails, EventType, NewEvent, NewRun, RunFilter, RunStatus,
};
use tributary_server::store::Store;

use crate::store_conformance::open;
use crate::store_runs::{NS, event, new_run, run_id};

fn queued(n: u32, key: &str) -> NewRun {
    NewRun {
        status: RunStatus::Queued,
        concurrency_key: Some(key.to_owned()),
        tasks: Vec::new(),
        events: vec![NewEvent {
            sequence: 1,
            event_type: EventType::RunQueued,
            details: EventDetails {
                concurrency_key: Some(key.to_owned()),
                queue_position: Some(1),
                ..EventDetails::default()
            },
            created_at_ms: 1_000,
        }],
        ..new_run(NS, &run_id(n), "sync", None)
    }
}

async fn position(store: &dyn Store, n: u32) -> (RunStatus, Option<u32>) {
    let detail = store.get_run(NS, &run_id(n)).await.expect("reads");
    (detail.run.status, detail.run.queue_position)
}

#[tokio::test]
async fn queued_runs_have_positions_per_key_and_start_or_cancel_only_while_queued() {
    let (_database, store) = open().await;
    let mut active = new_run(NS, &run_id(1), "sync", None);
    active.concurrency_key = Some("acme".to_owned());
    store.create_runs(&[active]).await.expect("creates");
    store
        .create_runs(&[queued(2, "acme"), queued(3, "other"), queued(4, "acme")])
        .await
        .expect("creates");
    assert_eq!(position(&*store, 1).await, (RunStatus::Pending, None));
    assert_eq!(position(&*store, 2).await, (RunStatus::Queued, Some(1)));
    assert_eq!(position(&*store, 3).await, (RunStatus::Queued, Some(1)));
    assert_eq!(position(&*store, 4).await, (RunStatus::Queued, Some(2)));
    let detail = store.get_run(NS, &run_id(2)).await.expect("reads");
    assert!(detail.tasks.is_empty(), "a queued run has no tasks yet");
    assert_eq!(detail.run.concurrency_key.as_deref(), Some("acme"));

    let listed = store
        .list_runs(
            NS,
            &RunFilter {
                status: Some(RunStatus::Queued),
                limit: 10,
                ..RunFilter::default()
            },
        )
        .await
        .expect("lists");
    let positions: Vec<_> = listed
        .iter()
        .map(|run| (run.id.clone(), run.queue_position))
        .collect();
    assert_eq!(
        positions,
        [
            (run_id(4), Some(2)),
            (run_id(3), Some(1)),
            (run_id(2), Some(1))
        ]
    );
    let recovered: Vec<_> = store
        .load_queued_runs()
        .await
        .expect("loads")
        .into_iter()
        .map(|run| run.id)
        .collect();
    assert_eq!(recovered, [run_id(2), run_id(3), run_id(4)]);

    // The head starts: PENDING, with its tasks and its events after RUN_QUEUED.
    let mut started = new_run(NS, &run_id(2), "sync", None);
    started.events = vec![event(2, EventType::TaskReady, "extract", 2_000)];
    let events = store
        .start_queued_run(&started)
        .await
        .expect("answers")
        .expect("was queued");
    assert_eq!(events.len(), 1);
    assert_eq!(position(&*store, 2).await, (RunStatus::Pending, None));
    assert_eq!(
        store
            .get_run(NS, &run_id(2))
            .await
            .expect("reads")
            .tasks
            .len(),
        3
    );
    assert_eq!(position(&*store, 4).await, (RunStatus::Queued, Some(1)));
    assert_eq!(
        store.start_queued_run(&started).await.expect("answers"),
        None,
        "a run no longer queued is not started twice"
    );

    let mut cancelled = new_run(NS, &run_id(4), "sync", None);
    cancelled.tasks = Vec::new();
    cancelled.events = vec![NewEvent {
        sequence: 2,
        event_type: EventType::RunFinished,
        details: EventDetails {
            run_status: Some(RunStatus::Cancelled),
            ..EventDetails::default()
        },
        created_at_ms: 3_000,
    }];
    assert!(
        store
            .cancel_queued_run(&cancelled, 3_000)
            .await
            .expect("answers")
            .is_some()
    );
    let detail = store.get_run(NS, &run_id(4)).await.expect("reads");
    assert_eq!(detail.run.status, RunStatus::Cancelled);
    assert_eq!(detail.run.finished_at_ms, Some(3_000));
    assert_eq!(detail.run.queue_position, None);
    assert_eq!(
        store
            .cancel_queued_run(&cancelled, 3_000)
            .await
            .expect("answers"),
        None
    );
    assert_eq!(
        store.start_queued_run(&started).await.expect("answers"),
        None
    );
    let recovered: Vec<_> = store
        .load_queued_runs()
        .await
        .expect("loads")
        .into_iter()
        .map(|run| run.id)
        .collect();
    assert_eq!(recovered, [run_id(3)]);
}
