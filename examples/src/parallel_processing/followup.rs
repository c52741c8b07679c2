//! The three tasks of the tutorial's diagram whose code it does not show,
//! written the way a user of the tutorial would: a report of `final_stats`,
//! a notification, and a cleanup of the bulky keys that runs whatever
//! happened upstream (`trigger_rule = "all_done"`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;
use tributary::{Context, TaskError, task};

/// Per-category totals as `combine_results` writes them (the tutorial's
/// `CategoryStats` is private to its module, and a reader needs only the
/// JSON shape).
#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq)]
pub struct CategoryTotals {
    pub total_value: f64,
    pub total_stock: u32,
    pub product_count: u32,
}

/// `final_stats` and `stats_N`, keyed by category name. A `BTreeMap` (the
/// tutorial uses a `HashMap`) keeps what this module writes in a stable
/// order.
pub type StatsByCategory = BTreeMap<String, CategoryTotals>;

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

/// The keys `cleanup` removes: the catalog and its partitions, about 1.7 MB
/// of JSON that nobody needs once the stats exist.
pub const BULKY_KEYS: [&str; 4] = ["products", "partition_1", "partition_2", "partition_3"];

// Summarizes final_stats: totals and the top three categories by value.
#[task(
    id = "generate_report",
    dependencies = ["combine_results"],
    retry_attempts = 2
)]
pub async fn generate_report(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    info!("📊 Generating report");

    let final_stats: StatsByCategory = context.get("final_stats")?;
    let total_products: u32 = context.get("total_products")?;

    let total_value: f64 = final_stats.values().map(|stats| stats.total_value).sum();
    let total_stock: u64 = final_stats
        .values()
        .map(|stats| u64::from(stats.total_stock))
        .sum();
    let mut ranking: Vec<(&String, &CategoryTotals)> = final_stats.iter().collect();
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
    context.insert("report", json!(report))?;

    info!(
        "Report ready: {} products in {} categories",
        report.total_products, report.categories
    );
    Ok(())
}

// Tells someone the catalog was processed (here: a log line).
#[task(
    id = "send_notifications",
    dependencies = ["combine_results"],
    retry_attempts = 2
)]
pub async fn send_notifications(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let final_stats: StatsByCategory = context.get("final_stats")?;
    let total_products: u32 = context.get("total_products")?;
    let efficiency: f64 = context.get("parallel_efficiency_percent")?;

    info!(
        "📧 Notification: catalog processed, {} products in {} categories, {:.1}% parallel efficiency",
        total_products,
        final_stats.len(),
        efficiency
    );

    context.insert("notifications_sent", json!(1))?;
    Ok(())
}

// Drops the bulky intermediate keys so the run's final context keeps only
// the results. It runs even when something upstream failed, so every key
// may be missing.
#[task(
    id = "cleanup",
    dependencies = ["generate_report", "send_notifications"],
    trigger_rule = "all_done"
)]
pub async fn cleanup(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    info!("🧹 Cleaning up intermediate data");

    let removed = BULKY_KEYS
        .into_iter()
        .filter(|key| context.discard(key))
        .count();

    context.insert("cleanup_done", json!(true))?;

    info!("Removed {} intermediate keys", removed);
    Ok(())
}
