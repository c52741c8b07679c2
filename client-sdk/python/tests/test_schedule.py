"""Schedules through the client, against a real server whose scheduler clock
is stopped (the test-only --test-schedule-clock-ms) so fire times are known."""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest

from tributary_sdk import (
    AsyncClient,
    CatchUpPolicy,
    Context,
    OverlapPolicy,
    ServerError,
    task,
    workflow,
)

from .conftest import start_server, unique_name

# 2026-01-10T00:00:00Z.
T0_MS = 1_768_003_200_000


async def test_schedules_are_created_read_listed_paused_resumed_and_deleted() -> None:
    server = start_server(["--test-schedule-clock-ms", str(T0_MS)])
    try:
        name = unique_name("scheduled")

        @task(id="only")
        def only(context: Context) -> None:
            context.insert("done", True)

        async with AsyncClient(server.url) as client:
            await client.register_workflow(workflow(name, [only]))
            created = await client.create_schedule(
                "nightly",
                name,
                "30 2 * * *",
                time_zone="Europe/Paris",
                input={"source": "nightly"},
                overlap_policy=OverlapPolicy.QUEUE,
                catch_up_policy=CatchUpPolicy.ALL,
                max_catch_up=3,
            )
            assert created.input == {"source": "nightly"}
            assert created.overlap_policy == OverlapPolicy.QUEUE
            assert created.catch_up_policy == CatchUpPolicy.ALL
            assert created.max_catch_up == 3
            # 02:30 in Paris is 01:30 UTC in winter.
            assert created.next_fire_times[0] == datetime(2026, 1, 10, 1, 30, tzinfo=timezone.utc)
            assert created.last_run_id == ""

            fetched = await client.get_schedule("nightly", next_fire_count=2)
            assert len(fetched.next_fire_times) == 2
            assert [s.schedule_id for s in await client.list_schedules()] == ["nightly"]

            paused = await client.pause_schedule("nightly")
            assert paused.paused and paused.next_fire_times == []
            resumed = await client.resume_schedule("nightly")
            assert not resumed.paused

            await client.delete_schedule("nightly")
            with pytest.raises(ServerError) as missing:
                await client.get_schedule("nightly")
            assert missing.value.code == grpc.StatusCode.NOT_FOUND

            with pytest.raises(ServerError) as bad:
                await client.create_schedule("bad", name, "61 * * * *")
            assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "invalid cron expression" in str(bad.value)
    finally:
        server.close()
