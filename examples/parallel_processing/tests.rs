//! The example end to end, in-process: embedded server on a fresh SQLite
//! file, the real executor over gRPC, one run without the simulated sleeps.
//! The final context is checked against stats computed here directly from
//! the tutorial's formulas, not with the task code. No timing assertions.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tributary_proto::v1 as pb;

use crate::driver::{self, Options};
use crate::tasks::Simulation;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_runs_end_to_end_on_sqlite() {
    let outcome = driver::run(&Options {
        server: None,
        database_url: None,
        simulation: Simulation { sleeps: false },
        capacity: 3,
    })
    .await
    .expect("the example runs");

    let run = &outcome.run;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    assert!(outcome.succeeded());
    let states: Vec<(&str, pb::TaskState)> = run
        .tasks
        .iter()
        .map(|task| (task.task_id.as_str(), task.state()))
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
            .all(|(_, state)| *state == pb::TaskState::Succeeded),
        "{states:?}"
    );
    assert!(run.conflicts.is_empty(), "{:?}", run.conflicts);

    let context = &outcome.context;
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

    // Without sleeps there is no simulated time, so no efficiency figure.
    assert_eq!(context["total_products"], json!(10_000));
    for key in [
        "processing_time_1",
        "processing_time_2",
        "processing_time_3",
        "total_processing_time_ms",
        "actual_parallel_time_ms",
    ] {
        assert_eq!(context[key], json!(0), "{key}");
    }
    assert_eq!(context["parallel_efficiency_percent"], Value::Null);

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

    // The executor saw every task run once.
    let mut ran: Vec<&str> = outcome
        .timings
        .iter()
        .filter(|timing| timing.succeeded)
        .map(|timing| timing.task_id.as_str())
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, task_ids);
}
