"""Local validation of workflow definitions, with the server's rules and its
messages word for word (the shared ``tests/vectors/validation.json`` proves
it). Size limits are configured on the server and only checked there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import DefinitionError

__all__ = [
    "BACKOFFS",
    "CONCURRENCY_STRATEGIES",
    "MAX_ACTIVE_RUNS_LIMIT",
    "MAX_POLICY_KEY_BYTES",
    "MAX_LABELS",
    "MAX_LABEL_KEY_BYTES",
    "MAX_LABEL_VALUE_BYTES",
    "MAP_ELEMENT_KEY",
    "MAP_INDEX_KEY",
    "MAP_MAX_INSTANCES_LIMIT",
    "MAX_MAP_KEY_BYTES",
    "MAX_DELAY_MS",
    "MAX_IN_FLIGHT",
    "MAX_RETRY_ATTEMPTS",
    "MAX_TIMEOUT_MS",
    "TRIGGER_RULES",
    "check_concurrency",
    "is_valid_handler",
    "is_valid_identifier",
    "validate_definition",
]

BACKOFFS = ("fixed", "linear", "exponential")
"""The retry backoffs the server knows."""
TRIGGER_RULES = ("all_success", "all_done", "one_success", "one_failed", "none_failed")
"""The trigger rules the server knows."""
MAX_RETRY_ATTEMPTS = 100
"""The largest ``retry_attempts``."""
MAX_DELAY_MS = 86_400_000
"""The largest ``retry_delay_ms`` and ``retry_max_delay_ms`` (one day)."""
MAX_TIMEOUT_MS = 604_800_000
"""The largest ``timeout_ms`` (seven days)."""
MAX_IN_FLIGHT = 10_000
"""The largest ``max_in_flight`` (the largest capacity a worker may register)."""
MAX_LABELS = 64
"""The most ``required_labels`` of a task (and labels of a worker)."""
MAX_LABEL_KEY_BYTES = 63
"""The longest label key, in UTF-8 bytes."""
MAX_LABEL_VALUE_BYTES = 256
"""The longest label value, in UTF-8 bytes."""
CONCURRENCY_STRATEGIES = ("queue", "cancel_newest", "cancel_in_progress")
"""What a workflow's concurrency policy may do with a run started while its key is full."""
MAX_ACTIVE_RUNS_LIMIT = 10_000
"""The largest ``max_active_runs`` of a concurrency policy."""
MAX_POLICY_KEY_BYTES = 128
"""The longest ``key_pointer`` and ``fixed_key``, in UTF-8 bytes."""
MAX_MAP_KEY_BYTES = 256
"""The longest ``map_over`` and ``map_output`` key, in UTF-8 bytes."""
MAP_MAX_INSTANCES_LIMIT = 100_000
"""The largest ``map_max_instances`` of a mapped task."""
MAP_ELEMENT_KEY = "map_element"
"""The key under which an instance of a mapped task finds its element."""
MAP_INDEX_KEY = "map_index"
"""The key under which an instance of a mapped task finds its element's 0-based index."""
_DEFAULT_RETRY_DELAY_MS = 1_000
_DEFAULT_RETRY_MAX_DELAY_MS = 30_000
_IDENTIFIER_RULE = "must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter"
_IDENTIFIER_REST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_HANDLER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/")


def is_valid_identifier(text: str) -> bool:
    """Whether ``text`` is a valid workflow name or task id.

    >>> is_valid_identifier("load-data_2"), is_valid_identifier("2nd")
    (True, False)
    """
    return 0 < len(text) <= 64 and "a" <= text[0] <= "z" and all(char in _IDENTIFIER_REST for char in text)


def is_valid_handler(text: str) -> bool:
    """Whether ``text`` is a valid handler name.

    >>> is_valid_handler("billing.charge:v2"), is_valid_handler("my handler")
    (True, False)
    """
    return 0 < len(text) <= 128 and all(char in _HANDLER_CHARS for char in text)


def debug_str(text: str) -> str:
    """``text`` quoted as the server quotes names in its messages.

    >>> debug_str('say "hi"')
    '"say \\\\"hi\\\\""'
    """
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\0":
            out.append("\\0")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def validate_definition(definition: Mapping[str, Any]) -> None:
    """Check a definition given with the ``TaskDefinition`` field names
    (the definition-file format); raise :class:`DefinitionError` with the
    server's message for the first problem found.

    >>> validate_definition({"name": "w", "tasks": []})
    Traceback (most recent call last):
    ...
    tributary_sdk.errors.DefinitionError: workflow "w" has no tasks
    """
    name = str(definition.get("name", ""))
    if not is_valid_identifier(name):
        raise DefinitionError(f"invalid workflow name {debug_str(name)}: {_IDENTIFIER_RULE}")
    tasks: Sequence[Mapping[str, Any]] = definition.get("tasks") or []
    if not tasks:
        raise DefinitionError(f"workflow {debug_str(name)} has no tasks")
    concurrency = definition.get("concurrency")
    if concurrency is not None:
        problem = check_concurrency(concurrency)
        if problem is not None:
            raise DefinitionError(f"workflow {debug_str(name)}: concurrency {problem}")
    ids: dict[str, Mapping[str, Any]] = {}
    for task in tasks:
        task_id = str(task.get("id", ""))
        if not is_valid_identifier(task_id):
            raise DefinitionError(f"invalid task id {debug_str(task_id)}: {_IDENTIFIER_RULE}")
        _check_settings(task_id, task)
        if task_id in ids:
            raise DefinitionError(f"duplicate task id {debug_str(task_id)}")
        ids[task_id] = task
    for task in tasks:
        task_id = str(task["id"])
        seen: set[str] = set()
        for dependency in task.get("dependencies") or []:
            if dependency == task_id:
                raise DefinitionError(f"task {debug_str(task_id)} depends on itself")
            if dependency not in ids:
                raise DefinitionError(
                    f"task {debug_str(task_id)} depends on unknown task {debug_str(dependency)}"
                )
            if dependency in seen:
                raise DefinitionError(
                    f"task {debug_str(task_id)} lists dependency {debug_str(dependency)} more than once"
                )
            seen.add(dependency)
    cycle = find_cycle({task_id: list(task.get("dependencies") or []) for task_id, task in ids.items()})
    if cycle is not None:
        raise DefinitionError("cycle detected: " + " -> ".join(cycle))


def _check_settings(task_id: str, task: Mapping[str, Any]) -> None:
    def in_range(field: str, low: int, high: int) -> int | None:
        value = task.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise DefinitionError(f"task {debug_str(task_id)}: {field} must be an integer")
        if not low <= value <= high:
            raise DefinitionError(
                f"task {debug_str(task_id)}: {field} must be between {low} and {high}, got {value}"
            )
        return value

    in_range("retry_attempts", 0, MAX_RETRY_ATTEMPTS)
    delay = in_range("retry_delay_ms", 0, MAX_DELAY_MS)
    delay_ms = _DEFAULT_RETRY_DELAY_MS if delay is None else delay
    max_delay = in_range("retry_max_delay_ms", 0, MAX_DELAY_MS)
    max_delay_ms = max(_DEFAULT_RETRY_MAX_DELAY_MS, delay_ms) if max_delay is None else max_delay
    if max_delay_ms < delay_ms:
        raise DefinitionError(
            f"task {debug_str(task_id)}: retry_max_delay_ms ({max_delay_ms}) must be at least"
            f" retry_delay_ms ({delay_ms})"
        )
    in_range("timeout_ms", 1, MAX_TIMEOUT_MS)
    in_range("max_in_flight", 1, MAX_IN_FLIGHT)
    backoff = task.get("retry_backoff") or ""
    if backoff and backoff not in BACKOFFS:
        raise DefinitionError(
            f"task {debug_str(task_id)}: unknown retry_backoff {debug_str(backoff)};"
            " expected one of fixed, linear, exponential"
        )
    rule = task.get("trigger_rule") or ""
    if rule and rule not in TRIGGER_RULES:
        raise DefinitionError(
            f"task {debug_str(task_id)}: unknown trigger_rule {debug_str(rule)};"
            " expected one of all_success, all_done, one_success, one_failed, none_failed"
        )
    handler = task.get("handler") or ""
    if handler and not is_valid_handler(handler):
        raise DefinitionError(
            f"task {debug_str(task_id)}: invalid handler {debug_str(handler)}:"
            " must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /"
        )
    labels: Mapping[str, str] = task.get("required_labels") or {}
    problem = check_labels(labels)
    if problem is not None:
        raise DefinitionError(f"task {debug_str(task_id)}: required_labels {problem}")
    problem = _check_map(task)
    if problem is not None:
        raise DefinitionError(f"task {debug_str(task_id)}: {problem}")


def _check_map(task: Mapping[str, Any]) -> str | None:
    over = task.get("map_over") or ""
    output = task.get("map_output") or ""
    max_instances = task.get("map_max_instances")
    if not over:
        if output:
            return "map_output is set but map_over is not"
        if max_instances is not None:
            return "map_max_instances is set but map_over is not"
        return None
    for field, key in (("map_over", over), ("map_output", output)):
        size = len(key.encode())
        if size > MAX_MAP_KEY_BYTES:
            return f"{field} is {size} bytes, over the limit of {MAX_MAP_KEY_BYTES}"
        if "\0" in key:
            return f"{field} contains U+0000"
    if max_instances is not None:
        if isinstance(max_instances, bool) or not isinstance(max_instances, int):
            return "map_max_instances must be an integer"
        if not 1 <= max_instances <= MAP_MAX_INSTANCES_LIMIT:
            return f"map_max_instances must be between 1 and {MAP_MAX_INSTANCES_LIMIT}, got {max_instances}"
    return None


def check_concurrency(policy: Mapping[str, Any]) -> str | None:
    """What is wrong with a concurrency policy (the ``ConcurrencyPolicy``
    field names), or ``None``.

    >>> check_concurrency({"fixed_key": "all"}) is None, check_concurrency({})
    (True, 'needs one of key_pointer and fixed_key')
    """
    pointer = policy.get("key_pointer") or ""
    fixed_key = policy.get("fixed_key") or ""
    if not pointer and not fixed_key:
        return "needs one of key_pointer and fixed_key"
    if pointer and fixed_key:
        return "has both key_pointer and fixed_key; set one"
    if pointer:
        size = len(pointer.encode())
        if size > MAX_POLICY_KEY_BYTES:
            return f"key_pointer is {size} bytes, over the limit of {MAX_POLICY_KEY_BYTES}"
        escapes_valid = all(
            char != "~" or pointer[index + 1 : index + 2] in ("0", "1") for index, char in enumerate(pointer)
        )
        if not pointer.startswith("/") or "\0" in pointer or not escapes_valid:
            return (
                f"key_pointer {debug_str(pointer)} is not a JSON pointer:"
                " must start with / and use ~ only in ~0 and ~1"
            )
    else:
        size = len(fixed_key.encode())
        if size > MAX_POLICY_KEY_BYTES:
            return f"fixed_key is {size} bytes, over the limit of {MAX_POLICY_KEY_BYTES}"
        if "\0" in fixed_key:
            return "fixed_key contains U+0000"
    limit = policy.get("max_active_runs")
    if limit is not None and not 1 <= limit <= MAX_ACTIVE_RUNS_LIMIT:
        return f"max_active_runs must be between 1 and {MAX_ACTIVE_RUNS_LIMIT}, got {limit}"
    strategy = policy.get("strategy") or ""
    if strategy and strategy not in CONCURRENCY_STRATEGIES:
        return (
            f"unknown strategy {debug_str(strategy)};"
            " expected one of queue, cancel_newest, cancel_in_progress"
        )
    return None


def check_labels(labels: Mapping[str, str]) -> str | None:
    """What is wrong with a set of labels (the server's rule for workers'
    labels and tasks' required labels, checked in key order), or ``None``.

    >>> check_labels({"gpu": "true"}) is None, check_labels({"": "x"})
    (True, 'has an empty key')
    """
    if len(labels) > MAX_LABELS:
        return f"has {len(labels)} labels, over the limit of {MAX_LABELS}"
    # Sorting by code point is sorting by UTF-8 bytes, the server's order.
    for key in sorted(labels):
        value = labels[key]
        if not key:
            return "has an empty key"
        key_bytes = len(key.encode())
        if key_bytes > MAX_LABEL_KEY_BYTES:
            return f"key {debug_str(key)} is {key_bytes} bytes, over the limit of {MAX_LABEL_KEY_BYTES}"
        if "\0" in key:
            return f"key {debug_str(key)} contains U+0000"
        value_bytes = len(value.encode())
        if value_bytes > MAX_LABEL_VALUE_BYTES:
            return (
                f"value of {debug_str(key)} is {value_bytes} bytes, over the limit of {MAX_LABEL_VALUE_BYTES}"
            )
        if "\0" in value:
            return f"value of {debug_str(key)} contains U+0000"
    return None


def find_cycle(dependencies: Mapping[str, Iterable[str]]) -> list[str] | None:
    """The cycle the server reports, or ``None``: within the strongly
    connected component whose sorted ids are smallest, a depth-first path
    from its smallest id along sorted dependants back to it.

    >>> find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]})
    ['a', 'b', 'c', 'a']
    """
    dependants: dict[str, list[str]] = {task: [] for task in dependencies}
    for task in sorted(dependencies):
        for dependency in sorted(dependencies[task]):
            dependants[dependency].append(task)
    components = [c for c in _strongly_connected(dependants) if len(c) > 1]
    if not components:
        return None
    component = min(sorted(c) for c in components)
    members = set(component)
    start = component[0]

    def successors(task: str) -> list[str]:
        return sorted(d for d in dependants[task] if d in members)

    path = [start]
    visited = {start}
    next_choice = [0]
    while path:
        current = path[-1]
        candidates = successors(current)
        if start in candidates:
            return [*path, start]
        choice = next_choice[-1]
        if choice < len(candidates):
            next_choice[-1] += 1
            following = candidates[choice]
            if following not in visited:
                visited.add(following)
                path.append(following)
                next_choice.append(0)
        else:
            path.pop()
            next_choice.pop()
    return None


def _strongly_connected(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion (workflows have up to 50,000
    tasks, far past Python's recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = edges[node]
            if position < len(successors):
                work.append((node, position + 1))
                following = successors[position]
                if following not in index:
                    work.append((following, 0))
                elif following in on_stack:
                    low[node] = min(low[node], index[following])
                continue
            for following in successors:
                if following in on_stack and index[following] > index[node]:
                    low[node] = min(low[node], low[following])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.remove(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components
