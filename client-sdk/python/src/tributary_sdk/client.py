"""The client: register workflows, start, get, list, cancel, retry and wait
for runs, and watch events. :class:`AsyncClient` is for ``asyncio`` services;
:class:`Client` is the same API for scripts, with no event loop to manage.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any, TypeVar
from urllib.parse import urlparse

import grpc
from grpc import aio

from ._proto.tributary.v1 import (
    executor_pb2,
    executor_pb2_grpc,
    run_pb2,
    run_pb2_grpc,
    schedule_pb2,
    schedule_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from .errors import ServerError, TributaryError
from .jsonvalue import JsonError, dumps
from .types import (
    CatchUpPolicy,
    ExecutorInfo,
    OverlapPolicy,
    RetriedRun,
    Run,
    RunEvent,
    RunEventType,
    RunStatus,
    Schedule,
    StartedRun,
    WorkflowVersion,
)
from .validate import validate_definition
from .workflow import Workflow

__all__ = ["DEFAULT_NAMESPACE", "NAMESPACE_METADATA_KEY", "AsyncClient", "Client"]

NAMESPACE_METADATA_KEY = "x-tributary-namespace"
"""The metadata entry that names a call's namespace."""
DEFAULT_NAMESPACE = "default"
"""The namespace used when none is given."""

T = TypeVar("T")

# Codes after which a watch resumes from where it was: the server went away
# (shut down, restarted, a connection reset).
_RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})

_UINT32_MAX = 2**32 - 1


def channel_target(url: str) -> tuple[str, bool]:
    """The gRPC target of a server URL and whether it uses TLS.

    >>> channel_target("http://127.0.0.1:50051")
    ('127.0.0.1:50051', False)
    """
    if "://" not in url:
        return url, False
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise TributaryError(f"invalid server URL {url!r}: expected http://host:port or https://host:port")
    return parsed.netloc, parsed.scheme == "https"


def call_metadata(namespace: str, api_key: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata of every call: the namespace, and the API key (sent as
    ``authorization: Bearer <key>``) when there is one. A key acts in its own
    namespace; naming another is PERMISSION_DENIED."""
    if api_key is None:
        return ((NAMESPACE_METADATA_KEY, namespace),)
    return ((NAMESPACE_METADATA_KEY, namespace), ("authorization", f"Bearer {api_key}"))


def open_channel(url: str) -> aio.Channel:
    """An ``asyncio`` gRPC channel to a server URL, with no message-size
    limit of its own (the server announces and enforces its limit)."""
    target, secure = channel_target(url)
    options = [
        ("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1),
    ]
    if secure:
        return aio.secure_channel(target, grpc.ssl_channel_credentials(), options=options)
    return aio.insecure_channel(target, options=options)


def definition_to_proto(definition: Mapping[str, Any]) -> workflow_pb2.WorkflowDefinition:
    """A definition in the definition-file form as the protobuf message."""
    message = workflow_pb2.WorkflowDefinition(
        name=definition.get("name", ""), description=definition.get("description", "")
    )
    for task in definition.get("tasks", []):
        entry = message.tasks.add()
        entry.id = task.get("id", "")
        entry.dependencies.extend(task.get("dependencies", []))
        for name in (
            "retry_attempts",
            "retry_delay_ms",
            "retry_max_delay_ms",
            "retry_jitter",
            "timeout_ms",
            "max_in_flight",
            "map_max_instances",
        ):
            if task.get(name) is not None:
                setattr(entry, name, task[name])
        entry.retry_backoff = task.get("retry_backoff", "") or ""
        entry.trigger_rule = task.get("trigger_rule", "") or ""
        entry.handler = task.get("handler", "") or ""
        entry.required_labels.update(task.get("required_labels") or {})
        entry.map_over = task.get("map_over", "") or ""
        entry.map_output = task.get("map_output", "") or ""
    policy = definition.get("concurrency")
    if policy is not None:
        message.concurrency.SetInParent()
        message.concurrency.key_pointer = policy.get("key_pointer", "") or ""
        message.concurrency.fixed_key = policy.get("fixed_key", "") or ""
        if policy.get("max_active_runs") is not None:
            message.concurrency.max_active_runs = policy["max_active_runs"]
        message.concurrency.strategy = policy.get("strategy", "") or ""
    return message


class AsyncClient:
    """A client of one server and namespace, for ``asyncio`` code.

    .. code-block:: python

        async with AsyncClient("http://127.0.0.1:50051") as client:
            await client.register_workflow(pipeline)
            started = await client.start_run("parallel_processing", {"source": "nightly"})
            run = await client.wait(started.run_id)
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:50051",
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 30.0,
        api_key: str | None = None,
    ) -> None:
        self.url = url
        """The server's URL."""
        self.namespace = namespace
        """The namespace of every call."""
        self.timeout = timeout
        """Deadline of unary calls, in seconds."""
        self._channel = open_channel(url)
        self._metadata = call_metadata(namespace, api_key)
        self._workflows = workflow_pb2_grpc.WorkflowServiceStub(self._channel)
        self._runs = run_pb2_grpc.RunServiceStub(self._channel)
        self._executors = executor_pb2_grpc.ExecutorServiceStub(self._channel)
        self._schedules = schedule_pb2_grpc.ScheduleServiceStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        await self._channel.close()

    async def _call(self, name: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except aio.AioRpcError as error:
            raise ServerError(error.code(), error.details() or "", name) from None

    async def register_workflow(self, workflow: Workflow | Mapping[str, Any]) -> WorkflowVersion:
        """Validate a workflow locally (raising :class:`DefinitionError` with
        the server's message) and register it; returns the stored version."""
        definition = workflow.definition() if isinstance(workflow, Workflow) else workflow
        validate_definition(definition)
        response = await self._call(
            "RegisterWorkflow",
            self._workflows.RegisterWorkflow(
                workflow_pb2.RegisterWorkflowRequest(definition=definition_to_proto(definition)),
                metadata=self._metadata,
                timeout=self.timeout,
            ),
        )
        return WorkflowVersion.from_proto(response.workflow, created=response.created)

    async def get_workflow(
        self, name: str, *, version: str | None = None, sequence: int | None = None
    ) -> WorkflowVersion:
        """One version of a workflow: the latest unless ``version`` or
        ``sequence`` names one."""
        request = workflow_pb2.GetWorkflowRequest(name=name)
        if version is not None:
            request.version = version
        elif sequence is not None:
            request.sequence = sequence
        response = await self._call(
            "GetWorkflow",
            self._workflows.GetWorkflow(request, metadata=self._metadata, timeout=self.timeout),
        )
        return WorkflowVersion.from_proto(response.workflow)

    async def list_workflows(self) -> list[WorkflowVersion]:
        """Every workflow of the namespace (latest versions), by name."""
        out: list[WorkflowVersion] = []
        token = ""
        while True:
            response = await self._call(
                "ListWorkflows",
                self._workflows.ListWorkflows(
                    workflow_pb2.ListWorkflowsRequest(page_size=1000, page_token=token),
                    metadata=self._metadata,
                    timeout=self.timeout,
                ),
            )
            out.extend(WorkflowVersion.from_proto(w) for w in response.workflows)
            token = response.next_page_token
            if not token:
                return out

    async def start_run(
        self,
        workflow_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str = "",
        version: str = "",
    ) -> StartedRun:
        """Start a run of the latest (or the given) version with an input
        context (any JSON object: ints of any size, ``Decimal``, dataclasses
        and pydantic models are written exactly)."""
        try:
            input_json = dumps(dict(input or {}))
        except JsonError as error:
            raise TributaryError(f"the input context is not JSON: {error}") from None
        response = await self._call(
            "StartRun",
            self._runs.StartRun(
                run_pb2.StartRunRequest(
                    workflow_name=workflow_name,
                    workflow_version=version,
                    input_context_json=input_json,
                    idempotency_key=idempotency_key,
                ),
                metadata=self._metadata,
                timeout=self.timeout,
            ),
        )
        return StartedRun(response.run_id, response.workflow_version, response.created)

    async def get_run(self, run_id: str, *, instances_from: int = 0, max_instances: int | None = None) -> Run:
        """A run with its tasks, attempts, conflicts and context.

        A mapped task's ``instances`` list a window of its instances: from
        element index ``instances_from``, at most ``max_instances`` (0 lists
        none; None, the default, sets no limit of its own), and never more
        than fit in one answer, the same number under every mapped task. Its
        ``instance_counts`` count all of them by state either way."""
        if not 0 <= instances_from <= _UINT32_MAX:
            raise TributaryError(f"instances_from must be between 0 and {_UINT32_MAX}, got {instances_from}")
        if max_instances is not None and not 0 <= max_instances <= _UINT32_MAX:
            raise TributaryError(f"max_instances must be between 0 and {_UINT32_MAX}, got {max_instances}")
        request = run_pb2.GetRunRequest(run_id=run_id, instances_from=instances_from)
        if max_instances is not None:
            request.max_instances = max_instances
        response = await self._call(
            "GetRun", self._runs.GetRun(request, metadata=self._metadata, timeout=self.timeout)
        )
        return Run.from_proto(response.run)

    async def list_runs(
        self, *, workflow_name: str = "", status: RunStatus = RunStatus.UNSPECIFIED, limit: int | None = None
    ) -> list[Run]:
        """Runs of the namespace, newest first (without tasks), optionally of
        one workflow or status, at most ``limit``."""
        out: list[Run] = []
        token = ""
        while True:
            response = await self._call(
                "ListRuns",
                self._runs.ListRuns(
                    run_pb2.ListRunsRequest(
                        workflow_name=workflow_name,
                        status=run_pb2.RunStatus.ValueType(status.value),
                        page_size=min(limit or 1000, 1000),
                        page_token=token,
                    ),
                    metadata=self._metadata,
                    timeout=self.timeout,
                ),
            )
            out.extend(Run.from_proto(r) for r in response.runs)
            token = response.next_page_token
            if not token or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out

    async def cancel_run(self, run_id: str) -> RunStatus:
        """Cancel a run that has not finished; returns its status."""
        response = await self._call(
            "CancelRun",
            self._runs.CancelRun(
                run_pb2.CancelRunRequest(run_id=run_id), metadata=self._metadata, timeout=self.timeout
            ),
        )
        return RunStatus(response.status)

    async def retry_run(self, run_id: str, *, from_task: str = "", request_id: str = "") -> RetriedRun:
        """Re-run a finished run in place: its failed, skipped and cancelled
        tasks (or ``from_task`` and everything downstream of it) run again,
        succeeded tasks keep their outputs. The same ``request_id`` as the
        run's latest retry returns that retry's answer again."""
        response = await self._call(
            "RetryRun",
            self._runs.RetryRun(
                run_pb2.RetryRunRequest(run_id=run_id, from_task=from_task, request_id=request_id),
                metadata=self._metadata,
                timeout=self.timeout,
            ),
        )
        return RetriedRun(
            run_id=response.run_id,
            status=RunStatus(response.status),
            retry_count=response.retry_count,
            retried_task_ids=tuple(response.retried_task_ids),
        )

    async def list_executors(self) -> list[ExecutorInfo]:
        """The executors connected in the namespace."""
        response = await self._call(
            "ListExecutors",
            self._executors.ListExecutors(
                executor_pb2.ListExecutorsRequest(), metadata=self._metadata, timeout=self.timeout
            ),
        )
        return [ExecutorInfo.from_proto(e) for e in response.executors]

    async def create_schedule(
        self,
        schedule_id: str,
        workflow_name: str,
        cron: str,
        *,
        time_zone: str = "UTC",
        input: Any = None,
        version: str = "",
        overlap_policy: OverlapPolicy = OverlapPolicy.SKIP,
        catch_up_policy: CatchUpPolicy = CatchUpPolicy.NONE,
        max_catch_up: int = 0,
        paused: bool = False,
    ) -> Schedule:
        """Create a schedule that starts runs of ``workflow_name`` at the
        times ``cron`` (5 fields) names in ``time_zone``; ``max_catch_up``
        (1-100) goes with ``CatchUpPolicy.ALL`` only."""
        try:
            input_json = dumps({} if input is None else input)
        except JsonError as error:
            raise TributaryError(f"the schedule input is not JSON: {error}") from None
        response = await self._call(
            "CreateSchedule",
            self._schedules.CreateSchedule(
                schedule_pb2.CreateScheduleRequest(
                    schedule_id=schedule_id,
                    workflow_name=workflow_name,
                    workflow_version=version,
                    cron=cron,
                    time_zone=time_zone,
                    input_context_json=input_json,
                    overlap_policy=schedule_pb2.OverlapPolicy.ValueType(overlap_policy.value),
                    catch_up_policy=schedule_pb2.CatchUpPolicy.ValueType(catch_up_policy.value),
                    max_catch_up=max_catch_up,
                    paused=paused,
                ),
                metadata=self._metadata,
                timeout=self.timeout,
            ),
        )
        return Schedule.from_proto(response.schedule)

    async def get_schedule(self, schedule_id: str, *, next_fire_count: int = 0) -> Schedule:
        """A schedule with its next fire times (5 unless told, up to 100)."""
        response = await self._call(
            "GetSchedule",
            self._schedules.GetSchedule(
                schedule_pb2.GetScheduleRequest(schedule_id=schedule_id, next_fire_count=next_fire_count),
                metadata=self._metadata,
                timeout=self.timeout,
            ),
        )
        return Schedule.from_proto(response.schedule)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule of the namespace, by id."""
        schedules: list[Schedule] = []
        page_token = ""
        while True:
            response = await self._call(
                "ListSchedules",
                self._schedules.ListSchedules(
                    schedule_pb2.ListSchedulesRequest(page_size=1000, page_token=page_token),
                    metadata=self._metadata,
                    timeout=self.timeout,
                ),
            )
            schedules.extend(Schedule.from_proto(s) for s in response.schedules)
            if not response.next_page_token:
                return schedules
            page_token = response.next_page_token

    async def pause_schedule(self, schedule_id: str) -> Schedule:
        """Pause a schedule: fire times that pass while paused never fire."""
        response = await self._call(
            "PauseSchedule",
            self._schedules.PauseSchedule(
                schedule_pb2.PauseScheduleRequest(schedule_id=schedule_id),
                metadata=self._metadata,
                timeout=self.timeout,
            ),
        )
        return Schedule.from_proto(response.schedule)

    async def resume_schedule(self, schedule_id: str) -> Schedule:
        """Resume a paused schedule from now on (the paused period is not
        caught up)."""
        response = await self._call(
            "ResumeSchedule",
            self._schedules.ResumeSchedule(
                schedule_pb2.ResumeScheduleRequest(schedule_id=schedule_id),
                metadata=self._metadata,
                timeout=self.timeout,
            ),
        )
        return Schedule.from_proto(response.schedule)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule; the runs it started stay."""
        await self._call(
            "DeleteSchedule",
            self._schedules.DeleteSchedule(
                schedule_pb2.DeleteScheduleRequest(schedule_id=schedule_id),
                metadata=self._metadata,
                timeout=self.timeout,
            ),
        )

    async def wait(self, run_id: str, *, timeout: float | None = None) -> Run:
        """Wait until the run is terminal and return it (following its
        events, resuming after disconnects). ``asyncio.TimeoutError`` after
        ``timeout`` seconds."""

        async def follow() -> Run:
            async for _ in self.watch_run(run_id):
                pass
            return await self.get_run(run_id)

        return await asyncio.wait_for(follow(), timeout)

    async def watch_run(self, run_id: str, *, after_sequence: int = 0) -> AsyncGenerator[RunEvent, None]:
        """A run's events after ``after_sequence``, then live ones, ending
        after the RUN_FINISHED that ends the log (a retried run's earlier
        ones are followed by RUN_RETRIED). When the connection breaks (the server restarts),
        it reconnects by itself and resumes after the last event received:
        no gap, no duplicate."""
        last = after_sequence
        backoff = _Backoff()
        while True:
            call = self._runs.WatchRun(
                run_pb2.WatchRunRequest(run_id=run_id, after_sequence=last), metadata=self._metadata
            )
            try:
                async for response in call:
                    backoff.reset()
                    event = RunEvent.from_proto(response.event)
                    last = event.sequence
                    yield event
                # The server ends the stream after the RUN_FINISHED that ends
                # the log (a retried run has earlier ones).
                return
            except aio.AioRpcError as error:
                if error.code() not in _RESUMABLE:
                    raise ServerError(error.code(), error.details() or "", "WatchRun") from None
            finally:
                call.cancel()
            await backoff.sleep()

    async def watch_events(
        self,
        *,
        after_cursor: int = 0,
        from_now: bool = False,
        workflow_names: Iterable[str] = (),
        run_ids: Iterable[str] = (),
        types: Iterable[RunEventType] = (),
    ) -> AsyncGenerator[RunEvent, None]:
        """Every event of the namespace after ``after_cursor`` (or, with
        ``from_now``, from now on), filtered, in commit order; it never ends
        on its own. It reconnects by itself after a disconnect and resumes
        after the last cursor received (before any event arrived, a
        ``from_now`` watch starts from now again)."""
        cursor = after_cursor
        names, runs, kinds = (
            list(workflow_names),
            list(run_ids),
            [run_pb2.RunEventType.ValueType(t.value) for t in types],
        )
        backoff = _Backoff()
        while True:
            request = run_pb2.WatchEventsRequest(
                after_cursor=cursor,
                workflow_names=names,
                run_ids=runs,
                types=kinds,
                from_now=from_now and cursor == 0,
            )
            call = self._runs.WatchEvents(request, metadata=self._metadata)
            try:
                async for response in call:
                    backoff.reset()
                    event = RunEvent.from_proto(response.event)
                    cursor = event.cursor
                    yield event
            except aio.AioRpcError as error:
                if error.code() not in _RESUMABLE:
                    raise ServerError(error.code(), error.details() or "", "WatchEvents") from None
            finally:
                call.cancel()
            await backoff.sleep()


class _Backoff:
    """Jittered exponential backoff between reconnections."""

    def __init__(self, low: float = 0.05, high: float = 2.0) -> None:
        self.low, self.high, self.current = low, high, low

    def reset(self) -> None:
        self.current = self.low

    async def sleep(self) -> None:
        await asyncio.sleep(self.current * (0.5 + random.random() / 2))
        self.current = min(self.current * 2, self.high)


class Client:
    """The client for scripts: the :class:`AsyncClient` API as plain
    blocking calls (an event loop runs in a background thread).

    .. code-block:: python

        with Client("http://127.0.0.1:50051") as client:
            client.register_workflow(pipeline)
            run = client.wait(client.start_run("parallel_processing").run_id)
            for event in client.watch_run(run.id):
                print(event.type.name, event.task_id)
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:50051",
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 30.0,
        api_key: str | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tributary-client", daemon=True)
        self._thread.start()

        async def make() -> AsyncClient:
            return AsyncClient(url, namespace=namespace, timeout=timeout, api_key=api_key)

        self._client = self._run(make())
        self.url = url
        """The server's URL."""
        self.namespace = namespace
        """The namespace of every call."""

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and stop the background loop."""
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def register_workflow(self, workflow: Workflow | Mapping[str, Any]) -> WorkflowVersion:
        """See :meth:`AsyncClient.register_workflow`."""
        return self._run(self._client.register_workflow(workflow))

    def get_workflow(
        self, name: str, *, version: str | None = None, sequence: int | None = None
    ) -> WorkflowVersion:
        """See :meth:`AsyncClient.get_workflow`."""
        return self._run(self._client.get_workflow(name, version=version, sequence=sequence))

    def list_workflows(self) -> list[WorkflowVersion]:
        """See :meth:`AsyncClient.list_workflows`."""
        return self._run(self._client.list_workflows())

    def start_run(
        self,
        workflow_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str = "",
        version: str = "",
    ) -> StartedRun:
        """See :meth:`AsyncClient.start_run`."""
        return self._run(
            self._client.start_run(workflow_name, input, idempotency_key=idempotency_key, version=version)
        )

    def get_run(self, run_id: str, *, instances_from: int = 0, max_instances: int | None = None) -> Run:
        """See :meth:`AsyncClient.get_run`."""
        return self._run(
            self._client.get_run(run_id, instances_from=instances_from, max_instances=max_instances)
        )

    def list_runs(
        self, *, workflow_name: str = "", status: RunStatus = RunStatus.UNSPECIFIED, limit: int | None = None
    ) -> list[Run]:
        """See :meth:`AsyncClient.list_runs`."""
        return self._run(self._client.list_runs(workflow_name=workflow_name, status=status, limit=limit))

    def cancel_run(self, run_id: str) -> RunStatus:
        """See :meth:`AsyncClient.cancel_run`."""
        return self._run(self._client.cancel_run(run_id))

    def retry_run(self, run_id: str, *, from_task: str = "", request_id: str = "") -> RetriedRun:
        """See :meth:`AsyncClient.retry_run`."""
        return self._run(self._client.retry_run(run_id, from_task=from_task, request_id=request_id))

    def list_executors(self) -> list[ExecutorInfo]:
        """See :meth:`AsyncClient.list_executors`."""
        return self._run(self._client.list_executors())

    def create_schedule(
        self,
        schedule_id: str,
        workflow_name: str,
        cron: str,
        *,
        time_zone: str = "UTC",
        input: Any = None,
        version: str = "",
        overlap_policy: OverlapPolicy = OverlapPolicy.SKIP,
        catch_up_policy: CatchUpPolicy = CatchUpPolicy.NONE,
        max_catch_up: int = 0,
        paused: bool = False,
    ) -> Schedule:
        """See :meth:`AsyncClient.create_schedule`."""
        return self._run(
            self._client.create_schedule(
                schedule_id,
                workflow_name,
                cron,
                time_zone=time_zone,
                input=input,
                version=version,
                overlap_policy=overlap_policy,
                catch_up_policy=catch_up_policy,
                max_catch_up=max_catch_up,
                paused=paused,
            )
        )

    def get_schedule(self, schedule_id: str, *, next_fire_count: int = 0) -> Schedule:
        """See :meth:`AsyncClient.get_schedule`."""
        return self._run(self._client.get_schedule(schedule_id, next_fire_count=next_fire_count))

    def list_schedules(self) -> list[Schedule]:
        """See :meth:`AsyncClient.list_schedules`."""
        return self._run(self._client.list_schedules())

    def pause_schedule(self, schedule_id: str) -> Schedule:
        """See :meth:`AsyncClient.pause_schedule`."""
        return self._run(self._client.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: str) -> Schedule:
        """See :meth:`AsyncClient.resume_schedule`."""
        return self._run(self._client.resume_schedule(schedule_id))

    def delete_schedule(self, schedule_id: str) -> None:
        """See :meth:`AsyncClient.delete_schedule`."""
        self._run(self._client.delete_schedule(schedule_id))

    def wait(self, run_id: str, *, timeout: float | None = None) -> Run:
        """See :meth:`AsyncClient.wait`."""
        return self._run(self._client.wait(run_id, timeout=timeout))

    def watch_run(self, run_id: str, *, after_sequence: int = 0) -> Iterator[RunEvent]:
        """See :meth:`AsyncClient.watch_run`; a plain iterator."""
        return self._iterate(lambda: self._client.watch_run(run_id, after_sequence=after_sequence))

    def watch_events(
        self,
        *,
        after_cursor: int = 0,
        from_now: bool = False,
        workflow_names: Iterable[str] = (),
        run_ids: Iterable[str] = (),
        types: Iterable[RunEventType] = (),
    ) -> Iterator[RunEvent]:
        """See :meth:`AsyncClient.watch_events`; a plain iterator (close it,
        or break out of the loop, to stop watching)."""
        return self._iterate(
            lambda: self._client.watch_events(
                after_cursor=after_cursor,
                from_now=from_now,
                workflow_names=workflow_names,
                run_ids=run_ids,
                types=types,
            )
        )

    def _iterate(self, make: Callable[[], AsyncIterator[RunEvent]]) -> Iterator[RunEvent]:
        iterator = make()
        try:
            while True:
                try:
                    yield self._run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            # Close the async generator on its own loop, so that its stream
            # is cancelled rather than left pending.
            self._run(_close(iterator))


async def _next(iterator: AsyncIterator[RunEvent]) -> RunEvent:
    return await iterator.__anext__()


async def _close(iterator: AsyncIterator[RunEvent]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
