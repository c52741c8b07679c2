/**
 * The tutorial's data structures and its first six tasks (seed
 * 03-parallel-processing), ported from examples/src/parallel_processing/seed.rs
 * task for task: the same ids, dependencies and retry settings, the same
 * data (10,000 products), the same three partitions and stats.
 */

import { task } from "@tributary-dev/sdk";
import type { Context, JsonValue } from "@tributary-dev/sdk";
import { info } from "./log.js";
import { sleep } from "./simulated.js";

/** One product of the generated catalog. */
export interface Product {
  id: number;
  name: string;
  category: string;
  price: number;
  stock: number;
}

/** Per-category totals of a partition, or of all of them. */
export interface CategoryStats {
  total_value: number;
  total_stock: number;
  product_count: number;
}

/** Stats keyed by category name. */
export type StatsByCategory = Record<string, CategoryStats>;

/** Reads a list of products written by an earlier task. */
function products(ctx: Context, key: string): Product[] {
  return ctx.get(key, "array") as unknown as Product[];
}

/** Reads stats written by an earlier task. */
export function stats(ctx: Context, key: string): StatsByCategory {
  return ctx.get(key, "object") as unknown as StatsByCategory;
}

/** A random integer in [low, high), like `rand::thread_rng().gen_range(low..high)`. */
function genRange(low: number, high: number): number {
  return low + Math.floor(Math.random() * (high - low));
}

// Generate large dataset
export const generateData = task({ id: "generate_data", dependencies: [], retryAttempts: 2 }, async (ctx) => {
  info("🚀 Generating product dataset");
  // Simulate loading a large dataset
  await sleep(500);
  const totalProducts = 10000;
  const catalog: Product[] = [];
  for (let id = 1; id <= totalProducts; id++) {
    catalog.push({
      id,
      name: `Product ${id}`,
      category: `Category ${(id % 10) + 1}`,
      price: (id * 1.5) % 100.0,
      stock: (id * 10) % 1000,
    });
  }
  ctx.insert("total_products", totalProducts);
  ctx.insert("products", catalog);
  info(`Generated ${totalProducts} products across 10 categories`);
});

// Partition data into three chunks
export const partitionData = task({ id: "partition_data", dependencies: ["generate_data"], retryAttempts: 2 }, (ctx) => {
  info("Partitioning product data");
  const all = products(ctx, "products");
  const chunkSize = Math.floor(all.length / 3);
  ctx.insert("partition_1", all.slice(0, chunkSize));
  ctx.insert("partition_2", all.slice(chunkSize, 2 * chunkSize));
  ctx.insert("partition_3", all.slice(2 * chunkSize));
  info(`Data partitioned into 3 chunks of ${chunkSize} products each`);
});

/** The body the three partition tasks share, with each one's simulated processing time range. */
function processPartition(n: 1 | 2 | 3, low: number, high: number) {
  return async (ctx: Context): Promise<void> => {
    const partition = products(ctx, `partition_${n}`);
    info(`Processing partition ${n}: ${partition.length} products`);
    // Simulate CPU-intensive processing
    const processingTime = genRange(low, high);
    await sleep(processingTime);
    const result: StatsByCategory = {};
    for (const product of partition) {
      const entry = (result[product.category] ??= { total_value: 0.0, total_stock: 0, product_count: 0 });
      entry.total_value += product.price * product.stock;
      entry.total_stock += product.stock;
      entry.product_count += 1;
    }
    ctx.insert(`stats_${n}`, result);
    ctx.insert(`processing_time_${n}`, processingTime);
    info(`Partition ${n} complete: processed ${partition.length} products in ${processingTime}ms`);
  };
}

// Process first partition
export const processPartition1 = task(
  { id: "process_partition_1", dependencies: ["partition_data"], retryAttempts: 3, retryDelayMs: 1000 },
  processPartition(1, 1000, 3000),
);
// Process second partition
export const processPartition2 = task(
  { id: "process_partition_2", dependencies: ["partition_data"], retryAttempts: 3, retryDelayMs: 1000 },
  processPartition(2, 1500, 4000),
);
// Process third partition
export const processPartition3 = task(
  { id: "process_partition_3", dependencies: ["partition_data"], retryAttempts: 3, retryDelayMs: 1000 },
  processPartition(3, 800, 2500),
);

// Combine results
export const combineResults = task(
  {
    id: "combine_results",
    dependencies: ["process_partition_1", "process_partition_2", "process_partition_3"],
    retryAttempts: 2,
  },
  (ctx) => {
    info("🔀 Combining results from parallel processing");
    const stats1 = stats(ctx, "stats_1");
    const stats2 = stats(ctx, "stats_2");
    const stats3 = stats(ctx, "stats_3");
    const time1 = ctx.get("processing_time_1", "number");
    const time2 = ctx.get("processing_time_2", "number");
    const time3 = ctx.get("processing_time_3", "number");
    // Combine all stats
    const combined: StatsByCategory = stats1;
    for (const more of [stats2, stats3]) {
      for (const [category, s] of Object.entries(more)) {
        const entry = (combined[category] ??= { total_value: 0.0, total_stock: 0, product_count: 0 });
        entry.total_value += s.total_value;
        entry.total_stock += s.total_stock;
        entry.product_count += s.product_count;
      }
    }
    // Calculate parallel efficiency
    const totalProcessingTime = time1 + time2 + time3;
    const maxParallelTime = Math.max(time1, time2, time3);
    const parallelEfficiency = (totalProcessingTime / maxParallelTime) * 100.0;
    ctx.insert("final_stats", combined as unknown as JsonValue);
    ctx.insert("total_processing_time_ms", totalProcessingTime);
    ctx.insert("actual_parallel_time_ms", maxParallelTime);
    ctx.insert("parallel_efficiency_percent", parallelEfficiency);
    info(`Results combined: ${parallelEfficiency.toFixed(1)}% parallel efficiency`);
  },
);
