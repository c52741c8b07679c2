from __future__ import annotations

import asyncio

import pytest

from tributary_sdk import ValueCache
from tributary_sdk._attempt import MissingValueError, build_context
from tributary_sdk._proto.tributary.v1 import executor_pb2


def test_lru_by_bytes_evicts_the_least_recently_used() -> None:
    # Each value counts its text and its name (run, writer, key).
    cache = ValueCache(22)
    cache.put(("r", "a", "k1"), '"1234"')  # 6 + 4 bytes
    cache.put(("r", "a", "k2"), "12")  # 2 + 4 bytes
    assert cache.get(("r", "a", "k1")) == '"1234"'  # k1 now most recent
    cache.put(("r", "b", "k3"), "123")  # 3 + 4: 23 > 22, evicts k2
    assert cache.get(("r", "a", "k2")) is None
    assert cache.get(("r", "a", "k1")) == '"1234"'
    assert cache.size_bytes == 17
    cache.put(("r", "a", "k1"), "1")  # replacing updates the size
    assert cache.size_bytes == 12


def test_bytes_are_counted_in_utf8() -> None:
    cache = ValueCache(6)
    cache.put(("r", "", "k"), '"é"')  # 4 + 2 bytes
    assert cache.size_bytes == 6
    cache.put(("r", "", "k2"), '"中"')  # 5 + 3 bytes: larger than the cache, not kept
    assert cache.get(("r", "", "k2")) is None


def test_forget_run_drops_only_that_run() -> None:
    cache = ValueCache(100)
    cache.put(("r1", "a", "k"), "1")
    cache.put(("r2", "a", "k"), "2")
    cache.forget_run("r1")
    assert cache.get(("r1", "a", "k")) is None
    assert cache.get(("r2", "a", "k")) == "2"
    cache.clear()
    assert len(cache) == 0 and cache.size_bytes == 0


def ref(key: str, writer: str) -> executor_pb2.ValueRef:
    return executor_pb2.ValueRef(key=key, writer_attempt_id=writer)


async def test_references_resolve_from_cache_and_fetch_misses() -> None:
    cache = ValueCache(1 << 20)
    cache.put(("run", "w1", "cached"), '{"a":[1,2]}')
    asked: list[list[tuple[str, str]]] = []

    async def fetch(run_id: str, refs: list[executor_pb2.ValueRef]) -> dict[tuple[str, str], str]:
        assert run_id == "run"
        asked.append([(r.key, r.writer_attempt_id) for r in refs])
        await asyncio.sleep(0)
        return {("fetched", "w2"): "18446744073709551617"}

    assign = executor_pb2.Assign(
        run_id="run",
        attempt_id="a3",
        input_context_json='{"inline": "v"}',
        inline_values=[ref("inline", "")],
        references=[ref("cached", "w1"), ref("fetched", "w2")],
    )
    context = await build_context(assign, cache, fetch)
    assert context.data() == {"inline": "v", "cached": {"a": [1, 2]}, "fetched": 18446744073709551617}
    assert asked == [[("fetched", "w2")]]
    # The inline value is kept under its name for later references.
    assert cache.get(("run", "", "inline")) == '"v"'
    assert context.delta() == ({}, [])


async def test_a_value_the_server_no_longer_has_fails_the_attempt() -> None:
    async def fetch(run_id: str, refs: list[executor_pb2.ValueRef]) -> dict[tuple[str, str], str]:
        return {}

    assign = executor_pb2.Assign(run_id="run", references=[ref("gone", "w9")], input_context_json="{}")
    with pytest.raises(MissingValueError, match="'gone'"):
        await build_context(assign, ValueCache(100), fetch)
