from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from tributary_sdk import Context, ContextError, KeyExistsError, KeyMissingError, WrongTypeError

from .conftest import load_vectors


@dataclass
class Product:
    id: int
    name: str
    price: float


@pytest.mark.parametrize("case", load_vectors("context_ops.json"), ids=lambda case: case["name"])
def test_shared_context_operation_vectors(case: dict[str, Any]) -> None:
    context = Context(case["input"])
    errors: list[str | None] = []
    for op in case["ops"]:
        try:
            if op["op"] == "insert":
                context.insert(op["key"], op["value"])
            elif op["op"] == "update":
                context.update(op["key"], op["value"])
            elif op["op"] == "upsert":
                context.upsert(op["key"], op["value"])
            else:
                context.discard(op["key"])
            errors.append(None)
        except KeyExistsError:
            errors.append("key_exists")
        except KeyMissingError:
            errors.append("key_missing")
    assert errors == case["errors"]
    assert context.data() == case["data"]
    set_values, removed = context.delta()
    assert set_values == case["set"]
    assert removed == case["removed"]


@pytest.mark.parametrize("case", load_vectors("context.json"), ids=lambda case: case["name"])
def test_context_vectors_applied_in_canonical_order(case: dict[str, Any]) -> None:
    # What the server does with deltas, replayed through Context: each
    # delta in position order, values replaced whole.
    merged = Context(case["input"])
    for delta in sorted(case["deltas"], key=lambda d: d["position"]):
        for key, value in delta["set"].items():
            merged.upsert(key, value)
        for key in delta["removed"]:
            merged.discard(key)
    assert merged.data() == case["expected"]


def test_typed_get_reads_dataclasses_and_names_key_type_and_place() -> None:
    context = Context.from_json(
        '{"products": [{"id": 1, "name": "a", "price": 1.5}, {"id": 2, "name": "b", "price": "x"}]}'
    )
    with pytest.raises(WrongTypeError) as caught:
        context.get("products", list[Product])
    message = str(caught.value)
    assert message.startswith('context key "products" cannot be read as list[')
    assert "at [1].price: expected number, got string" in message
    assert context.get("products", list[Any])[0]["price"] == Decimal("1.5")


def test_typed_get_converts_numbers_and_refuses_out_of_range_floats() -> None:
    context = Context.from_json('{"n": 18446744073709551617, "x": 1e400, "f": 2.5, "i": 3}')
    assert context.get("n", int) == 18446744073709551617
    assert context.get("f", float) == 2.5
    assert context.get("i", float) == 3.0
    with pytest.raises(
        WrongTypeError, match='"x" cannot be read as float: 1E\\+400 is out of the range of float'
    ):
        context.get("x", float)
    with pytest.raises(WrongTypeError, match="expected integer, got number"):
        context.get("f", int)
    assert context.get("x", Decimal) == Decimal("1e400")


def test_missing_key_error_names_the_key() -> None:
    with pytest.raises(KeyMissingError, match='context key "absent" not found'):
        Context().get("absent")


def test_written_values_are_snapshots_and_delta_is_exact_json() -> None:
    context = Context.from_json('{"keep": 1, "drop": 2}')
    items = [Product(1, "a", 1.5)]
    context.insert("items", items)
    items.append(Product(2, "b", 2.0))
    context.remove("drop")
    assert context.get("items", list[Product]) == [Product(1, "a", 1.5)]
    assert context.delta_json() == ('{"items":[{"id":1,"name":"a","price":1.5}]}', ["drop"])


def test_writing_nan_fails_with_the_key() -> None:
    with pytest.raises(ContextError, match='context key "bad" cannot be written as JSON'):
        Context().insert("bad", float("nan"))


def test_unchanged_input_text_is_kept_verbatim() -> None:
    context = Context.from_json('{"a": [1.50, 2e3]}')
    assert context.json_text("a") == "[1.50, 2e3]"


def test_pydantic_models_are_read_and_written() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        id: int
        price: float

    context = Context()
    context.insert("item", Item(id=1, price=2.5))
    assert context.get("item", Item) == Item(id=1, price=2.5)
    with pytest.raises(WrongTypeError, match='"item" cannot be read as'):
        Context({"item": {"id": "x"}}).get("item", Item)
