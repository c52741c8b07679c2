"""Declaring tasks and workflows: ``@task(...)`` on a function of a
:class:`~tributary_sdk.Context`, grouped with :func:`workflow`.

.. code-block:: python

    @task(id="partition_data", dependencies=["generate_data"], retry_attempts=2)
    def partition_data(context: Context) -> None:
        products = context.get("products", list[Product])
        ...

    pipeline = workflow("parallel_processing", [generate_data, partition_data])
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from .context import Context
from .errors import DefinitionError
from .validate import validate_definition

__all__ = ["Handler", "Task", "TaskDefinition", "Workflow", "task", "workflow"]

Handler = Callable[[Context], "Awaitable[None] | None"]
"""A task's code: a function of the context, ``async def`` or plain ``def``.

``async def`` handlers run on the worker's event loop; plain ``def`` handlers
run in a thread pool so that they never block heartbeats. A CPU-bound
``async def`` blocks the loop (and with it the worker's heartbeats) until it
awaits: write CPU-bound tasks as plain ``def``.
"""

Backoff = Literal["fixed", "linear", "exponential"]
TriggerRule = Literal["all_success", "all_done", "one_success", "one_failed", "none_failed"]


@dataclass(frozen=True)
class TaskDefinition:
    """A task's attributes, as ``tributary.v1.TaskDefinition`` has them.

    Unset (``None`` or empty) settings take the server's defaults.
    """

    id: str
    """The task's id: 1-64 characters of a-z, 0-9, _ and -, starting with a letter."""
    dependencies: tuple[str, ...] = ()
    """Ids of the tasks that must finish first."""
    retry_attempts: int | None = None
    """Retries after the first attempt (default 0)."""
    retry_delay_ms: int | None = None
    """Base delay before a retry (default 1000)."""
    retry_backoff: str = ""
    """``fixed``, ``linear`` or ``exponential`` (the default)."""
    retry_max_delay_ms: int | None = None
    """Upper bound of a retry delay (default 30000)."""
    retry_jitter: bool | None = None
    """Whether retry delays are randomized (default true)."""
    timeout_ms: int | None = None
    """Time limit of one attempt (default: the server's)."""
    trigger_rule: str = ""
    """When the task runs once its dependencies are done (default ``all_success``)."""
    handler: str = ""
    """The routing key; default ``<workflow>.<task id>``."""
    required_labels: Mapping[str, str] = field(default_factory=dict)
    """Executor labels the task requires: only workers registered with every
    one of these (``Worker(labels=...)``) are assigned it."""
    max_in_flight: int | None = None
    """At most this many attempts of the task's handler in flight at once,
    across every worker and run of the namespace (1 to 10000; default: no
    limit beyond the workers' capacity)."""
    map_over: str = ""
    """Maps the task over the JSON array at this context key: one instance
    per element, each finding its element under ``map_element`` and its
    0-based index under ``map_index`` and setting its output at
    ``map_output``; the outputs are gathered in element order into one
    array at that key. Empty: not mapped."""
    map_output: str = ""
    """The key the gathered outputs are written to; default the task's id."""
    map_max_instances: int | None = None
    """The most instances of a mapped task (default 10000)."""

    def handler_name(self, workflow_name: str) -> str:
        """The handler the task is routed by in ``workflow_name``.

        >>> TaskDefinition("load").handler_name("etl")
        'etl.load'
        """
        return self.handler or f"{workflow_name}.{self.id}"

    def to_dict(self) -> dict[str, Any]:
        """The definition-file form: only the fields that are set."""
        out: dict[str, Any] = {"id": self.id}
        if self.dependencies:
            out["dependencies"] = list(self.dependencies)
        for name in (
            "retry_attempts",
            "retry_delay_ms",
            "retry_backoff",
            "retry_max_delay_ms",
            "retry_jitter",
            "timeout_ms",
            "trigger_rule",
            "handler",
            "map_over",
            "map_output",
            "map_max_instances",
        ):
            value = getattr(self, name)
            if value is not None and value != "":
                out[name] = value
        if self.required_labels:
            out["required_labels"] = dict(self.required_labels)
        if self.max_in_flight is not None:
            out["max_in_flight"] = self.max_in_flight
        return out


class Task:
    """A task: its definition and its code. Calling it calls the code.

    >>> @task(id="hello")
    ... def hello(context: Context) -> None:
    ...     context.insert("greeting", "hello")
    >>> hello.definition.id, hello.is_async
    ('hello', False)
    """

    def __init__(self, definition: TaskDefinition, function: Handler) -> None:
        self.definition = definition
        """The task's attributes."""
        self.function = function
        """The task's code."""
        self.is_async = inspect.iscoroutinefunction(function)
        """Whether the code is ``async def`` (run on the event loop)."""
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", definition.id)

    @property
    def id(self) -> str:
        """The task's id."""
        return self.definition.id

    def __call__(self, context: Context) -> Awaitable[None] | None:
        """Call the task's code (for tests: no worker needed)."""
        return self.function(context)

    def __repr__(self) -> str:
        return f"Task({self.definition.id!r})"


@overload
def task(function: Handler, /) -> Task: ...
@overload
def task(
    *,
    id: str | None = None,
    dependencies: Iterable[str | Task] = (),
    retry_attempts: int | None = None,
    retry_delay_ms: int | None = None,
    retry_backoff: Backoff | str = "",
    retry_max_delay_ms: int | None = None,
    retry_jitter: bool | None = None,
    timeout_ms: int | None = None,
    trigger_rule: TriggerRule | str = "",
    handler: str = "",
    required_labels: Mapping[str, str] | None = None,
    max_in_flight: int | None = None,
    map_over: str = "",
    map_output: str = "",
    map_max_instances: int | None = None,
) -> Callable[[Handler], Task]: ...


def task(
    function: Handler | None = None,
    /,
    *,
    id: str | None = None,
    dependencies: Iterable[str | Task] = (),
    retry_attempts: int | None = None,
    retry_delay_ms: int | None = None,
    retry_backoff: Backoff | str = "",
    retry_max_delay_ms: int | None = None,
    retry_jitter: bool | None = None,
    timeout_ms: int | None = None,
    trigger_rule: TriggerRule | str = "",
    handler: str = "",
    required_labels: Mapping[str, str] | None = None,
    max_in_flight: int | None = None,
    map_over: str = "",
    map_output: str = "",
    map_max_instances: int | None = None,
) -> Task | Callable[[Handler], Task]:
    """Declare a task: ``@task(id=..., dependencies=[...], retry_attempts=...)``
    on a function taking a :class:`Context`. The id defaults to the
    function's name; dependencies may be ids or other tasks.

    >>> @task(id="partition_data", dependencies=["generate_data"], retry_attempts=2)
    ... async def partition_data(context: Context) -> None: ...
    >>> partition_data.definition.dependencies
    ('generate_data',)

    ``required_labels`` routes the task to workers with those labels only:

    >>> @task(required_labels={"gpu": "true"})
    ... def train(context: Context) -> None: ...
    >>> train.definition.to_dict()
    {'id': 'train', 'required_labels': {'gpu': 'true'}}

    ``max_in_flight`` limits the attempts of the task's handler in flight at
    once across every worker and run of the namespace, for code that calls
    something with a limit of its own:

    >>> @task(max_in_flight=5)
    ... def charge(context: Context) -> None: ...
    >>> charge.definition.to_dict()
    {'id': 'charge', 'max_in_flight': 5}

    ``map_over`` runs the task once per element of an array in the context:

    >>> @task(map_over="urls", map_output="pages")
    ... def fetch(context: Context) -> None:
    ...     context.insert("pages", len(context.get("map_element")))
    >>> fetch.definition.to_dict()
    {'id': 'fetch', 'map_over': 'urls', 'map_output': 'pages'}
    """

    def wrap(code: Handler) -> Task:
        definition = TaskDefinition(
            id=id if id is not None else code.__name__,
            dependencies=tuple(d.id if isinstance(d, Task) else d for d in dependencies),
            retry_attempts=retry_attempts,
            retry_delay_ms=retry_delay_ms,
            retry_backoff=retry_backoff,
            retry_max_delay_ms=retry_max_delay_ms,
            retry_jitter=retry_jitter,
            timeout_ms=timeout_ms,
            trigger_rule=trigger_rule,
            handler=handler,
            required_labels=dict(required_labels or {}),
            max_in_flight=max_in_flight,
            map_over=map_over,
            map_output=map_output,
            map_max_instances=map_max_instances,
        )
        return Task(definition, code)

    if function is not None:
        return wrap(function)
    return wrap


@dataclass
class Workflow:
    """A named DAG of tasks, registered with the client and served by a
    worker.

    >>> @task
    ... def a(context: Context) -> None: ...
    >>> flow = workflow("w", [a])
    >>> flow.handlers()["w.a"] is a
    True
    """

    name: str
    """The workflow's name."""
    tasks: Sequence[Task]
    """Its tasks."""
    description: str = ""
    """Free text for people."""
    concurrency: Mapping[str, Any] | None = None
    """The concurrency policy (``key_pointer`` or ``fixed_key``,
    ``max_active_runs``, ``strategy``); ``None`` means no limit."""
    _checked: bool = field(default=False, repr=False)

    def definition(self) -> dict[str, Any]:
        """The definition in the definition-file form (field names of
        ``tributary.v1.WorkflowDefinition``)."""
        out: dict[str, Any] = {
            "name": self.name,
            "tasks": [t.definition.to_dict() for t in self.tasks],
        }
        if self.description:
            out["description"] = self.description
        if self.concurrency is not None:
            out["concurrency"] = dict(self.concurrency)
        return out

    def validate(self) -> None:
        """Check the definition locally; raises :class:`DefinitionError`
        with the server's message."""
        validate_definition(self.definition())

    def handlers(self) -> dict[str, Task]:
        """Every task by its handler name."""
        return {t.definition.handler_name(self.name): t for t in self.tasks}

    def task(self, task_id: str) -> Task:
        """The task with this id."""
        for candidate in self.tasks:
            if candidate.id == task_id:
                return candidate
        raise KeyError(f"workflow {self.name!r} has no task {task_id!r}")


def workflow(
    name: str,
    tasks: Iterable[Task],
    *,
    description: str = "",
    concurrency: Mapping[str, Any] | None = None,
) -> Workflow:
    """Group tasks into a workflow, validated at once.

    >>> @task(id="a")
    ... def a(context: Context) -> None: ...
    >>> workflow("bad name", [a])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tributary_sdk.errors.DefinitionError: invalid workflow name "bad name": must be 1-64 characters...
    """
    flow = Workflow(name=name, tasks=list(tasks), description=description, concurrency=concurrency)
    for item in flow.tasks:
        if not isinstance(item, Task):
            raise DefinitionError(f"workflow {name!r}: {item!r} is not a task (decorate it with @task)")
    flow.validate()
    return flow
