//! End-to-end tests of the SDK against the real server started in-process:
//! the seed's workflow written with `#[task]`, real overlap, cancellation,
//! panics, a worker replaced mid-run, and a server restart.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore, mpsc};
use tributary::{Client, Context, RunStatus, Task, TaskError, TaskState, Worker, Workflow, task};

use tributary_proto::v1::ListExecutorsRequest;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

use common::{TestServer, within};

// ---------------------------------------------------------------------------
// The seed's parallel-processing workflow, written as in the tutorial.

#[derive(Debug, Serialize, Deserialize, Clone)]
struct Product {
    id: u32,
    category: String,
    price: f64,
    stock: u32,
}

#[derive(Debug, Serialize, Deserialize, Default, PartialEq)]
struct CategoryStats {
    total_value: f64,
    total_stock: u32,
    product_count: u32,
}

/// The three partitions meet here: the run can only finish if all three
/// run at the same time.
static RENDEZVOUS: LazyLock<Barrier> = LazyLock::new(|| Barrier::new(3));

#[task(id = "generate_data", dependencies = [], retry_attempts = 2)]
async fn generate_data(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let total_products: u32 = context.get("total_products")?;
    let products = (1..=total_products)
        .map(|id| Product {
            id,
            category: format!("Category {}", (id % 3) + 1),
            price: f64::from(id),
            stock: id * 10,
        })
        .collect::<Vec<_>>();
    context.insert("products", json!(products))?;
    Ok(())
}

#[task(id = "partition_data", dependencies = ["generate_data"], retry_attempts = 2)]
async fn partition_data(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let products: Vec<Product> = context.get("products")?;
    let chunk_size = products.len() / 3;
    let (chunk1, remainder) = products.split_at(chunk_size);
    let (chunk2, chunk3) = remainder.split_at(chunk_size);
    context.insert("partition_1", json!(chunk1.to_vec()))?;
    context.insert("partition_2", json!(chunk2.to_vec()))?;
    context.insert("partition_3", json!(chunk3.to_vec()))?;
    Ok(())
}

async fn process(context: &mut Context<Value>, partition: u32) -> Result<(), TaskError> {
    let products: Vec<Product> = context.get(&format!("partition_{partition}"))?;
    RENDEZVOUS.wait().await;
    let mut stats: BTreeMap<String, CategoryStats> = BTreeMap::new();
    for product in products {
        let entry = stats.entry(product.category.clone()).or_default();
        entry.total_value += product.price * f64::from(product.stock);
        entry.total_stock += product.stock;
        entry.product_count += 1;
    }
    context.insert(format!("stats_{partition}"), json!(stats))?;
    Ok(())
}

#[task(
    id = "process_partition_1",
    dependencies = ["partition_data"],
    retry_attempts = 3,
    retry_delay_ms = 1000
)]
async fn process_partition_1(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    process(context, 1).await
}

#[task(
    id = "process_partition_2",
    dependencies = ["partition_data"],
    retry_attempts = 3,
    retry_delay_ms = 1000
)]
async fn process_partition_2(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    process(context, 2).await
}

#[task(
    id = "process_partition_3",
    dependencies = ["partition_data"],
    retry_attempts = 3,
    retry_delay_ms = 1000
)]
async fn process_partition_3(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    process(context, 3).await
}

#[task(
    id = "combine_results",
    dependencies = ["process_partition_1", "process_partition_2", "process_partition_3"]
)]
async fn combine_results(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let mut combined: BTreeMap<String, CategoryStats> = BTreeMap::new();
    for partition in 1..=3 {
        let stats: BTreeMap<String, CategoryStats> = context.get(&format!("stats_{partition}"))?;
        for (category, stats) in stats {
            let entry = combined.entry(category).or_default();
            entry.total_value += stats.total_value;
            entry.total_stock += stats.total_stock;
            entry.product_count += stats.product_count;
        }
    }
    // Integers beyond 2^53 from the input come through unchanged.
    let big: u64 = context.get("big")?;
    context.insert("big_plus_one", json!(big + 1))?;
    context.insert("final_stats", json!(combined))?;
    for partition in 1..=3 {
        context.remove(&format!("partition_{partition}"));
    }
    context.update("total_products", json!(0))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seed_workflow_written_with_task_runs_its_partitions_at_once() {
    let server = TestServer::start().await;
    let workflow = tributary::workflow!(
        "parallel-processing",
        [
            generate_data,
            partition_data,
            process_partition_1,
            process_partition_2,
            process_partition_3,
            combine_results,
        ]
    );
    let worker = Worker::builder(server.url())
        .capacity(4)
        .workflow(&workflow)
        .start()
        .expect("worker starts");
    let client = Client::connect(server.url())
        .await
        .expect("client connects");
    let registered = client
        .register_workflow(&workflow)
        .await
        .expect("registers");
    assert!(registered.created);
    assert_eq!(registered.name, "parallel-processing");

    let big: u64 = (1 << 53) + 1;
    let started = client
        .start_run(
            "parallel-processing",
            json!({"total_products": 30, "big": big, "max": u64::MAX}),
        )
        .await
        .expect("starts");
    let run = within("the run", client.wait(&started.run_id))
        .await
        .expect("run");

    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    for task in &run.tasks {
        assert_eq!(task.state, TaskState::Succeeded, "{task:#?}");
        assert_eq!(task.attempts.len(), 1, "{task:#?}");
    }
    // Every product lands in exactly one category, once.
    let stats: BTreeMap<String, CategoryStats> =
        serde_json::from_value(run.context["final_stats"].clone()).expect("stats");
    assert_eq!(stats.values().map(|s| s.product_count).sum::<u32>(), 30);
    assert_eq!(stats["Category 1"].product_count, 10);
    assert_eq!(
        stats.values().map(|s| s.total_stock).sum::<u32>(),
        (1..=30).map(|id| id * 10).sum::<u32>()
    );
    // Removals and updates of the last task are applied.
    assert!(run.context.get("partition_1").is_none());
    assert_eq!(run.context["total_products"], 0);
    assert!(run.context.get("products").is_some());
    // Integers beyond 2^53 survive the round trip through the server.
    assert_eq!(run.context["big"].as_u64(), Some(big));
    assert_eq!(run.context["big_plus_one"].as_u64(), Some(big + 1));
    assert_eq!(run.context["max"].as_u64(), Some(u64::MAX));
    assert_eq!(run.input["big"].as_u64(), Some(big));

    let report = worker.shutdown(Duration::from_secs(10)).await;
    assert!(report.drained);
}

// ---------------------------------------------------------------------------

/// Sets its flag when dropped, recording whether the attempt's cancellation
/// had been signalled by then.
struct DropGuard {
    dropped: mpsc::UnboundedSender<bool>,
    cancellation: Option<tributary::Cancellation>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let cancelled = self
            .cancellation
            .as_ref()
            .is_some_and(tributary::Cancellation::is_cancelled);
        let _ = self.dropped.send(cancelled);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_reaches_the_running_task() {
    let server = TestServer::start().await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<bool>();
    let workflow = Workflow::new("cancellable").task(Task::new("wait", move |context| {
        let started = started_tx.clone();
        let dropped = dropped_tx.clone();
        Box::pin(async move {
            let _guard = DropGuard {
                dropped,
                cancellation: context.cancellation(),
            };
            let _ = started.send(());
            std::future::pending::<()>().await;
            Ok(())
        })
    }));
    let worker = Worker::builder(server.url())
        .workflow(&workflow)
        .start()
        .expect("worker starts");
    let client = Client::connect(server.url()).await.expect("connects");
    client
        .register_workflow(&workflow)
        .await
        .expect("registers");
    let run_id = client
        .start_run("cancellable", json!({}))
        .await
        .expect("starts")
        .run_id;
    within("the task starting", started.recv())
        .await
        .expect("started");

    assert_eq!(
        client.cancel_run(&run_id).await.expect("cancels"),
        RunStatus::Cancelled
    );
    let cancelled_before_drop = within("the task being dropped", dropped.recv())
        .await
        .expect("dropped");
    assert!(
        cancelled_before_drop,
        "the task saw the cancellation signal"
    );

    let run = client.get_run(&run_id).await.expect("run");
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.task("wait").expect("task").state, TaskState::Cancelled);
    // The worker reports the attempt's end, so its slot is free again.
    let mut status = worker.status();
    within(
        "the slot being released",
        status.wait_for(|status| status.running == 0 && status.unacknowledged == 0),
    )
    .await
    .expect("status");
    worker.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_fails_only_its_attempt_and_the_worker_keeps_serving() {
    let server = TestServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let flaky = Workflow::new("flaky").task(
        Task::new("once", move |context| {
            let calls = counted.clone();
            Box::pin(async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("boom on the first attempt");
                }
                context.insert("ok", true)?;
                Ok(())
            })
        })
        .retry_attempts(1)
        .retry_delay_ms(0),
    );
    let broken = Workflow::new("broken").task(Task::new("always", |_context| {
        Box::pin(async move { panic!("always broken") })
    }));
    let worker = Worker::builder(server.url())
        .capacity(1)
        .workflow(&flaky)
        .workflow(&broken)
        .start()
        .expect("worker starts");
    let client = Client::connect(server.url()).await.expect("connects");
    client.register_workflow(&flaky).await.expect("registers");
    client.register_workflow(&broken).await.expect("registers");

    let broken_run = client.start_run("broken", json!({})).await.expect("starts");
    let run = within("the broken run", client.wait(&broken_run.run_id))
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    let task = run.task("always").expect("task");
    assert_eq!(task.state, TaskState::Failed);
    assert!(
        task.error.contains("always broken"),
        "the panic message is the error: {task:#?}"
    );

    // The same worker (capacity 1) serves the next run: the panic freed it.
    let flaky_run = client.start_run("flaky", json!({})).await.expect("starts");
    let run = within("the flaky run", client.wait(&flaky_run.run_id))
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let task = run.task("once").expect("task");
    assert_eq!(task.attempts.len(), 2);
    assert!(task.attempts[0].error.contains("boom on the first attempt"));
    assert_eq!(run.context, json!({"ok": true}));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_errors_are_retried_or_not_as_they_say() {
    let server = TestServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (retryable_calls, fatal_calls) = (calls.clone(), calls.clone());
    let workflow = Workflow::new("errors")
        .task(
            Task::new("retryable", move |_context| {
                let calls = retryable_calls.clone();
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("try again".into())
                })
            })
            .retry_attempts(2)
            .retry_delay_ms(0),
        )
        .task(
            Task::new("fatal", move |context| {
                let calls = fatal_calls.clone();
                Box::pin(async move {
                    calls.fetch_add(100, Ordering::SeqCst);
                    let _: u32 = context.get("missing")?;
                    Ok(())
                })
            })
            .retry_attempts(5)
            .retry_delay_ms(0),
        );
    let worker = Worker::builder(server.url())
        .workflow(&workflow)
        .start()
        .expect("starts");
    let client = Client::connect(server.url()).await.expect("connects");
    client
        .register_workflow(&workflow)
        .await
        .expect("registers");
    let run_id = client
        .start_run("errors", json!({}))
        .await
        .expect("starts")
        .run_id;
    let run = within("the run", client.wait(&run_id)).await.expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    let retryable = run.task("retryable").expect("task");
    assert_eq!(retryable.attempts.len(), 3, "1 + 2 retries");
    assert_eq!(retryable.error, "try again");
    let fatal = run.task("fatal").expect("task");
    assert_eq!(fatal.attempts.len(), 1, "a context error is not retried");
    assert_eq!(fatal.error, "context key \"missing\" not found");
    assert_eq!(calls.load(Ordering::SeqCst), 3 + 100);
    worker.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_mid_run_is_picked_up_again() {
    let server = TestServer::start().await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let first = Workflow::new("handover").task(Task::new("work", move |_context| {
        let started = started_tx.clone();
        Box::pin(async move {
            let _ = started.send(());
            std::future::pending::<()>().await;
            Ok(())
        })
    }));
    let second = Workflow::new("handover").task(Task::new("work", |context| {
        Box::pin(async move {
            context.insert("done_by", "second")?;
            Ok(())
        })
    }));
    let client = Client::connect(server.url()).await.expect("connects");
    client.register_workflow(&first).await.expect("registers");
    let worker = Worker::builder(server.url())
        .workflow(&first)
        .start()
        .expect("starts");
    let run_id = client
        .start_run("handover", json!({}))
        .await
        .expect("starts")
        .run_id;
    within("the first attempt", started.recv())
        .await
        .expect("started");
    worker.abort().await;

    let replacement = Worker::builder(server.url())
        .workflow(&second)
        .start()
        .expect("starts");
    let run = within("the run", client.wait(&run_id)).await.expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.context, json!({"done_by": "second"}));
    let task = run.task("work").expect("task");
    assert_eq!(task.attempts.len(), 2);
    assert_eq!(task.attempts[0].state, "ATTEMPT_STATE_LOST");
    replacement.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_after_a_server_restart_and_resends_its_result() {
    let mut server = TestServer::start_with(|config| {
        config.heartbeat_interval_ms = 100;
        config.lease_timeout_ms = 5_000;
    })
    .await;
    let executions = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (counter, opened) = (executions.clone(), gate.clone());
    let workflow = Workflow::new("restart").task(Task::new("slow", move |context| {
        let (executions, gate, started) = (counter.clone(), opened.clone(), started_tx.clone());
        Box::pin(async move {
            executions.fetch_add(1, Ordering::SeqCst);
            let _ = started.send(());
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            context.insert("result", 42)?;
            Ok(())
        })
    }));
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
        .start_run("restart", json!({}))
        .await
        .expect("starts")
        .run_id;
    within("the attempt", started.recv())
        .await
        .expect("started");

    server.stop().await;
    let mut status = worker.status();
    within(
        "the worker noticing",
        status.wait_for(|status| !status.connected),
    )
    .await
    .expect("status");
    // The task finishes while the server is down: its result waits.
    gate.add_permits(1);
    within(
        "the result being held",
        status.wait_for(|status| status.unacknowledged == 1 && status.running == 0),
    )
    .await
    .expect("status");

    server.start_again().await;
    let client = Client::connect(server.url()).await.expect("connects again");
    let run = within("the run", client.wait(&run_id)).await.expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.context, json!({"result": 42}));
    let attempts = &run.task("slow").expect("task").attempts;
    // The result computed while the server was down is the one the run
    // holds: the stopping server left the attempt in flight, the next one
    // accepted the resent result, and the task never ran again.
    assert_eq!(attempts.len(), 1, "{run:#?}");
    assert_eq!(attempts[0].state, "ATTEMPT_STATE_SUCCEEDED", "{run:#?}");
    assert_eq!(executions.load(Ordering::SeqCst), 1, "{run:#?}");
    within(
        "the acknowledgement",
        status.wait_for(|status| status.unacknowledged == 0),
    )
    .await
    .expect("status");
    assert!(status.borrow().registrations >= 2);
    worker.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_running_attempts_and_takes_no_more_work() {
    let server = TestServer::start().await;
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let opened = gate.clone();
    let workflow = Workflow::new("drain").task(Task::new("step", move |context| {
        let (gate, started) = (opened.clone(), started_tx.clone());
        Box::pin(async move {
            let _ = started.send(());
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            context.insert("drained", true)?;
            Ok(())
        })
    }));
    let worker = Worker::builder(server.url())
        .workflow(&workflow)
        .start()
        .expect("starts");
    let client = Client::connect(server.url()).await.expect("connects");
    client
        .register_workflow(&workflow)
        .await
        .expect("registers");
    let run_id = client
        .start_run("drain", json!({}))
        .await
        .expect("starts")
        .run_id;
    within("the attempt", started.recv())
        .await
        .expect("started");

    let shutdown = tokio::spawn(worker.shutdown(Duration::from_secs(60)));
    // The draining worker tells the server it takes no more work.
    let channel = tonic::transport::Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let mut executors = ExecutorServiceClient::new(channel);
    within("the capacity change", async {
        loop {
            let listed = executors
                .list_executors(ListExecutorsRequest {})
                .await
                .expect("lists")
                .into_inner()
                .executors;
            if listed.len() == 1 && listed[0].max_concurrent_attempts == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let waiting = client
        .start_run("drain", json!({}))
        .await
        .expect("starts")
        .run_id;
    gate.add_permits(1);
    let report = within("the shutdown", shutdown).await.expect("joins");
    assert!(report.drained, "{report:?}");
    assert_eq!(report.cancelled_attempts, 0);
    let run = client.get_run(&run_id).await.expect("run");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.context, json!({"drained": true}));
    // The run started during the drain was never given to the worker.
    let run = client.get_run(&waiting).await.expect("run");
    assert_eq!(run.status, RunStatus::Pending, "{run:#?}");
    assert!(run.task("step").expect("task").attempts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_what_outlives_its_deadline() {
    let server = TestServer::start().await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<bool>();
    let workflow = Workflow::new("stuck").task(Task::new("forever", move |context| {
        let (started, dropped) = (started_tx.clone(), dropped_tx.clone());
        Box::pin(async move {
            let _guard = DropGuard {
                dropped,
                cancellation: context.cancellation(),
            };
            let _ = started.send(());
            std::future::pending::<()>().await;
            Ok(())
        })
    }));
    let worker = Worker::builder(server.url())
        .workflow(&workflow)
        .start()
        .expect("starts");
    let client = Client::connect(server.url()).await.expect("connects");
    client
        .register_workflow(&workflow)
        .await
        .expect("registers");
    client.start_run("stuck", json!({})).await.expect("starts");
    within("the attempt", started.recv())
        .await
        .expect("started");

    let report = within("the shutdown", worker.shutdown(Duration::ZERO)).await;
    assert!(!report.drained);
    assert_eq!(report.cancelled_attempts, 1);
    assert!(within("the drop", dropped.recv()).await.expect("dropped"));
}

#[tokio::test]
async fn the_client_reports_server_errors_and_validates_before_sending() {
    let server = TestServer::start().await;
    let client = Client::connect(server.url()).await.expect("connects");
    let cyclic = Workflow::new("cyclic")
        .task(Task::new("a", |_c| Box::pin(async { Ok(()) })).dependencies(["b"]))
        .task(Task::new("b", |_c| Box::pin(async { Ok(()) })).dependencies(["a"]));
    let error = client.register_workflow(&cyclic).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid workflow definition: cycle detected: a -> b -> a"
    );
    let error = client.start_run("nothing", json!({})).await.unwrap_err();
    assert_eq!(error.code(), Some(tonic::Code::NotFound), "{error}");

    // Idempotency keys, listing and namespaces.
    let single = Workflow::new("single").task(Task::new("a", |_c| Box::pin(async { Ok(()) })));
    let registered = client.register_workflow(&single).await.expect("registers");
    let again = client.register_workflow(&single).await.expect("registers");
    assert_eq!(registered.version, again.version);
    assert!(!again.created);
    let options = tributary::StartOptions {
        idempotency_key: Some("key-1".into()),
        ..Default::default()
    };
    let first = client
        .start_run_with("single", json!({"x": 1}), options.clone())
        .await
        .expect("starts");
    let second = client
        .start_run_with("single", json!({"x": 1}), options)
        .await
        .expect("starts");
    assert_eq!(first.run_id, second.run_id);
    assert!(first.created && !second.created);
    let page = client
        .list_runs(tributary::ListRuns {
            workflow_name: Some("single".into()),
            ..Default::default()
        })
        .await
        .expect("lists");
    assert_eq!(page.runs.len(), 1);
    assert_eq!(page.runs[0].id, first.run_id);
    assert_eq!(page.runs[0].input, json!({"x": 1}));
    let other = client.with_namespace("other").expect("namespace");
    assert!(
        other
            .list_runs(tributary::ListRuns::default())
            .await
            .expect("lists")
            .runs
            .is_empty()
    );
    assert_eq!(
        client.cancel_run(&first.run_id).await.expect("cancels"),
        RunStatus::Cancelled
    );
}

/// Runs one task on `server` and returns the `traceparent` its context saw.
async fn traceparent_seen_on(server: &TestServer) -> (String, Option<String>) {
    let (sender, mut seen) = mpsc::unbounded_channel();
    let workflow = Workflow::new("traced").task(Task::new("t", move |context| {
        let sender = sender.clone();
        Box::pin(async move {
            let _ = sender.send(context.traceparent().map(str::to_owned));
            Ok(())
        })
    }));
    let worker = Worker::builder(server.url())
        .workflow(&workflow)
        .start()
        .expect("starts");
    let client = Client::connect(server.url()).await.expect("connects");
    client
        .register_workflow(&workflow)
        .await
        .expect("registers");
    let run_id = client
        .start_run("traced", json!({}))
        .await
        .expect("starts")
        .run_id;
    let run = within("the run", client.wait(&run_id)).await.expect("run");
    assert_eq!(run.status, RunStatus::Succeeded);
    worker.shutdown(Duration::from_secs(10)).await;
    let traceparent = seen.recv().await.expect("the task ran");
    (run_id, traceparent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sees_its_attempts_traceparent_only_when_the_server_exports_traces() {
    let plain = TestServer::start().await;
    let (_, traceparent) = traceparent_seen_on(&plain).await;
    assert_eq!(traceparent, None);

    // Nothing listens there: spans are dropped, the trace context is still
    // sent.
    let tracing = TestServer::start_with(|config| {
        config.otlp_endpoint = Some("http://127.0.0.1:9".to_owned());
    })
    .await;
    let (run_id, traceparent) = traceparent_seen_on(&tracing).await;
    let traceparent = traceparent.expect("a traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], run_id.replace('-', ""), "the run's trace");
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "01");
}
