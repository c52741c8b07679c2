"""Running one attempt: building its context (resolving values sent by
reference), calling the handler on the event loop or in the thread pool,
and turning what happened into the result message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from ._proto.tributary.v1 import executor_pb2
from .context import AttemptInfo, Cancellation, Context
from .errors import ContextError, TaskError
from .jsonvalue import JsonError, loads_object_with_raw
from .value_cache import ValueCache, ValueKey

_log = logging.getLogger("tributary_sdk.worker")

MAX_FAILURE_MESSAGE_BYTES = 65_536
"""The longest failure message the server keeps."""

Fetch = Callable[[str, list[executor_pb2.ValueRef]], Awaitable[dict[tuple[str, str], str]]]
"""Asks the server for values: run id and refs -> texts by (key, writer)."""


class MissingValueError(Exception):
    """A referenced value neither cached nor available from the server."""


def failed(attempt_id: str, message: str, *, retryable: bool) -> executor_pb2.ConnectRequest:
    """A ``failed`` result with a message the server accepts (no NUL, at
    most 64 KiB, cut at a character boundary)."""
    message = message.replace("\x00", "\\0")
    encoded = message.encode("utf-8")
    if len(encoded) > MAX_FAILURE_MESSAGE_BYTES:
        message = encoded[:MAX_FAILURE_MESSAGE_BYTES].decode("utf-8", errors="ignore")
    return executor_pb2.ConnectRequest(
        failed=executor_pb2.Failed(attempt_id=attempt_id, message=message, non_retryable=not retryable)
    )


async def build_context(assign: executor_pb2.Assign, cache: ValueCache | None, fetch: Fetch) -> Context:
    """The attempt's input: the keys sent by value, plus those sent by
    reference, from the cache or fetched."""
    if cache is None or (not assign.references and not assign.inline_values):
        return Context.from_json(assign.input_context_json)
    try:
        inline = loads_object_with_raw(assign.input_context_json or "{}")
    except JsonError as error:
        raise ContextError(f"invalid input context: {error}", "") from None
    texts: dict[str, str] = {key: raw for key, (_, raw) in inline.items()}
    run_id = assign.run_id
    for ref in assign.inline_values:
        if ref.key in texts:
            cache.put((run_id, ref.writer_attempt_id, ref.key), texts[ref.key])
    missing: list[executor_pb2.ValueRef] = []
    for ref in assign.references:
        name: ValueKey = (run_id, ref.writer_attempt_id, ref.key)
        text = cache.get(name)
        if text is None:
            missing.append(ref)
        else:
            texts[ref.key] = text
    if missing:
        fetched = await fetch(run_id, missing)
        for ref in missing:
            text = fetched.get((ref.key, ref.writer_attempt_id))
            if text is None:
                raise MissingValueError(
                    f"the server no longer has the value of context key {ref.key!r}"
                    f" written by attempt {ref.writer_attempt_id or '(the input)'}"
                )
            texts[ref.key] = text
    return Context._from_raw(texts)


async def run_attempt(
    assign: executor_pb2.Assign,
    function: Callable[[Context], Any] | None,
    is_async: bool,
    cancellation: Cancellation,
    cache: ValueCache | None,
    fetch: Fetch,
    pool: Executor,
) -> tuple[executor_pb2.ConnectRequest, dict[str, str]]:
    """Run one attempt to its result message; also returns the texts of the
    values it set (for the value cache)."""
    attempt_id = assign.attempt_id
    if function is None:
        return (
            failed(attempt_id, f"this worker has no handler {assign.handler!r}", retryable=False),
            {},
        )
    try:
        try:
            context = await build_context(assign, cache, fetch)
        except ContextError as error:
            return failed(attempt_id, str(error), retryable=False), {}
        except (MissingValueError, ConnectionError) as error:
            return failed(attempt_id, str(error), retryable=True), {}
        context.cancellation = cancellation
        context.attempt = AttemptInfo(
            assign.run_id,
            assign.task_id,
            attempt_id,
            assign.attempt_number,
            assign.workflow_name,
            assign.handler,
            assign.map_index if assign.HasField("map_index") else None,
        )
        if is_async:
            await function(context)
        else:
            await asyncio.get_running_loop().run_in_executor(pool, function, context)
    except asyncio.CancelledError:
        if not cancellation.is_set():
            raise
        # The cancellation was ours and is handled here (Python 3.11+ counts
        # cancellations; 3.10 has nothing to undo).
        task = asyncio.current_task()
        uncancel = getattr(task, "uncancel", None)
        if uncancel is not None:
            uncancel()
        return failed(attempt_id, f"cancelled: {cancellation.reason}", retryable=True), {}
    except TaskError as error:
        return failed(attempt_id, error.message, retryable=error.retryable), {}
    except ContextError as error:
        return failed(attempt_id, str(error), retryable=False), {}
    except Exception as error:
        _log.debug("attempt %s raised", attempt_id, exc_info=True)
        return failed(attempt_id, f"{type(error).__name__}: {error}", retryable=True), {}
    if cancellation.is_set():
        # The handler finished after its cancellation (a plain `def` that
        # never looked): the server expects a failure.
        return failed(attempt_id, f"cancelled: {cancellation.reason}", retryable=True), {}
    set_json, removed = context.delta_json()
    message = executor_pb2.ConnectRequest(
        completed=executor_pb2.Completed(attempt_id=attempt_id, set_json=set_json, removed_keys=removed)
    )
    return message, context._written_texts()


def fit_result(
    message: executor_pb2.ConnectRequest, max_message_bytes: int, max_context_bytes: int
) -> executor_pb2.ConnectRequest:
    """A result too large for the server would break the stream on every
    resend; it becomes a non-retryable failure that says by how much."""
    if message.WhichOneof("message") != "completed":
        return message
    completed = message.completed
    set_bytes = len(completed.set_json.encode("utf-8"))
    if max_context_bytes and set_bytes > max_context_bytes:
        return failed(
            completed.attempt_id,
            f"the task's result is {set_bytes} bytes of JSON, over the server's context limit"
            f" of {max_context_bytes} bytes by {set_bytes - max_context_bytes}",
            retryable=False,
        )
    size = message.ByteSize()
    if max_message_bytes and size > max_message_bytes:
        return failed(
            completed.attempt_id,
            f"the task's result is {size} bytes, over the server's message limit"
            f" of {max_message_bytes} bytes by {size - max_message_bytes}",
            retryable=False,
        )
    return message
