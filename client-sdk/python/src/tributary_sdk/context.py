"""The task context: the JSON object a task reads and writes, with the
seed's rules (``insert`` never overwrites, ``update`` never creates) and a
record of what the task changed, which the worker sends back as the
attempt's delta (keys set; input keys removed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, overload

from .convert import ConversionError, convert, describe_type
from .errors import ContextError, KeyExistsError, KeyMissingError, WrongTypeError, quote_key
from .jsonvalue import JsonError, dumps, loads, loads_object_with_raw

__all__ = ["AttemptInfo", "Cancellation", "Context"]

T = TypeVar("T")

_UNPARSED: Any = object()


class Cancellation:
    """The cancellation of one attempt, as its task sees it.

    The worker sets it when the server cancels the attempt (its run was
    cancelled, or it timed out) or when the worker gives up on it. An
    ``async def`` task is also cancelled at its next ``await``
    (``asyncio.CancelledError``); a plain ``def`` task runs in a thread that
    cannot be interrupted, so long loops should check :meth:`is_set`.

    >>> cancellation = Cancellation()
    >>> cancellation.is_set()
    False
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason: str | None = None

    def is_set(self) -> bool:
        """Whether the attempt was cancelled."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """The reason given with the cancellation, once cancelled."""
        return self._reason

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until cancelled or ``timeout`` seconds
        passed; returns whether cancelled. For plain ``def`` tasks."""
        return self._event.wait(timeout)

    def set(self, reason: str) -> None:
        """Cancel (the worker calls this; tests may too)."""
        if not self._event.is_set():
            self._reason = reason
            self._event.set()


class AttemptInfo:
    """Which attempt a context belongs to.

    >>> AttemptInfo("run", "task", "attempt", 1, "w", "w.task").attempt_number
    1
    """

    __slots__ = ("attempt_id", "attempt_number", "handler", "map_index", "run_id", "task_id", "workflow_name")

    def __init__(
        self,
        run_id: str,
        task_id: str,
        attempt_id: str,
        attempt_number: int,
        workflow_name: str,
        handler: str,
        map_index: int | None = None,
    ) -> None:
        self.run_id = run_id
        """The run's id."""
        self.task_id = task_id
        """The task's id within its workflow."""
        self.attempt_id = attempt_id
        """The attempt's id."""
        self.attempt_number = attempt_number
        """1 for the first attempt."""
        self.workflow_name = workflow_name
        """The workflow's name."""
        self.handler = handler
        """The handler name the attempt was routed by."""
        self.map_index = map_index
        """For an instance of a mapped task (``task_id`` is the mapped task's):
        its element's index, also in the input under ``map_index``; else None."""


class _Entry:
    __slots__ = ("text", "value")

    def __init__(self, text: str, value: Any) -> None:
        self.text = text
        self.value = value

    def parsed(self) -> Any:
        if self.value is _UNPARSED:
            self.value = loads(self.text)
        return self.value


class Context:
    """A task's view of its run's context: a JSON object.

    Values are whatever JSON holds, read losslessly (integers of any size as
    ``int``, other numbers as ``decimal.Decimal``); :meth:`get` with a type
    turns them into ``float``, dataclasses, pydantic models, ``list[...]``...
    Written values may also be dataclasses, pydantic models and tuples; they
    are stored as JSON at once, so later changes to the object do not leak in.

    >>> context = Context({"a": 1})
    >>> context.insert("b", [1, 2])
    >>> context.update("a", 5)
    >>> context.get("a", int)
    5
    >>> context.delta()
    ({'b': [1, 2], 'a': 5}, [])
    """

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._entries: dict[str, _Entry] = {}
        for key, value in (data or {}).items():
            self._entries[key] = _Entry(_encode(key, value), _UNPARSED)
        self._input_keys: frozenset[str] = frozenset(self._entries)
        self._set: dict[str, None] = {}
        self._removed: set[str] = set()
        self.cancellation = Cancellation()
        """Set when the attempt is cancelled (see :class:`Cancellation`)."""
        self.attempt: AttemptInfo | None = None
        """The attempt this context belongs to; ``None`` outside a worker."""

    @classmethod
    def from_json(cls, text: str) -> Context:
        """A context from the JSON text of an object (empty text is ``{}``).

        >>> Context.from_json('{"n": 36893488147419103232}').get("n")
        36893488147419103232
        """
        context = cls()
        if text.strip():
            try:
                parsed = loads_object_with_raw(text)
            except JsonError as error:
                raise ContextError(f"invalid context: {error}", "") from None
            context._entries = {key: _Entry(raw, value) for key, (value, raw) in parsed.items()}
            context._input_keys = frozenset(context._entries)
        return context

    @classmethod
    def _from_raw(cls, raw: Mapping[str, str]) -> Context:
        context = cls()
        context._entries = {key: _Entry(text, _UNPARSED) for key, text in raw.items()}
        context._input_keys = frozenset(context._entries)
        return context

    @property
    def cancelled(self) -> bool:
        """Whether the attempt was cancelled (for plain ``def`` tasks to poll)."""
        return self.cancellation.is_set()

    @overload
    def get(self, key: str) -> Any: ...
    @overload
    def get(self, key: str, type: type[T]) -> T: ...
    @overload
    def get(self, key: str, type: Any) -> Any: ...

    def get(self, key: str, type: Any = Any) -> Any:
        """The value of ``key``, read as ``type`` when given.

        Raises :class:`KeyMissingError` when the key is absent and
        :class:`WrongTypeError`, naming the key, the type and where in the
        value, when it does not fit.

        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Point:
        ...     x: float
        ...     y: float
        >>> Context({"p": {"x": 1, "y": 2.5}}).get("p", Point)
        Point(x=1.0, y=2.5)
        """
        entry = self._entries.get(key)
        if entry is None:
            raise KeyMissingError(key)
        value = entry.parsed()
        if type is Any:
            return value
        try:
            return convert(value, type)
        except ConversionError as error:
            where = f"at {error.path}: " if error.path else ""
            message = str(error)[len(error.path) + 2 :] if error.path else str(error)
            raise WrongTypeError(key, describe_type(type), where + message) from None

    def get_or(self, key: str, default: T) -> Any:
        """The value of ``key``, or ``default`` when absent.

        >>> Context().get_or("limit", 10)
        10
        """
        entry = self._entries.get(key)
        return default if entry is None else entry.parsed()

    def json_text(self, key: str) -> str:
        """The compact JSON text of ``key``'s value: as received for an input
        value nobody changed, as encoded for a written one.

        >>> Context.from_json('{"a":[1,2.50]}').json_text("a")
        '[1,2.50]'
        """
        entry = self._entries.get(key)
        if entry is None:
            raise KeyMissingError(key)
        return entry.text

    def contains(self, key: str) -> bool:
        """Whether the context has ``key``.

        >>> Context({"a": 1}).contains("a")
        True
        """
        return key in self._entries

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def keys(self) -> list[str]:
        """The keys, in the order they were received or written."""
        return list(self._entries)

    def insert(self, key: str, value: Any) -> None:
        """Set a new key; :class:`KeyExistsError` if it exists.

        >>> context = Context({"a": 1})
        >>> context.insert("a", 2)
        Traceback (most recent call last):
        ...
        tributary_sdk.errors.KeyExistsError: context key "a" already exists; use update or upsert to change it
        """
        if key in self._entries:
            raise KeyExistsError(key)
        self._write(key, value)

    def update(self, key: str, value: Any) -> None:
        """Replace an existing key's value whole; :class:`KeyMissingError` if
        absent.

        >>> Context().update("a", 1)
        Traceback (most recent call last):
        ...
        tributary_sdk.errors.KeyMissingError: context key "a" not found
        """
        if key not in self._entries:
            raise KeyMissingError(key)
        self._write(key, value)

    def upsert(self, key: str, value: Any) -> None:
        """Set ``key`` whether or not it exists.

        >>> context = Context({"a": 1}); context.upsert("a", 2); context.get("a")
        2
        """
        self._write(key, value)

    def remove(self, key: str) -> Any:
        """Remove ``key`` and return its value; :class:`KeyMissingError` if
        absent. Removing an input key sends its removal with the delta.

        >>> Context({"a": 1}).remove("a")
        1
        """
        entry = self._entries.pop(key, None)
        if entry is None:
            raise KeyMissingError(key)
        self._forget(key)
        return entry.parsed()

    def discard(self, key: str) -> bool:
        """Remove ``key`` if present; returns whether it was.

        >>> Context().discard("a")
        False
        """
        if self._entries.pop(key, None) is None:
            return False
        self._forget(key)
        return True

    def data(self) -> dict[str, Any]:
        """The whole context as parsed JSON values."""
        return {key: entry.parsed() for key, entry in self._entries.items()}

    def delta(self) -> tuple[dict[str, Any], list[str]]:
        """What the task changed: the keys it set (with their values, in the
        order first set) and the input keys it removed, sorted."""
        return (
            {key: self._entries[key].parsed() for key in self._set},
            sorted(self._removed),
        )

    def delta_json(self) -> tuple[str, list[str]]:
        """The delta as sent to the server: the JSON text of the keys set,
        and the removed input keys, sorted."""
        parts = [f"{dumps(key)}:{self._entries[key].text}" for key in self._set]
        return "{" + ",".join(parts) + "}", sorted(self._removed)

    def _written_texts(self) -> dict[str, str]:
        return {key: self._entries[key].text for key in self._set}

    def _write(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise ContextError(f"context keys are strings, got {type(key).__name__}", str(key))
        text = _encode(key, value)
        self._removed.discard(key)
        self._set[key] = None
        self._entries[key] = _Entry(text, _UNPARSED)

    def _forget(self, key: str) -> None:
        self._set.pop(key, None)
        if key in self._input_keys:
            self._removed.add(key)

    def __repr__(self) -> str:
        return f"Context(keys={self.keys()!r})"


def _encode(key: str, value: Any) -> str:
    try:
        return dumps(value)
    except JsonError as error:
        raise ContextError(f"context key {quote_key(key)} cannot be written as JSON: {error}", key) from None
