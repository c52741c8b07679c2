import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { task, workflow } from "../workflow.js";
import { createNodeClient } from "../node.js";
import { TestServer } from "./harness.js";

// 2026-01-10T00:00:00Z: the scheduler's clock stands still there (the
// test-only --test-schedule-clock-ms), so fire times are known.
const T0_MS = Date.UTC(2026, 0, 10);

let server: TestServer;
before(async () => {
  server = await TestServer.start({ args: ["--test-schedule-clock-ms", String(T0_MS)] });
});
after(async () => {
  await server.stop();
});

test("schedules are created, read, listed, paused, resumed and deleted", { timeout: 60_000 }, async () => {
  const client = createNodeClient(server.url);
  await client.registerWorkflow(
    workflow("scheduled", [
      task({ id: "only" }, (ctx) => {
        ctx.insert("done", true);
      }),
    ]),
  );
  const created = await client.createSchedule({
    scheduleId: "nightly",
    workflowName: "scheduled",
    cron: "30 2 * * *",
    timeZone: "Europe/Paris",
    input: { source: "nightly" },
    overlap: "QUEUE",
    catchUp: "ALL",
    maxCatchUp: 3,
  });
  assert.deepEqual(created.input, { source: "nightly" });
  assert.equal(created.overlap, "QUEUE");
  assert.equal(created.catchUp, "ALL");
  assert.equal(created.maxCatchUp, 3);
  // 02:30 in Paris is 01:30 UTC in winter.
  assert.equal(created.nextFireTimesMs[0], T0_MS + 90 * 60_000);
  assert.equal(created.lastRunId, "");

  assert.equal((await client.getSchedule("nightly", 2)).nextFireTimesMs.length, 2);
  assert.deepEqual(
    (await client.listSchedules()).map((schedule) => schedule.scheduleId),
    ["nightly"],
  );
  const paused = await client.pauseSchedule("nightly");
  assert.ok(paused.paused);
  assert.deepEqual(paused.nextFireTimesMs, []);
  assert.ok(!(await client.resumeSchedule("nightly")).paused);

  await client.deleteSchedule("nightly");
  await assert.rejects(client.getSchedule("nightly"), (error: unknown) => ConnectError.from(error).code === Code.NotFound);
  await assert.rejects(
    client.createSchedule({ scheduleId: "bad", workflowName: "scheduled", cron: "61 * * * *" }),
    (error: unknown) => {
      const connectError = ConnectError.from(error);
      return connectError.code === Code.InvalidArgument && connectError.rawMessage.includes("invalid cron expression");
    },
  );
});
