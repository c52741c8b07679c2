"""Errors of the SDK: what a task raises to fail an attempt, and what the
client and the worker raise."""

from __future__ import annotations

import grpc

__all__ = [
    "ContextError",
    "DefinitionError",
    "KeyExistsError",
    "KeyMissingError",
    "NonRetryableError",
    "ServerError",
    "TaskError",
    "TributaryError",
    "WrongTypeError",
]


class TributaryError(Exception):
    """Base of every error the SDK raises itself."""


class TaskError(TributaryError):
    """Raised by a task to fail its attempt with ``message``.

    The attempt is retried while the task's ``retry_attempts`` allow, unless
    ``retryable`` is false. Any other exception a task raises fails the
    attempt the same way (retryable), with the exception's type and text.

    >>> TaskError("upstream API down").retryable
    True
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class NonRetryableError(TaskError):
    """Fails the attempt and the task at once: retrying cannot help.

    >>> NonRetryableError("invalid input").retryable
    False
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class ContextError(TributaryError):
    """A context operation that broke the context's rules. Escaping a task,
    it fails the attempt without retry (the same input would fail again)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class KeyExistsError(ContextError):
    """``insert`` of a key the context already has."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"context key {quote_key(key)} already exists; use update or upsert to change it", key
        )


class KeyMissingError(ContextError, KeyError):
    """``get``, ``update`` or ``remove`` of a key the context does not have."""

    def __init__(self, key: str) -> None:
        ContextError.__init__(self, f"context key {quote_key(key)} not found", key)

    def __str__(self) -> str:
        return str(self.args[0])


class WrongTypeError(ContextError):
    """A value that cannot be read (or written) as the type asked for."""

    def __init__(self, key: str, type_name: str, message: str) -> None:
        super().__init__(f"context key {quote_key(key)} cannot be read as {type_name}: {message}", key)
        self.type_name = type_name


class DefinitionError(TributaryError):
    """An invalid workflow definition; the message is the server's."""


class ServerError(TributaryError):
    """The server answered a call with an error status.

    ``code`` is the gRPC status code, ``details`` the server's message.
    """

    def __init__(self, code: grpc.StatusCode, details: str, call: str) -> None:
        super().__init__(f"{call}: {code.name}: {details}")
        self.code = code
        self.details = details


def quote_key(key: str) -> str:
    """A key quoted for an error message, cut when long."""
    # The key as the Rust SDK shows it: double quotes, escaped; long keys cut
    # so that an error never echoes unbounded input.
    shown = key if len(key) <= 200 else key[:200] + "..."
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
