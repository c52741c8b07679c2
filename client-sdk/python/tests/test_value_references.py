"""Values by reference through the worker's stream. The server binary does
not send references yet, so a scripted ExecutorService (a real gRPC server
in this process, speaking the protocol of executor.proto) plays its part:
inline values kept, references resolved from the cache, misses fetched with
fetch_values, produced values kept once ACCEPTED, forget_run honoured."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import grpc
from grpc import aio

from tributary_sdk import Context, Worker
from tributary_sdk._proto.tributary.v1 import executor_pb2, executor_pb2_grpc
from tributary_sdk.jsonvalue import loads

Request = executor_pb2.ConnectRequest
Servicer = executor_pb2_grpc.ExecutorServiceServicer
Response = executor_pb2.ConnectResponse


def ref(key: str, writer: str) -> executor_pb2.ValueRef:
    return executor_pb2.ValueRef(key=key, writer_attempt_id=writer)


class ListsNothing:
    """The executor service's methods a worker does not call, present because
    registering the servicer looks every method up."""

    async def ListExecutors(self, request: Any, context: Any) -> executor_pb2.ListExecutorsResponse:
        return executor_pb2.ListExecutorsResponse()

    async def WatchExecutors(self, request: Any, context: aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "a worker does not watch executors")


class ScriptedServer(ListsNothing):
    def __init__(self) -> None:
        self.script_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fetches: list[list[tuple[str, str]]] = []
        self.register: executor_pb2.Register | None = None
        self.results: dict[str, executor_pb2.Completed] = {}

    async def Connect(self, request_iterator: Any, context: aio.ServicerContext[Request, Response]) -> None:
        try:
            await self.script(context)
            self.script_done.set_result(None)
        except BaseException as error:
            if not self.script_done.done():
                self.script_done.set_exception(error)
            raise

    async def next_message(self, context: Any, kinds: set[str]) -> Request:
        """The next message of one of these kinds (heartbeats and Started skipped)."""
        while True:
            message: Request = await asyncio.wait_for(context.read(), 10)
            kind = message.WhichOneof("message")
            if kind == "heartbeat":
                await context.write(Response(heartbeat_ack=executor_pb2.HeartbeatAck()))
            elif kind in kinds:
                return message

    async def completed(self, context: Any, attempt_id: str) -> executor_pb2.Completed:
        message = await self.next_message(context, {"completed", "failed"})
        assert message.WhichOneof("message") == "completed", message
        assert message.completed.attempt_id == attempt_id
        await context.write(
            Response(
                result_ack=executor_pb2.ResultAck(
                    attempt_id=attempt_id, disposition=executor_pb2.RESULT_DISPOSITION_ACCEPTED
                )
            )
        )
        return message.completed

    async def answer_fetch(self, context: Any, texts: dict[tuple[str, str], str]) -> None:
        message = await self.next_message(context, {"fetch_values", "completed", "failed"})
        assert message.WhichOneof("message") == "fetch_values", message
        asked = [(r.key, r.writer_attempt_id) for r in message.fetch_values.refs]
        self.fetches.append(asked)
        await context.write(
            Response(
                values=executor_pb2.Values(
                    run_id=message.fetch_values.run_id,
                    values=[
                        executor_pb2.Value(ref=ref(key, writer), value_json=texts[(key, writer)])
                        for key, writer in asked
                        if (key, writer) in texts
                    ],
                )
            )
        )

    async def script(self, context: Any) -> None:
        first: Request = await context.read()
        self.register = first.register
        await context.write(
            Response(
                registered=executor_pb2.Registered(
                    executor_id="scripted",
                    heartbeat_interval_ms=100,
                    lease_timeout_ms=5000,
                    max_message_bytes=64 << 20,
                    max_context_bytes=16 << 20,
                )
            )
        )

        def assign(attempt: str, inline: dict[str, Any], inline_refs: list[Any], refs: list[Any]) -> Response:
            return Response(
                assign=executor_pb2.Assign(
                    run_id="run-1",
                    task_id=attempt,
                    attempt_id=attempt,
                    attempt_number=1,
                    handler="refs.measure",
                    workflow_name="refs",
                    input_context_json=json.dumps(inline),
                    inline_values=inline_refs,
                    references=refs,
                )
            )

        # 1: one value inline, one by reference that the worker never saw.
        await context.write(assign("a1", {"small": 1}, [ref("small", "")], [ref("big", "w0")]))
        await self.answer_fetch(context, {("big", "w0"): '"' + "x" * 100 + '"'})
        self.results["a1"] = await self.completed(context, "a1")
        # 2: everything by reference, all of it held: nothing fetched.
        await context.write(assign("a2", {}, [], [ref("small", ""), ref("big", "w0"), ref("sizes", "a1")]))
        self.results["a2"] = await self.completed(context, "a2")
        # 3: after forget_run, the same references must be fetched again;
        # one the server no longer has fails the attempt.
        await context.write(Response(forget_run=executor_pb2.ForgetRun(run_id="run-1")))
        await context.write(assign("a3", {}, [], [ref("sizes", "a1"), ref("gone", "w9")]))
        await self.answer_fetch(context, {("sizes", "a1"): self.results["a1"].set_json[9:-1]})
        message = await self.next_message(context, {"completed", "failed"})
        assert message.WhichOneof("message") == "failed", message
        assert "'gone'" in message.failed.message and not message.failed.non_retryable
        await context.write(
            Response(
                result_ack=executor_pb2.ResultAck(
                    attempt_id="a3", disposition=executor_pb2.RESULT_DISPOSITION_ACCEPTED
                )
            )
        )


async def test_values_by_reference_round_trip() -> None:
    scripted = ScriptedServer()
    server = aio.server()
    executor_pb2_grpc.add_ExecutorServiceServicer_to_server(cast(Servicer, scripted), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    def measure(context: Context) -> None:
        context.upsert("sizes", {key: len(context.json_text(key)) for key in context})

    worker = Worker(f"http://127.0.0.1:{port}", handlers={"refs.measure": measure}, value_cache_bytes=1 << 20)
    await worker.start()
    try:
        await asyncio.wait_for(scripted.script_done, 30)
    finally:
        await worker.abort()
        await server.stop(None)
    assert scripted.register is not None and scripted.register.value_cache_bytes == 1 << 20
    assert scripted.fetches == [[("big", "w0")], [("sizes", "a1"), ("gone", "w9")]]
    assert loads(scripted.results["a1"].set_json) == {"sizes": {"small": 1, "big": 102}}
    first_sizes_text = scripted.results["a1"].set_json[len('{"sizes":') : -1]
    assert loads(scripted.results["a2"].set_json) == {
        "sizes": {"small": 1, "big": 102, "sizes": len(first_sizes_text)}
    }


async def test_a_non_caching_worker_registers_without_a_cache() -> None:
    registered: asyncio.Future[executor_pb2.Register] = asyncio.get_running_loop().create_future()

    class Recorder(ListsNothing):
        async def Connect(self, request_iterator: Any, context: Any) -> None:
            first = await context.read()
            if not registered.done():
                registered.set_result(first.register)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")

    server = aio.server()
    executor_pb2_grpc.add_ExecutorServiceServicer_to_server(cast(Servicer, Recorder()), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    worker = Worker(f"http://127.0.0.1:{port}", handlers={"h": lambda context: None}, value_cache_bytes=0)
    await worker.start()
    try:
        register = await asyncio.wait_for(registered, 10)
    finally:
        await worker.abort()
        await server.stop(None)
    assert register.value_cache_bytes == 0 and register.handlers == ["h"]


async def test_every_disposition_ends_the_wait_and_rejected_is_logged(caplog: Any) -> None:
    # A scripted server answers three results STALE, REJECTED and NOT_HELD:
    # the worker drops each (nothing left unacknowledged) and logs the
    # rejection's reason as a warning.
    dispositions = {
        "s1": executor_pb2.RESULT_DISPOSITION_STALE,
        "s2": executor_pb2.RESULT_DISPOSITION_REJECTED,
        "s3": executor_pb2.RESULT_DISPOSITION_NOT_HELD,
    }
    answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Answers(ListsNothing):
        async def Connect(self, request_iterator: Any, context: Any) -> None:
            await context.read()
            await context.write(
                Response(registered=executor_pb2.Registered(heartbeat_interval_ms=100, lease_timeout_ms=5000))
            )
            for attempt_id in dispositions:
                await context.write(
                    Response(
                        assign=executor_pb2.Assign(
                            run_id="r", attempt_id=attempt_id, handler="h", input_context_json="{}"
                        )
                    )
                )
            results = 0
            while results < len(dispositions):
                message = await context.read()
                if message.WhichOneof("message") == "completed":
                    results += 1
                    attempt_id = message.completed.attempt_id
                    await context.write(
                        Response(
                            result_ack=executor_pb2.ResultAck(
                                attempt_id=attempt_id,
                                disposition=dispositions[attempt_id],
                                reason="set_json is not a JSON object" if attempt_id == "s2" else "",
                            )
                        )
                    )
            answered.set_result(None)
            await asyncio.sleep(30)

    server = aio.server()
    executor_pb2_grpc.add_ExecutorServiceServicer_to_server(cast(Servicer, Answers()), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    worker = Worker(f"http://127.0.0.1:{port}", handlers={"h": lambda context: None}, capacity=3)
    caplog.set_level("WARNING", logger="tributary_sdk.worker")
    await worker.start()
    try:
        await asyncio.wait_for(answered, 10)
        status = await worker.wait_for(lambda s: s.unacknowledged == 0 and s.running == 0, 10)
    finally:
        await worker.abort()
        await server.stop(None)
    assert status.connected
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["the server rejected the result of attempt s2: set_json is not a JSON object"]
