"""Shared fixtures: one real ``tributary`` server per test session (found
through TRIBUTARY_BIN, else <repo>/target/release, else <repo>/target/debug)
on a fresh SQLite file, with short heartbeats and leases so that lease
handling is quick to observe; tests that kill or restart the server get a
server of their own."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tributary_sdk import AsyncClient
from tributary_sdk.local_server import LocalServer

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "tests" / "vectors"
FAST_LEASES = ["--heartbeat-interval-ms", "200", "--lease-timeout-ms", "2000"]
_names = itertools.count(1)


def load_vectors(name: str) -> list[dict[str, Any]]:
    text = (VECTORS / name).read_text()
    cases: list[dict[str, Any]] = json.loads(text)["cases"]
    assert len(cases) > 0
    return cases


def unique_name(stem: str) -> str:
    """A workflow name no other test of the session uses."""
    return f"{stem}-{next(_names)}"


def start_server(extra: list[str] | None = None) -> LocalServer:
    server = LocalServer(extra_args=FAST_LEASES + (extra or []), search_from=REPO)
    server.start()
    return server


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    local = start_server()
    yield local
    local.close()


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url) as connected:
        yield connected
