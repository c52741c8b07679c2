from __future__ import annotations

from typing import Any

import pytest

from tributary_sdk import AsyncClient, Context, DefinitionError, ServerError, task, workflow
from tributary_sdk.client import definition_to_proto
from tributary_sdk.validate import validate_definition

from .conftest import load_vectors

CASES = load_vectors("validation.json")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["name"])
def test_local_validation_matches_the_servers_messages(case: dict[str, Any]) -> None:
    expected = case["error"]
    if expected is None:
        validate_definition(case["definition"])
        return
    assert expected["code"] == "INVALID_ARGUMENT"
    with pytest.raises(DefinitionError) as caught:
        validate_definition(case["definition"])
    assert str(caught.value) == expected["message"]


async def test_the_server_gives_the_same_verdicts(client: AsyncClient) -> None:
    # Sent straight to the server, past local validation.
    checked = 0
    for case in CASES:
        definition = definition_to_proto(case["definition"])
        from tributary_sdk._proto.tributary.v1 import workflow_pb2

        call = client._workflows.RegisterWorkflow(
            workflow_pb2.RegisterWorkflowRequest(definition=definition), metadata=client._metadata
        )
        try:
            await client._call("RegisterWorkflow", call)
            assert case["error"] is None, case["name"]
        except ServerError as error:
            assert case["error"] is not None, f"{case['name']}: {error}"
            assert error.details == case["error"]["message"], case["name"]
        checked += 1
    assert checked == len(CASES)


def test_workflow_declaration_validates_and_defaults_handlers() -> None:
    @task(id="a")
    def a(context: Context) -> None: ...

    @task(id="b", dependencies=[a], retry_attempts=200)
    def b(context: Context) -> None: ...

    with pytest.raises(DefinitionError, match=r'task "b": retry_attempts must be between 0 and 100, got 200'):
        workflow("w", [a, b])

    @task(dependencies=["a"], handler="custom.handler")
    async def c(context: Context) -> None: ...

    flow = workflow("w", [a, c])
    assert sorted(flow.handlers()) == ["custom.handler", "w.a"]
    assert flow.definition()["tasks"][1] == {"id": "c", "dependencies": ["a"], "handler": "custom.handler"}


def test_required_labels_are_declared_and_reach_the_wire() -> None:
    @task(id="train", required_labels={"gpu": "true", "region": "eu"})
    def train(context: Context) -> None: ...

    flow = workflow("w", [train])
    entry = flow.definition()["tasks"][0]
    assert entry == {"id": "train", "required_labels": {"gpu": "true", "region": "eu"}}
    wire = definition_to_proto(flow.definition()).tasks[0]
    assert dict(wire.required_labels) == {"gpu": "true", "region": "eu"}

    @task(id="bad", required_labels={"gpu": "x" * 257})
    def bad(context: Context) -> None: ...

    with pytest.raises(DefinitionError, match=r'task "bad": required_labels value of "gpu" is 257 bytes'):
        workflow("w", [bad])


def test_max_in_flight_is_declared_and_reaches_the_wire() -> None:
    @task(id="charge", max_in_flight=5)
    def charge(context: Context) -> None: ...

    @task(id="plain")
    def plain(context: Context) -> None: ...

    flow = workflow("w", [charge, plain])
    assert flow.definition()["tasks"] == [{"id": "charge", "max_in_flight": 5}, {"id": "plain"}]
    wire = definition_to_proto(flow.definition())
    assert wire.tasks[0].HasField("max_in_flight") and wire.tasks[0].max_in_flight == 5
    assert not wire.tasks[1].HasField("max_in_flight")

    @task(id="bad", max_in_flight=0)
    def bad(context: Context) -> None: ...

    message = r'^task "bad": max_in_flight must be between 1 and 10000, got 0$'
    with pytest.raises(DefinitionError, match=message):
        workflow("w", [bad])


def test_cycle_in_a_large_workflow_is_found_without_recursion() -> None:
    size = 5000
    tasks = [{"id": f"t{i}", "dependencies": [f"t{i - 1}"]} for i in range(1, size)]
    tasks.append({"id": "t0", "dependencies": [f"t{size - 1}"]})
    with pytest.raises(DefinitionError, match=r"^cycle detected: t0 -> t1 -> "):
        validate_definition({"name": "w", "tasks": tasks})
