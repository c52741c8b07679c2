//! A map too large to list in one `GetRun` answer: the answer lists as many
//! instances as fit beside the context and counts all of them by state, and
//! a caller pages through the rest by element index.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use serde_json::json;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::{TestServer, context, task};
use tributary_proto::v1 as pb;

use crate::cli;

/// A safety net so a broken engine fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(120);

/// Instances in the map: with two attempts and a long error each, more than
/// one 4 MiB answer holds.
const ELEMENTS: usize = 3_000;

#[tokio::test]
async fn get_run_lists_what_fits_counts_everything_and_pages_by_index() {
    // The smallest message limit the server allows (4 MiB plus the
    // envelope), so that a few thousand instances exceed it.
    let server = TestServer::start_with(|config| {
        config.max_definition_bytes = 1024 * 1024;
        config.max_context_bytes = 1024 * 1024;
        config.max_run_context_bytes = 1024 * 1024;
    })
    .await;
    let max_message_bytes = server.config.max_message_bytes();
    server
        .register(
            "default",
            json!({"name": "wide", "tasks": [
                {"id": "fetch", "handler": "fetch", "map_over": "items",
                 "retry_attempts": 1, "retry_delay_ms": 0}
            ]}),
        )
        .await;
    let long_error = "e".repeat(1_500);
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["fetch"],
        16,
        handler(move |assigned| {
            let long_error = long_error.clone();
            async move {
                if assigned.attempt_number == 1 {
                    return Outcome::fail(&long_error);
                }
                Outcome::set(json!({"fetch": assigned.input["map_index"]}))
            }
        }),
    )
    .await;
    let items: Vec<usize> = (0..ELEMENTS).collect();
    let run_id = server
        .start_run("default", "wide", json!({ "items": items }))
        .await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);

    let mut client = server.run_client("default").await;
    let mut get = async |instances_from: u32, max_instances: Option<u32>| -> pb::Run {
        client
            .get_run(pb::GetRunRequest {
                run_id: run_id.clone(),
                omit_contexts: false,
                instances_from,
                max_instances,
            })
            .await
            .expect("GetRun answers a map too large for one message")
            .into_inner()
            .run
            .expect("run")
    };

    // The default answer: the context, a prefix of the instances, and all
    // of them counted.
    let first = get(0, None).await;
    assert!(first.encoded_len() <= max_message_bytes);
    assert!(
        !first.contexts_omitted,
        "the context comes before instances"
    );
    let gathered = context(&first)["fetch"].as_array().map(Vec::len);
    assert_eq!(gathered, Some(ELEMENTS));
    let fetch = task(&first, "fetch");
    assert_eq!(fetch.map_size as usize, ELEMENTS);
    assert_eq!(
        counts(fetch),
        BTreeMap::from([("TASK_STATE_SUCCEEDED", ELEMENTS as u32)])
    );
    let listed = fetch.instances.len();
    assert!(
        listed > 0 && listed < ELEMENTS,
        "{listed} of {ELEMENTS} instances listed in one answer"
    );
    assert_eq!(indexes(fetch), (0..listed as u32).collect::<Vec<_>>());
    assert!(
        fetch
            .instances
            .iter()
            .all(|instance| instance.attempts.len() == 2)
    );

    // Paging by element index reaches every instance once, in order.
    let mut seen: Vec<u32> = indexes(fetch);
    while seen.len() < ELEMENTS {
        let page = get(seen.len() as u32, None).await;
        let page_task = task(&page, "fetch");
        assert!(
            !page_task.instances.is_empty(),
            "a page past {} is empty",
            seen.len()
        );
        assert_eq!(counts(page_task).values().sum::<u32>(), ELEMENTS as u32);
        seen.extend(indexes(page_task));
    }
    assert_eq!(seen, (0..ELEMENTS as u32).collect::<Vec<_>>());

    // A window of the caller's own, and counts alone.
    let window = get(10, Some(5)).await;
    assert_eq!(indexes(task(&window, "fetch")), vec![10, 11, 12, 13, 14]);
    let counts_only = get(0, Some(0)).await;
    let counts_only = task(&counts_only, "fetch");
    assert!(counts_only.instances.is_empty());
    assert_eq!(counts(counts_only).values().sum::<u32>(), ELEMENTS as u32);

    // The CLI lists a few and says where the rest are.
    let url = server.url();
    let shown = cli(&["run", "get", &run_id, "--no-context", "--server", &url]).await;
    assert!(
        shown.contains(&format!(
            "fetch: {ELEMENTS} instances: {ELEMENTS} succeeded; [0] to [19] listed"
        )),
        "{shown}"
    );
    let paged = cli(&[
        "run",
        "get",
        &run_id,
        "--no-context",
        "--instances-from",
        "2990",
        "--server",
        &url,
    ])
    .await;
    assert!(
        paged.contains("  [2999]") && !paged.contains("  [2989]"),
        "{paged}"
    );
    server.stop().await;
}

fn indexes(task: &pb::TaskRun) -> Vec<u32> {
    task.instances
        .iter()
        .map(|instance| instance.map_index.expect("an instance has its index"))
        .collect()
}

fn counts(task: &pb::TaskRun) -> BTreeMap<&'static str, u32> {
    task.instance_counts
        .iter()
        .map(|count| (count.state().as_str_name(), count.count))
        .collect()
}
