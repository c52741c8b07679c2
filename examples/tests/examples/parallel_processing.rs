//! The seed example end to end, in-process, through the code the binary
//! runs: embedded server on a fresh SQLite file, the SDK's worker over gRPC,
//! one run without the simulated sleeps. The final context is checked
//! against stats computed here directly from the tutorial's formulas, not
//! with the task code. No timing assertions.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tributary::{RunStatus, TaskState, WorkflowDefinition};
use tributary_examples::parallel_processing::{self, Options, report};
use tributary_examples::runner::ServerArgs;

use crate::within;

/// Per category: (total value, total stock, product count).
fn expected_stats() -> BTreeMap<String, (f64, u64, u64)> {
    let mut expected: BTreeMap<String, (f64, u64, u64)> = BTreeMap::new();
    for id in 1u32..=10_000 {
        let category = format!("Category {}", id % 10 + 1);
        let price = (f64::from(id) * 1.5) % 100.0;
        let stock = u64::from(id * 10 % 1000);
        let entry = expected.entry(category).or_default();
        entry.0 += price * stock as f64;
        entry.1 += stock;
        entry.2 += 1;
    }
    expected
}

fn stats_of(value: &Value) -> BTreeMap<String, (f64, u64, u64)> {
    value
        .as_object()
        .expect("stats are an object")
        .iter()
        .map(|(category, stats)| {
            (
                category.clone(),
                (
                    stats["total_value"].as_f64().expect("total_value"),
                    stats["total_stock"].as_u64().expect("total_stock"),
                    stats["product_count"].as_u64().expect("product_count"),
                ),
            )
        })
        .collect()
}

#[test]
fn the_definition_file_for_the_cli_is_the_workflow_of_the_code() {
    let text = include_str!("../../parallel_processing.workflow.yaml");
    let file: WorkflowDefinition = serde_yaml::from_str(text).expect("a definition file");
    assert_eq!(file, parallel_processing::workflow().definition());
    assert_eq!(file.description, parallel_processing::DESCRIPTION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_runs_end_to_end_on_sqlite() {
    let options = Options {
        server: ServerArgs::default(),
        sleeps: false,
        capacity: 3,
    };
    let finished = within("the run", parallel_processing::run(&options))
        .await
        .expect("the example runs");

    let run = &finished.run;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert!(finished.succeeded());
    let states: Vec<(&str, TaskState)> = run
        .tasks
        .iter()
        .map(|task| (task.task_id.as_str(), task.state))
        .collect();
    let mut task_ids: Vec<&str> = states.iter().map(|(id, _)| *id).collect();
    task_ids.sort_unstable();
    assert_eq!(
        task_ids,
        [
            "cleanup",
            "combine_results",
            "generate_data",
            "generate_report",
            "partition_data",
            "process_partition_1",
            "process_partition_2",
            "process_partition_3",
            "send_notifications",
        ]
    );
    assert!(
        states
            .iter()
            .all(|(_, state)| *state == TaskState::Succeeded),
        "{states:?}"
    );
    assert!(run.tasks.iter().all(|task| task.attempts.len() == 1));

    let context = &run.context;
    let mut keys: Vec<&str> = context
        .as_object()
        .expect("context is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "actual_parallel_time_ms",
            "cleanup_done",
            "final_stats",
            "notifications_sent",
            "parallel_efficiency_percent",
            "processing_time_1",
            "processing_time_2",
            "processing_time_3",
            "report",
            "stats_1",
            "stats_2",
            "stats_3",
            "total_processing_time_ms",
            "total_products",
        ],
        "cleanup removed the catalog and its partitions, nothing else is missing"
    );

    // Every price * stock is a multiple of 0.5 and every sum stays far below
    // 2^53, so the totals are exact whatever the order of the additions.
    let expected = expected_stats();
    assert_eq!(expected.len(), 10);
    assert_eq!(stats_of(&context["final_stats"]), expected);

    // The partitions split 3333 / 3333 / 3334 products, as split_at does.
    let partition_sizes: Vec<u64> = (1..=3)
        .map(|n| {
            stats_of(&context[format!("stats_{n}").as_str()])
                .values()
                .map(|(_, _, count)| count)
                .sum()
        })
        .collect();
    assert_eq!(partition_sizes, [3333, 3333, 3334]);

    // --no-sleep skips the sleeps, not the tutorial's draws of its simulated
    // times, so these are in the tutorial's ranges and its formula holds.
    assert_eq!(context["total_products"], json!(10_000));
    let times: Vec<u64> = (1..=3)
        .map(|n| {
            context[format!("processing_time_{n}").as_str()]
                .as_u64()
                .expect("a time")
        })
        .collect();
    assert!((1000..3000).contains(&times[0]), "{times:?}");
    assert!((1500..4000).contains(&times[1]), "{times:?}");
    assert!((800..2500).contains(&times[2]), "{times:?}");
    let total: u64 = times.iter().sum();
    let longest = times.iter().copied().max().expect("three times");
    assert_eq!(context["total_processing_time_ms"], json!(total));
    assert_eq!(context["actual_parallel_time_ms"], json!(longest));
    // serde_json's default float parsing (no `float_roundtrip`) may land
    // one ulp off the written value, so this one is compared loosely.
    let efficiency = context["parallel_efficiency_percent"]
        .as_f64()
        .expect("an efficiency");
    let expected_efficiency = total as f64 / longest as f64 * 100.0;
    assert!(
        (efficiency - expected_efficiency).abs() < 1e-9,
        "{efficiency} != {expected_efficiency}"
    );

    let total_value: f64 = expected.values().map(|(value, _, _)| value).sum();
    let total_stock: u64 = expected.values().map(|(_, stock, _)| stock).sum();
    let (top_category, (top_value, _, _)) = expected
        .iter()
        .max_by(|(_, a), (_, b)| a.0.total_cmp(&b.0))
        .expect("ten categories");
    let report = &context["report"];
    assert_eq!(report["categories"], json!(10));
    assert_eq!(report["total_products"], json!(10_000));
    assert_eq!(report["total_stock"], json!(total_stock));
    assert_eq!(report["total_value"].as_f64(), Some(total_value));
    let top = &report["top_categories_by_value"];
    assert_eq!(top.as_array().map(Vec::len), Some(3));
    assert_eq!(top[0]["category"], json!(top_category));
    assert_eq!(top[0]["total_value"].as_f64(), Some(*top_value));

    assert_eq!(context["notifications_sent"], json!(1));
    assert_eq!(context["cleanup_done"], json!(true));

    // The worker saw every task run once, and the report has its figures.
    let mut ran: Vec<&str> = finished
        .attempts
        .iter()
        .filter(|attempt| attempt.succeeded)
        .map(|attempt| attempt.task_id.as_str())
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, task_ids);
    assert!(report::partition_overlap(&finished.attempts).is_some());
    let printed = report::render(&finished, false);
    assert!(printed.contains("All 9 tasks succeeded."), "{printed}");
    assert!(
        printed.contains("All               10,000    4,950,000"),
        "{printed}"
    );
}
