"""Reading parsed JSON values as Python types: ``int``, ``float``, ``str``,
``bool``, ``Decimal``, ``list[T]``, ``dict[str, T]``, ``tuple``, unions,
``Literal``, dataclasses, and pydantic models when pydantic is installed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from decimal import Decimal
from typing import Any, TypeVar

from .jsonvalue import type_name

T = TypeVar("T")

__all__ = ["ConversionError", "convert", "describe_type"]


class ConversionError(ValueError):
    """A value that does not fit the requested type; ``path`` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def describe_type(tp: Any) -> str:
    """A readable name of a type annotation (``list[Product]``).

    >>> describe_type(list[int])
    'list[int]'
    """
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    text = repr(tp)
    return text.replace("typing.", "")


def convert(value: Any, tp: Any, path: str = "") -> Any:
    """Convert a parsed JSON value (as :func:`tributary_sdk.jsonvalue.loads`
    returns it) to ``tp``, or raise :class:`ConversionError`.

    >>> convert([1, 2], list[float])
    [1.0, 2.0]
    """
    if tp is Any or tp is object:
        return value
    if tp is None or tp is type(None):
        if value is None:
            return None
        raise _mismatch(path, "null", value)
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _convert_union(value, tp, path)
    if origin is typing.Literal:
        if (value in typing.get_args(tp) and not isinstance(value, bool)) or (
            isinstance(value, bool) and any(value is arg for arg in typing.get_args(tp))
        ):
            return value
        raise ConversionError(path, f"expected one of {list(typing.get_args(tp))!r}")
    if origin is typing.Annotated:
        return convert(value, typing.get_args(tp)[0], path)
    if origin in (list, typing.List, typing.Sequence, typing.Iterable) or tp in (  # noqa: UP006
        list,
    ):
        return _convert_list(value, tp, path)
    if origin in (dict, typing.Dict, typing.Mapping) or tp is dict:  # noqa: UP006
        return _convert_dict(value, tp, path)
    if origin is tuple or tp is tuple:
        return _convert_tuple(value, tp, path)
    if isinstance(tp, type):
        return _convert_class(value, tp, path)
    raise ConversionError(path, f"cannot read a value as {describe_type(tp)}")


def _convert_union(value: Any, tp: Any, path: str) -> Any:
    errors: list[str] = []
    for option in typing.get_args(tp):
        try:
            return convert(value, option, path)
        except ConversionError as error:
            errors.append(str(error))
    raise ConversionError(path, f"expected {describe_type(tp)}, got {type_name(value)}")


def _convert_list(value: Any, tp: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _mismatch(path, "array", value)
    args = typing.get_args(tp)
    item = args[0] if args else Any
    return [convert(element, item, f"{path}[{index}]") for index, element in enumerate(value)]


def _convert_dict(value: Any, tp: Any, path: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _mismatch(path, "object", value)
    args = typing.get_args(tp)
    key_type, item = (args[0], args[1]) if args else (str, Any)
    out: dict[Any, Any] = {}
    for key, element in value.items():
        converted_key = key if key_type in (str, Any) else convert(key, key_type, path)
        out[converted_key] = convert(element, item, f"{path}[{key!r}]")
    return out


def _convert_tuple(value: Any, tp: Any, path: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise _mismatch(path, "array", value)
    args = typing.get_args(tp)
    if not args:
        return tuple(value)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise ConversionError(path, f"expected an array of {len(args)}, got {len(value)}")
    return tuple(convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(args, value, strict=True)))


def _convert_class(value: Any, tp: type[Any], path: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _mismatch(path, "boolean", value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral():
            raise ConversionError(
                path, f"expected an integer, got {value} (a number with a fraction or exponent)"
            )
        raise _mismatch(path, "integer", value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise _mismatch(path, "number", value)
        result = float(value)
        if not math.isfinite(result):
            raise ConversionError(path, f"{value} is out of the range of float")
        return result
    if tp is Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise _mismatch(path, "number", value)
        return Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    if tp is str:
        if isinstance(value, str):
            return value
        raise _mismatch(path, "string", value)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(value, tp, path)
    validate = getattr(tp, "model_validate", None)
    if callable(validate):
        try:
            return validate(value)
        except ValueError as error:
            raise ConversionError(path, str(error).splitlines()[0]) from None
    if tp in (list, dict, tuple):
        return convert(value, tp, path)
    if isinstance(value, tp):
        return value
    raise ConversionError(path, f"cannot read a value as {tp.__name__}")


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _convert_dataclass(value: Any, tp: type[Any], path: str) -> Any:
    if not isinstance(value, dict):
        raise _mismatch(path, "object", value)
    hints = _HINTS.get(tp)
    if hints is None:
        hints = typing.get_type_hints(tp)
        _HINTS[tp] = hints
    arguments: dict[str, Any] = {}
    for field in dataclasses.fields(tp):
        if not field.init:
            continue
        if field.name in value:
            arguments[field.name] = convert(
                value[field.name], hints.get(field.name, Any), f"{path}.{field.name}"
            )
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConversionError(f"{path}.{field.name}", "missing field")
    return tp(**arguments)


def _mismatch(path: str, expected: str, value: Any) -> ConversionError:
    return ConversionError(path, f"expected {expected}, got {type_name(value)}")
