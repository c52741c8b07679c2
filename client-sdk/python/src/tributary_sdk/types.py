"""What the client returns: runs, tasks, attempts, events, workflow
versions and executors, as plain Python objects (contexts parsed
losslessly)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ._proto.tributary.v1 import executor_pb2, run_pb2, schedule_pb2, workflow_pb2
from .jsonvalue import loads

__all__ = [
    "Attempt",
    "AttemptState",
    "CatchUpPolicy",
    "ContextConflict",
    "ExecutorInfo",
    "OverlapPolicy",
    "Run",
    "RunEvent",
    "RunEventType",
    "RunStatus",
    "Schedule",
    "SkipReason",
    "StartedRun",
    "TaskRun",
    "TaskState",
    "WorkflowVersion",
]


class RunStatus(enum.IntEnum):
    """A run's lifecycle: [QUEUED ->] PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED."""

    UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5
    QUEUED = 6

    @property
    def is_terminal(self) -> bool:
        """Whether the run is over."""
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class TaskState(enum.IntEnum):
    """A task's lifecycle within a run."""

    UNSPECIFIED = 0
    WAITING = 1
    READY = 2
    ASSIGNED = 3
    RUNNING = 4
    SUCCEEDED = 5
    FAILED = 6
    SKIPPED = 7
    CANCELLED = 8
    RETRY_SCHEDULED = 9


class SkipReason(enum.IntEnum):
    """Why a task was skipped."""

    UNSPECIFIED = 0
    UPSTREAM_FAILED = 1
    RULE_NOT_MET = 2


class AttemptState(enum.IntEnum):
    """The outcome of one attempt."""

    UNSPECIFIED = 0
    ASSIGNED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    TIMED_OUT = 5
    LOST = 6
    CANCELLED = 7


class RunEventType(enum.IntEnum):
    """What happened in a :class:`RunEvent` (see ``run.proto``)."""

    UNSPECIFIED = 0
    RUN_STARTED = 1
    RUN_FINISHED = 2
    TASK_READY = 3
    TASK_ASSIGNED = 4
    TASK_STARTED = 5
    TASK_SUCCEEDED = 6
    TASK_FAILED = 7
    TASK_RETRY_SCHEDULED = 8
    TASK_TIMED_OUT = 9
    TASK_SKIPPED = 10
    TASK_CANCELLED = 11
    CONTEXT_CONFLICT = 12
    EXECUTOR_CONNECTED = 13
    EXECUTOR_LOST = 14
    RUN_RETRIED = 15
    RUN_QUEUED = 16
    TASK_MAPPED = 17


def _time(stamp: Timestamp, present: bool = True) -> datetime | None:
    if not present:
        return None
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=timezone.utc)


@dataclass(frozen=True)
class Attempt:
    """One attempt at running a task."""

    id: str
    """The attempt's id."""
    number: int
    """1 for the first attempt."""
    executor_id: str
    """The executor it was assigned to."""
    state: AttemptState
    """Its state."""
    error: str
    """The failure message, if any."""
    assigned_at: datetime | None
    """When it was assigned."""
    started_at: datetime | None
    """When the executor reported it started."""
    finished_at: datetime | None
    """When it ended."""

    @classmethod
    def from_proto(cls, message: run_pb2.Attempt) -> Attempt:
        """From the protobuf message."""
        return cls(
            id=message.id,
            number=message.number,
            executor_id=message.executor_id,
            state=AttemptState(message.state),
            error=message.error,
            assigned_at=_time(message.assigned_at, message.HasField("assigned_at")),
            started_at=_time(message.started_at, message.HasField("started_at")),
            finished_at=_time(message.finished_at, message.HasField("finished_at")),
        )


@dataclass(frozen=True)
class TaskRun:
    """The state of one task within a run."""

    task_id: str
    """The task's id."""
    state: TaskState
    """Its state."""
    skip_reason: SkipReason
    """Why it was skipped, if it was."""
    error: str
    """The error of its last failed attempt."""
    attempts: list[Attempt]
    """Every attempt, oldest first."""
    map_index: int | None = None
    """For an instance of a mapped task (an entry of its ``instances``): its element index."""
    instances: list[TaskRun] = field(default_factory=list)
    """For a mapped task once expanded: its instances in element order; possibly
    a window of them (from ``instances_from``, at most ``max_instances`` or as
    many as fit in one answer, see :meth:`AsyncClient.get_run`), each entry's
    ``map_index`` saying which."""
    instance_counts: dict[TaskState, int] = field(default_factory=dict)
    """For a mapped task once expanded: how many of all its instances, listed in
    ``instances`` or not, are in each state (states with none left out)."""

    @classmethod
    def from_proto(cls, task: run_pb2.TaskRun) -> TaskRun:
        """From the protobuf message."""
        return cls(
            task_id=task.task_id,
            state=TaskState(task.state),
            skip_reason=SkipReason(task.skip_reason),
            error=task.error,
            attempts=[Attempt.from_proto(a) for a in task.attempts],
            map_index=task.map_index if task.HasField("map_index") else None,
            instances=[TaskRun.from_proto(i) for i in task.instances],
            instance_counts={TaskState(c.state): c.count for c in task.instance_counts},
        )


@dataclass(frozen=True)
class ContextConflict:
    """A key written by two tasks with no path between them."""

    key: str
    """The key."""
    winning_task_id: str
    """The task whose write is in the context."""
    overridden_task_id: str
    """The task whose write was overridden."""


@dataclass(frozen=True)
class Run:
    """A run of a workflow version."""

    id: str
    """The run's id."""
    workflow_name: str
    """Its workflow."""
    workflow_version: str
    """The version it is pinned to."""
    status: RunStatus
    """Its status."""
    input: dict[str, Any]
    """Its input context."""
    context: dict[str, Any]
    """Its context (final once terminal), parsed losslessly."""
    context_json: str
    """The context as the server sent it."""
    idempotency_key: str
    """The idempotency key given at start."""
    created_at: datetime | None
    """When it was created."""
    finished_at: datetime | None
    """When it became terminal."""
    tasks: list[TaskRun] = field(default_factory=list)
    """Every task in canonical order (empty in listings)."""
    conflicts: list[ContextConflict] = field(default_factory=list)
    """Context conflicts (empty in listings)."""
    retry_count: int = 0
    """How many times ``retry_run`` re-ran it."""
    concurrency_key: str = ""
    """Its concurrency key; empty when its workflow has no concurrency policy."""
    queue_position: int = 0
    """While QUEUED, its position in its key's queue (1 starts next); 0 otherwise."""

    @property
    def succeeded(self) -> bool:
        """Whether the run succeeded."""
        return self.status == RunStatus.SUCCEEDED

    def task(self, task_id: str) -> TaskRun:
        """The task with this id."""
        for candidate in self.tasks:
            if candidate.task_id == task_id:
                return candidate
        raise KeyError(f"run {self.id} has no task {task_id!r}")

    @classmethod
    def from_proto(cls, message: run_pb2.Run) -> Run:
        """From the protobuf message."""
        return cls(
            id=message.id,
            workflow_name=message.workflow_name,
            workflow_version=message.workflow_version,
            status=RunStatus(message.status),
            input=loads(message.input_context_json or "{}"),
            context=loads(message.context_json or "{}"),
            context_json=message.context_json,
            idempotency_key=message.idempotency_key,
            created_at=_time(message.created_at, message.HasField("created_at")),
            finished_at=_time(message.finished_at, message.HasField("finished_at")),
            tasks=[TaskRun.from_proto(task) for task in message.tasks],
            conflicts=[
                ContextConflict(c.key, c.winning_task_id, c.overridden_task_id) for c in message.conflicts
            ],
            retry_count=message.retry_count,
            concurrency_key=message.concurrency_key,
            queue_position=message.queue_position,
        )


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's event log (see ``RunEventType`` in
    ``run.proto`` for which fields each type sets)."""

    cursor: int
    """Global position; ``watch_events`` resumes from it."""
    sequence: int
    """Position within the run; ``watch_run`` resumes from it."""
    run_id: str
    """The run's id."""
    workflow_name: str
    """The run's workflow."""
    type: RunEventType
    """What happened."""
    time: datetime | None
    """When the server recorded it."""
    task_id: str
    """The task concerned."""
    attempt_id: str
    """The attempt concerned."""
    attempt_number: int
    """The attempt's number."""
    executor_id: str
    """The executor concerned."""
    error: str
    """The failure message."""
    skip_reason: SkipReason
    """For TASK_SKIPPED."""
    run_status: RunStatus
    """For RUN_FINISHED."""
    retried_task_ids: tuple[str, ...] = ()
    """For RUN_RETRIED: the tasks reset, in canonical order."""
    concurrency_key: str = ""
    """For RUN_QUEUED: the run's concurrency key."""
    queue_position: int = 0
    """For RUN_QUEUED: the run's position in its key's queue when it was queued."""
    map_index: int | None = None
    """For an event about an instance of a mapped task (``task_id`` is the
    mapped task's): the instance's element index."""
    map_size: int = 0
    """For TASK_MAPPED: the number of instances."""

    @classmethod
    def from_proto(cls, message: run_pb2.RunEvent) -> RunEvent:
        """From the protobuf message."""
        return cls(
            cursor=message.cursor,
            sequence=message.sequence,
            run_id=message.run_id,
            workflow_name=message.workflow_name,
            type=RunEventType(message.type),
            time=_time(message.time, message.HasField("time")),
            task_id=message.task_id,
            attempt_id=message.attempt_id,
            attempt_number=message.attempt_number,
            executor_id=message.executor_id,
            error=message.error,
            skip_reason=SkipReason(message.skip_reason),
            run_status=RunStatus(message.run_status),
            retried_task_ids=tuple(message.retried_task_ids),
            concurrency_key=message.concurrency_key,
            queue_position=message.queue_position,
            map_index=message.map_index if message.HasField("map_index") else None,
            map_size=message.map_size,
        )


@dataclass(frozen=True)
class WorkflowVersion:
    """A stored version of a workflow."""

    name: str
    """The workflow's name."""
    version: str
    """The version hash the server computed."""
    sequence: int
    """1 for the first version registered."""
    latest: bool
    """Whether it is the latest version."""
    created: bool
    """For a registration: whether this version is new."""
    definition: workflow_pb2.WorkflowDefinition
    """The normalized definition."""

    @classmethod
    def from_proto(cls, message: workflow_pb2.Workflow, created: bool = False) -> WorkflowVersion:
        """From the protobuf message."""
        return cls(
            name=message.definition.name,
            version=message.version,
            sequence=message.sequence,
            latest=message.latest,
            created=created,
            definition=message.definition,
        )


@dataclass(frozen=True)
class StartedRun:
    """What ``start_run`` returns."""

    run_id: str
    """The run's id."""
    workflow_version: str
    """The version it is pinned to."""
    created: bool
    """False when an idempotency key matched an existing run."""


@dataclass(frozen=True)
class RetriedRun:
    """What ``retry_run`` returns."""

    run_id: str
    """The run's id."""
    status: RunStatus
    """The run's status now (RUNNING, or terminal again when no reset task
    could run)."""
    retry_count: int
    """How many times the run has been retried, this retry included."""
    retried_task_ids: tuple[str, ...]
    """The tasks reset, in canonical order."""


@dataclass(frozen=True)
class ExecutorInfo:
    """A connected executor."""

    executor_id: str
    """Its id."""
    name: str
    """Its name."""
    instance_id: str
    """Its stable instance id."""
    handlers: list[str]
    """The handlers it serves."""
    max_concurrent_attempts: int
    """Its capacity."""
    in_flight_attempt_ids: list[str]
    """Attempts it runs now."""
    labels: dict[str, str]
    """Its labels."""

    @classmethod
    def from_proto(cls, message: executor_pb2.ExecutorInfo) -> ExecutorInfo:
        """From the protobuf message."""
        return cls(
            executor_id=message.executor_id,
            name=message.name,
            instance_id=message.instance_id,
            handlers=list(message.handlers),
            max_concurrent_attempts=message.max_concurrent_attempts,
            in_flight_attempt_ids=list(message.in_flight_attempt_ids),
            labels=dict(message.labels),
        )


class OverlapPolicy(enum.IntEnum):
    """What a fire does while the run its schedule started last is active."""

    UNSPECIFIED = 0
    SKIP = 1
    """The fire is dropped."""
    QUEUE = 2
    """The fire waits for the active run to end; at most one waits."""
    ALLOW = 3
    """The fire starts a run anyway."""


class CatchUpPolicy(enum.IntEnum):
    """Which fire times missed while the server was down are fired."""

    UNSPECIFIED = 0
    NONE = 1
    """None of them."""
    LAST = 2
    """The latest one only."""
    ALL = 3
    """Every one, oldest first, but at most the latest ``max_catch_up``."""


@dataclass(frozen=True)
class Schedule:
    """A schedule: a cron expression in a time zone that starts runs of a
    workflow (see docs/schedules.md)."""

    schedule_id: str
    """Its id."""
    workflow_name: str
    """The workflow it starts runs of."""
    workflow_version: str
    """The pinned version; empty for the latest at each fire."""
    cron: str
    """The cron expression (5 fields)."""
    time_zone: str
    """The IANA time zone."""
    input: Any
    """The input context of every run."""
    overlap_policy: OverlapPolicy
    """The overlap policy."""
    catch_up_policy: CatchUpPolicy
    """The catch-up policy."""
    max_catch_up: int
    """With ``CatchUpPolicy.ALL``, the most missed fire times fired."""
    paused: bool
    """Whether it is paused."""
    created_at: datetime | None
    """When it was created."""
    next_fire_times: list[datetime]
    """The next fire times (none while paused)."""
    last_fire_time: datetime | None
    """The fire time of the last run it started."""
    last_run_id: str
    """The last run it started; empty before its first."""
    queued_fire_time: datetime | None
    """A fire time waiting for the active run to end."""
    last_error: str
    """Why the last fire that should have started a run did not."""
    fires_handled_through: datetime | None
    """The latest fire time the scheduler has dealt with."""

    @classmethod
    def from_proto(cls, message: schedule_pb2.Schedule) -> Schedule:
        """From the protobuf message."""
        next_fire_times = [_time(stamp) for stamp in message.next_fire_times]
        return cls(
            schedule_id=message.schedule_id,
            workflow_name=message.workflow_name,
            workflow_version=message.workflow_version,
            cron=message.cron,
            time_zone=message.time_zone,
            input=loads(message.input_context_json),
            overlap_policy=OverlapPolicy(message.overlap_policy),
            catch_up_policy=CatchUpPolicy(message.catch_up_policy),
            max_catch_up=message.max_catch_up,
            paused=message.paused,
            created_at=_time(message.created_at, message.HasField("created_at")),
            next_fire_times=[time for time in next_fire_times if time is not None],
            last_fire_time=_time(message.last_fire_time, message.HasField("last_fire_time")),
            last_run_id=message.last_run_id,
            queued_fire_time=_time(message.queued_fire_time, message.HasField("queued_fire_time")),
            last_error=message.last_error,
            fires_handled_through=_time(
                message.fires_handled_through, message.HasField("fires_handled_through")
            ),
        )
