from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from tributary_sdk import (
    AsyncClient,
    Client,
    Context,
    DefinitionError,
    NonRetryableError,
    RunEventType,
    RunStatus,
    ServerError,
    TaskState,
    TributaryError,
    Worker,
    task,
    workflow,
)
from tributary_sdk.local_server import LocalServer

from .conftest import load_vectors, start_server, unique_name


def noop_workflow(name: str) -> Any:
    @task(id="only")
    def only(context: Context) -> None:
        context.insert("done", True)

    return workflow(name, [only])


async def test_register_get_and_list_workflows(client: AsyncClient) -> None:
    name = unique_name("reg")
    first = await client.register_workflow(noop_workflow(name))
    assert first.created and first.sequence == 1 and len(first.version) == 16
    again = await client.register_workflow(noop_workflow(name))
    assert not again.created and again.version == first.version
    fetched = await client.get_workflow(name)
    assert fetched.version == first.version and fetched.latest
    assert fetched.definition.tasks[0].handler == f"{name}.only"
    assert name in [w.name for w in await client.list_workflows()]
    with pytest.raises(ServerError) as missing:
        await client.get_workflow(unique_name("absent"))
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


async def test_local_validation_stops_a_bad_definition_before_the_server(client: AsyncClient) -> None:
    with pytest.raises(DefinitionError, match='task "a" depends on itself'):
        await client.register_workflow({"name": "w", "tasks": [{"id": "a", "dependencies": ["a"]}]})


async def test_start_with_idempotency_key_get_list_and_cancel(client: AsyncClient) -> None:
    name = unique_name("runs")
    await client.register_workflow(noop_workflow(name))
    big = 2**80 + 1
    started = await client.start_run(name, {"n": big}, idempotency_key="k1")
    assert started.created
    same = await client.start_run(name, {"n": big}, idempotency_key="k1")
    assert same.run_id == started.run_id and not same.created
    with pytest.raises(ServerError) as conflict:
        await client.start_run(name, {"n": 1}, idempotency_key="k1")
    assert conflict.value.code == grpc.StatusCode.ALREADY_EXISTS
    run = await client.get_run(started.run_id)
    assert run.status == RunStatus.PENDING  # nobody serves it
    assert run.input == {"n": big}
    assert [t.task_id for t in run.tasks] == ["only"]
    listed = await client.list_runs(workflow_name=name)
    assert [r.id for r in listed] == [started.run_id]
    assert await client.cancel_run(started.run_id) == RunStatus.CANCELLED
    with pytest.raises(ServerError) as finished:
        await client.cancel_run(started.run_id)
    assert finished.value.code == grpc.StatusCode.FAILED_PRECONDITION
    cancelled = await client.list_runs(workflow_name=name, status=RunStatus.CANCELLED)
    assert [r.id for r in cancelled] == [started.run_id]
    events = [e async for e in client.watch_run(started.run_id)]
    assert events[0].type == RunEventType.RUN_STARTED
    assert events[-1].type == RunEventType.RUN_FINISHED and events[-1].run_status == RunStatus.CANCELLED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    resumed = [e async for e in client.watch_run(started.run_id, after_sequence=1)]
    assert resumed == events[1:]


async def test_input_that_is_not_json_is_refused_locally(client: AsyncClient) -> None:
    with pytest.raises(TributaryError, match="the input context is not JSON: nan is not a JSON number"):
        await client.start_run("w", {"x": float("nan")})


@pytest.mark.parametrize("case", load_vectors("context.json"), ids=lambda case: case["name"])
async def test_context_vectors_through_the_server(
    client: AsyncClient, server: LocalServer, case: dict[str, Any]
) -> None:
    # Each delta is a root task (canonical order of roots is by id, which is
    # the vectors' position order); the server merges them.
    tasks = []
    for delta in case["deltas"]:

        def make(delta: dict[str, Any]) -> Any:
            def apply(context: Context) -> None:
                for key, value in delta["set"].items():
                    context.upsert(key, value)
                for key in delta["removed"]:
                    context.remove(key)

            return task(id=delta["task"])(apply)

        tasks.append(make(delta))
    if not tasks:
        tasks.append(task(id="noop")(lambda context: None))
    flow = workflow(unique_name("vec"), tasks)
    await client.register_workflow(flow)
    worker = Worker(server.url, workflows=[flow], capacity=4)
    await worker.start()
    try:
        started = await client.start_run(flow.name, case["input"])
        run = await client.wait(started.run_id, timeout=30)
    finally:
        await worker.shutdown(5)
    assert run.status == RunStatus.SUCCEEDED, [t.error for t in run.tasks]
    assert run.context == case["expected"]
    if "expected_json" in case:
        assert run.context_json == case["expected_json"]


async def test_retry_run_reruns_the_failure_and_wait_follows_to_the_new_end(
    client: AsyncClient, server: LocalServer
) -> None:
    calls: dict[str, int] = {}

    @task(id="first")
    def first(context: Context) -> None:
        calls["first"] = calls.get("first", 0) + 1
        context.insert("first", calls["first"])

    @task(id="second", dependencies=["first"])
    def second(context: Context) -> None:
        calls["second"] = calls.get("second", 0) + 1
        if calls["second"] == 1:
            raise NonRetryableError("not yet")
        context.insert("second", calls["second"])

    flow = workflow(unique_name("retry"), [first, second])
    await client.register_workflow(flow)
    worker = Worker(server.url, workflows=[flow], capacity=2)
    await worker.start()
    try:
        started = await client.start_run(flow.name, {})
        failed = await client.wait(started.run_id, timeout=30)
        assert failed.status == RunStatus.FAILED and failed.retry_count == 0
        retried = await client.retry_run(started.run_id, request_id="py-retry")
        assert retried.retried_task_ids == ("second",) and retried.retry_count == 1
        again = await client.retry_run(started.run_id, request_id="py-retry")
        assert again.retry_count == 1
        run = await client.wait(started.run_id, timeout=30)
    finally:
        await worker.shutdown(5)
    assert run.status == RunStatus.SUCCEEDED and run.retry_count == 1
    assert run.context == {"first": 1, "second": 2}
    assert calls == {"first": 1, "second": 2}
    events = [event async for event in client.watch_run(started.run_id)]
    assert [e.retried_task_ids for e in events if e.type == RunEventType.RUN_RETRIED] == [("second",)]
    with pytest.raises(ServerError) as refused:
        await client.retry_run(started.run_id)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_watch_events_filters_and_resumes_after_a_server_restart() -> None:
    server = start_server()
    try:
        async with AsyncClient(server.url) as client:
            name = unique_name("watch")
            await client.register_workflow(noop_workflow(name))
            first = await client.start_run(name)
            events = client.watch_events(workflow_names=[name], types=[RunEventType.RUN_STARTED])
            seen = await asyncio.wait_for(anext(events), 10)
            assert seen.run_id == first.run_id
            server.kill()
            server.start()
            second = await client.start_run(name)
            resumed = await asyncio.wait_for(anext(events), 30)
            assert resumed.run_id == second.run_id and resumed.cursor > seen.cursor
            await events.aclose()
    finally:
        server.close()


async def test_watch_run_resumes_across_a_server_restart_without_gaps() -> None:
    server = start_server()
    try:
        async with AsyncClient(server.url) as client:
            name = unique_name("resume")
            flow = noop_workflow(name)
            await client.register_workflow(flow)
            started = await client.start_run(name)
            watch = client.watch_run(started.run_id)
            first = await asyncio.wait_for(anext(watch), 10)
            assert first.sequence == 1
            server.kill()
            server.start()
            worker = Worker(server.url, workflows=[flow])
            await worker.start()
            rest = [event async for event in watch]
            await worker.shutdown(5)
            assert [e.sequence for e in rest] == list(range(2, len(rest) + 2))
            assert rest[-1].run_status == RunStatus.SUCCEEDED
    finally:
        server.close()


def test_blocking_client_for_scripts(server: LocalServer) -> None:
    name = unique_name("sync")

    @task(id="only")
    def only(context: Context) -> None:
        context.insert("echo", context.get("value"))

    flow = workflow(name, [only])
    with Client(server.url) as client:
        client.register_workflow(flow)
        started = client.start_run(name, {"value": 123456789012345678901234567890})
        worker_done = _serve_in_thread(server.url, flow)
        run = client.wait(started.run_id, timeout=30)
        worker_done()
        assert run.status == RunStatus.SUCCEEDED
        assert run.context["echo"] == 123456789012345678901234567890
        assert run.task("only").state == TaskState.SUCCEEDED
        types = [event.type for event in client.watch_run(started.run_id)]
        assert types[0] == RunEventType.RUN_STARTED and types[-1] == RunEventType.RUN_FINISHED
        assert client.get_run(started.run_id).id == started.run_id
        assert [r.id for r in client.list_runs(workflow_name=name)] == [started.run_id]


def _serve_in_thread(url: str, flow: Any) -> Any:
    import threading

    loop = asyncio.new_event_loop()
    worker = Worker(url, workflows=[flow])
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(worker.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(worker.shutdown(5), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    return stop
