/**
 * A small benchmark of the TypeScript worker against a real server:
 *
 * - a chain of N no-op tasks: dispatch latency p50/p99, the handler entry of
 *   task k+1 minus the handler return of task k, on the worker's clock;
 * - a fan-out of N no-op tasks: tasks per second through one worker process.
 *
 * `node dist/bench/bench.js [--chain 10000] [--fanout 10000] [--capacity 256] [--server URL]`
 * (without --server it starts `tributary` on a temporary SQLite file, found
 * like the tests' harness).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createNodeClient } from "../node.js";
import { task, workflow } from "../workflow.js";
import type { Task } from "../workflow.js";
import { Worker } from "../worker/index.js";
import { TestServer } from "../test/harness.js";

const { values } = parseArgs({
  options: {
    chain: { type: "string", default: "10000" },
    fanout: { type: "string", default: "10000" },
    capacity: { type: "string", default: "256" },
    server: { type: "string" },
  },
});

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function main(): Promise<void> {
  const local = values.server === undefined ? await TestServer.start() : undefined;
  const url = values.server ?? (local as TestServer).url;
  try {
    const client = createNodeClient(url);
    const chainLength = Number(values.chain);
    const fanout = Number(values.fanout);
    const capacity = Number(values.capacity);

    const entered = new Float64Array(chainLength);
    const returned = new Float64Array(chainLength);
    const chainTasks: Task[] = [];
    for (let k = 0; k < chainLength; k++) {
      chainTasks.push(
        task({ id: `t${k}`, dependencies: k === 0 ? [] : [`t${k - 1}`], handler: "bench.chain" }, () => {}),
      );
    }
    // One handler serves every task (the worker's, below); the attempt's task id says which.
    const chainWorkflow = workflow("bench_chain", chainTasks);
    let fanoutFirst = Infinity;
    let fanoutLast = 0;
    const fanoutTasks = Array.from({ length: fanout }, (_, k) => task({ id: `f${k}`, handler: "bench.fanout" }, () => {}));
    const fanoutWorkflow = workflow("bench_fanout", fanoutTasks);
    const worker = new Worker({
      serverUrl: url,
      capacity,
      valueCacheBytes: 0,
      handlers: {
        "bench.chain": (ctx) => {
          const k = Number(ctx.attempt.taskId.slice(1));
          entered[k] = performance.now();
          returned[k] = performance.now();
        },
        "bench.fanout": () => {
          const now = performance.now();
          fanoutFirst = Math.min(fanoutFirst, now);
          fanoutLast = Math.max(fanoutLast, now);
        },
      },
    });
    await worker.waitUntilConnected();

    if (chainLength > 0) {
      await client.registerWorkflow(chainWorkflow);
      const started = performance.now();
      const run = await client.wait((await client.startRun("bench_chain", {})).runId);
      const wall = performance.now() - started;
      const latencies: number[] = [];
      for (let k = 1; k < chainLength; k++) latencies.push((entered[k] as number) - (returned[k - 1] as number));
      latencies.sort((a, b) => a - b);
      console.log(
        `chain of ${chainLength}: ${run.status}; dispatch latency p50 ${percentile(latencies, 50).toFixed(2)} ms, ` +
          `p99 ${percentile(latencies, 99).toFixed(2)} ms, max ${(latencies.at(-1) ?? NaN).toFixed(2)} ms; ${(wall / 1000).toFixed(1)} s in all`,
      );
    }
    if (fanout > 0) {
      await client.registerWorkflow(fanoutWorkflow);
      const started = performance.now();
      const run = await client.wait((await client.startRun("bench_fanout", {})).runId);
      const wall = performance.now() - started;
      const span = fanoutLast - fanoutFirst;
      console.log(
        `fan-out of ${fanout} (capacity ${capacity}): ${run.status}; ${((fanout / span) * 1000).toFixed(0)} tasks/s ` +
          `from the first handler entry to the last (${(span / 1000).toFixed(2)} s), ${((fanout / wall) * 1000).toFixed(0)} tasks/s from StartRun to the run seen finished`,
      );
    }
    await worker.shutdown({ deadlineMs: 10_000 });
  } finally {
    await local?.stop();
  }
}

await main();
