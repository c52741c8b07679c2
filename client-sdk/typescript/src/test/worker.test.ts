import { test } from "node:test";
import assert from "node:assert/strict";
import type { GetRunOptions } from "../client.js";
import { NonRetryableError, TaskError } from "../errors.js";
import type { TaskOutcome } from "../model.js";
import { task, workflow } from "../workflow.js";
import type { Handler, Workflow } from "../workflow.js";
import { Worker } from "../worker/index.js";
import type { WorkerOptions } from "../worker/index.js";
import { TestServer, eventually } from "./harness.js";
import type { ServerOptions } from "./harness.js";

/** A short lease so that lease handling shows within a test. */
const FAST = { heartbeatIntervalMs: 100, leaseTimeoutMs: 1_000 };

async function withServer(body: (server: TestServer) => Promise<void>, options: ServerOptions = FAST): Promise<void> {
  const server = await TestServer.start(options);
  try {
    await body(server);
  } finally {
    await server.stop();
  }
}

function startWorker(server: TestServer, wf: Workflow, options: Partial<WorkerOptions> = {}): { worker: Worker; warnings: string[] } {
  const warnings: string[] = [];
  const worker = new Worker({
    serverUrl: server.url,
    workflows: [wf],
    logger: (level, message) => {
      if (level === "warn" || level === "error") warnings.push(message);
    },
    ...options,
  });
  return { worker, warnings };
}

function single(name: string, handler: Handler, options: Record<string, unknown> = {}): Workflow {
  return workflow(name, [task({ id: "only", ...options }, handler)]);
}

test("success, retry, non-retryable error and exception; the worker lives on", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    const calls: number[] = [];
    const wf = workflow("outcomes", [
      task({ id: "flaky", retryAttempts: 1, retryDelayMs: 10 }, (ctx) => {
        calls.push(ctx.attempt.attemptNumber);
        if (ctx.attempt.attemptNumber === 1) throw new TaskError("first attempt fails");
        ctx.insert("flaky", ctx.attempt.attemptNumber);
      }),
      task({ id: "fatal", retryAttempts: 3, retryDelayMs: 10 }, () => {
        throw new NonRetryableError("cannot be helped");
      }),
      task({ id: "boom", retryAttempts: 1, retryDelayMs: 10 }, () => {
        throw new TypeError("boom happened");
      }),
      task({ id: "after", dependencies: ["flaky"] }, (ctx) => {
        ctx.insert("after", ctx.get("flaky", "number") + 1);
      }),
    ]);
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf);
    try {
      const { runId } = await client.startRun("outcomes", {});
      const run = await client.wait(runId);
      assert.equal(run.status, "FAILED");
      const byId = new Map(run.tasks.map((t) => [t.taskId, t]));
      assert.equal(byId.get("flaky")?.state, "SUCCEEDED");
      assert.equal(byId.get("flaky")?.attempts.length, 2);
      assert.equal(run.context.after, 3);
      assert.equal(byId.get("fatal")?.state, "FAILED");
      assert.equal(byId.get("fatal")?.attempts.length, 1, "a non-retryable error is not retried");
      assert.equal(byId.get("fatal")?.error, "cannot be helped");
      assert.equal(byId.get("boom")?.state, "FAILED");
      assert.equal(byId.get("boom")?.attempts.length, 2, "an exception is retryable");
      assert.match(byId.get("boom")?.error ?? "", /TypeError: boom happened/);
      // The worker is still serving.
      const second = await client.wait((await client.startRun("outcomes", {})).runId);
      assert.equal(second.tasks.find((t) => t.taskId === "after")?.state, "SUCCEEDED");
      assert.deepEqual(calls, [1, 2, 1, 2]);
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("a mapped task runs once per element and its outputs come back gathered in order", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    const wf = workflow("mapped", [
      task({ id: "upper", mapOver: "words", mapOutput: "loud" }, (ctx) => {
        assert.equal(ctx.attempt.mapIndex, ctx.get("map_index", "number"));
        ctx.insert("loud", ctx.get("map_element", "string").toUpperCase());
      }),
    ]);
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf);
    try {
      const run = await client.wait((await client.startRun("mapped", { words: ["a", "bb", "ccc"] })).runId);
      assert.equal(run.status, "SUCCEEDED");
      assert.deepEqual(run.context.loud, ["A", "BB", "CCC"]);
      const upper = run.tasks.find((t) => t.taskId === "upper");
      assert.deepEqual(
        upper?.instances.map((i) => [i.mapIndex, i.state, i.attempts.length]),
        [
          [0, "SUCCEEDED", 1],
          [1, "SUCCEEDED", 1],
          [2, "SUCCEEDED", 1],
        ],
      );
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("getRun lists a window of a mapped task's instances and counts them all", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    const wf = workflow("windowed", [
      task({ id: "double", mapOver: "numbers", mapOutput: "doubled" }, (ctx) => {
        ctx.insert("doubled", ctx.get("map_element", "number") * 2);
      }),
    ]);
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf);
    try {
      const numbers = Array.from({ length: 30 }, (_, i) => i);
      const run = await client.wait((await client.startRun("windowed", { numbers })).runId);
      assert.equal(run.status, "SUCCEEDED");
      assert.deepEqual(run.context.doubled, numbers.map((n) => n * 2));
      const double = async (options: GetRunOptions = {}): Promise<TaskOutcome | undefined> =>
        (await client.getRun(run.id, options)).tasks.find((t) => t.taskId === "double");

      const window = await double({ instancesFrom: 10, maxInstances: 5 });
      assert.deepEqual(window?.instances.map((i) => i.mapIndex), [10, 11, 12, 13, 14]);
      assert.ok(window?.instances.every((i) => i.state === "SUCCEEDED"));
      assert.deepEqual(window?.instanceCounts, { SUCCEEDED: 30 });

      const countsOnly = await double({ maxInstances: 0 });
      assert.deepEqual(countsOnly?.instances, []);
      assert.deepEqual(countsOnly?.instanceCounts, { SUCCEEDED: 30 });

      const everything = await double();
      assert.deepEqual(everything?.instances.map((i) => i.mapIndex), numbers);
      assert.deepEqual(everything?.instanceCounts, { SUCCEEDED: 30 });

      await assert.rejects(client.getRun(run.id, { instancesFrom: -1 }), RangeError);
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("cancelling a run aborts ctx.signal in the running handler", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    let sawAbort: unknown;
    const wf = single("cancellable", async (ctx) => {
      await new Promise<void>((_, reject) => {
        ctx.signal.addEventListener("abort", () => {
          sawAbort = ctx.signal.reason;
          reject(ctx.signal.reason as Error);
        });
      });
    });
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf);
    try {
      const { runId } = await client.startRun("cancellable", {});
      await eventually(() => worker.status.running === 1, "the attempt to start");
      await client.cancelRun(runId);
      await eventually(() => sawAbort !== undefined, "the handler to see the cancellation");
      assert.match(String(sawAbort), /cancelled/);
      await eventually(() => worker.status.running === 0 && worker.status.unacknowledged === 0, "the failed attempt to be acknowledged");
      const run = await client.getRun(runId);
      assert.equal(run.status, "CANCELLED");
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("a timed-out attempt is cancelled and retried", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    const reasons: string[] = [];
    const wf = single(
      "timeouts",
      async (ctx) => {
        if (ctx.attempt.attemptNumber === 1) {
          await new Promise<void>((_, reject) => ctx.signal.addEventListener("abort", () => {
            reasons.push(String(ctx.signal.reason));
            reject(ctx.signal.reason as Error);
          }));
        }
        ctx.insert("done", ctx.attempt.attemptNumber);
      },
      { timeoutMs: 300, retryAttempts: 1, retryDelayMs: 10 },
    );
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf);
    try {
      const run = await client.wait((await client.startRun("timeouts", {})).runId);
      assert.equal(run.status, "SUCCEEDED");
      assert.equal(run.context.done, 2);
      assert.equal(reasons.length, 1);
      assert.equal(run.tasks[0]?.attempts[0]?.state, "TIMED_OUT");
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("a CPU-bound handler longer than the lease keeps its attempt: heartbeats live on their own thread", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    const wf = single("spinning", (ctx) => {
      const end = Date.now() + 3_000; // three lease timeouts
      while (Date.now() < end) {
        // Busy without yielding.
      }
      ctx.insert("spun", true);
    });
    await client.registerWorkflow(wf);
    const { worker, warnings } = startWorker(server, wf);
    try {
      const run = await client.wait((await client.startRun("spinning", {})).runId);
      assert.equal(run.status, "SUCCEEDED");
      assert.equal(run.tasks[0]?.attempts.length, 1, "no reassignment");
      assert.equal(worker.status.registrations, 1, "no reconnection");
      assert.deepEqual(warnings, []);
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("after a server restart the worker reconnects, reclaims its running attempt and its result is accepted", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    let entered = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const wf = single("reclaimed", async (ctx) => {
      entered++;
      await gate;
      ctx.insert("finished", true);
    });
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf);
    try {
      const { runId } = await client.startRun("reclaimed", {});
      await eventually(() => entered === 1 && worker.status.running === 1, "the attempt to start");
      await server.restart();
      await eventually(() => worker.status.connected && worker.status.registrations === 2, "the worker to register again");
      release();
      const run = await client.wait(runId);
      assert.equal(run.status, "SUCCEEDED");
      assert.equal(run.context.finished, true);
      assert.equal(entered, 1, "the handler ran once");
      assert.equal(run.tasks[0]?.attempts.length, 1, "the attempt was reclaimed, not re-run");
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("a result finished while the server is down is resent and accepted", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const wf = single("resent", async (ctx) => {
      await gate;
      ctx.insert("value", 99999999999999999999n);
    });
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf, { reconnectMinMs: 200, reconnectMaxMs: 300 });
    try {
      const { runId } = await client.startRun("resent", {});
      await eventually(() => worker.status.running === 1, "the attempt to start");
      await server.kill();
      release();
      await eventually(() => worker.status.unacknowledged === 1 && !worker.status.connected, "the result to wait for the server");
      await server.restart();
      const run = await client.wait(runId);
      assert.equal(run.status, "SUCCEEDED");
      assert.equal(run.context.value, 99999999999999999999n);
      assert.equal(run.tasks[0]?.attempts.length, 1);
      await eventually(() => worker.status.unacknowledged === 0, "the acknowledgement");
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("graceful shutdown lets running attempts finish and be acknowledged", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    const wf = single("draining", async (ctx) => {
      await new Promise((r) => setTimeout(r, 500));
      ctx.insert("drained", true);
    });
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf);
    const { runId } = await client.startRun("draining", {});
    await eventually(() => worker.status.running === 1, "the attempt to start");
    const report = await worker.shutdown({ deadlineMs: 10_000 });
    assert.deepEqual(report, { drained: true, cancelledAttempts: 0 });
    const run = await client.getRun(runId);
    assert.equal(run.status, "SUCCEEDED");
    assert.equal(run.tasks[0]?.attempts.length, 1);
  });
});

test("shutdown past its deadline cancels what still runs", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    const wf = single("stuck", async (ctx) => {
      await new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason as Error)));
    });
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf);
    await client.startRun("stuck", {});
    await eventually(() => worker.status.running === 1, "the attempt to start");
    const report = await worker.shutdown({ deadlineMs: 200 });
    assert.deepEqual(report, { drained: false, cancelledAttempts: 1 });
  });
});

test("capacity bounds the attempts running at once", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    let now = 0;
    let most = 0;
    const tasks = Array.from({ length: 6 }, (_, i) =>
      task({ id: `t${i}` }, async () => {
        now++;
        most = Math.max(most, now);
        await new Promise((r) => setTimeout(r, 100));
        now--;
      }),
    );
    const wf = workflow("bounded", tasks);
    await client.registerWorkflow(wf);
    const { worker } = startWorker(server, wf, { capacity: 2 });
    try {
      const run = await client.wait((await client.startRun("bounded", {})).runId);
      assert.equal(run.status, "SUCCEEDED");
      assert.ok(most <= 2, `at most 2 at once, saw ${most}`);
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("a worker that hears no heartbeat acknowledgement for a lease cancels its attempts and reconnects", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const client = server.client();
    const reasons: string[] = [];
    const wf = single(
      "lease",
      async (ctx) => {
        if (ctx.attempt.attemptNumber === 1) {
          await new Promise<void>((_, reject) => ctx.signal.addEventListener("abort", () => {
            reasons.push(String(ctx.signal.reason));
            reject(ctx.signal.reason as Error);
          }));
        }
        ctx.insert("attempt", ctx.attempt.attemptNumber);
      },
    );
    await client.registerWorkflow(wf);
    const { worker, warnings } = startWorker(server, wf);
    try {
      const { runId } = await client.startRun("lease", {});
      await eventually(() => worker.status.running === 1, "the attempt to start");
      server.pause();
      try {
        await eventually(() => reasons.length === 1, "the worker to give up its lease", 20_000);
      } finally {
        server.resume();
      }
      assert.match(reasons[0] ?? "", /lost its lease/);
      assert.ok(warnings.some((w) => w.includes("no heartbeat acknowledgement within the lease")));
      const run = await client.wait(runId);
      assert.equal(run.status, "SUCCEEDED");
      assert.ok((run.context.attempt as number) >= 2, "the task ran again");
      assert.ok(worker.status.registrations >= 2, "the worker registered again");
    } finally {
      await worker.shutdown({ deadlineMs: 5_000 });
    }
  });
});

test("results the server refuses end the attempt: over its context limit, or over its message limit (failed here, without retry)", { timeout: 60_000 }, async () => {
  await withServer(
    async (server) => {
      const client = server.client();
      const wf = workflow("refused", [
        task({ id: "over_context", retryAttempts: 2, retryDelayMs: 10 }, (ctx) => {
          ctx.insert("text", "x".repeat(2_000));
        }),
        task({ id: "over_message", retryAttempts: 2, retryDelayMs: 10 }, (ctx) => {
          ctx.insert("text", "y".repeat(5 * 1024 * 1024));
        }),
      ]);
      await client.registerWorkflow(wf);
      const { worker } = startWorker(server, wf);
      try {
        const run = await client.wait((await client.startRun("refused", {})).runId);
        assert.equal(run.status, "FAILED");
        const overContext = run.tasks.find((t) => t.taskId === "over_context");
        assert.equal(overContext?.state, "FAILED");
        assert.equal(overContext?.attempts.length, 1, "a refused result is not retried");
        assert.match(overContext?.error ?? "", /over the max_context_bytes limit of 1000 bytes/);
        const overMessage = run.tasks.find((t) => t.taskId === "over_message");
        assert.equal(overMessage?.attempts.length, 1);
        assert.match(overMessage?.error ?? "", /over the server's message limit of \d+ bytes by \d+/);
        await eventually(() => worker.status.unacknowledged === 0, "every result to be answered");
      } finally {
        await worker.shutdown({ deadlineMs: 5_000 });
      }
    },
    // The server's message limit is then gRPC's usual 4 MiB plus 64 KiB.
    { ...FAST, maxContextBytes: 1_000, maxDefinitionBytes: 100_000, maxRunContextBytes: 100_000 },
  );
});
