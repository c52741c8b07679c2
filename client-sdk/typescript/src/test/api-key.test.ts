import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError, createClient as createConnectClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { KeyService } from "../gen/index.js";
import { task, workflow } from "../workflow.js";
import { createNodeClient } from "../node.js";
import { Worker } from "../worker/index.js";
import { TestServer } from "./harness.js";

const ADMIN_KEY = "typescript-sdk-bootstrap-admin-key-0123456789";

let server: TestServer;
before(async () => {
  server = await TestServer.start({ heartbeatIntervalMs: 200, leaseTimeoutMs: 2_000, adminKey: ADMIN_KEY });
});
after(async () => {
  await server.stop();
});

async function createKey(namespace: string, role: string): Promise<string> {
  const keys = createConnectClient(KeyService, createGrpcTransport({ baseUrl: server.url }));
  const response = await keys.createKey(
    { namespace, role, label: "typescript test" },
    { headers: { authorization: `Bearer ${ADMIN_KEY}` } },
  );
  return response.secret;
}

const keyed = workflow("keyed", [
  task({ id: "only" }, (ctx) => {
    ctx.insert("done", true);
  }),
]);

test("clients and workers send their API keys; calls without one are refused", { timeout: 60_000 }, async () => {
  const anonymous = createNodeClient(server.url);
  await assert.rejects(anonymous.listWorkflows(), (error: unknown) => ConnectError.from(error).code === Code.Unauthenticated);

  const clientKey = await createKey("finance", "client");
  const executorKey = await createKey("finance", "executor");
  const client = createNodeClient(server.url, { namespace: "finance", apiKey: clientKey });
  await client.registerWorkflow(keyed);
  const worker = new Worker({ serverUrl: server.url, namespace: "finance", apiKey: executorKey, workflows: [keyed] });
  try {
    const { runId } = await client.startRun("keyed", {});
    const run = await client.wait(runId);
    assert.equal(run.status, "SUCCEEDED");
  } finally {
    await worker.shutdown({ deadlineMs: 10_000 });
  }
  const elsewhere = client.withNamespace("default");
  await assert.rejects(elsewhere.listWorkflows(), (error: unknown) => ConnectError.from(error).code === Code.PermissionDenied);
});
