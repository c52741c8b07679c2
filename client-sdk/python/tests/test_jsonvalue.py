from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from tributary_sdk.jsonvalue import JsonError, dumps, loads, loads_object_with_raw

from .conftest import REPO


def same_json(left: str, right: str) -> bool:
    # Exact comparison: numbers as Decimal or int, never through float.
    def parse(text: str) -> Any:
        return json.loads(text, parse_float=Decimal, parse_int=int)

    return bool(parse(left) == parse(right))


def test_every_conformance_value_round_trips_exactly() -> None:
    values = json.loads((REPO / "conformance" / "values.json").read_text())["values"]
    raw = (REPO / "conformance" / "values.json").read_text()
    document = loads(raw)
    assert len(document["values"]) == len(values)
    for value in document["values"]:
        text = dumps(value)
        assert same_json(text, json.dumps(value, default=str)) or same_json(text, dumps(loads(text)))
        assert loads(text) == value


def test_big_decimal_keeps_every_digit() -> None:
    text = "123456789012345678901234567890.123456789"
    assert dumps(loads(text)) == text
    assert dumps(loads("18446744073709551617")) == "18446744073709551617"
    assert (
        dumps(loads("-340282366920938463463374607431768211457")) == "-340282366920938463463374607431768211457"
    )


def test_huge_exponent_stays_a_number_not_infinity() -> None:
    value = loads("1e400")
    assert isinstance(value, Decimal)
    assert same_json(dumps(value), "1e400")


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a": NaN}'])
def test_non_json_constants_are_refused(text: str) -> None:
    with pytest.raises(JsonError, match="is not a JSON value"):
        loads(text)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), [1, {"x": float("-inf")}], Decimal("NaN"), Decimal("Infinity")]
)
def test_nan_and_infinity_are_never_written(value: Any) -> None:
    with pytest.raises(JsonError, match="not a JSON number"):
        dumps(value)


def test_dataclasses_tuples_and_unicode_are_written() -> None:
    @dataclass
    class Point:
        x: float
        y: Decimal

    assert (
        dumps({"p": Point(1.5, Decimal("2.25")), "t": (1, "é中")}) == '{"p":{"x":1.5,"y":2.25},"t":[1,"é中"]}'
    )


def test_a_string_that_looks_like_the_decimal_placeholder_is_left_alone() -> None:
    tricky = "\x00deadbeef:0\x00"
    assert loads(dumps([tricky, Decimal("1.5")])) == [tricky, Decimal("1.5")]


def test_unencodable_values_name_their_type() -> None:
    with pytest.raises(JsonError, match="type object is not JSON"):
        dumps({"x": object()})
    with pytest.raises(JsonError, match="a set is not a JSON value"):
        dumps({1, 2})


def test_raw_texts_of_top_level_values_are_kept() -> None:
    parsed = loads_object_with_raw(' { "a" : [1, 2.50] , "b":"x\\n" , "c" : {"d": null}} ')
    assert parsed["a"] == ([1, Decimal("2.50")], "[1, 2.50]")
    assert parsed["b"] == ("x\n", '"x\\n"')
    assert parsed["c"][1] == '{"d": null}'
    assert loads_object_with_raw("{}") == {}


@pytest.mark.parametrize("text", ["[1]", '{"a" 1}', '{"a": 1,}', '{"a": 1} x', '{"a": NaN}'])
def test_malformed_objects_are_refused(text: str) -> None:
    with pytest.raises(JsonError):
        loads_object_with_raw(text)
