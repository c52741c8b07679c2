//! A database outage longer than the lease costs executors nothing: the
//! server keeps answering heartbeats while its commits wait for the
//! database, so no worker drops its session, no attempt is LOST or
//! reassigned, and every result is acknowledged once it is committed after
//! the outage. Postgres only: an embedded SQLite file has no outage.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tributary::{Client, RunStatus, Task, Worker, Workflow};
use tributary_e2e::outage::DatabaseProxy;

use common::{TestServer, within};

const CHAIN: usize = 6;
const OUTAGES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outages_longer_than_the_lease_lose_no_attempt() {
    let admin_url = std::env::var(tributary_e2e::DATABASE_URL_VARIABLE).unwrap_or_default();
    if admin_url.is_empty() {
        eprintln!("SQLite run: an embedded database has no outage to survive");
        return;
    }
    let proxy = DatabaseProxy::start(&admin_url).await;
    let lease = Duration::from_millis(600);
    let server = TestServer::start_with(|config| {
        config.database_url = proxy.url_for(&config.database_url);
        config.heartbeat_interval_ms = 100;
        config.lease_timeout_ms = lease.as_millis() as u64;
    })
    .await;

    let executions: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let entered: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut workflow = Workflow::new("outage");
    for step in 1..=CHAIN {
        let executions = executions.clone();
        let entered = entered.clone();
        let id = format!("step_{step}");
        let mut task = Task::new(id.clone(), move |context| {
            let executions = executions.clone();
            let entered = entered.clone();
            let id = id.clone();
            Box::pin(async move {
                entered.lock().expect("lock").push(Instant::now());
                *executions
                    .lock()
                    .expect("lock")
                    .entry(id.clone())
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
                context.insert(id, step)?;
                Ok(())
            })
        });
        if step > 1 {
            task = task.dependencies([format!("step_{}", step - 1)]);
        }
        workflow = workflow.task(task);
    }
    let client = Client::connect(server.url()).await.expect("connects");
    client
        .register_workflow(&workflow)
        .await
        .expect("registers");
    let worker = Worker::builder(server.url())
        .workflow(&workflow)
        .start()
        .expect("starts");
    let run_id = client
        .start_run("outage", json!({}))
        .await
        .expect("starts")
        .run_id;

    let mut first_restore = None;
    for _ in 0..OUTAGES {
        tokio::time::sleep(Duration::from_millis(250)).await;
        proxy.cut();
        tokio::time::sleep(lease * 2).await;
        proxy.restore();
        first_restore.get_or_insert_with(Instant::now);
    }

    let run = within("the run", async {
        loop {
            // The wait itself may meet the end of an outage; it is retried.
            match client.wait(&run_id).await {
                Ok(run) => return run,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    // The chain needs at least CHAIN × 150 ms, far more than the 250 ms
    // before the first cut, so the outages fall inside the run; this checks
    // that they did.
    let last_entered = entered.lock().expect("lock").iter().max().copied();
    assert!(
        last_entered > first_restore,
        "the run was still going when the first outage ended"
    );
    for step in 1..=CHAIN {
        let id = format!("step_{step}");
        let task = run.task(&id).expect("task");
        assert_eq!(
            task.attempts.len(),
            1,
            "{id}: no attempt lost or reassigned: {task:#?}"
        );
        assert_eq!(executions.lock().expect("lock")[&id], 1, "{id} ran once");
    }
    // The failed commits are counted where an operator looks for them.
    let scraped = tributary_e2e::scrape::scrape(server.config.listen).await;
    assert!(
        scraped.value(
            "tributary_database_errors_total",
            &[("operation", "commit")]
        ) > 0.0,
        "{scraped:#?}"
    );
    worker.shutdown(Duration::from_secs(10)).await;
}
