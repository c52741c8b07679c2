"""The conformance worker as the conformance runner drives it: a process
with the SPEC's environment, its log, and a SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tributary_sdk import AsyncClient, RunStatus
from tributary_sdk.local_server import LocalServer

from .conftest import REPO, load_vectors, unique_name

WORKER = Path(__file__).resolve().parents[1] / "conformance" / "worker.py"


def start_worker(server: LocalServer, log: Path, capacity: int = 4) -> subprocess.Popen[str]:
    env = os.environ.copy()
    env.update(
        TRIBUTARY_SERVER=server.url,
        TRIBUTARY_NAMESPACE="default",
        CONFORMANCE_CAPACITY=str(capacity),
        CONFORMANCE_VALUE_CACHE_BYTES="0",
        CONFORMANCE_LOG=str(log),
        CONFORMANCE_WORKER_NAME="python-conformance",
    )
    return subprocess.Popen(
        ["sh", "-c", f"exec {sys.executable} {WORKER}"], env=env, stderr=subprocess.PIPE, text=True
    )


def definition(name: str, handler: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "tasks": [{"id": "t", "handler": f"conformance.{handler}", **settings}]}


async def test_handlers_log_and_sigterm_drains(
    server: LocalServer, client: AsyncClient, tmp_path: Path
) -> None:
    log = tmp_path / "conformance.log"
    worker = start_worker(server, log)
    try:
        values = json.loads((REPO / "conformance" / "values.json").read_text())["values"]
        echo = unique_name("echo")
        await client.register_workflow(definition(echo, "echo"))
        from tributary_sdk.jsonvalue import loads

        exact_values = loads((REPO / "conformance" / "values.json").read_text())["values"]
        assert len(exact_values) == len(values)
        for value in exact_values:
            run = await client.wait((await client.start_run(echo, {"echo_in": value})).run_id, timeout=30)
            assert run.status == RunStatus.SUCCEEDED, run.tasks
            assert run.context["echo_out"] == value

        fail_fast = unique_name("fatal")
        await client.register_workflow(definition(fail_fast, "fail_fatal", retry_attempts=3))
        run = await client.wait((await client.start_run(fail_fast)).run_id, timeout=30)
        assert run.task("t").error == "fail_fatal" and len(run.task("t").attempts) == 1

        throw = unique_name("throw")
        await client.register_workflow(definition(throw, "throw"))
        run = await client.wait((await client.start_run(throw)).run_id, timeout=30)
        assert "throw: boom" in run.task("t").error

        vector = unique_name("vector")
        await client.register_workflow(definition(vector, "vector"))
        for case in load_vectors("context_ops.json"):
            started = await client.start_run(
                vector, {"vector_input": case["input"], "vector_ops": case["ops"]}
            )
            run = await client.wait(started.run_id, timeout=30)
            result = run.context["vector_result"]
            assert result == {
                "data": case["data"],
                "set": case["set"],
                "removed": case["removed"],
                "errors": case["errors"],
            }, case["name"]

        measure = unique_name("measure")
        await client.register_workflow(
            {
                "name": measure,
                "tasks": [
                    {"id": "big", "handler": "conformance.big"},
                    {"id": "measure", "dependencies": ["big"], "handler": "conformance.measure"},
                ],
            }
        )
        run = await client.wait(
            (await client.start_run(measure, {"big_bytes": 1000, "n": [1, 2]})).run_id, timeout=30
        )
        assert run.context["measured"] == {"big": 1002, "big_bytes": 4, "n": 5}

        sleeper = unique_name("sleep")
        await client.register_workflow(definition(sleeper, "sleep"))
        started = await client.start_run(sleeper, {"sleep_ms": 1500})
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            if any('"conformance.sleep"' in line for line in lines):
                break
            assert worker.poll() is None
            await __import__("asyncio").sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        assert worker.returncode == 0
        run = await client.get_run(started.run_id)
        assert run.status == RunStatus.SUCCEEDED and run.context["slept_ms"] == 1500
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["event"] for e in entries} == {"start", "end"}
    assert all(e["pid"] == worker.pid for e in entries)
    starts = [e["attempt_id"] for e in entries if e["event"] == "start"]
    ends = [e["attempt_id"] for e in entries if e["event"] == "end"]
    assert sorted(starts) == sorted(ends) and len(set(starts)) == len(starts)
