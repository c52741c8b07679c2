//! Routing by labels: the worker registers the labels it is given, so that
//! tasks requiring them go to it and to no other.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tributary_proto::v1 as pb;

use super::{task, workflow};
use crate::checks;
use crate::ensure;
use crate::harness::Harness;

/// Tasks requiring `gpu=true` wait, saying why, while only a worker without
/// that label serves their handler, then go to the worker registered with
/// it, and only to it.
pub async fn label_routing(harness: &mut Harness) -> Result<(), String> {
    const LABELED: usize = 3;
    harness
        .spawn_labeled_worker("worker-plain", 4, 0, "gpu=false,zone=a")
        .await?;
    let mut tasks = vec![task("open", "echo", &[], json!({}))];
    for n in 0..LABELED {
        tasks.push(task(
            &format!("gpu-{n}"),
            "echo",
            &[],
            json!({"required_labels": {"gpu": "true"}}),
        ));
    }
    harness.register(workflow("labels", tasks)).await?;
    let run_id = harness.start_run("labels", r#"{"echo_in":1}"#).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = harness.get_run(&run_id).await?;
        let waiting = checks::task(&run, "gpu-0")?;
        if waiting.waiting_reason() == pb::WaitingReason::NoMatchingLabels {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "with only a worker labeled gpu=false, gpu-0 must wait with NO_MATCHING_LABELS: {}",
            checks::summary(&run)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    harness
        .spawn_labeled_worker("worker-gpu", 1, 0, "gpu=true,zone=b")
        .await?;
    let executors = harness.executors().await?;
    let gpu = executors
        .iter()
        .find(|executor| executor.name == "worker-gpu")
        .ok_or("worker-gpu is not listed")?;
    ensure!(
        gpu.labels.get("gpu").map(String::as_str) == Some("true")
            && gpu.labels.get("zone").map(String::as_str) == Some("b"),
        "worker-gpu must register CONFORMANCE_LABELS gpu=true,zone=b, ListExecutors shows {:?}",
        gpu.labels
    );
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    for n in 0..LABELED {
        let labeled = checks::task_outcome(&run, &format!("gpu-{n}"), pb::TaskState::Succeeded, 1)?;
        let executor_id = &labeled.attempts[0].executor_id;
        ensure!(
            executor_id == &gpu.executor_id,
            "gpu-{n} requires gpu=true but ran on executor {executor_id}, not worker-gpu ({})",
            gpu.executor_id
        );
    }
    Ok(())
}
