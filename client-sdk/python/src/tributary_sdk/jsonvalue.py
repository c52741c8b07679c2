"""Lossless JSON for context values.

Integers are Python ints and stay exact at any size. Numbers with a fraction
or an exponent are read as :class:`decimal.Decimal`, so
``123456789012345678901234567890.123456789`` and ``1e400`` survive a round
trip digit for digit instead of becoming a rounded or infinite float. NaN and
infinities are refused both ways: JSON has no such values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import secrets
from decimal import Decimal
from typing import Any

__all__ = [
    "JsonError",
    "dumps",
    "loads",
    "loads_object_with_raw",
]


class JsonError(ValueError):
    """A text that is not JSON, or a value that cannot be written as JSON."""


def _refuse_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_refuse_constant)
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def loads(text: str) -> Any:
    """Parse JSON text losslessly (fractions and exponents as ``Decimal``).

    >>> loads('{"n": 18446744073709551617, "x": 1.5}')
    {'n': 18446744073709551617, 'x': Decimal('1.5')}
    """
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise JsonError(f"invalid JSON: {error}") from None


def loads_object_with_raw(text: str) -> dict[str, tuple[Any, str]]:
    """Parse the JSON text of an object into its keys, each with its parsed
    value and the exact text the value had.

    The text of a value is what the worker keeps and forwards unchanged,
    so a value nobody rewrote goes back byte for byte.

    >>> loads_object_with_raw('{"a": [1, 2.50]}')
    {'a': ([1, Decimal('2.50')], '[1, 2.50]')}
    """
    scan = _DECODER.scan_once  # type: ignore[attr-defined]
    out: dict[str, tuple[Any, str]] = {}
    index = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if text[index : index + 1] != "{":
        value = loads(text)
        raise JsonError(f"a context must be a JSON object, got {type_name(value)}")
    index = _WHITESPACE.match(text, index + 1).end()  # type: ignore[union-attr]
    try:
        if text[index : index + 1] == "}":
            index += 1
        else:
            while True:
                if text[index : index + 1] != '"':
                    raise JsonError(f"invalid JSON: expected a key at character {index}")
                key, index = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
                index = _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]
                if text[index : index + 1] != ":":
                    raise JsonError(f"invalid JSON: expected ':' at character {index}")
                index = _WHITESPACE.match(text, index + 1).end()  # type: ignore[union-attr]
                try:
                    value, end = scan(text, index)
                except StopIteration:
                    raise JsonError(f"invalid JSON: expected a value at character {index}") from None
                out[key] = (value, text[index:end])
                index = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
                separator = text[index : index + 1]
                index = _WHITESPACE.match(text, index + 1).end()  # type: ignore[union-attr]
                if separator == "}":
                    break
                if separator != ",":
                    raise JsonError(f"invalid JSON: expected ',' or '}}' at character {index}")
    except json.JSONDecodeError as error:
        raise JsonError(f"invalid JSON: {error}") from None
    if text[index:].strip(" \t\n\r"):
        raise JsonError(f"invalid JSON: extra data at character {index}")
    return out


def type_name(value: Any) -> str:
    """The JSON name of a parsed value's kind (``object``, ``number``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def dumps(value: Any) -> str:
    """Write a value as compact JSON text, exactly.

    Accepts what :func:`loads` returns plus tuples, dataclasses and pydantic
    models. ``Decimal`` values are written with all their digits; NaN and
    infinities (float or Decimal) are refused with :class:`JsonError`.

    >>> from decimal import Decimal
    >>> dumps({"x": Decimal("123456789012345678901234567890.123456789"), "n": 2**70})
    '{"x":123456789012345678901234567890.123456789,"n":1180591620717411303424}'
    """
    # Decimals are written by the C encoder as unique string placeholders
    # and substituted afterwards: the encoder has no hook for raw numbers.
    decimals: list[str] = []
    nonce = ""

    def default(item: Any) -> Any:
        nonlocal nonce
        if isinstance(item, Decimal):
            if not item.is_finite():
                raise JsonError(f"{item} is not a JSON number")
            if not nonce:
                nonce = secrets.token_hex(8)
            decimals.append(_decimal_text(item))
            return f"\x00{nonce}:{len(decimals) - 1}\x00"
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}
        dump = getattr(item, "model_dump", None)
        if callable(dump):
            return dump()
        if isinstance(item, set | frozenset):
            raise JsonError("a set is not a JSON value (use a list)")
        raise JsonError(f"a value of type {type(item).__name__} is not JSON")

    try:
        text = json.dumps(
            value,
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
            default=default,
        )
    except ValueError as error:
        if isinstance(error, JsonError):
            raise
        raise JsonError(_float_message(value, error)) from None
    except (TypeError, RecursionError) as error:
        raise JsonError(str(error)) from None
    if decimals:
        pattern = re.compile(r'"\\u0000' + nonce + r':(\d+)\\u0000"')
        text = pattern.sub(lambda match: decimals[int(match.group(1))], text)
    return text


def _decimal_text(value: Decimal) -> str:
    text = str(value)
    # str(Decimal) is valid JSON except for a bare leading "." never produced,
    # and forms like "1E+5" that JSON accepts as they are.
    return text


def _float_message(value: Any, error: ValueError) -> str:
    bad = _find_non_finite(value)
    if bad is not None:
        return f"{bad!r} is not a JSON number (JSON has no NaN or infinity)"
    return str(error)


def _find_non_finite(value: Any) -> float | None:
    if isinstance(value, float):
        return value if not math.isfinite(value) else None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = _find_non_finite(item)
            if found is not None:
                return found
    return None
