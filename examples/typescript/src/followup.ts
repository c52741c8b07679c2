/**
 * The three tasks of the tutorial's diagram whose code it does not show,
 * ported from examples/src/parallel_processing/followup.rs: a report of
 * `final_stats`, a notification, and a cleanup of the bulky keys that runs
 * whatever happened upstream (`triggerRule: "all_done"`).
 */

import { task, workflow } from "@tributary-dev/sdk";
import type { Workflow } from "@tributary-dev/sdk";
import { info } from "./log.js";
import { combineResults, generateData, partitionData, processPartition1, processPartition2, processPartition3, stats } from "./seed.js";

/** The keys `cleanup` removes: the catalog and its partitions. */
export const BULKY_KEYS = ["products", "partition_1", "partition_2", "partition_3"];

/** The partition tasks, which run in parallel. */
export const PARTITION_TASKS = ["process_partition_1", "process_partition_2", "process_partition_3"];

/** What `parallel_processing.workflow.yaml` says for the CLI, and the Rust example too: the same definition, the same version. */
export const DESCRIPTION =
  "Generate 10,000 products, process three partitions in parallel, combine the stats, report and notify.";

const byteOrder = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

// Summarizes final_stats: totals and the top three categories by value.
export const generateReport = task({ id: "generate_report", dependencies: ["combine_results"], retryAttempts: 2 }, (ctx) => {
  info("📊 Generating report");
  const finalStats = stats(ctx, "final_stats");
  const totalProducts = ctx.get("total_products", "number");
  const entries = Object.entries(finalStats).sort(([a], [b]) => byteOrder(a, b));
  const totalValue = entries.reduce((sum, [, s]) => sum + s.total_value, 0);
  const totalStock = entries.reduce((sum, [, s]) => sum + s.total_stock, 0);
  const ranking = [...entries].sort(([aName, a], [bName, b]) => b.total_value - a.total_value || byteOrder(aName, bName));
  const topCategoriesByValue = ranking.slice(0, 3).map(([category, s]) => ({
    category,
    total_value: s.total_value,
    share_percent: totalValue > 0 ? (s.total_value / totalValue) * 100 : 0,
  }));
  const top = topCategoriesByValue[0];
  if (top) {
    info(
      `Top category by value: ${top.category} (${top.total_value.toFixed(2)}, ${top.share_percent.toFixed(1)}% of ${totalValue.toFixed(2)})`,
    );
  }
  const report = {
    categories: entries.length,
    total_products: totalProducts,
    total_stock: totalStock,
    total_value: totalValue,
    top_categories_by_value: topCategoriesByValue,
  };
  ctx.insert("report", report);
  info(`Report ready: ${report.total_products} products in ${report.categories} categories`);
});

// Tells someone the catalog was processed (here: a log line).
export const sendNotifications = task({ id: "send_notifications", dependencies: ["combine_results"], retryAttempts: 2 }, (ctx) => {
  const finalStats = stats(ctx, "final_stats");
  const totalProducts = ctx.get("total_products", "number");
  const efficiency = ctx.get("parallel_efficiency_percent", "number");
  info(
    `📧 Notification: catalog processed, ${totalProducts} products in ${Object.keys(finalStats).length} categories, ${efficiency.toFixed(1)}% parallel efficiency`,
  );
  ctx.insert("notifications_sent", 1);
});

// Drops the bulky intermediate keys so the run's final context keeps only
// the results. It runs even when something upstream failed, so every key
// may be missing.
export const cleanup = task(
  { id: "cleanup", dependencies: ["generate_report", "send_notifications"], triggerRule: "all_done" },
  (ctx) => {
    info("🧹 Cleaning up intermediate data");
    const removed = BULKY_KEYS.filter((key) => ctx.discard(key)).length;
    ctx.insert("cleanup_done", true);
    info(`Removed ${removed} intermediate keys`);
  },
);

/** The nine tasks of the tutorial's diagram as one workflow. */
export function parallelProcessing(): Workflow {
  return workflow(
    "parallel_processing",
    [
      generateData,
      partitionData,
      processPartition1,
      processPartition2,
      processPartition3,
      combineResults,
      generateReport,
      sendNotifications,
      cleanup,
    ],
    { description: DESCRIPTION },
  );
}
