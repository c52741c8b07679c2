//! End-to-end tests of `Client::watch` and `Client::wait` against the real
//! server started in-process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamExt;
use tributary::{Client, RunEventKind, RunStatus, Task, Worker, Workflow};

use common::{TestServer, within};

/// A one-task workflow whose task waits for a permit, and reports its start.
fn gated_workflow(gate: Arc<Semaphore>, started: mpsc::UnboundedSender<()>) -> Workflow {
    Workflow::new("gated").task(Task::new("wait_for_gate", move |context| {
        let (gate, started) = (gate.clone(), started.clone());
        Box::pin(async move {
            let _ = started.send(());
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            context.insert("opened", true)?;
            Ok(())
        })
    }))
}

/// A run of the gated workflow whose one attempt has started and waits for
/// `gate`.
struct GatedRun {
    gate: Arc<Semaphore>,
    worker: Worker,
    client: Client,
    run_id: String,
}

impl GatedRun {
    async fn start(server: &TestServer) -> GatedRun {
        let gate = Arc::new(Semaphore::new(0));
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let workflow = gated_workflow(gate.clone(), started_tx);
        let worker = Worker::builder(server.url())
            .workflow(&workflow)
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .start()
            .expect("starts");
        let client = Client::connect(server.url()).await.expect("connects");
        client
            .register_workflow(&workflow)
            .await
            .expect("registers");
        let run_id = client
            .start_run("gated", json!({}))
            .await
            .expect("starts")
            .run_id;
        within("the attempt", started.recv())
            .await
            .expect("started");
        GatedRun {
            gate,
            worker,
            client,
            run_id,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_then_follows_live_and_ends_with_the_finish() {
    let server = TestServer::start().await;
    let GatedRun {
        gate,
        worker,
        client,
        run_id,
    } = GatedRun::start(&server).await;

    let mut events = client.watch(&run_id, 0).await.expect("watch");
    let mut seen = Vec::new();
    // What happened before the watch is replayed...
    while seen.last() != Some(&RunEventKind::TaskStarted) {
        let event = within("an event", events.next())
            .await
            .expect("stream open")
            .expect("event");
        assert_eq!(event.sequence, seen.len() as u64 + 1, "no gap: {event:?}");
        assert_eq!(event.run_id, run_id);
        assert_eq!(event.workflow_name, "gated");
        if event.kind == RunEventKind::TaskAssigned {
            assert_eq!(event.task_id, "wait_for_gate");
            assert_eq!(event.attempt_number, 1);
            assert!(!event.attempt_id.is_empty() && !event.executor_id.is_empty());
        }
        seen.push(event.kind);
    }
    assert_eq!(
        seen,
        [
            RunEventKind::RunStarted,
            RunEventKind::TaskReady,
            RunEventKind::TaskAssigned,
            RunEventKind::TaskStarted
        ]
    );
    // ...and what happens after it arrives live, up to the finish.
    gate.add_permits(1);
    let rest: Vec<_> = within("the rest", events.collect::<Vec<_>>()).await;
    let rest: Vec<_> = rest
        .into_iter()
        .map(|event| event.expect("event"))
        .collect();
    let kinds: Vec<_> = rest.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [RunEventKind::TaskSucceeded, RunEventKind::RunFinished]
    );
    assert_eq!(rest[1].run_status, Some(RunStatus::Succeeded));
    assert_eq!(rest[1].sequence, 6);

    // A watch from a sequence replays only what follows it.
    let tail: Vec<_> = within(
        "the tail",
        client
            .watch(&run_id, 4)
            .await
            .expect("watch")
            .collect::<Vec<_>>(),
    )
    .await;
    let tail: Vec<u64> = tail
        .into_iter()
        .map(|e| e.expect("event").sequence)
        .collect();
    assert_eq!(tail, [5, 6]);

    let error = match client
        .watch("0190c0de-0000-7000-8000-000000000000", 0)
        .await
    {
        Ok(mut stream) => stream
            .next()
            .await
            .expect("an item")
            .expect_err("unknown run"),
        Err(error) => error,
    };
    assert_eq!(error.code(), Some(tonic::Code::NotFound), "{error}");
    worker.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_the_run_across_a_server_restart() {
    let mut server = TestServer::start_with(|config| {
        config.heartbeat_interval_ms = 100;
        config.lease_timeout_ms = 5_000;
    })
    .await;
    let GatedRun {
        gate,
        worker,
        client,
        run_id,
    } = GatedRun::start(&server).await;

    let waiting = tokio::spawn({
        let (client, run_id) = (client.clone(), run_id.clone());
        async move { client.wait(&run_id).await }
    });
    server.stop().await;
    server.start_again().await;
    gate.add_permits(1);
    let run = within("the wait", waiting)
        .await
        .expect("joins")
        .expect("the run");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.context, json!({"opened": true}));
    worker.shutdown(Duration::from_secs(10)).await;
}
