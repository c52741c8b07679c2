//! The tutorial's code, verbatim: its data structures and its first six
//! tasks, copied from the Cloacina tutorial's parallel-processing example. Only the `use` lines
//! are ours (the tutorial does not show them) — with one deliberate twist —
//! plus the `workflow()` at the end, which groups these tasks with the three
//! the tutorial leaves out (`followup.rs`).
//!
//! The twist: `tokio` below is not the tokio crate but [`super::simulated`],
//! so the tutorial's `tokio::time::sleep(...)` calls honour `--no-sleep`
//! without a change to their bodies; and `info!` is `simulated`'s, which
//! marks the lines `slept=false` under `--no-sleep`.
//!
//! One change to the bodies was unavoidable: the three partition tasks
//! iterate `&products` where the tutorial writes `for product in products`.
//! The tutorial's loop moves the vector and the next statement reads
//! `products.len()`, which does not compile (E0382, borrow of moved value).

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tributary::{Context, TaskError, Workflow, task, workflow};

use super::simulated as tokio;
use super::simulated::info;

#[derive(Debug, Serialize, Deserialize, Clone)]
struct Product {
    id: u32,
    name: String,
    category: String,
    price: f64,
    stock: u32,
}
#[derive(Debug, Serialize, Deserialize)]
struct CategoryStats {
    total_value: f64,
    total_stock: u32,
    product_count: u32,
}
// Generate large dataset
#[task(
id = "generate_data",
dependencies = [],
retry_attempts = 2
)]
async fn generate_data(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    info!("🚀 Generating product dataset");
    // Simulate loading a large dataset
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total_products = 10000;
    let products = (1..=total_products)
        .map(|id| Product {
            id,
            name: format!("Product {}", id),
            category: format!("Category {}", (id % 10) + 1),
            price: (id as f64 * 1.5) % 100.0,
            stock: (id * 10) % 1000,
        })
        .collect::<Vec<_>>();
    context.insert("total_products", json!(total_products))?;
    context.insert("products", json!(products))?;
    info!("Generated {} products across 10 categories", total_products);
    Ok(())
}
// Partition data into three chunks
#[task(
id = "partition_data",
dependencies = ["generate_data"],
retry_attempts = 2
)]
async fn partition_data(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    info!("Partitioning product data");
    let products: Vec<Product> = context.get("products")?;
    let chunk_size = products.len() / 3;
    let (chunk1, remainder) = products.split_at(chunk_size);
    let (chunk2, chunk3) = remainder.split_at(chunk_size);
    context.insert("partition_1", json!(chunk1.to_vec()))?;
    context.insert("partition_2", json!(chunk2.to_vec()))?;
    context.insert("partition_3", json!(chunk3.to_vec()))?;
    info!(
        "Data partitioned into 3 chunks of {} products each",
        chunk_size
    );
    Ok(())
}
// Process first partition
#[task(
id = "process_partition_1",
dependencies = ["partition_data"],
retry_attempts = 3,
retry_delay_ms = 1000
)]
async fn process_partition_1(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let products: Vec<Product> = context.get("partition_1")?;
    info!("Processing partition 1: {} products", products.len());
    // Simulate CPU-intensive processing
    let processing_time = rand::thread_rng().gen_range(1000..3000);
    tokio::time::sleep(Duration::from_millis(processing_time)).await;
    let mut stats = std::collections::HashMap::new();
    for product in &products {
        let entry = stats
            .entry(product.category.clone())
            .or_insert(CategoryStats {
                total_value: 0.0,
                total_stock: 0,
                product_count: 0,
            });
        entry.total_value += product.price * product.stock as f64;
        entry.total_stock += product.stock;
        entry.product_count += 1;
    }
    context.insert("stats_1", json!(stats))?;
    context.insert("processing_time_1", json!(processing_time))?;
    info!(
        "Partition 1 complete: processed {} products in {}ms",
        products.len(),
        processing_time
    );
    Ok(())
}
// Process second partition
#[task(
id = "process_partition_2",
dependencies = ["partition_data"],
retry_attempts = 3,
retry_delay_ms = 1000
)]
async fn process_partition_2(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let products: Vec<Product> = context.get("partition_2")?;
    info!("Processing partition 2: {} products", products.len());
    // Simulate CPU-intensive processing
    let processing_time = rand::thread_rng().gen_range(1500..4000);
    tokio::time::sleep(Duration::from_millis(processing_time)).await;
    let mut stats = std::collections::HashMap::new();
    for product in &products {
        let entry = stats
            .entry(product.category.clone())
            .or_insert(CategoryStats {
                total_value: 0.0,
                total_stock: 0,
                product_count: 0,
            });
        entry.total_value += product.price * product.stock as f64;
        entry.total_stock += product.stock;
        entry.product_count += 1;
    }
    context.insert("stats_2", json!(stats))?;
    context.insert("processing_time_2", json!(processing_time))?;
    info!(
        "Partition 2 complete: processed {} products in {}ms",
        products.len(),
        processing_time
    );
    Ok(())
}
// Process third partition
#[task(
id = "process_partition_3",
dependencies = ["partition_data"],
retry_attempts = 3,
retry_delay_ms = 1000
)]
async fn process_partition_3(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let products: Vec<Product> = context.get("partition_3")?;
    info!("Processing partition 3: {} products", products.len());
    // Simulate CPU-intensive processing
    let processing_time = rand::thread_rng().gen_range(800..2500);
    tokio::time::sleep(Duration::from_millis(processing_time)).await;
    let mut stats = std::collections::HashMap::new();
    for product in &products {
        let entry = stats
            .entry(product.category.clone())
            .or_insert(CategoryStats {
                total_value: 0.0,
                total_stock: 0,
                product_count: 0,
            });
        entry.total_value += product.price * product.stock as f64;
        entry.total_stock += product.stock;
        entry.product_count += 1;
    }
    context.insert("stats_3", json!(stats))?;
    context.insert("processing_time_3", json!(processing_time))?;
    info!(
        "Partition 3 complete: processed {} products in {}ms",
        products.len(),
        processing_time
    );
    Ok(())
}
// Combine results
#[task(
id = "combine_results",
dependencies = ["process_partition_1", "process_partition_2", "process_partition_3"],
retry_attempts = 2
)]
async fn combine_results(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    info!("🔀 Combining results from parallel processing");
    let stats_1: std::collections::HashMap<String, CategoryStats> = context.get("stats_1")?;
    let stats_2: std::collections::HashMap<String, CategoryStats> = context.get("stats_2")?;
    let stats_3: std::collections::HashMap<String, CategoryStats> = context.get("stats_3")?;
    let time_1: u64 = context.get("processing_time_1")?;
    let time_2: u64 = context.get("processing_time_2")?;
    let time_3: u64 = context.get("processing_time_3")?;
    // Combine all stats
    let mut combined_stats = stats_1;
    for (category, stats) in stats_2 {
        let entry = combined_stats.entry(category).or_insert(CategoryStats {
            total_value: 0.0,
            total_stock: 0,
            product_count: 0,
        });
        entry.total_value += stats.total_value;
        entry.total_stock += stats.total_stock;
        entry.product_count += stats.product_count;
    }
    for (category, stats) in stats_3 {
        let entry = combined_stats.entry(category).or_insert(CategoryStats {
            total_value: 0.0,
            total_stock: 0,
            product_count: 0,
        });
        entry.total_value += stats.total_value;
        entry.total_stock += stats.total_stock;
        entry.product_count += stats.product_count;
    }
    // Calculate parallel efficiency
    let total_processing_time = time_1 + time_2 + time_3;
    let max_parallel_time = std::cmp::max(std::cmp::max(time_1, time_2), time_3);
    let parallel_efficiency = (total_processing_time as f64 / max_parallel_time as f64) * 100.0;
    context.insert("final_stats", json!(combined_stats))?;
    context.insert("total_processing_time_ms", json!(total_processing_time))?;
    context.insert("actual_parallel_time_ms", json!(max_parallel_time))?;
    context.insert("parallel_efficiency_percent", json!(parallel_efficiency))?;
    info!(
        "Results combined: {:.1}% parallel efficiency",
        parallel_efficiency
    );
    Ok(())
}

/// What `parallel_processing.workflow.yaml` says for the CLI; a test keeps
/// the two equal.
pub const DESCRIPTION: &str = "Generate 10,000 products, process three partitions in parallel, combine the stats, report and notify.";

/// The nine tasks of the tutorial's diagram as one workflow. The tutorial's
/// retry numbers are kept as written, although Tributary counts retries
/// after the first attempt where Cloacina counts attempts.
pub fn workflow() -> Workflow {
    workflow!(
        "parallel_processing",
        [
            generate_data,
            partition_data,
            process_partition_1,
            process_partition_2,
            process_partition_3,
            combine_results,
            super::followup::generate_report,
            super::followup::send_notifications,
            super::followup::cleanup,
        ]
    )
    .description(DESCRIPTION)
}
