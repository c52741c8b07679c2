"""API keys against a real server started with a bootstrap admin key: calls
without a key are refused, a client and a worker with keys run a workflow,
and a key of another namespace cannot name this one."""

from __future__ import annotations

import grpc
import pytest

from tributary_sdk import AsyncClient, Context, RunStatus, ServerError, Worker, task, workflow
from tributary_sdk._proto.tributary.v1 import key_pb2, key_pb2_grpc

from .conftest import start_server, unique_name

ADMIN_KEY = "python-sdk-bootstrap-admin-key-0123456789"


async def create_key(url: str, namespace: str, role: str) -> str:
    async with grpc.aio.insecure_channel(url.removeprefix("http://")) as channel:
        response = await key_pb2_grpc.KeyServiceStub(channel).CreateKey(
            key_pb2.CreateKeyRequest(namespace=namespace, role=role, label="python test"),
            metadata=(("authorization", f"Bearer {ADMIN_KEY}"),),
        )
    return response.secret


async def test_keys_are_sent_by_the_client_and_the_worker() -> None:
    server = start_server(["--admin-key", ADMIN_KEY])
    try:
        name = unique_name("keyed")

        @task(id="only")
        def only(context: Context) -> None:
            context.insert("done", True)

        flow = workflow(name, [only])
        async with AsyncClient(server.url) as anonymous:
            with pytest.raises(ServerError) as refused:
                await anonymous.list_workflows()
            assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED

        client_key = await create_key(server.url, "finance", "client")
        executor_key = await create_key(server.url, "finance", "executor")
        async with AsyncClient(server.url, namespace="finance", api_key=client_key) as client:
            await client.register_workflow(flow)
            worker = Worker(server.url, workflows=[flow], namespace="finance", api_key=executor_key)
            await worker.start()
            try:
                started = await client.start_run(name, {})
                run = await client.wait(started.run_id, timeout=60)
                assert run.status == RunStatus.SUCCEEDED
            finally:
                await worker.shutdown(10)
        async with AsyncClient(server.url, namespace="default", api_key=client_key) as elsewhere:
            with pytest.raises(ServerError) as denied:
                await elsewhere.list_workflows()
            assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        server.close()
