"""The conformance worker of the Python SDK (conformance/SPEC.md): serves
every ``conformance.*`` handler, logs each handler's start, end and observed
cancellation to ``CONFORMANCE_LOG``, and drains on SIGTERM or SIGINT.

    client-sdk/python/.venv/bin/python client-sdk/python/conformance/worker.py
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tributary_sdk import (
    Context,
    KeyExistsError,
    KeyMissingError,
    NonRetryableError,
    TaskError,
    Worker,
)

_LOG_FD: int | None = None


def log_event(event: str, handler: str, context: Context) -> None:
    """Append one line with a single write on an O_APPEND file."""
    if _LOG_FD is None:
        return
    attempt_id = context.attempt.attempt_id if context.attempt else ""
    line = json.dumps({"event": event, "handler": handler, "attempt_id": attempt_id, "pid": os.getpid()})
    os.write(_LOG_FD, (line + "\n").encode())


def logged_async(
    name: str,
) -> Callable[[Callable[[Context], Awaitable[None]]], Callable[[Context], Awaitable[None]]]:
    def wrap(function: Callable[[Context], Awaitable[None]]) -> Callable[[Context], Awaitable[None]]:
        @functools.wraps(function)
        async def run(context: Context) -> None:
            log_event("start", name, context)
            try:
                await function(context)
            finally:
                log_event("end", name, context)

        return run

    return wrap


def logged_sync(name: str) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    def wrap(function: Callable[[Context], None]) -> Callable[[Context], None]:
        @functools.wraps(function)
        def run(context: Context) -> None:
            log_event("start", name, context)
            try:
                function(context)
            finally:
                log_event("end", name, context)

        return run

    return wrap


def attempt_number(context: Context) -> int:
    return context.attempt.attempt_number if context.attempt else 1


@logged_sync("conformance.echo")
def echo(context: Context) -> None:
    if "echo_in" not in context:
        raise NonRetryableError("echo: input key echo_in is missing")
    context.insert("echo_out", context.get("echo_in"))


@logged_sync("conformance.map_echo")
def map_echo(context: Context) -> None:
    if "map_element" not in context:
        raise NonRetryableError("map_echo: input key map_element is missing")
    input_index = context.get("map_index") if "map_index" in context else None
    assigned_index = context.attempt.map_index if context.attempt else None
    if input_index is None or input_index != assigned_index:
        raise NonRetryableError(
            f"map_echo: the input's map_index is {input_index}, the attempt's {assigned_index}"
        )
    context.insert("map_echo_out", context.get("map_element"))


@logged_sync("conformance.fail_once")
def fail_once(context: Context) -> None:
    number = attempt_number(context)
    if number == 1:
        raise TaskError("fail_once: attempt 1")
    context.insert("fail_once_attempt", number)


@logged_sync("conformance.fail_always")
def fail_always(context: Context) -> None:
    raise TaskError(f"fail_always: attempt {attempt_number(context)}")


@logged_sync("conformance.fail_fatal")
def fail_fatal(context: Context) -> None:
    raise NonRetryableError("fail_fatal")


@logged_sync("conformance.throw")
def throw(context: Context) -> None:
    raise RuntimeError("throw: boom")


@logged_async("conformance.sleep")
async def sleep(context: Context) -> None:
    milliseconds = context.get("sleep_ms", int)
    await asyncio.sleep(milliseconds / 1000)
    context.insert("slept_ms", milliseconds)


# CPU-bound, so a plain def: it runs in the worker's thread pool and the
# event loop keeps heartbeating. As an async def it would hold the loop.
@logged_sync("conformance.spin")
def spin(context: Context) -> None:
    milliseconds = context.get("spin_ms", int)
    end = time.monotonic() + milliseconds / 1000
    count = 0
    while time.monotonic() < end:
        count += 1
    context.insert("spun_ms", milliseconds)


@logged_async("conformance.wait_cancel")
async def wait_cancel(context: Context) -> None:
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        log_event("cancelled", "conformance.wait_cancel", context)
        raise
    raise TaskError("wait_cancel: never cancelled")


@logged_sync("conformance.big")
def big(context: Context) -> None:
    context.insert("big", "x" * context.get("big_bytes", int))


@logged_sync("conformance.measure")
def measure(context: Context) -> None:
    # A chain of measures sees the upstream "measured" as an input key too.
    measured: dict[str, int] = {}
    for key in context:
        if key == "echo_in":
            continue
        value = context.get(key)
        if isinstance(value, str):
            measured[key] = len(value.encode("utf-8")) + 2
        else:
            measured[key] = len(context.json_text(key).encode("utf-8"))
    context.upsert("measured", measured)


@logged_sync("conformance.vector")
def vector(context: Context) -> None:
    subject = Context.from_json(context.json_text("vector_input"))
    errors: list[str | None] = []
    for op in context.get("vector_ops", list[dict[str, Any]]):
        kind, key = op["op"], op["key"]
        try:
            if kind == "insert":
                subject.insert(key, op["value"])
            elif kind == "update":
                subject.update(key, op["value"])
            elif kind == "upsert":
                subject.upsert(key, op["value"])
            elif kind == "remove":
                subject.discard(key)
            else:
                raise NonRetryableError(f"vector: unknown op {kind!r}")
            errors.append(None)
        except KeyExistsError:
            errors.append("key_exists")
        except KeyMissingError:
            errors.append("key_missing")
    set_values, removed = subject.delta()
    context.insert(
        "vector_result",
        {"data": subject.data(), "set": set_values, "removed": removed, "errors": errors},
    )


HANDLERS: dict[str, Callable[[Context], Any]] = {
    "conformance.echo": echo,
    "conformance.fail_once": fail_once,
    "conformance.fail_always": fail_always,
    "conformance.fail_fatal": fail_fatal,
    "conformance.throw": throw,
    "conformance.sleep": sleep,
    "conformance.spin": spin,
    "conformance.wait_cancel": wait_cancel,
    "conformance.big": big,
    "conformance.measure": measure,
    "conformance.vector": vector,
    "conformance.map_echo": map_echo,
}


def main() -> int:
    global _LOG_FD
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_path = os.environ.get("CONFORMANCE_LOG")
    if log_path:
        _LOG_FD = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # ``key=value,key=value``; unset or empty means no labels.
    labels = dict(
        label.partition("=")[::2] for label in os.environ.get("CONFORMANCE_LABELS", "").split(",") if label
    )
    worker = Worker(
        os.environ.get("TRIBUTARY_SERVER", "http://127.0.0.1:50051"),
        handlers=HANDLERS,
        namespace=os.environ.get("TRIBUTARY_NAMESPACE", "default"),
        name=os.environ.get("CONFORMANCE_WORKER_NAME") or None,
        capacity=int(os.environ.get("CONFORMANCE_CAPACITY", "4")),
        value_cache_bytes=int(os.environ.get("CONFORMANCE_VALUE_CACHE_BYTES", "0")),
        labels=labels,
    )
    report = worker.run(grace=30.0)
    if not report.drained:
        logging.warning("stopped with %d attempts cancelled at the deadline", report.cancelled_attempts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
