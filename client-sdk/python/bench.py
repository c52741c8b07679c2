"""A small benchmark of the Python SDK's worker against a real server.

The server is found like the tests find it (TRIBUTARY_BIN, else
<repo>/target/release, else <repo>/target/debug) and runs on a fresh SQLite
file. Two scenarios:

- a chain of N no-op tasks: dispatch latency p50/p99, the time from task
  k's handler returning to task k+1's handler being entered, on the
  worker's clock;
- a fan-out of N no-op tasks: tasks per second through one worker process.

    client-sdk/python/.venv/bin/python client-sdk/python/bench.py [--tasks 10000] [--sync]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from tributary_sdk import AsyncClient, Context, RunStatus, Worker, task, workflow
from tributary_sdk.local_server import LocalServer

REPO = Path(__file__).resolve().parents[2]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(
    url: str, size: int, shape: str, sync: bool, capacity: int
) -> tuple[dict[str, float], float]:
    entered: dict[str, float] = {}
    returned: dict[str, float] = {}

    if sync:

        def noop_sync(context: Context) -> None:
            assert context.attempt is not None
            entered[context.attempt.task_id] = time.perf_counter()
            returned[context.attempt.task_id] = time.perf_counter()

        body = noop_sync
    else:

        async def noop_async(context: Context) -> None:
            assert context.attempt is not None
            entered[context.attempt.task_id] = time.perf_counter()
            returned[context.attempt.task_id] = time.perf_counter()

        body = noop_async  # type: ignore[assignment]
    ids = [f"t{index:05d}" for index in range(size)]
    name = f"bench-{shape}-{size}"
    tasks = [
        task(id=ids[i], dependencies=[ids[i - 1]] if shape == "chain" and i else [], handler="bench.noop")(
            body
        )
        for i in range(size)
    ]
    flow = workflow(name, tasks)
    async with AsyncClient(url) as client:
        await client.register_workflow(flow)
        worker = Worker(url, handlers={"bench.noop": body}, capacity=capacity)
        await worker.start()
        await worker.wait_for(lambda status: status.connected, 30)
        began = time.perf_counter()
        started = await client.start_run(name)
        run = await client.wait(started.run_id)
        elapsed = time.perf_counter() - began
        await worker.shutdown(10)
    assert run.status == RunStatus.SUCCEEDED, run.status
    latencies = [entered[ids[i + 1]] - returned[ids[i]] for i in range(size - 1)] if shape == "chain" else []
    throughput = size / (max(returned.values()) - min(entered.values()))
    return (
        {
            "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else 0.0,
            "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else 0.0,
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
            "tasks_per_s": throughput,
        },
        elapsed,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in the chain and in the fan-out")
    parser.add_argument(
        "--sync", action="store_true", help="plain def handlers (thread pool) instead of async def"
    )
    parser.add_argument("--capacity", type=int, default=64, help="the worker's capacity for the fan-out")
    parser.add_argument("--server", help="an existing server's URL instead of one started here")
    args = parser.parse_args()
    kind = "plain def (thread pool)" if args.sync else "async def (event loop)"
    if args.server:
        url, server = args.server, None
    else:
        server = LocalServer(search_from=REPO)
        server.start()
        url = server.url
        print(f"server: {server.binary}")
    try:
        chain, chain_wall = await measure(url, args.tasks, "chain", args.sync, 1)
        print(
            f"chain of {args.tasks} no-op {kind} tasks: dispatch latency p50 {chain['p50_ms']:.2f} ms,"
            f" p99 {chain['p99_ms']:.2f} ms, mean {chain['mean_ms']:.2f} ms; {chain_wall:.1f} s in all"
        )
        fan, fan_wall = await measure(url, args.tasks, "fanout", args.sync, args.capacity)
        print(
            f"fan-out of {args.tasks} no-op {kind} tasks, capacity {args.capacity}:"
            f" {fan['tasks_per_s']:.0f} tasks/s through one worker process; {fan_wall:.1f} s in all"
        )
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    asyncio.run(main())
