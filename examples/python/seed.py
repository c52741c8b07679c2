"""The tutorial's parallel-processing workflow on the Python SDK: the same
nine tasks, data and attributes as the Rust example
(examples/src/parallel_processing/{seed.rs,followup.rs}).

generate_data -> partition_data -> process_partition_{1,2,3} -> combine_results
    combine_results -> generate_report, send_notifications -> cleanup (all_done)
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from tributary_sdk import Context, Workflow, task, workflow

log = logging.getLogger("parallel_processing")

DESCRIPTION = (
    "Generate 10,000 products, process three partitions in parallel, combine the stats, report and notify."
)
"""The workflow's description, as the Rust example registers it."""

PARTITION_TASKS = ("process_partition_1", "process_partition_2", "process_partition_3")
"""The tasks that run in parallel."""

BULKY_KEYS = ("products", "partition_1", "partition_2", "partition_3")
"""The keys `cleanup` removes: the catalog and its partitions."""


class simulated:
    """The tutorial's sleeps, which `--no-sleep` turns off (same work,
    same results)."""

    sleeps = True

    @classmethod
    async def sleep(cls, milliseconds: int) -> None:
        """`tokio::time::sleep`, unless sleeps are off."""
        if cls.sleeps:
            await asyncio.sleep(milliseconds / 1000)


@dataclass
class Product:
    """One product of the generated catalog."""

    id: int
    name: str
    category: str
    price: float
    stock: int


@dataclass
class CategoryStats:
    """Per-category totals of a partition, and of all after combining."""

    total_value: float
    total_stock: int
    product_count: int


@dataclass
class CategoryValue:
    """One line of the report's ranking."""

    category: str
    total_value: float
    share_percent: float


@dataclass
class Report:
    """What `generate_report` writes."""

    categories: int
    total_products: int
    total_stock: int
    total_value: float
    top_categories_by_value: list[CategoryValue]


# Generate large dataset
@task(id="generate_data", dependencies=[], retry_attempts=2)
async def generate_data(context: Context) -> None:
    log.info("🚀 Generating product dataset")
    # Simulate loading a large dataset
    await simulated.sleep(500)
    total_products = 10000
    products = [
        Product(
            id=id,
            name=f"Product {id}",
            category=f"Category {(id % 10) + 1}",
            price=(id * 1.5) % 100.0,
            stock=(id * 10) % 1000,
        )
        for id in range(1, total_products + 1)
    ]
    context.insert("total_products", total_products)
    context.insert("products", products)
    log.info("Generated %d products across 10 categories", total_products)


# Partition data into three chunks
@task(id="partition_data", dependencies=["generate_data"], retry_attempts=2)
async def partition_data(context: Context) -> None:
    log.info("Partitioning product data")
    products = context.get("products", list[Product])
    chunk_size = len(products) // 3
    context.insert("partition_1", products[:chunk_size])
    context.insert("partition_2", products[chunk_size : 2 * chunk_size])
    context.insert("partition_3", products[2 * chunk_size :])
    log.info("Data partitioned into 3 chunks of %d products each", chunk_size)


def category_stats(products: list[Product]) -> dict[str, CategoryStats]:
    """The per-category totals the three partition tasks compute."""
    stats: dict[str, CategoryStats] = {}
    for product in products:
        entry = stats.setdefault(product.category, CategoryStats(0.0, 0, 0))
        entry.total_value += product.price * product.stock
        entry.total_stock += product.stock
        entry.product_count += 1
    return stats


async def process_partition(context: Context, n: int, low: int, high: int) -> None:
    """The body the tutorial repeats for each partition."""
    products = context.get(f"partition_{n}", list[Product])
    log.info("Processing partition %d: %d products", n, len(products))
    # Simulate CPU-intensive processing
    processing_time = random.randrange(low, high)
    await simulated.sleep(processing_time)
    stats = category_stats(products)
    context.insert(f"stats_{n}", stats)
    context.insert(f"processing_time_{n}", processing_time)
    log.info("Partition %d complete: processed %d products in %dms", n, len(products), processing_time)


# Process first partition
@task(id="process_partition_1", dependencies=["partition_data"], retry_attempts=3, retry_delay_ms=1000)
async def process_partition_1(context: Context) -> None:
    await process_partition(context, 1, 1000, 3000)


# Process second partition
@task(id="process_partition_2", dependencies=["partition_data"], retry_attempts=3, retry_delay_ms=1000)
async def process_partition_2(context: Context) -> None:
    await process_partition(context, 2, 1500, 4000)


# Process third partition
@task(id="process_partition_3", dependencies=["partition_data"], retry_attempts=3, retry_delay_ms=1000)
async def process_partition_3(context: Context) -> None:
    await process_partition(context, 3, 800, 2500)


# Combine results
@task(
    id="combine_results",
    dependencies=["process_partition_1", "process_partition_2", "process_partition_3"],
    retry_attempts=2,
)
async def combine_results(context: Context) -> None:
    log.info("🔀 Combining results from parallel processing")
    stats_1 = context.get("stats_1", dict[str, CategoryStats])
    stats_2 = context.get("stats_2", dict[str, CategoryStats])
    stats_3 = context.get("stats_3", dict[str, CategoryStats])
    time_1 = context.get("processing_time_1", int)
    time_2 = context.get("processing_time_2", int)
    time_3 = context.get("processing_time_3", int)
    # Combine all stats
    combined_stats = stats_1
    for more in (stats_2, stats_3):
        for category, stats in more.items():
            entry = combined_stats.setdefault(category, CategoryStats(0.0, 0, 0))
            entry.total_value += stats.total_value
            entry.total_stock += stats.total_stock
            entry.product_count += stats.product_count
    # Calculate parallel efficiency
    total_processing_time = time_1 + time_2 + time_3
    max_parallel_time = max(time_1, time_2, time_3)
    parallel_efficiency = (total_processing_time / max_parallel_time) * 100.0
    context.insert("final_stats", combined_stats)
    context.insert("total_processing_time_ms", total_processing_time)
    context.insert("actual_parallel_time_ms", max_parallel_time)
    context.insert("parallel_efficiency_percent", parallel_efficiency)
    log.info("Results combined: %.1f%% parallel efficiency", parallel_efficiency)


# Summarizes final_stats: totals and the top three categories by value.
@task(id="generate_report", dependencies=["combine_results"], retry_attempts=2)
async def generate_report(context: Context) -> None:
    log.info("📊 Generating report")
    final_stats = context.get("final_stats", dict[str, CategoryStats])
    total_products = context.get("total_products", int)
    total_value = sum(stats.total_value for stats in final_stats.values())
    total_stock = sum(stats.total_stock for stats in final_stats.values())
    ranking = sorted(final_stats.items(), key=lambda item: (-item[1].total_value, item[0]))
    top = [
        CategoryValue(
            category=category,
            total_value=stats.total_value,
            share_percent=stats.total_value / total_value * 100.0 if total_value > 0 else 0.0,
        )
        for category, stats in ranking[:3]
    ]
    if top:
        log.info(
            "Top category by value: %s (%.2f, %.1f%% of %.2f)",
            top[0].category,
            top[0].total_value,
            top[0].share_percent,
            total_value,
        )
    report = Report(len(final_stats), total_products, total_stock, total_value, top)
    context.insert("report", report)
    log.info("Report ready: %d products in %d categories", report.total_products, report.categories)


# Tells someone the catalog was processed (here: a log line).
@task(id="send_notifications", dependencies=["combine_results"], retry_attempts=2)
async def send_notifications(context: Context) -> None:
    final_stats = context.get("final_stats", dict[str, CategoryStats])
    total_products = context.get("total_products", int)
    efficiency = context.get("parallel_efficiency_percent", float)
    log.info(
        "📧 Notification: catalog processed, %d products in %d categories, %.1f%% parallel efficiency",
        total_products,
        len(final_stats),
        efficiency,
    )
    context.insert("notifications_sent", 1)


# Drops the bulky intermediate keys so the run's final context keeps only
# the results. It runs even when something upstream failed, so every key
# may be missing.
@task(id="cleanup", dependencies=["generate_report", "send_notifications"], trigger_rule="all_done")
async def cleanup(context: Context) -> None:
    log.info("🧹 Cleaning up intermediate data")
    removed = sum(1 for key in BULKY_KEYS if context.discard(key))
    context.insert("cleanup_done", True)
    log.info("Removed %d intermediate keys", removed)


def parallel_processing() -> Workflow:
    """The nine tasks of the tutorial's diagram as one workflow."""
    return workflow(
        "parallel_processing",
        [
            generate_data,
            partition_data,
            process_partition_1,
            process_partition_2,
            process_partition_3,
            combine_results,
            generate_report,
            send_notifications,
            cleanup,
        ],
        description=DESCRIPTION,
    )
