//! A mapped task declared with the SDK, served by an SDK worker against the
//! real server started in-process: each instance reads its element, the
//! outputs come back gathered in element order, and `Client::wait` shows the
//! instances under their task.

mod common;

use serde_json::json;
use tributary::{
    Client, GetRunOptions, MAP_ELEMENT_KEY, RunStatus, Task, TaskState, Worker, Workflow,
};

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_task_runs_per_element_and_its_instances_show_under_it() {
    let server = TestServer::start().await;
    let workflow = Workflow::new("shout")
        .task(
            Task::new("upper", |context| {
                Box::pin(async move {
                    let word: String = context.get(MAP_ELEMENT_KEY)?;
                    let index: u32 = context.get(tributary::MAP_INDEX_KEY)?;
                    let attempt = context.attempt().expect("an attempt");
                    assert_eq!(attempt.map_index, Some(index));
                    assert_eq!(attempt.task_id, "upper");
                    context.insert("loud", word.to_uppercase())?;
                    Ok(())
                })
            })
            .map_over("words")
            .map_output("loud"),
        )
        .task(
            Task::new("count", |context| {
                Box::pin(async move {
                    let loud: Vec<String> = context.get("loud")?;
                    context.insert("count", loud.len())?;
                    Ok(())
                })
            })
            .dependencies(["upper"]),
        );
    workflow.validate().expect("valid");
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
        .start_run("shout", json!({"words": ["a", "bb", "ccc"]}))
        .await
        .expect("starts")
        .run_id;
    let run = client.wait(&run_id).await.expect("finishes");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.context["loud"], json!(["A", "BB", "CCC"]));
    assert_eq!(run.context["count"], 3);
    let upper = run.task("upper").expect("upper");
    assert!(upper.attempts.is_empty());
    let instances: Vec<(Option<u32>, TaskState, usize)> = upper
        .instances
        .iter()
        .map(|instance| (instance.map_index, instance.state, instance.attempts.len()))
        .collect();
    assert_eq!(
        instances,
        [
            (Some(0), TaskState::Succeeded, 1),
            (Some(1), TaskState::Succeeded, 1),
            (Some(2), TaskState::Succeeded, 1),
        ]
    );
    assert_eq!(upper.map_size, 3);
    assert_eq!(upper.instance_counts[&TaskState::Succeeded], 3);

    // A window on the instances, and the counts alone: the counts always
    // cover every instance.
    let window = GetRunOptions {
        instances_from: 1,
        max_instances: Some(1),
    };
    let run = client.get_run_with(&run_id, window).await.expect("reads");
    let upper = run.task("upper").expect("upper");
    let listed: Vec<Option<u32>> = upper.instances.iter().map(|i| i.map_index).collect();
    assert_eq!(listed, [Some(1)]);
    assert_eq!(upper.instance_counts[&TaskState::Succeeded], 3);
    let counts_only = GetRunOptions {
        max_instances: Some(0),
        ..GetRunOptions::default()
    };
    let run = client
        .get_run_with(&run_id, counts_only)
        .await
        .expect("reads");
    let upper = run.task("upper").expect("upper");
    assert!(upper.instances.is_empty());
    assert_eq!(upper.instance_counts.values().sum::<u32>(), 3);
    worker.shutdown(std::time::Duration::from_secs(5)).await;
}
