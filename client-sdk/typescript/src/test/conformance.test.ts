import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { jsonEqual, parseJson, stringifyJson } from "../json.js";
import type { JsonObject, JsonValue } from "../json.js";
import type { Client } from "../client.js";
import { REPO_ROOT, TestServer, VECTORS, eventually } from "./harness.js";

const WORKER = join(dirname(fileURLToPath(import.meta.url)), "../conformance/worker.js");

interface LogLine {
  event: string;
  handler: string;
  attempt_id: string;
  pid: number;
}

function readLog(path: string): LogLine[] {
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  // A read can catch the worker in the middle of writing a line: only the
  // lines it has finished (newline-terminated) count.
  const complete = text.slice(0, text.lastIndexOf("\n") + 1);
  return complete.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as LogLine);
}

async function runOne(client: Client, name: string, handler: string, input: JsonObject, settings: JsonObject = {}) {
  await client.registerWorkflow({ name, tasks: [{ id: "t", handler, ...settings }] });
  return client.wait((await client.startRun(name, input)).runId);
}

test("the conformance worker: lossless echo, vectors, failures, CPU-bound spin, SIGTERM drain", { timeout: 120_000 }, async () => {
  const server = await TestServer.start({ heartbeatIntervalMs: 100, leaseTimeoutMs: 1_000 });
  const directory = mkdtempSync(join(tmpdir(), "tributary-ts-conformance-"));
  const log = join(directory, "log.jsonl");
  const child = spawn(process.execPath, [WORKER], {
    env: {
      ...process.env,
      TRIBUTARY_SERVER: server.url,
      TRIBUTARY_NAMESPACE: "conformance",
      CONFORMANCE_CAPACITY: "3",
      CONFORMANCE_VALUE_CACHE_BYTES: "1048576",
      CONFORMANCE_LOG: log,
      CONFORMANCE_WORKER_NAME: "ts-conformance-test",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    const client = server.client("conformance");
    await eventually(async () => (await client.listExecutors()).some((e) => e.name === "ts-conformance-test"), "the worker to register");

    const values = (parseJson(readFileSync(join(REPO_ROOT, "conformance/values.json"), "utf8")) as JsonObject).values as JsonValue[];
    for (const value of values) {
      const run = await runOne(client, "echo", "conformance.echo", { echo_in: value });
      assert.equal(run.status, "SUCCEEDED");
      assert.ok(jsonEqual(run.context.echo_out as JsonValue, value), `echo of ${stringifyJson(value)} gave ${stringifyJson(run.context.echo_out)}`);
    }
    const missing = await runOne(client, "echo", "conformance.echo", {}, { retry_attempts: 2 });
    assert.equal(missing.status, "FAILED");
    assert.equal(missing.tasks[0]?.attempts.length, 1);
    assert.match(missing.tasks[0]?.error ?? "", /echo_in/);

    const cases = (parseJson(readFileSync(join(VECTORS, "context_ops.json"), "utf8")) as JsonObject).cases as JsonObject[];
    for (const c of cases) {
      const run = await runOne(client, "vector", "conformance.vector", { vector_input: c.input as JsonValue, vector_ops: c.ops as JsonValue });
      assert.equal(run.status, "SUCCEEDED", stringifyJson(c.name));
      const result = run.context.vector_result as JsonObject;
      assert.ok(jsonEqual(result, { data: c.data as JsonValue, set: c.set as JsonValue, removed: c.removed as JsonValue, errors: c.errors as JsonValue }), `${stringifyJson(c.name)}: ${stringifyJson(result)}`);
    }

    const thrown = await runOne(client, "throw", "conformance.throw", {});
    assert.equal(thrown.status, "FAILED");
    assert.match(thrown.tasks[0]?.error ?? "", /throw: boom/);
    const fatal = await runOne(client, "fatal", "conformance.fail_fatal", {}, { retry_attempts: 3 });
    assert.equal(fatal.tasks[0]?.attempts.length, 1);
    const once = await runOne(client, "once", "conformance.fail_once", {}, { retry_attempts: 1, retry_delay_ms: 10 });
    assert.equal(once.status, "SUCCEEDED");
    assert.equal(once.context.fail_once_attempt, 2);

    const spun = await runOne(client, "spin", "conformance.spin", { spin_ms: 3_000 });
    assert.equal(spun.status, "SUCCEEDED");
    assert.equal(spun.tasks[0]?.attempts.length, 1);

    await client.registerWorkflow({
      name: "big",
      tasks: [
        { id: "produce", handler: "conformance.big" },
        { id: "measure", handler: "conformance.measure", dependencies: ["produce"] },
      ],
    });
    const big = await client.wait((await client.startRun("big", { big_bytes: 1_000_000 })).runId);
    assert.equal(big.status, "SUCCEEDED");
    assert.equal((big.context.measured as JsonObject).big, 1_000_002);

    await client.registerWorkflow({ name: "waiting", tasks: [{ id: "t", handler: "conformance.wait_cancel" }] });
    const { runId: waitingRun } = await client.startRun("waiting", {});
    await eventually(() => readLog(log).some((l) => l.handler === "conformance.wait_cancel" && l.event === "start"), "wait_cancel to start");
    await client.cancelRun(waitingRun);
    await eventually(() => readLog(log).some((l) => l.handler === "conformance.wait_cancel" && l.event === "cancelled"), "the cancellation to reach the code");

    await client.registerWorkflow({ name: "sleepy", tasks: [{ id: "t", handler: "conformance.sleep" }] });
    const { runId: sleepyRun } = await client.startRun("sleepy", { sleep_ms: 800 });
    await eventually(() => readLog(log).some((l) => l.handler === "conformance.sleep" && l.event === "start"), "sleep to start");
    child.kill("SIGTERM");
    assert.equal(await exited, 0, stderr);
    const slept = await client.getRun(sleepyRun);
    assert.equal(slept.status, "SUCCEEDED", "the drain let the attempt finish and its result be committed");

    const lines = readLog(log);
    assert.ok(lines.every((l) => l.pid === child.pid));
    const starts = lines.filter((l) => l.event === "start").length;
    assert.equal(starts, lines.filter((l) => l.event === "end").length, "every start has an end");
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    await server.stop();
    rmSync(directory, { recursive: true, force: true });
  }
});
