"""The executor runtime: a :class:`Worker` holds one
``ExecutorService.Connect`` stream to the server, runs the attempts it is
assigned (up to its capacity at once), heartbeats, delivers cancellations to
running tasks, turns exceptions into failed attempts, and survives lost
connections and server restarts: it reconnects with jittered backoff,
re-registers with the attempts it still holds, and resends results the
server has not acknowledged.

``async def`` handlers run on the worker's event loop; plain ``def``
handlers run in a thread pool, so a CPU-bound handler never delays
heartbeats (a CPU-bound ``async def`` would: it holds the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from grpc import aio

from ._attempt import fit_result, run_attempt
from ._proto.tributary.v1 import executor_pb2, executor_pb2_grpc
from .client import DEFAULT_NAMESPACE, call_metadata, open_channel
from .context import Cancellation, Context
from .errors import TributaryError
from .value_cache import DEFAULT_VALUE_CACHE_BYTES, ValueCache
from .workflow import Task, Workflow

__all__ = ["ShutdownReport", "Worker", "WorkerStatus"]

_log = logging.getLogger("tributary_sdk.worker")

_DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_CLOSE_GRACE = 1.0
_REGISTER_TIMEOUT = 10.0
_MAX_REFS_PER_FETCH = 10_000
_Request = executor_pb2.ConnectRequest


@dataclass(frozen=True)
class WorkerStatus:
    """What a worker is doing, for logs and tests."""

    connected: bool = False
    """Whether a stream is open and registered."""
    registrations: int = 0
    """How many times the worker registered (1 + reconnections)."""
    executor_id: str = ""
    """The executor id of the current (or last) registration."""
    running: int = 0
    """Attempts running now."""
    unacknowledged: int = 0
    """Results not yet acknowledged by the server."""


@dataclass(frozen=True)
class ShutdownReport:
    """The outcome of :meth:`Worker.shutdown`."""

    drained: bool
    """True when every attempt finished and every result was acknowledged
    before the deadline."""
    cancelled_attempts: int
    """Attempts cancelled because the deadline passed."""


@dataclass
class _Running:
    task: asyncio.Task[None]
    cancellation: Cancellation
    run_id: str


@dataclass
class _Drain:
    deadline: float
    deadline_passed: bool = False
    cancelled: int = 0


@dataclass
class _Fetch:
    run_id: str
    future: asyncio.Future[dict[tuple[str, str], str]]


class Worker:
    """Runs task handlers for the server.

    .. code-block:: python

        worker = Worker("http://127.0.0.1:50051", workflows=[pipeline], capacity=8)
        worker.run()  # until SIGTERM or SIGINT, then drains and returns

    In ``asyncio`` code: ``await worker.start()`` ... ``await worker.shutdown(30)``,
    or ``await worker.serve()``.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:50051",
        *,
        workflows: Iterable[Workflow] = (),
        handlers: Mapping[str, Callable[[Context], Any] | Task] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        name: str | None = None,
        instance_id: str | None = None,
        capacity: int = 4,
        labels: Mapping[str, str] | None = None,
        value_cache_bytes: int = DEFAULT_VALUE_CACHE_BYTES,
        heartbeat_interval: float | None = None,
        reconnect_backoff: tuple[float, float] = (0.05, 5.0),
        api_key: str | None = None,
    ) -> None:
        self.url = url
        """The server's URL."""
        self._metadata = call_metadata(namespace, api_key)
        self.namespace = namespace
        """The namespace served."""
        self.name = name or f"{socket.gethostname()}/{os.getpid()}"
        """The name shown by ``ListExecutors``."""
        self.instance_id = instance_id or str(uuid.uuid4())
        """The stable id of this worker across reconnects."""
        self.capacity = max(0, capacity)
        """Attempts run at once."""
        self.labels = dict(labels or {})
        """Labels shown by ``ListExecutors``; a task with ``required_labels``
        is assigned only to workers that have every one of them."""
        self.value_cache_bytes = value_cache_bytes
        """Bytes of context values kept to be referenced (0 = none)."""
        self._heartbeat_override = heartbeat_interval
        self._backoff_min, self._backoff_max = reconnect_backoff
        self._handlers: dict[str, tuple[Callable[[Context], Any], bool]] = {}
        for flow in workflows:
            self.add_workflow(flow)
        for handler_name, function in (handlers or {}).items():
            self.add_handler(handler_name, function)
        self._status = WorkerStatus()
        self._status_changed = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None
        self._report: ShutdownReport | None = None

    def add_workflow(self, workflow: Workflow, *, only: Iterable[str] | None = None) -> None:
        """Serve the tasks of ``workflow`` (only the ids in ``only`` when given)."""
        wanted = None if only is None else set(only)
        for handler_name, task in workflow.handlers().items():
            if wanted is None or task.id in wanted:
                self.add_handler(handler_name, task)
        if wanted is not None:
            unknown = wanted - {task.id for task in workflow.tasks}
            if unknown:
                raise TributaryError(f"workflow {workflow.name!r} has no task {sorted(unknown)[0]!r}")

    def add_handler(self, name: str, function: Callable[[Context], Any] | Task) -> None:
        """Serve ``function`` under the handler name ``name``."""
        if isinstance(function, Task):
            self._handlers[name] = (function.function, function.is_async)
        else:
            self._handlers[name] = (function, inspect.iscoroutinefunction(function))

    @property
    def handler_names(self) -> list[str]:
        """The handlers served, sorted."""
        return sorted(self._handlers)

    @property
    def status(self) -> WorkerStatus:
        """A snapshot of what the worker is doing."""
        return self._status

    async def wait_for(
        self, predicate: Callable[[WorkerStatus], bool], timeout: float | None = None
    ) -> WorkerStatus:
        """Wait until ``predicate(status)`` holds; ``asyncio.TimeoutError`` after ``timeout`` s."""

        async def poll() -> WorkerStatus:
            while not predicate(self._status):
                self._status_changed.clear()
                if predicate(self._status):
                    break
                await self._status_changed.wait()
            return self._status

        return await asyncio.wait_for(poll(), timeout)

    async def start(self) -> None:
        """Start in the background on the running loop; the worker connects,
        and keeps reconnecting, on its own."""
        if not self._handlers:
            raise TributaryError("a worker needs at least one handler")
        if self._driver is not None:
            raise TributaryError("the worker was already started")
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(
            max_workers=max(4, 2 * self.capacity), thread_name_prefix="tributary-task"
        )
        self._running: dict[str, _Running] = {}
        self._unacked: dict[str, _Request] = {}
        self._produced: dict[str, tuple[str, dict[str, str]]] = {}
        self._cache = ValueCache(self.value_cache_bytes) if self.value_cache_bytes > 0 else None
        self._fetches: list[_Fetch] = []
        self._outbox: asyncio.Queue[_Request | None] | None = None
        self._wake = asyncio.Event()
        self._drain: _Drain | None = None
        self._lost = False
        self._registered = False
        self._last_ack = time.monotonic()
        self._max_message_bytes = _DEFAULT_MAX_MESSAGE_BYTES
        self._max_context_bytes = 0
        self._driver = asyncio.create_task(self._drive(), name="tributary-worker")

    async def shutdown(self, grace: float = 30.0) -> ShutdownReport:
        """Stop gracefully: ask for no more work (``CapacityChanged`` 0), let
        running attempts finish and their results be acknowledged, and
        cancel what still runs after ``grace`` seconds."""
        if self._driver is None:
            return ShutdownReport(drained=True, cancelled_attempts=0)
        if self._drain is None:
            self._drain = _Drain(deadline=self._loop.time() + grace)
            self._send(_Request(capacity_changed=executor_pb2.CapacityChanged(max_concurrent_attempts=0)))
            self._wake.set()
        await asyncio.shield(self._driver)
        return self._report or ShutdownReport(drained=False, cancelled_attempts=0)

    async def abort(self) -> None:
        """Stop at once, as a crash would: close the stream and drop running
        attempts unreported (the server re-queues them)."""
        if self._driver is None:
            return
        self._driver.cancel()
        for running in list(self._running.values()):
            running.task.cancel()
        await asyncio.gather(self._driver, *(r.task for r in self._running.values()), return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def serve(self, grace: float = 30.0) -> ShutdownReport:
        """Start, run until SIGTERM or SIGINT, then shut down gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await self.start()
            await stop.wait()
            _log.info("stopping: finishing %d running attempts", len(self._running))
            return await self.shutdown(grace)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def run(self, grace: float = 30.0) -> ShutdownReport:
        """:meth:`serve` for scripts: blocks until SIGTERM or SIGINT."""
        return asyncio.run(self.serve(grace))

    # The driver: one coroutine owns the connection; one writer per stream.

    async def _drive(self) -> None:
        backoff = self._backoff_min
        try:
            while not self._drain_complete():
                self._registered = False
                if await self._session():
                    break
                if self._registered:
                    backoff = self._backoff_min
                self._publish(connected=False)
                wait_until = self._loop.time() + backoff * (0.5 + random.random() / 2)
                backoff = min(backoff * 2, self._backoff_max)
                while not self._drain_complete() and self._loop.time() < wait_until:
                    await self._wait(wait_until)
        finally:
            drain = self._drain
            self._report = ShutdownReport(
                drained=drain is not None and not drain.deadline_passed,
                cancelled_attempts=drain.cancelled if drain else 0,
            )
            self._publish(connected=False)
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _wait(self, until: float | None) -> None:
        """Sleep until woken, ``until``, or the drain deadline."""
        self._check_deadline()
        deadlines = [d for d in (until, self._drain_deadline()) if d is not None]
        timeout = max(0.0, min(deadlines) - self._loop.time()) if deadlines else None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()
        self._check_deadline()

    async def _session(self) -> bool:
        """One stream: connect, register, serve until it breaks. Returns
        True once shutdown is complete."""
        channel = open_channel(self.url)
        stub = executor_pb2_grpc.ExecutorServiceStub(channel)
        call = stub.Connect(metadata=self._metadata)
        tasks: list[asyncio.Task[Any]] = []
        self._lost = False
        try:
            held = sorted(set(self._running) | set(self._unacked))
            register = executor_pb2.Register(
                name=self.name,
                instance_id=self.instance_id,
                handlers=sorted(self._handlers),
                max_concurrent_attempts=0 if self._drain else self.capacity,
                labels=self.labels,
                held_attempt_ids=held,
                value_cache_bytes=self.value_cache_bytes if self._cache is not None else 0,
            )

            async def register_and_read() -> object:
                await call.write(_Request(register=register))
                return await call.read()

            try:
                # A server that accepts connections but does not answer (a
                # stopped process) must not hold the worker forever.
                first = await asyncio.wait_for(register_and_read(), _REGISTER_TIMEOUT)
            except (aio.AioRpcError, asyncio.TimeoutError, asyncio.InvalidStateError) as error:
                _log.debug("cannot register: %s", error)
                return False
            if (
                not isinstance(first, executor_pb2.ConnectResponse)
                or first.WhichOneof("message") != "registered"
            ):
                _log.warning("the server did not answer the registration with Registered")
                return False
            registered = first.registered
            self._registered = True
            if registered.max_message_bytes:
                self._max_message_bytes = registered.max_message_bytes
            self._max_context_bytes = registered.max_context_bytes
            self._publish(
                connected=True,
                registrations=self._status.registrations + 1,
                executor_id=registered.executor_id,
            )
            _log.info("registered as executor %s (%d held attempts)", registered.executor_id, len(held))
            outbox: asyncio.Queue[_Request | None] = asyncio.Queue()
            self._outbox = outbox
            for message in self._unacked.values():
                outbox.put_nowait(message)
            interval = self._heartbeat_override or max(registered.heartbeat_interval_ms, 1) / 1000
            lease = max(registered.lease_timeout_ms, 1) / 1000
            self._last_ack = time.monotonic()
            tasks = [
                asyncio.create_task(self._write_loop(call, outbox)),
                asyncio.create_task(self._read_loop(call)),
                asyncio.create_task(self._heartbeat_loop(interval, lease)),
            ]
            while True:
                if self._drain_complete():
                    outbox.put_nowait(None)
                    await asyncio.wait(tasks[:2], timeout=_CLOSE_GRACE)
                    return True
                if self._lost:
                    return False
                await self._wait(None)
        finally:
            self._outbox = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            call.cancel()
            await channel.close()
            for fetch in self._fetches:
                if not fetch.future.done():
                    fetch.future.set_exception(ConnectionError("the connection to the server was lost"))
            self._fetches.clear()
            self._produced.clear()
            if self._cache is not None:
                self._cache.clear()

    async def _write_loop(self, call: Any, outbox: asyncio.Queue[_Request | None]) -> None:
        try:
            while True:
                message = await outbox.get()
                if message is None:
                    await call.done_writing()
                    return
                await call.write(message)
                _log.debug("sent %s", message.WhichOneof("message"))
        except (aio.AioRpcError, asyncio.InvalidStateError) as error:
            _log.debug("the stream broke while writing: %s", error)
            self._mark_lost()

    async def _read_loop(self, call: Any) -> None:
        try:
            while True:
                message = await call.read()
                if message is aio.EOF:
                    break
                self._handle(message)
        except aio.AioRpcError as error:
            _log.info("the stream to the server ended: %s %s", error.code().name, error.details())
        self._mark_lost()

    async def _heartbeat_loop(self, interval: float, lease: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_ack > lease:
                _log.warning(
                    "no heartbeat acknowledgement within the lease; cancelling attempts and reconnecting"
                )
                self._cancel_all("the worker lost its lease on the server")
                self._mark_lost()
                return
            self._send(_Request(heartbeat=executor_pb2.Heartbeat()))

    def _mark_lost(self) -> None:
        self._lost = True
        self._wake.set()

    def _send(self, message: _Request) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(message)

    def _handle(self, message: executor_pb2.ConnectResponse) -> None:
        kind = message.WhichOneof("message")
        _log.debug("received %s", kind)
        if kind == "heartbeat_ack":
            self._last_ack = time.monotonic()
        elif kind == "assign":
            self._start_attempt(message.assign)
        elif kind == "cancel":
            running = self._running.get(message.cancel.attempt_id)
            if running is not None:
                _log.info("cancelling attempt %s: %s", message.cancel.attempt_id, message.cancel.reason)
                running.cancellation.set(message.cancel.reason)
                running.task.cancel()
        elif kind == "result_ack":
            self._acknowledged(message.result_ack)
        elif kind == "values":
            self._values_arrived(message.values)
        elif kind == "forget_run" and self._cache is not None:
            self._cache.forget_run(message.forget_run.run_id)

    def _acknowledged(self, ack: executor_pb2.ResultAck) -> None:
        self._unacked.pop(ack.attempt_id, None)
        produced = self._produced.pop(ack.attempt_id, None)
        disposition = ack.disposition
        if disposition == executor_pb2.RESULT_DISPOSITION_ACCEPTED:
            if produced is not None and self._cache is not None:
                run_id, texts = produced
                for key, text in texts.items():
                    self._cache.put((run_id, ack.attempt_id, key), text)
        elif disposition == executor_pb2.RESULT_DISPOSITION_REJECTED:
            _log.warning("the server rejected the result of attempt %s: %s", ack.attempt_id, ack.reason)
        else:
            _log.info(
                "the result of attempt %s was not applied (%s)",
                ack.attempt_id,
                executor_pb2.ResultDisposition.Name(disposition),
            )
        self._publish_counts()

    def _start_attempt(self, assign: executor_pb2.Assign) -> None:
        attempt_id = assign.attempt_id
        if attempt_id in self._running or attempt_id in self._unacked:
            return  # already ours (a reclaimed attempt): never run it twice
        self._send(_Request(started=executor_pb2.Started(attempt_id=attempt_id)))
        function, is_async = self._handlers.get(assign.handler, (None, False))
        cancellation = Cancellation()
        task = asyncio.create_task(
            self._attempt(assign, function, is_async, cancellation), name=f"attempt-{attempt_id}"
        )
        self._running[attempt_id] = _Running(task, cancellation, assign.run_id)
        self._publish_counts()

    async def _attempt(
        self,
        assign: executor_pb2.Assign,
        function: Callable[[Context], Any] | None,
        is_async: bool,
        cancellation: Cancellation,
    ) -> None:
        message, written = await run_attempt(
            assign, function, is_async, cancellation, self._cache, self._fetch, self._pool
        )
        message = fit_result(message, self._max_message_bytes, self._max_context_bytes)
        attempt_id = assign.attempt_id
        self._running.pop(attempt_id, None)
        self._unacked[attempt_id] = message
        if self._cache is not None and message.WhichOneof("message") == "completed":
            self._produced[attempt_id] = (assign.run_id, written)
        self._send(message)
        self._publish_counts()
        self._wake.set()

    async def _fetch(self, run_id: str, refs: list[executor_pb2.ValueRef]) -> dict[tuple[str, str], str]:
        if self._outbox is None:
            raise ConnectionError("not connected to the server")
        out: dict[tuple[str, str], str] = {}
        for start in range(0, len(refs), _MAX_REFS_PER_FETCH):
            chunk = refs[start : start + _MAX_REFS_PER_FETCH]
            future: asyncio.Future[dict[tuple[str, str], str]] = self._loop.create_future()
            self._fetches.append(_Fetch(run_id, future))
            self._send(_Request(fetch_values=executor_pb2.FetchValues(run_id=run_id, refs=chunk)))
            out.update(await future)
        return out

    def _values_arrived(self, values: executor_pb2.Values) -> None:
        # The server answers fetches in the order they were sent.
        for index, fetch in enumerate(self._fetches):
            if fetch.run_id == values.run_id:
                del self._fetches[index]
                texts = {(v.ref.key, v.ref.writer_attempt_id): v.value_json for v in values.values}
                if self._cache is not None:
                    for (key, writer), text in texts.items():
                        self._cache.put((values.run_id, writer, key), text)
                if not fetch.future.done():
                    fetch.future.set_result(texts)
                return

    def _drain_deadline(self) -> float | None:
        if self._drain is None or self._drain.deadline_passed:
            return None
        return self._drain.deadline

    def _check_deadline(self) -> None:
        drain = self._drain
        if drain is not None and not drain.deadline_passed and self._loop.time() >= drain.deadline:
            drain.deadline_passed = True
            drain.cancelled += len(self._running)
            self._cancel_all("the worker is shutting down")

    def _drain_complete(self) -> bool:
        """Shutdown is complete once nothing runs and every result is
        acknowledged, or, after the deadline, once nothing runs."""
        drain = self._drain
        if drain is None:
            return False
        return not self._running and (not self._unacked or drain.deadline_passed)

    def _cancel_all(self, reason: str) -> None:
        for running in self._running.values():
            running.cancellation.set(reason)
            running.task.cancel()

    def _publish_counts(self) -> None:
        self._publish(running=len(self._running), unacknowledged=len(self._unacked))
        # The driver re-checks whether a drain is complete.
        self._wake.set()

    def _publish(self, **changes: Any) -> None:
        status = replace(self._status, **changes)
        if status != self._status:
            self._status = status
            self._status_changed.set()
