"""The seed workflow (the tutorial's parallel processing) on Tributary's
Python SDK, end to end: a server (started here on a temporary SQLite file,
or the one --server names), a Worker serving the nine tasks, one run, and
the per-category stats in the Rust example's format.

    python examples/python/parallel_processing.py --no-sleep
    python examples/python/parallel_processing.py --server http://127.0.0.1:50051
    python examples/python/parallel_processing.py --server URL --worker-only \\
        --handlers process_partition_1,process_partition_2,process_partition_3

Results go to stdout, the run id and logs to stderr. The exit status is 0
only when the run succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from report import AttemptTiming, Finished, render
from seed import parallel_processing, simulated

from tributary_sdk import AsyncClient, Context, RunStatus, TributaryError, Worker, Workflow
from tributary_sdk.local_server import LocalServer

REPO = Path(__file__).resolve().parents[2]
WORKER_CONNECT_LIMIT = 10.0
WORKER_SHUTDOWN_LIMIT = 10.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="parallel_processing",
        description="Runs the seed workflow once and prints its per-category stats.",
    )
    parser.add_argument("--server", metavar="URL", help="use this server instead of starting one here")
    parser.add_argument("--database-url", metavar="URL", help="database of the server started here")
    parser.add_argument("--no-sleep", action="store_true", help="skip the tutorial's simulated sleeps")
    parser.add_argument(
        "--capacity", type=int, default=3, help="attempts the worker runs at once (default 3)"
    )
    parser.add_argument(
        "--worker-only",
        "--worker",
        dest="worker_only",
        action="store_true",
        help="serve the handlers, start no run, stop on SIGTERM/SIGINT (--worker is the same)",
    )
    parser.add_argument("--handlers", metavar="IDS", help="serve only these task ids (comma-separated)")
    args = parser.parse_args(argv)
    if args.capacity < 1:
        parser.error("--capacity must be at least 1")
    if args.server and args.database_url:
        parser.error("--database-url is for the server started here; it cannot go with --server")
    if args.worker_only and not args.server:
        parser.error("--worker-only needs --server URL (the server whose runs it serves)")
    return args


def timed(
    record: list[AttemptTiming], task_id: str, function: Callable[[Context], Any]
) -> Callable[[Context], Any]:
    """Wraps a task's code to note when it was entered and returned."""

    @functools.wraps(function)
    async def run(context: Context) -> None:
        started = time.perf_counter()
        succeeded = False
        try:
            await function(context)
            succeeded = True
        finally:
            record.append(AttemptTiming(task_id, started, time.perf_counter(), succeeded))

    return run


def make_worker(
    url: str, flow: Workflow, only: list[str] | None, capacity: int, record: list[AttemptTiming]
) -> Worker:
    worker = Worker(url, capacity=capacity, name="parallel_processing (python)")
    unknown = sorted(set(only or []) - {t.id for t in flow.tasks})
    if unknown:
        raise TributaryError(f"--handlers: the workflow has no task {unknown[0]!r}")
    for handler_name, task in flow.handlers().items():
        if only is None or task.id in only:
            worker.add_handler(handler_name, timed(record, task.id, task.function))
    return worker


@contextlib.contextmanager
def server_for(args: argparse.Namespace) -> Iterator[str]:
    if args.server:
        yield args.server
        return
    with LocalServer(search_from=REPO, database_url=args.database_url) as server:
        yield server.url


async def run(args: argparse.Namespace, url: str) -> int:
    flow = parallel_processing()
    only = [h.strip() for h in args.handlers.split(",") if h.strip()] if args.handlers else None
    record: list[AttemptTiming] = []
    worker = make_worker(url, flow, only, args.capacity, record)
    async with AsyncClient(url) as client:
        version = await client.register_workflow(flow)
        if args.worker_only:
            logging.info("serving %s on %s until SIGTERM or SIGINT", ", ".join(worker.handler_names), url)
            await worker.serve(grace=30.0)
            return 0
        await worker.start()
        try:
            await worker.wait_for(lambda status: status.connected, WORKER_CONNECT_LIMIT)
        except asyncio.TimeoutError:
            raise TributaryError(
                f"the worker did not register with {url} within {WORKER_CONNECT_LIMIT} s"
            ) from None
        began = time.perf_counter()
        started = await client.start_run(flow.name, {})
        print(
            f"Started run {started.run_id} of {flow.name} on {url}; follow it with:"
            f" tributary run watch {started.run_id} --server {url}",
            file=sys.stderr,
        )
        finished_run = await client.wait(started.run_id)
        elapsed = time.perf_counter() - began
        logging.info("run finished run_id=%s status=%s", finished_run.id, finished_run.status.name)
        await worker.shutdown(WORKER_SHUTDOWN_LIMIT)
    finished = Finished(version.version, finished_run, elapsed, record)
    sys.stdout.write(render(finished, simulated.sleeps))
    return 0 if finished_run.status == RunStatus.SUCCEEDED else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("tributary_sdk").setLevel(logging.WARNING)
    simulated.sleeps = not args.no_sleep
    try:
        with server_for(args) as url:
            return asyncio.run(run(args, url))
    except TributaryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
