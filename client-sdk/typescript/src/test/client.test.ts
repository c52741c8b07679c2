import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { task, workflow } from "../workflow.js";
import { createClient } from "../client.js";
import type { RunEvent } from "../model.js";
import { Worker } from "../worker/index.js";
import { NonRetryableError } from "../errors.js";
import { TestServer, eventually } from "./harness.js";

let server: TestServer;
before(async () => {
  server = await TestServer.start({ heartbeatIntervalMs: 200, leaseTimeoutMs: 2_000 });
});
after(async () => {
  await server.stop();
});

const gated = workflow("gated", [
  task({ id: "first" }, (ctx) => {
    ctx.insert("first", true);
  }),
  task({ id: "second", dependencies: ["first"] }, (ctx) => {
    ctx.insert("second", ctx.get("big", "bigint") + 1n);
  }),
]);

test("register, get and list workflows; the same definition keeps its version", { timeout: 30_000 }, async () => {
  const client = server.client();
  const first = await client.registerWorkflow(gated);
  assert.equal(first.created, true);
  assert.match(first.version, /^[0-9a-f]{16}$/);
  const again = await client.registerWorkflow(gated);
  assert.equal(again.created, false);
  assert.equal(again.version, first.version);
  const fetched = await client.getWorkflow("gated");
  assert.equal(fetched.version, first.version);
  assert.deepEqual(fetched.definition.tasks.map((t) => t.id), ["first", "second"]);
  assert.equal(fetched.definition.tasks[1]?.retry_attempts, 0, "the server fills in defaults");
  const bySequence = await client.getWorkflow("gated", 1n);
  assert.equal(bySequence.version, first.version);
  const listed = await client.listWorkflows();
  assert.ok(listed.workflows.some((w) => w.definition.name === "gated"));
  await assert.rejects(client.getWorkflow("nope"), (error: unknown) => ConnectError.from(error).code === Code.NotFound);
});

test("start with an idempotency key, get losslessly, list, cancel", { timeout: 30_000 }, async () => {
  const client = server.client();
  await client.registerWorkflow(gated);
  const input = { big: 18446744073709551617n, note: "é" };
  const started = await client.startRun("gated", input, { idempotencyKey: "order-1" });
  assert.equal(started.created, true);
  const again = await client.startRun("gated", input, { idempotencyKey: "order-1" });
  assert.equal(again.runId, started.runId);
  assert.equal(again.created, false);
  await assert.rejects(
    client.startRun("gated", { big: 1 }, { idempotencyKey: "order-1" }),
    (error: unknown) => ConnectError.from(error).code === Code.AlreadyExists,
  );
  const run = await client.getRun(started.runId);
  assert.equal(run.status, "PENDING");
  assert.equal(run.input.big, 18446744073709551617n);
  assert.deepEqual(run.tasks.map((t) => [t.taskId, t.state]), [["first", "READY"], ["second", "WAITING"]]);
  const pending = await client.listRuns({ workflowName: "gated", status: "PENDING" });
  assert.ok(pending.runs.some((r) => r.id === started.runId));
  assert.equal(await client.cancelRun(started.runId), "CANCELLED");
  await assert.rejects(client.cancelRun(started.runId), (error: unknown) => ConnectError.from(error).code === Code.FailedPrecondition);
  const cancelled = await client.wait(started.runId);
  assert.equal(cancelled.status, "CANCELLED");
  const none = await client.listRuns({ workflowName: "gated", status: "PENDING" });
  assert.ok(!none.runs.some((r) => r.id === started.runId));
  // The browser's transport (gRPC-Web over fetch) streams the same events.
  const web = createClient(server.url);
  const kinds: string[] = [];
  for await (const event of web.watchRun(started.runId)) kinds.push(event.kind);
  assert.equal(kinds[0], "RUN_STARTED");
  assert.equal(kinds.at(-1), "RUN_FINISHED");
  assert.equal((await web.getRun(started.runId)).input.big, 18446744073709551617n);
});

test("namespaces do not see each other", { timeout: 30_000 }, async () => {
  const client = server.client("tenant-a");
  await client.registerWorkflow(gated);
  const { runId } = await client.startRun("gated", { big: 1 });
  await assert.rejects(server.client().withNamespace("tenant-b").getRun(runId), (error: unknown) => ConnectError.from(error).code === Code.NotFound);
  assert.equal((await client.getRun(runId)).id, runId);
  await client.cancelRun(runId);
});

test("watchRun and watchEvents resume after a server restart without gaps or duplicates", { timeout: 60_000 }, async () => {
  const client = server.client("watching");
  await client.registerWorkflow(gated);
  const { runId } = await client.startRun("gated", { big: 41 });
  const runEvents: RunEvent[] = [];
  const allEvents: RunEvent[] = [];
  const stop = new AbortController();
  const following = (async () => {
    for await (const event of client.watchRun(runId)) runEvents.push(event);
  })();
  const everything = (async () => {
    for await (const event of client.watchEvents({ runIds: [runId], signal: stop.signal })) allEvents.push(event);
  })();
  await eventually(() => runEvents.length >= 2 && allEvents.length >= 2, "the first events");
  await server.restart();
  const worker = new Worker({ serverUrl: server.url, namespace: "watching", workflows: [gated], logger: () => {} });
  try {
    await following;
    const run = await client.wait(runId);
    assert.equal(run.status, "SUCCEEDED");
    assert.equal(run.context.second, 42);
    assert.deepEqual(runEvents.map((e) => e.sequence), runEvents.map((_, i) => BigInt(i + 1)));
    assert.equal(runEvents[0]?.kind, "RUN_STARTED");
    assert.equal(runEvents.at(-1)?.kind, "RUN_FINISHED");
    assert.equal(runEvents.at(-1)?.runStatus, "SUCCEEDED");
    await eventually(() => allEvents.some((e) => e.kind === "RUN_FINISHED"), "RUN_FINISHED on watchEvents");
    stop.abort();
    await everything;
    const cursors = allEvents.map((e) => e.cursor);
    for (let i = 1; i < cursors.length; i++) assert.ok((cursors[i] as bigint) > (cursors[i - 1] as bigint), "cursors strictly increase");
    assert.deepEqual(allEvents.map((e) => e.sequence), runEvents.map((e) => e.sequence));
  } finally {
    await worker.shutdown({ deadlineMs: 5_000 });
  }
});

test("retryRun re-runs the failure and wait follows the run to its new end", { timeout: 30_000 }, async () => {
  const client = server.client("retrying");
  const calls = new Map<string, number>();
  const count = (id: string): number => {
    const n = (calls.get(id) ?? 0) + 1;
    calls.set(id, n);
    return n;
  };
  const flaky = workflow("flaky", [
    task({ id: "first" }, (ctx) => {
      ctx.insert("first", count("first"));
    }),
    task({ id: "second", dependencies: ["first"] }, (ctx) => {
      const n = count("second");
      if (n === 1) throw new NonRetryableError("not yet");
      ctx.insert("second", n);
    }),
  ]);
  await client.registerWorkflow(flaky);
  const worker = new Worker({ serverUrl: server.url, namespace: "retrying", workflows: [flaky], logger: () => {} });
  try {
    const { runId } = await client.startRun("flaky", {});
    const failed = await client.wait(runId);
    assert.equal(failed.status, "FAILED");
    assert.equal(failed.retryCount, 0);
    const retried = await client.retryRun(runId, { requestId: "ts-retry" });
    assert.deepEqual(retried.retriedTaskIds, ["second"]);
    assert.equal(retried.retryCount, 1);
    const again = await client.retryRun(runId, { requestId: "ts-retry" });
    assert.equal(again.retryCount, 1);
    const run = await client.wait(runId);
    assert.equal(run.status, "SUCCEEDED");
    assert.equal(run.retryCount, 1);
    assert.equal(run.context.second, 2);
    assert.deepEqual([...calls.entries()].sort(), [["first", 1], ["second", 2]]);
    const kinds: RunEvent[] = [];
    for await (const event of client.watchRun(runId)) kinds.push(event);
    assert.deepEqual(kinds.filter((e) => e.kind === "RUN_RETRIED").map((e) => e.retriedTaskIds), [["second"]]);
    assert.equal(kinds.at(-1)?.runStatus, "SUCCEEDED");
    await assert.rejects(client.retryRun(runId), (error: unknown) => ConnectError.from(error).code === Code.FailedPrecondition);
  } finally {
    await worker.shutdown({ deadlineMs: 5_000 });
  }
});
