//! `Client::retry_run` against the real server started in-process: a failed
//! run re-run from its failure, and `Client::wait` waiting for the new end
//! rather than returning at the first one.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_stream::StreamExt;
use tributary::{Client, RetryOptions, RunEventKind, RunStatus, Task, TaskError, Worker, Workflow};

use common::{TestServer, within};

/// `first` then `second`; `second` fails for good on its first call only.
fn flaky_workflow(calls: Arc<Mutex<BTreeMap<String, u32>>>) -> Workflow {
    let counted = move |task_id: &'static str| {
        let calls = calls.clone();
        Task::new(task_id, move |context| {
            let calls = calls.clone();
            Box::pin(async move {
                let call = {
                    let mut calls = calls.lock().expect("calls");
                    let count = calls.entry(task_id.to_owned()).or_default();
                    *count += 1;
                    *count
                };
                if task_id == "second" && call == 1 {
                    return Err(TaskError::fatal("not yet"));
                }
                context.insert(task_id, call)?;
                Ok(())
            })
        })
    };
    Workflow::new("flaky")
        .task(counted("first"))
        .task(counted("second").dependencies(["first"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_run_reruns_the_failure_and_wait_waits_for_the_new_end() {
    let server = TestServer::start().await;
    let calls = Arc::new(Mutex::new(BTreeMap::new()));
    let workflow = flaky_workflow(calls.clone());
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
        .start_run("flaky", json!({}))
        .await
        .expect("starts")
        .run_id;
    let failed = within("the first end", client.wait(&run_id))
        .await
        .expect("run");
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.retry_count, 0);

    let options = RetryOptions {
        request_id: Some("sdk-retry".into()),
        ..RetryOptions::default()
    };
    let retried = client
        .retry_run(&run_id, options.clone())
        .await
        .expect("retries");
    assert_eq!(retried.retried_task_ids, ["second"]);
    assert_eq!(retried.retry_count, 1);
    let again = client
        .retry_run(&run_id, options)
        .await
        .expect("answered again");
    assert_eq!(again.retry_count, 1);

    let run = within("the new end", client.wait(&run_id))
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.retry_count, 1);
    assert_eq!(run.context, json!({"first": 1, "second": 2}));
    let calls = calls.lock().expect("calls").clone();
    assert_eq!(
        calls.get("first"),
        Some(&1),
        "first succeeded and kept its output"
    );

    let events: Vec<_> = within(
        "the whole log",
        client
            .watch(&run_id, 0)
            .await
            .expect("watch")
            .collect::<Vec<_>>(),
    )
    .await;
    let events: Vec<_> = events.into_iter().map(|e| e.expect("event")).collect();
    let retried_event = events
        .iter()
        .find(|event| event.kind == RunEventKind::RunRetried)
        .expect("RUN_RETRIED");
    assert_eq!(retried_event.retried_task_ids, ["second"]);
    assert_eq!(
        events.last().map(|e| e.run_status),
        Some(Some(RunStatus::Succeeded))
    );

    let refused = client
        .retry_run(&run_id, RetryOptions::default())
        .await
        .expect_err("nothing left to retry");
    assert_eq!(refused.code(), Some(tonic::Code::FailedPrecondition));
    worker.shutdown(Duration::from_secs(10)).await;
}
