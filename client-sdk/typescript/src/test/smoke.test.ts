import { test } from "node:test";
import assert from "node:assert/strict";
import { TestServer } from "./harness.js";
import { task, workflow } from "../index.js";
import { Worker } from "../worker/index.js";

test("smoke: a run of two tasks succeeds", async () => {
  const server = await TestServer.start();
  try {
    const wf = workflow("smoke", [
      task({ id: "a" }, (ctx) => { ctx.insert("x", 18446744073709551617n); }),
      task({ id: "b", dependencies: ["a"] }, (ctx) => { ctx.insert("y", ctx.get("x", "bigint") + 1n); }),
    ]);
    const client = server.client();
    const reg = await client.registerWorkflow(wf);
    const worker = new Worker({ serverUrl: server.url, workflows: [wf], logger: (l, m) => console.error(l, m) });
    await worker.waitUntilConnected();
    const { runId } = await client.startRun("smoke", { n: 1 });
    const run = await client.wait(runId);
    console.error(reg.version, run.status, run.contextJson);
    assert.equal(run.status, "SUCCEEDED");
    assert.equal(run.context.y, 18446744073709551618n);
    const report = await worker.shutdown({ deadlineMs: 5000 });
    assert.ok(report.drained);
  } finally {
    await server.stop();
  }
});
