from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tributary_sdk import (
    AsyncClient,
    AttemptState,
    Context,
    NonRetryableError,
    RunEventType,
    RunStatus,
    TaskError,
    TaskState,
    TributaryError,
    Worker,
    task,
    workflow,
)
from tributary_sdk.local_server import LocalServer

from .conftest import start_server, unique_name


@dataclass
class Order:
    id: int
    amount: float


async def run_with_worker(
    client: AsyncClient, url: str, flow: Any, input: dict[str, Any] | None = None, capacity: int = 4
) -> Any:
    await client.register_workflow(flow)
    worker = Worker(url, workflows=[flow], capacity=capacity)
    await worker.start()
    try:
        started = await client.start_run(flow.name, input or {})
        return await client.wait(started.run_id, timeout=60)
    finally:
        report = await worker.shutdown(10)
        assert report.drained


async def test_sync_and_async_tasks_pass_typed_values_downstream(
    client: AsyncClient, server: LocalServer
) -> None:
    threads: dict[str, str] = {}

    @task(id="load")
    def load(context: Context) -> None:
        threads["load"] = threading.current_thread().name
        context.insert("orders", [Order(1, 2.5), Order(2, 4.0)])
        context.remove("secret")

    @task(id="total", dependencies=["load"])
    async def total(context: Context) -> None:
        threads["total"] = threading.current_thread().name
        orders = context.get("orders", list[Order])
        context.insert("total", sum(order.amount for order in orders))
        context.insert("seen_secret", "secret" in context)

    run = await run_with_worker(
        client, server.url, workflow(unique_name("typed"), [load, total]), {"secret": "s"}
    )
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["total"] == 6.5
    assert run.context["seen_secret"] is False
    assert "secret" not in run.context
    # Plain def ran in the pool, async def on the loop.
    assert threads["load"].startswith("tributary-task")
    assert threads["total"] == threading.main_thread().name


async def test_retry_then_success_and_attempt_info(client: AsyncClient, server: LocalServer) -> None:
    @task(id="flaky", retry_attempts=2, retry_delay_ms=10)
    def flaky(context: Context) -> None:
        assert context.attempt is not None
        if context.attempt.attempt_number == 1:
            raise TaskError("flaky: first attempt")
        context.insert("attempt", context.attempt.attempt_number)

    run = await run_with_worker(client, server.url, workflow(unique_name("retry"), [flaky]))
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["attempt"] == 2
    attempts = run.task("flaky").attempts
    assert [a.state for a in attempts] == [AttemptState.FAILED, AttemptState.SUCCEEDED]
    assert attempts[0].error == "flaky: first attempt"


async def test_a_mapped_task_runs_per_element_and_gathers_in_order(
    client: AsyncClient, server: LocalServer
) -> None:
    @task(id="upper", map_over="words", map_output="loud")
    def upper(context: Context) -> None:
        assert context.attempt is not None
        assert context.attempt.map_index == context.get("map_index")
        context.insert("loud", context.get("map_element").upper())

    run = await run_with_worker(
        client, server.url, workflow(unique_name("map"), [upper]), {"words": ["a", "bb", "ccc"]}
    )
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["loud"] == ["A", "BB", "CCC"]
    instances = run.task("upper").instances
    assert [(i.map_index, i.state, len(i.attempts)) for i in instances] == [
        (0, TaskState.SUCCEEDED, 1),
        (1, TaskState.SUCCEEDED, 1),
        (2, TaskState.SUCCEEDED, 1),
    ]


async def test_get_run_lists_a_window_of_instances_and_counts_them_all(
    client: AsyncClient, server: LocalServer
) -> None:
    @task(id="double", map_over="numbers", map_output="doubled")
    def double(context: Context) -> None:
        context.insert("doubled", context.get("map_element", int) * 2)

    run = await run_with_worker(
        client, server.url, workflow(unique_name("window"), [double]), {"numbers": list(range(30))}
    )
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["doubled"] == [n * 2 for n in range(30)]
    all_succeeded = {TaskState.SUCCEEDED: 30}

    window = (await client.get_run(run.id, instances_from=10, max_instances=5)).task("double")
    assert [i.map_index for i in window.instances] == [10, 11, 12, 13, 14]
    assert all(i.state == TaskState.SUCCEEDED for i in window.instances)
    assert window.instance_counts == all_succeeded

    counts_only = (await client.get_run(run.id, max_instances=0)).task("double")
    assert counts_only.instances == []
    assert counts_only.instance_counts == all_succeeded

    everything = (await client.get_run(run.id)).task("double")
    assert [i.map_index for i in everything.instances] == list(range(30))
    assert everything.instance_counts == all_succeeded

    with pytest.raises(TributaryError):
        await client.get_run(run.id, instances_from=-1)


async def test_non_retryable_error_and_context_error_fail_at_once(
    client: AsyncClient, server: LocalServer
) -> None:
    @task(id="fatal", retry_attempts=3, retry_delay_ms=10)
    def fatal(context: Context) -> None:
        raise NonRetryableError("bad input")

    @task(id="missing", retry_attempts=3, retry_delay_ms=10)
    def missing(context: Context) -> None:
        context.get("nope")

    @task(id="after", dependencies=["fatal"])
    def after(context: Context) -> None: ...

    run = await run_with_worker(client, server.url, workflow(unique_name("fatal"), [fatal, missing, after]))
    assert run.status == RunStatus.FAILED
    assert len(run.task("fatal").attempts) == 1 and run.task("fatal").error == "bad input"
    assert len(run.task("missing").attempts) == 1
    assert run.task("missing").error == 'context key "nope" not found'
    assert run.task("after").state == TaskState.SKIPPED


async def test_an_exception_fails_the_attempt_and_the_worker_lives_on(
    client: AsyncClient, server: LocalServer
) -> None:
    @task(id="boom")
    async def boom(context: Context) -> None:
        raise ValueError("boom: broken")

    @task(id="ok")
    def ok(context: Context) -> None:
        context.insert("ok", True)

    flow = workflow(unique_name("throw"), [boom, ok])
    await client.register_workflow(flow)
    worker = Worker(server.url, workflows=[flow])
    await worker.start()
    try:
        first = await client.wait((await client.start_run(flow.name)).run_id, timeout=30)
        second = await client.wait((await client.start_run(flow.name)).run_id, timeout=30)
    finally:
        await worker.shutdown(5)
    assert first.task("boom").error == "ValueError: boom: broken"
    assert first.task("ok").state == TaskState.SUCCEEDED
    assert second.task("ok").state == TaskState.SUCCEEDED
    assert worker.status.registrations == 1


async def test_cancellation_reaches_async_and_sync_code(client: AsyncClient, server: LocalServer) -> None:
    observed: dict[str, str] = {}
    entered = asyncio.Event()
    loop = asyncio.get_running_loop()

    @task(id="waits")
    async def waits(context: Context) -> None:
        loop.call_soon(entered.set)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            observed["async"] = context.cancellation.reason or ""
            raise

    @task(id="polls")
    def polls(context: Context) -> None:
        loop.call_soon_threadsafe(entered.set)
        deadline = time.monotonic() + 60
        while not context.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        observed["sync"] = context.cancellation.reason or ""

    flow = workflow(unique_name("cancel"), [waits, polls])
    await client.register_workflow(flow)
    worker = Worker(server.url, workflows=[flow])
    await worker.start()
    try:
        started = await client.start_run(flow.name)
        await worker.wait_for(lambda status: status.running == 2, 30)
        assert await client.cancel_run(started.run_id) == RunStatus.CANCELLED
        await worker.wait_for(lambda status: status.running == 0 and status.unacknowledged == 0, 30)
        for _ in range(100):
            if len(observed) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.shutdown(5)
    assert observed.keys() == {"async", "sync"}
    run = await client.get_run(started.run_id)
    assert run.status == RunStatus.CANCELLED


async def test_timeout_cancels_the_attempt(client: AsyncClient, server: LocalServer) -> None:
    cancelled = asyncio.Event()

    @task(id="slow", timeout_ms=300)
    async def slow(context: Context) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    run = await run_with_worker(client, server.url, workflow(unique_name("timeout"), [slow]))
    assert run.status == RunStatus.FAILED
    assert cancelled.is_set()
    assert run.task("slow").attempts[0].state == AttemptState.TIMED_OUT


async def test_cpu_bound_plain_def_keeps_heartbeats_going(client: AsyncClient, server: LocalServer) -> None:
    # Two lease timeouts of pure CPU in a plain def: heartbeats go on from the
    # event loop, so the attempt is neither lost nor reassigned.
    @task(id="spin")
    def spin(context: Context) -> None:
        end = time.monotonic() + 4.5
        count = 0
        while time.monotonic() < end:
            count += 1
        context.insert("count_positive", count > 0)

    run = await run_with_worker(client, server.url, workflow(unique_name("spin"), [spin]))
    assert run.status == RunStatus.SUCCEEDED
    assert len(run.task("spin").attempts) == 1


async def test_capacity_bounds_concurrent_attempts(client: AsyncClient, server: LocalServer) -> None:
    lock = threading.Lock()
    now = {"running": 0, "peak": 0}

    def body(context: Context) -> None:
        with lock:
            now["running"] += 1
            now["peak"] = max(now["peak"], now["running"])
        time.sleep(0.2)
        with lock:
            now["running"] -= 1

    tasks = [task(id=f"t{i}")(body) for i in range(8)]
    run = await run_with_worker(client, server.url, workflow(unique_name("cap"), tasks), capacity=2)
    assert run.status == RunStatus.SUCCEEDED
    assert now["peak"] == 2


async def test_graceful_shutdown_drains_the_running_attempt(client: AsyncClient, server: LocalServer) -> None:
    @task(id="slow")
    async def slow(context: Context) -> None:
        await asyncio.sleep(1.0)
        context.insert("finished", True)

    flow = workflow(unique_name("drain"), [slow])
    await client.register_workflow(flow)
    worker = Worker(server.url, workflows=[flow])
    await worker.start()
    started = await client.start_run(flow.name)
    await worker.wait_for(lambda status: status.running == 1, 30)
    report = await worker.shutdown(30)
    assert report.drained and report.cancelled_attempts == 0
    run = await client.get_run(started.run_id)
    assert run.status == RunStatus.SUCCEEDED and run.context["finished"] is True


async def test_shutdown_deadline_cancels_what_still_runs(client: AsyncClient, server: LocalServer) -> None:
    @task(id="forever")
    async def forever(context: Context) -> None:
        await asyncio.sleep(60)

    flow = workflow(unique_name("deadline"), [forever])
    await client.register_workflow(flow)
    worker = Worker(server.url, workflows=[flow])
    await worker.start()
    await client.start_run(flow.name)
    await worker.wait_for(lambda status: status.running == 1, 30)
    report = await worker.shutdown(0.3)
    assert not report.drained and report.cancelled_attempts == 1


async def test_reconnect_after_server_restart_reclaims_the_held_attempt() -> None:
    server = start_server()
    try:
        async with AsyncClient(server.url) as client:
            entries = 0

            @task(id="slow")
            async def slow(context: Context) -> None:
                nonlocal entries
                entries += 1
                await asyncio.sleep(3)
                context.insert("done", True)

            flow = workflow(unique_name("restart"), [slow])
            await client.register_workflow(flow)
            worker = Worker(server.url, workflows=[flow], reconnect_backoff=(0.05, 0.2))
            await worker.start()
            started = await client.start_run(flow.name)
            await worker.wait_for(lambda status: status.running == 1, 30)
            server.kill()
            await worker.wait_for(lambda status: not status.connected, 10)
            server.start()
            await worker.wait_for(lambda status: status.registrations == 2, 30)
            run = await client.wait(started.run_id, timeout=30)
            await worker.shutdown(5)
            assert run.status == RunStatus.SUCCEEDED, run.tasks
            assert entries == 1
            assert len(run.task("slow").attempts) == 1
            types = [event.type for event in [e async for e in client.watch_run(started.run_id)]]
            assert RunEventType.EXECUTOR_CONNECTED in types
    finally:
        server.close()


async def test_result_finished_while_disconnected_is_resent_and_accepted() -> None:
    server = start_server()
    try:
        async with AsyncClient(server.url) as client:
            release = asyncio.Event()

            @task(id="gated")
            async def gated(context: Context) -> None:
                await release.wait()
                context.insert("done", True)

            flow = workflow(unique_name("resend"), [gated])
            await client.register_workflow(flow)
            worker = Worker(server.url, workflows=[flow], reconnect_backoff=(0.05, 0.2))
            await worker.start()
            started = await client.start_run(flow.name)
            await worker.wait_for(lambda status: status.running == 1, 30)
            server.kill()
            await worker.wait_for(lambda status: not status.connected, 10)
            release.set()
            await worker.wait_for(lambda status: status.unacknowledged == 1, 10)
            server.start()
            await worker.wait_for(lambda status: status.unacknowledged == 0, 30)
            run = await client.wait(started.run_id, timeout=30)
            await worker.shutdown(5)
            assert run.status == RunStatus.SUCCEEDED and run.context["done"] is True
            assert len(run.task("gated").attempts) == 1
    finally:
        server.close()


async def test_a_worker_without_handlers_refuses_to_start() -> None:
    with pytest.raises(TributaryError, match="a worker needs at least one handler"):
        await Worker("http://127.0.0.1:1").start()


async def test_lost_lease_cancels_attempts_and_the_task_runs_again() -> None:
    # The server is frozen (SIGSTOP) past the lease: no heartbeat is
    # acknowledged, so the worker cancels what it runs and reconnects.
    import signal as signals

    server = start_server()
    try:
        async with AsyncClient(server.url) as client:
            reasons: list[str] = []

            @task(id="slow")
            async def slow(context: Context) -> None:
                assert context.attempt is not None
                if context.attempt.attempt_number == 1:
                    try:
                        await asyncio.sleep(60)
                    except asyncio.CancelledError:
                        reasons.append(context.cancellation.reason or "")
                        raise
                context.insert("attempt", context.attempt.attempt_number)

            flow = workflow(unique_name("lease"), [slow])
            await client.register_workflow(flow)
            worker = Worker(server.url, workflows=[flow], reconnect_backoff=(0.05, 0.2))
            await worker.start()
            started = await client.start_run(flow.name)
            await worker.wait_for(lambda status: status.running == 1, 30)
            assert server.process is not None
            server.process.send_signal(signals.SIGSTOP)
            try:
                await worker.wait_for(lambda status: status.running == 0 and not status.connected, 15)
            finally:
                server.process.send_signal(signals.SIGCONT)
            run = await client.wait(started.run_id, timeout=60)
            await worker.shutdown(5)
            assert reasons == ["the worker lost its lease on the server"]
            assert run.status == RunStatus.SUCCEEDED, run.tasks
            assert run.context["attempt"] == 2
            assert run.task("slow").attempts[0].state == AttemptState.LOST
    finally:
        server.close()
