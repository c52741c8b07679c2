"""The seed example end to end, as its README command runs it, and split
across two processes the way a mixed-language run splits it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from tributary_sdk import AsyncClient
from tributary_sdk.local_server import LocalServer

from .conftest import REPO

EXAMPLE = REPO / "examples" / "python" / "parallel_processing.py"
PARTITIONS = "process_partition_1,process_partition_2,process_partition_3"
OTHERS = "generate_data,partition_data,combine_results,generate_report,send_notifications,cleanup"
EXPECTED_TABLE = """Category        Products        Stock              Value
Category 1         1,000      450,000      22,500,000.00
Category 2         1,000      460,000      23,665,000.00
Category 3         1,000      470,000      24,860,000.00
Category 4         1,000      480,000      26,085,000.00
Category 5         1,000      490,000      25,640,000.00
Category 6         1,000      500,000      26,875,000.00
Category 7         1,000      510,000      28,140,000.00
Category 8         1,000      520,000      26,085,000.00
Category 9         1,000      530,000      27,360,000.00
Category 10        1,000      540,000      28,665,000.00
All               10,000    4,950,000     259,875,000.00
"""


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_the_example_runs_the_seed_on_a_server_of_its_own() -> None:
    result = run_example("--no-sleep")
    assert result.returncode == 0, result.stderr
    assert "All 9 tasks succeeded." in result.stdout
    assert EXPECTED_TABLE in result.stdout
    assert "(--no-sleep: those times were drawn, not slept)" in result.stdout
    # The worker in the same process may log its first task before the
    # client's StartRun answer comes back, so the line need not be first.
    assert any(line.startswith("Started run ") for line in result.stderr.splitlines()), result.stderr


async def test_partitions_served_by_a_worker_only_process(server: LocalServer, client: AsyncClient) -> None:
    partitions = subprocess.Popen(  # noqa: ASYNC220 - a process that outlives this call
        [sys.executable, str(EXAMPLE), "--server", server.url, "--worker-only", "--handlers", PARTITIONS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(
            "parallel_processing.process_partition_1" in e.handlers for e in await client.list_executors()
        ):
            assert time.monotonic() < deadline and partitions.poll() is None, (
                "the worker-only process never registered"
            )
            await asyncio.sleep(0.1)
        result = run_example("--server", server.url, "--no-sleep", "--handlers", OTHERS)
        assert result.returncode == 0, result.stderr
        assert EXPECTED_TABLE in result.stdout
        # This process ran none of the partitions itself.
        assert "Measured parallel efficiency: n/a" in result.stdout
    finally:
        partitions.send_signal(signal.SIGTERM)
        _, errors = partitions.communicate(timeout=60)
    assert partitions.returncode == 0, errors
    assert "Processing partition 1" in errors


def test_bad_flags_are_explained() -> None:
    result = run_example("--worker-only")
    assert result.returncode == 2
    assert "--worker-only needs --server URL" in result.stderr
    unknown = run_example("--no-sleep", "--handlers", "nope")
    assert unknown.returncode == 1
    assert "the workflow has no task 'nope'" in unknown.stderr
