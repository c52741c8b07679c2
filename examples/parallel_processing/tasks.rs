//! The nine tasks of the seed workflow (Cloacina's parallel-processing
//! tutorial), ported from the tutorial's code: generate 10,000 products,
//! split them into three partitions, compute per-category stats of each
//! partition in parallel (with the tutorial's random sleeps standing in for
//! expensive work), combine them; then the three tasks the tutorial names but
//! does not show: a report, a notification, and a cleanup of the bulky keys.
//!
//! Each task is an `async fn(&mut Context, Simulation) -> Result<(), TaskError>`
//! so that it reads like the tutorial's `#[task]` functions; [`all`] lists
//! them by task id for the executor.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::context::{Context, TaskError};

/// A product of the generated catalog, as in the tutorial.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct Product {
    pub id: u32,
    pub name: String,
    pub category: String,
    pub price: f64,
    pub stock: u32,
}

/// Per-category totals, as in the tutorial.
#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq)]
pub struct CategoryStats {
    pub total_value: f64,
    pub total_stock: u32,
    pub product_count: u32,
}

/// Per-category totals keyed by category name. A `BTreeMap` (the tutorial
/// uses a `HashMap`) keeps the written JSON in a stable order.
pub type StatsByCategory = BTreeMap<String, CategoryStats>;

/// The report `generate_report` writes.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct Report {
    pub categories: usize,
    pub total_products: u32,
    pub total_stock: u64,
    pub total_value: f64,
    /// The three categories with the largest stock value, largest first.
    pub top_categories_by_value: Vec<CategoryValue>,
}

/// One line of the report's ranking.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct CategoryValue {
    pub category: String,
    pub total_value: f64,
    pub share_percent: f64,
}

/// Whether the tasks sleep as the tutorial does to simulate expensive work.
/// Without sleeps the work is the same, and the recorded processing times
/// are 0 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulation {
    pub sleeps: bool,
}

impl Simulation {
    /// Sleeps `milliseconds` when sleeps are on.
    async fn pause(self, milliseconds: u64) {
        if self.sleeps {
            tokio::time::sleep(Duration::from_millis(milliseconds)).await;
        }
    }

    /// The tutorial's random processing time in `range` (ms), or 0 without
    /// sleeps.
    fn processing_time(self, range: Range<u64>) -> u64 {
        if self.sleeps {
            rand::thread_rng().gen_range(range)
        } else {
            0
        }
    }
}

/// What a task's registration runs: takes the input context, returns it with
/// the task's writes.
pub type TaskFn = Arc<dyn Fn(Context, Simulation) -> TaskFuture + Send + Sync>;

/// The future of one task attempt.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<Context, TaskError>> + Send>>;

/// Wraps an `async fn(&mut Context, Simulation)` as a [`TaskFn`].
macro_rules! task_fn {
    ($function:path) => {
        Arc::new(
            |mut context: Context, simulation: Simulation| -> TaskFuture {
                Box::pin(async move {
                    $function(&mut context, simulation).await?;
                    Ok(context)
                })
            },
        ) as TaskFn
    };
}

/// Every task of the workflow by task id.
pub fn all() -> Vec<(&'static str, TaskFn)> {
    vec![
        ("generate_data", task_fn!(generate_data)),
        ("partition_data", task_fn!(partition_data)),
        ("process_partition_1", task_fn!(process_partition_1)),
        ("process_partition_2", task_fn!(process_partition_2)),
        ("process_partition_3", task_fn!(process_partition_3)),
        ("combine_results", task_fn!(combine_results)),
        ("generate_report", task_fn!(generate_report)),
        ("send_notifications", task_fn!(send_notifications)),
        ("cleanup", task_fn!(cleanup)),
    ]
}

/// Generates the product catalog.
pub async fn generate_data(context: &mut Context, simulation: Simulation) -> Result<(), TaskError> {
    info!("🚀 Generating product dataset");

    // Simulate loading a large dataset
    simulation.pause(500).await;

    let total_products: u32 = 10000;
    let products = (1..=total_products)
        .map(|id| Product {
            id,
            name: format!("Product {}", id),
            category: format!("Category {}", (id % 10) + 1),
            price: (id as f64 * 1.5) % 100.0,
            stock: (id * 10) % 1000,
        })
        .collect::<Vec<_>>();

    context.insert("total_products", &total_products)?;
    context.insert("products", &products)?;

    info!("Generated {} products across 10 categories", total_products);
    Ok(())
}

/// Splits the catalog into three chunks (the last one takes the remainder).
pub async fn partition_data(
    context: &mut Context,
    _simulation: Simulation,
) -> Result<(), TaskError> {
    info!("Partitioning product data");

    let products: Vec<Product> = context.get("products")?;
    let chunk_size = products.len() / 3;

    let (chunk1, remainder) = products.split_at(chunk_size);
    let (chunk2, chunk3) = remainder.split_at(chunk_size);

    context.insert("partition_1", chunk1)?;
    context.insert("partition_2", chunk2)?;
    context.insert("partition_3", chunk3)?;

    info!(
        "Data partitioned into 3 chunks of {} products each",
        chunk_size
    );
    Ok(())
}

/// Processes the first partition.
pub async fn process_partition_1(
    context: &mut Context,
    simulation: Simulation,
) -> Result<(), TaskError> {
    process_partition(context, simulation, 1, 1000..3000).await
}

/// Processes the second partition.
pub async fn process_partition_2(
    context: &mut Context,
    simulation: Simulation,
) -> Result<(), TaskError> {
    process_partition(context, simulation, 2, 1500..4000).await
}

/// Processes the third partition.
pub async fn process_partition_3(
    context: &mut Context,
    simulation: Simulation,
) -> Result<(), TaskError> {
    process_partition(context, simulation, 3, 800..2500).await
}

/// The body the tutorial repeats in its three partition tasks: reads
/// `partition_N`, "works" for a random time in `processing_range` (ms),
/// writes `stats_N` and `processing_time_N`.
async fn process_partition(
    context: &mut Context,
    simulation: Simulation,
    partition: u32,
    processing_range: Range<u64>,
) -> Result<(), TaskError> {
    let products: Vec<Product> = context.get(&format!("partition_{partition}"))?;
    info!(
        "Processing partition {}: {} products",
        partition,
        products.len()
    );

    // Simulate CPU-intensive processing
    let processing_time = simulation.processing_time(processing_range);
    simulation.pause(processing_time).await;

    let stats = category_stats(&products);

    context.insert(&format!("stats_{partition}"), &stats)?;
    context.insert(&format!("processing_time_{partition}"), &processing_time)?;

    info!(
        "Partition {} complete: processed {} products in {}ms",
        partition,
        products.len(),
        processing_time
    );
    Ok(())
}

/// Per-category totals of some products.
pub fn category_stats(products: &[Product]) -> StatsByCategory {
    let mut stats = StatsByCategory::new();
    for product in products {
        let entry = stats.entry(product.category.clone()).or_default();
        entry.total_value += product.price * product.stock as f64;
        entry.total_stock += product.stock;
        entry.product_count += 1;
    }
    stats
}

/// Merges the three partitions' stats and computes the tutorial's parallel
/// efficiency: the sum of the processing times over the longest one.
pub async fn combine_results(
    context: &mut Context,
    _simulation: Simulation,
) -> Result<(), TaskError> {
    info!("🔀 Combining results from parallel processing");

    let stats_1: StatsByCategory = context.get("stats_1")?;
    let stats_2: StatsByCategory = context.get("stats_2")?;
    let stats_3: StatsByCategory = context.get("stats_3")?;

    let time_1: u64 = context.get("processing_time_1")?;
    let time_2: u64 = context.get("processing_time_2")?;
    let time_3: u64 = context.get("processing_time_3")?;

    // Combine all stats
    let mut combined_stats = stats_1;
    for (category, stats) in stats_2.into_iter().chain(stats_3) {
        let entry = combined_stats.entry(category).or_default();
        entry.total_value += stats.total_value;
        entry.total_stock += stats.total_stock;
        entry.product_count += stats.product_count;
    }

    // Calculate parallel efficiency (undefined, so null, when nothing slept)
    let total_processing_time = time_1 + time_2 + time_3;
    let max_parallel_time = time_1.max(time_2).max(time_3);
    let parallel_efficiency = (max_parallel_time > 0)
        .then(|| (total_processing_time as f64 / max_parallel_time as f64) * 100.0);

    context.insert("final_stats", &combined_stats)?;
    context.insert("total_processing_time_ms", &total_processing_time)?;
    context.insert("actual_parallel_time_ms", &max_parallel_time)?;
    context.insert("parallel_efficiency_percent", &parallel_efficiency)?;

    match parallel_efficiency {
        Some(efficiency) => info!("Results combined: {:.1}% parallel efficiency", efficiency),
        None => info!("Results combined (no simulated processing time, so no efficiency figure)"),
    }
    Ok(())
}

/// Summarizes `final_stats`: totals and the top three categories by value.
pub async fn generate_report(
    context: &mut Context,
    _simulation: Simulation,
) -> Result<(), TaskError> {
    info!("📊 Generating report");

    let final_stats: StatsByCategory = context.get("final_stats")?;
    let total_products: u32 = context.get("total_products")?;

    let total_value: f64 = final_stats.values().map(|stats| stats.total_value).sum();
    let total_stock: u64 = final_stats
        .values()
        .map(|stats| u64::from(stats.total_stock))
        .sum();
    let mut ranking: Vec<(&String, &CategoryStats)> = final_stats.iter().collect();
    ranking.sort_by(|(a_name, a), (b_name, b)| {
        b.total_value
            .total_cmp(&a.total_value)
            .then_with(|| a_name.cmp(b_name))
    });
    let top_categories_by_value = ranking
        .into_iter()
        .take(3)
        .map(|(category, stats)| CategoryValue {
            category: category.clone(),
            total_value: stats.total_value,
            share_percent: if total_value > 0.0 {
                stats.total_value / total_value * 100.0
            } else {
                0.0
            },
        })
        .collect::<Vec<_>>();

    if let Some(top) = top_categories_by_value.first() {
        info!(
            "Top category by value: {} ({:.2}, {:.1}% of {:.2})",
            top.category, top.total_value, top.share_percent, total_value
        );
    }
    let report = Report {
        categories: final_stats.len(),
        total_products,
        total_stock,
        total_value,
        top_categories_by_value,
    };
    context.insert("report", &report)?;

    info!(
        "Report ready: {} products in {} categories",
        report.total_products, report.categories
    );
    Ok(())
}

/// Tells someone the catalog was processed (here: a log line).
pub async fn send_notifications(
    context: &mut Context,
    _simulation: Simulation,
) -> Result<(), TaskError> {
    let final_stats: StatsByCategory = context.get("final_stats")?;
    let total_products: u32 = context.get("total_products")?;
    let efficiency: Option<f64> = context.get("parallel_efficiency_percent")?;

    let efficiency = efficiency
        .map(|efficiency| format!("{efficiency:.1}% parallel efficiency"))
        .unwrap_or_else(|| "no simulated processing time".to_owned());
    info!(
        "📧 Notification: catalog processed, {} products in {} categories, {}",
        total_products,
        final_stats.len(),
        efficiency
    );

    context.insert("notifications_sent", &1u32)?;
    Ok(())
}

/// Drops the bulky intermediate keys (the catalog and its partitions) so the
/// run's final context keeps only the results. Runs whatever happened
/// upstream (`trigger_rule: all_done`), so every key may be missing.
pub async fn cleanup(context: &mut Context, _simulation: Simulation) -> Result<(), TaskError> {
    info!("🧹 Cleaning up intermediate data");

    let removed = ["products", "partition_1", "partition_2", "partition_3"]
        .into_iter()
        .filter(|key| context.remove(key))
        .count();

    context.insert("cleanup_done", &true)?;

    info!("Removed {} intermediate keys", removed);
    Ok(())
}
