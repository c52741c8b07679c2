"""Tributary's Python SDK: declare tasks with :func:`task`, group them with
:func:`workflow`, serve them with a :class:`Worker`, and drive runs with a
:class:`Client` (scripts) or an :class:`AsyncClient` (``asyncio`` services).

.. code-block:: python

    from tributary_sdk import Context, Worker, task, workflow

    @task(id="hello")
    def hello(context: Context) -> None:
        context.insert("greeting", f"Hello, {context.get('name', str)}!")

    greetings = workflow("greetings", [hello])
    Worker("http://127.0.0.1:50051", workflows=[greetings]).run()
"""

from .client import DEFAULT_NAMESPACE, AsyncClient, Client
from .context import AttemptInfo, Cancellation, Context
from .errors import (
    ContextError,
    DefinitionError,
    KeyExistsError,
    KeyMissingError,
    NonRetryableError,
    ServerError,
    TaskError,
    TributaryError,
    WrongTypeError,
)
from .types import (
    Attempt,
    AttemptState,
    CatchUpPolicy,
    ContextConflict,
    ExecutorInfo,
    OverlapPolicy,
    RetriedRun,
    Run,
    RunEvent,
    RunEventType,
    RunStatus,
    Schedule,
    SkipReason,
    StartedRun,
    TaskRun,
    TaskState,
    WorkflowVersion,
)
from .value_cache import DEFAULT_VALUE_CACHE_BYTES, ValueCache
from .worker import ShutdownReport, Worker, WorkerStatus
from .workflow import Task, TaskDefinition, Workflow, task, workflow

__version__ = "0.1.0"
"""The SDK's version."""

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_VALUE_CACHE_BYTES",
    "AsyncClient",
    "Attempt",
    "AttemptInfo",
    "AttemptState",
    "Cancellation",
    "CatchUpPolicy",
    "Client",
    "Context",
    "ContextConflict",
    "ContextError",
    "DefinitionError",
    "ExecutorInfo",
    "KeyExistsError",
    "KeyMissingError",
    "NonRetryableError",
    "OverlapPolicy",
    "RetriedRun",
    "Run",
    "RunEvent",
    "RunEventType",
    "RunStatus",
    "Schedule",
    "ServerError",
    "ShutdownReport",
    "SkipReason",
    "StartedRun",
    "Task",
    "TaskDefinition",
    "TaskError",
    "TaskRun",
    "TaskState",
    "TributaryError",
    "ValueCache",
    "Worker",
    "WorkerStatus",
    "Workflow",
    "WorkflowVersion",
    "WrongTypeError",
    "task",
    "workflow",
]
