/**
 * The seed workflow (Cloacina's parallel-processing tutorial) on the
 * TypeScript SDK, end to end: a server (the one `--server` names, or a local
 * `tributary` process on a temporary SQLite file), a worker serving the nine
 * tasks, one run, and the per-category stats in the Rust example's format.
 *
 *   npm --prefix examples/typescript start -- --no-sleep
 *   npm --prefix examples/typescript start -- --server http://127.0.0.1:50051
 *   npm --prefix examples/typescript start -- --server URL --worker-only --handlers process_partition_1,process_partition_2,process_partition_3
 *
 * Results go to stdout, the run id and logs to stderr. The exit status is 0
 * only when the run SUCCEEDED (or, with --worker-only, when the worker
 * drained after SIGTERM/SIGINT).
 */

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createNodeClient } from "@tributary-dev/sdk/node";
import type { Client } from "@tributary-dev/sdk/node";
import { Worker } from "@tributary-dev/sdk/worker";
import { parallelProcessing } from "./followup.js";
import { info, warn } from "./log.js";
import { render } from "./report.js";
import type { AttemptTiming } from "./report.js";
import { setSleeps } from "./simulated.js";

const USAGE = `usage: main.js [--server URL | --database-url URL] [--no-sleep] [--capacity N] [--worker-only | --worker] [--handlers a,b,...]`;

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The server binary, found like the SDK's test harness. */
function serverBinary(): string {
  const candidates = [process.env.TRIBUTARY_BIN, join(REPO_ROOT, "target/release/tributary"), join(REPO_ROOT, "target/debug/tributary")].filter(
    (path): path is string => path !== undefined && path !== "",
  );
  const found = candidates.find((path) => existsSync(path));
  if (found === undefined) throw new Error(`no tributary binary: set TRIBUTARY_BIN or build it (looked at ${candidates.join(", ")})`);
  return found;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** A `tributary serve` process on a loopback port, stopped on exit. */
async function startLocalServer(databaseUrl: string | undefined): Promise<{ url: string; stop: () => Promise<void> }> {
  const directory = databaseUrl === undefined ? mkdtempSync(join(tmpdir(), "tributary-example-")) : undefined;
  const database = databaseUrl ?? `sqlite://${join(directory as string, "tributary.db")}`;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(serverBinary(), ["serve", "--listen", `127.0.0.1:${port}`, "--database-url", database, "--log-level", "warn"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  };
  const client = createNodeClient(url);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited with status ${child.exitCode}`);
    try {
      await client.listWorkflows();
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`the server did not answer within 30 s: ${String(error)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  info(`local server started url=${url} database=${database}`);
  return { url, stop };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      server: { type: "string" },
      "database-url": { type: "string" },
      "no-sleep": { type: "boolean", default: false },
      capacity: { type: "string", default: "3" },
      "worker-only": { type: "boolean", default: false },
      // The Rust examples' name for --worker-only.
      worker: { type: "boolean", default: false },
      handlers: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.server !== undefined && values["database-url"] !== undefined) throw new Error("--server and --database-url exclude each other");
  const capacity = Number(values.capacity);
  if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`--capacity must be a positive integer, got ${values.capacity}`);
  const sleeps = !values["no-sleep"];
  setSleeps(sleeps);

  const full = parallelProcessing();
  const served = values.handlers === undefined ? full.tasks : values.handlers.split(",").map((id) => id.trim()).filter((id) => id !== "").map((id) => {
    const found = full.task(id);
    if (found === undefined) throw new Error(`--handlers: no task ${JSON.stringify(id)} in ${full.name}; tasks: ${full.tasks.map((t) => t.options.id).join(", ")}`);
    return found;
  });

  const local = values.server === undefined ? await startLocalServer(values["database-url"]) : undefined;
  const url = values.server ?? (local as { url: string }).url;
  try {
    const client = createNodeClient(url);
    const registered = await client.registerWorkflow(full);
    info(`workflow registered workflow=${full.name} version=${registered.version}`);

    const attempts: AttemptTiming[] = [];
    const handlers = new Map(
      served.map((t) => [
        full.handlerName(t),
        async (ctx: Parameters<typeof t.run>[0]) => {
          const started = performance.now();
          let succeeded = false;
          try {
            await t.run(ctx);
            succeeded = true;
          } finally {
            attempts.push({ taskId: t.options.id, started, finished: performance.now(), succeeded });
          }
        },
      ]),
    );
    const worker = new Worker({
      serverUrl: url,
      name: `${full.name} typescript example (pid ${process.pid})`,
      capacity,
      handlers,
      logger: (level, message) => {
        if (level === "warn" || level === "error") warn(message);
      },
    });
    try {
      await worker.waitUntilConnected({ timeoutMs: 10_000 });
    } catch (error) {
      await worker.abort();
      throw error;
    }

    if (values["worker-only"] || values.worker) {
      info(`serving ${[...handlers.keys()].join(", ")} until SIGTERM or SIGINT`);
      const report = await worker.runUntilSignal({ deadlineMs: 30_000 });
      return report.drained ? 0 : 1;
    }
    return await runOnce(client, worker, full.name, registered.version, url, attempts, sleeps);
  } finally {
    await local?.stop();
  }
}

async function runOnce(
  client: Client,
  worker: Worker,
  name: string,
  version: string,
  url: string,
  attempts: AttemptTiming[],
  sleeps: boolean,
): Promise<number> {
  const clock = performance.now();
  const { runId } = await client.startRun(name, {});
  process.stderr.write(`Started run ${runId} of ${name} on ${url}; follow it with: tributary run watch ${runId} --server ${url}\n`);
  const run = await client.wait(runId);
  const elapsedMs = performance.now() - clock;
  const report = await worker.shutdown({ deadlineMs: 10_000 });
  if (!report.drained) warn(`the worker did not drain cleanly: ${JSON.stringify(report)}`);
  info(`run finished run_id=${run.id} status=${run.status}`);
  process.stdout.write(render({ version, run, elapsedMs, attempts }, sleeps));
  return run.status === "SUCCEEDED" ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
