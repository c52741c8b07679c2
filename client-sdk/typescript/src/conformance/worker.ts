/**
 * The conformance worker of conformance/SPEC.md: every `conformance.*`
 * handler, the JSON-lines log, the environment variables, and a graceful
 * drain on SIGTERM/SIGINT.
 *
 * Run: `node client-sdk/typescript/dist/conformance/worker.js`.
 *
 * @module
 */

import { closeSync, openSync, writeSync } from "node:fs";
import { Context, ContextError } from "../context.js";
import { NonRetryableError, TaskError } from "../errors.js";
import type { JsonObject, JsonValue } from "../json.js";
import { utf8Length } from "../worker/value-cache.js";
import { Worker } from "../worker/index.js";
import type { Handler } from "../workflow.js";

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) {
    process.stderr.write(`conformance worker: ${name} is not set\n`);
    process.exit(2);
  }
  return value;
};

const logPath = process.env.CONFORMANCE_LOG;
const logFd = logPath ? openSync(logPath, "a") : undefined;

/** Appends one line with one write on an O_APPEND file, so lines of concurrent attempts never interleave. */
function log(event: string, ctx: Context): void {
  if (logFd === undefined) return;
  const line = `${JSON.stringify({ event, handler: ctx.attempt.handler, attempt_id: ctx.attempt.attemptId, pid: process.pid })}\n`;
  writeSync(logFd, line);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort(): void {
      clearTimeout(timer);
      reject(signal.reason as Error);
    }
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function integer(ctx: Context, key: string): number {
  const value = ctx.get(key, "number");
  if (!Number.isInteger(value) || value < 0) throw new NonRetryableError(`${key} must be a non-negative integer, got ${value}`);
  return value;
}

const handlers: Record<string, Handler> = {
  echo(ctx) {
    if (!ctx.contains("echo_in")) throw new NonRetryableError('echo: the input has no key "echo_in"');
    ctx.upsert("echo_out", ctx.get("echo_in"));
  },
  map_echo(ctx) {
    if (!ctx.contains("map_element")) throw new NonRetryableError('map_echo: the input has no key "map_element"');
    const inputIndex = ctx.contains("map_index") ? ctx.get("map_index", "number") : undefined;
    const assignedIndex = ctx.attempt.mapIndex;
    if (inputIndex === undefined || inputIndex !== assignedIndex) {
      throw new NonRetryableError(`map_echo: the input's map_index is ${inputIndex}, the attempt's ${assignedIndex}`);
    }
    ctx.upsert("map_echo_out", ctx.get("map_element"));
  },
  fail_once(ctx) {
    const attempt = ctx.attempt.attemptNumber;
    if (attempt === 1) throw new TaskError("fail_once: attempt 1");
    ctx.upsert("fail_once_attempt", attempt);
  },
  fail_always(ctx) {
    throw new TaskError(`fail_always: attempt ${ctx.attempt.attemptNumber}`);
  },
  fail_fatal() {
    throw new NonRetryableError("fail_fatal");
  },
  throw() {
    throw new Error("throw: boom");
  },
  async sleep(ctx) {
    const ms = integer(ctx, "sleep_ms");
    await sleep(ms, ctx.signal);
    ctx.upsert("slept_ms", ms);
  },
  spin(ctx) {
    const ms = integer(ctx, "spin_ms");
    const end = Date.now() + ms;
    while (Date.now() < end) {
      // Busy on purpose: the handler never yields to the event loop.
    }
    ctx.upsert("spun_ms", ms);
  },
  async wait_cancel(ctx) {
    try {
      await sleep(120_000, ctx.signal);
    } catch (error) {
      if (ctx.signal.aborted) log("cancelled", ctx);
      throw error;
    }
    throw new TaskError("wait_cancel: never cancelled");
  },
  big(ctx) {
    ctx.upsert("big", "x".repeat(integer(ctx, "big_bytes")));
  },
  measure(ctx) {
    const measured: Record<string, number> = {};
    for (const key of ctx.keys()) {
      if (key === "echo_in") continue;
      measured[key] = utf8Length(ctx.getJson(key));
    }
    ctx.upsert("measured", measured);
  },
  vector(ctx) {
    const input = ctx.get("vector_input", "object");
    const ops = ctx.get("vector_ops", "array");
    const subject = Context.fromObject(input);
    const errors: (string | null)[] = [];
    for (const op of ops) {
      const { op: name, key, value } = op as { op: string; key: string; value: JsonValue };
      try {
        if (name === "insert") subject.insert(key, value);
        else if (name === "update") subject.update(key, value);
        else if (name === "upsert") subject.upsert(key, value);
        else if (name === "remove") subject.remove(key);
        else throw new NonRetryableError(`vector: unknown op ${JSON.stringify(name)}`);
        errors.push(null);
      } catch (error) {
        if (!(error instanceof ContextError)) throw error;
        errors.push(error.kind);
      }
    }
    const delta = subject.delta();
    const result: JsonObject = { data: subject.data(), set: delta.set, removed: delta.removed, errors };
    ctx.upsert("vector_result", result);
  },
};

const logged: Record<string, Handler> = {};
for (const [name, handler] of Object.entries(handlers)) {
  logged[`conformance.${name}`] = async (ctx) => {
    log("start", ctx);
    try {
      await handler(ctx);
    } finally {
      log("end", ctx);
    }
  };
}

// `key=value,key=value`; unset or empty means no labels.
const labels: Record<string, string> = {};
for (const label of (process.env.CONFORMANCE_LABELS ?? "").split(",").filter((l) => l !== "")) {
  const at = label.indexOf("=");
  if (at < 0) labels[label] = "";
  else labels[label.slice(0, at)] = label.slice(at + 1);
}

const worker = new Worker({
  serverUrl: env("TRIBUTARY_SERVER"),
  namespace: env("TRIBUTARY_NAMESPACE", "default"),
  name: env("CONFORMANCE_WORKER_NAME", `typescript-conformance/${process.pid}`),
  capacity: Number(env("CONFORMANCE_CAPACITY", "4")),
  valueCacheBytes: Number(env("CONFORMANCE_VALUE_CACHE_BYTES", "0")),
  labels,
  handlers: logged,
  logger: (level, message) => {
    // TRIBUTARY_LOG=debug shows the worker's debug lines too.
    if (level !== "debug" || process.env.TRIBUTARY_LOG === "debug") process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
  },
});
const report = await worker.runUntilSignal({ deadlineMs: 30_000 });
process.stderr.write(`conformance worker stopped: drained=${report.drained} cancelled=${report.cancelledAttempts}\n`);
if (logFd !== undefined) closeSync(logFd);
process.exit(0);
