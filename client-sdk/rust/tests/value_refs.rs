//! Context values by reference through the SDK's worker, against the real
//! server started in-process: references resolve from the worker's cache,
//! values it evicted are fetched, and a worker without a cache gets whole
//! contexts. The server's per-connection counters (`ListExecutors`) show
//! which way each value went.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use tributary::{Client, RunStatus, Task, TaskError, Worker, Workflow};
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;
use tributary_proto::v1::{ExecutorInfo, ListExecutorsRequest};

use common::{TestServer, within};

/// A chain a → b → c: a writes `x` and `y`, b checks them and writes `z`,
/// c checks all three. A handler that reads something else fails the run.
fn chain(name: &str, x: &str, y: &str) -> Workflow {
    let (x, y) = (x.to_owned(), y.to_owned());
    let (x_b, y_b, x_c, y_c) = (x.clone(), y.clone(), x.clone(), y.clone());
    let expect = |context: &tributary::Context<Value>, key: &str, want: &str| {
        let got: String = context.get(key)?;
        if got == want {
            Ok(())
        } else {
            Err(TaskError::fatal(format!("{key} read wrong: {got:?}")))
        }
    };
    Workflow::new(name)
        .task(Task::new("a", move |context| {
            let (x, y) = (x.clone(), y.clone());
            Box::pin(async move {
                context.insert("x", x)?;
                context.insert("y", y)?;
                Ok(())
            })
        }))
        .task(
            Task::new("b", move |context| {
                let (x, y) = (x_b.clone(), y_b.clone());
                Box::pin(async move {
                    expect(context, "x", &x)?;
                    expect(context, "y", &y)?;
                    context.insert("z", "from b")?;
                    Ok(())
                })
            })
            .dependencies(["a"]),
        )
        .task(
            Task::new("c", move |context| {
                let (x, y) = (x_c.clone(), y_c.clone());
                Box::pin(async move {
                    expect(context, "x", &x)?;
                    expect(context, "y", &y)?;
                    expect(context, "z", "from b")?;
                    Ok(())
                })
            })
            .dependencies(["b"]),
        )
}

/// Runs the chain on a worker with this cache size; returns what the
/// server counted for the worker's connection.
async fn run_chain(workflow: &Workflow, value_cache_bytes: Option<u64>) -> ExecutorInfo {
    let server = TestServer::start().await;
    let mut builder = Worker::builder(server.url()).workflow(workflow);
    if let Some(bytes) = value_cache_bytes {
        builder = builder.value_cache_bytes(bytes);
    }
    let worker = builder.start().expect("worker starts");
    let client = Client::connect(server.url()).await.expect("connects");
    client.register_workflow(workflow).await.expect("registers");
    let started = client
        .start_run(workflow.name(), json!({}))
        .await
        .expect("starts");
    let run = within("the run", client.wait(&started.run_id))
        .await
        .expect("waits");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let executor_id = worker.status().borrow().executor_id.clone();
    let channel = tonic::transport::Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let info = ExecutorServiceClient::new(channel)
        .list_executors(ListExecutorsRequest {})
        .await
        .expect("lists")
        .into_inner()
        .executors
        .into_iter()
        .find(|executor| executor.executor_id == executor_id)
        .expect("the worker is connected");
    worker.shutdown(Duration::from_secs(10)).await;
    info
}

#[tokio::test]
async fn the_worker_resolves_references_to_values_it_produced() {
    let big = "v".repeat(100_000);
    let workflow = chain("refs", &big, "small");
    let info = run_chain(&workflow, None).await;
    // b names x and y; c names x, y and z. Only two empty objects (b's
    // and c's inputs) and a's empty input went by value.
    assert_eq!(info.values_sent_by_reference, 5);
    assert_eq!(info.context_bytes_sent, 6);
}

#[tokio::test]
async fn a_worker_with_a_tiny_cache_fetches_what_it_evicted() {
    // The server counts a value's text only (402 bytes each here, 804 for
    // both, within 1,000), so it names both in b's Assign; the worker also
    // counts each entry's name and bookkeeping, so it kept only the later
    // one and fetches `x`.
    let x = "x".repeat(400);
    let y = "y".repeat(400);
    let workflow = chain("tiny", &x, &y);
    let info = run_chain(&workflow, Some(1_000)).await;
    assert_eq!(info.values_sent_by_reference, 5);
    assert!(
        info.context_bytes_sent >= 6 + 402,
        "x was fetched at least once: {info:?}"
    );
}

#[tokio::test]
async fn a_worker_without_a_cache_gets_whole_contexts() {
    let big = "v".repeat(10_000);
    let workflow = chain("whole", &big, "small");
    let info = run_chain(&workflow, Some(0)).await;
    assert_eq!(info.values_sent_by_reference, 0);
    assert!(info.context_bytes_sent > 2 * 10_000, "{info:?}");
}
