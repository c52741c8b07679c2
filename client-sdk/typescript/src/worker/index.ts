/**
 * The worker (Node only): an executor that runs task handlers for the
 * server.
 *
 * Two threads share the work. A `worker_thread` owns the `Connect` stream
 * (gRPC over HTTP/2): registration, heartbeats, results kept until
 * acknowledged, reconnection with backoff, value references. The main
 * thread runs the handlers, as ordinary async functions with everything
 * they close over. A handler that keeps the CPU busy without yielding
 * delays the other handlers, never the heartbeats, so the lease holds
 * however long it runs.
 *
 * ```ts
 * const worker = new Worker({ serverUrl: "http://127.0.0.1:50051", workflows: [numbers] });
 * await worker.waitUntilConnected();
 * // ...
 * await worker.runUntilSignal(); // SIGTERM/SIGINT: drain, then resolve
 * ```
 *
 * @module
 */

import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { Worker as Thread } from "node:worker_threads";
import { Context } from "../context.js";
import { TaskError } from "../errors.js";
import { isValidHandler } from "../validate.js";
import type { Handler, Workflow } from "../workflow.js";
import type { AttemptMessage, FromStream, LogLevel, Outcome, ShutdownReport, StreamConfig, ToStream, WorkerStatus } from "./messages.js";

export type { LogLevel, ShutdownReport, WorkerStatus } from "./messages.js";
export { ValueCache } from "./value-cache.js";
export type { ValueName } from "./value-cache.js";
export { References } from "./references.js";
export type { AssignInput, Resolution } from "./references.js";

/** Receives the worker's log lines. */
export type Logger = (level: LogLevel, message: string) => void;

/** The default value cache: 64 MiB of context values kept to be referenced instead of sent. */
export const DEFAULT_VALUE_CACHE_BYTES = 64 * 1024 * 1024;

/** Options of a {@link Worker}. */
export interface WorkerOptions {
  /** The server's URL, e.g. `http://127.0.0.1:50051`. */
  serverUrl: string;
  /** The namespace to serve (default `default`). */
  namespace?: string;
  /** An API key (role executor), sent as `authorization: Bearer <key>` on the stream. */
  apiKey?: string;
  /** A name shown by ListExecutors (default: host name and process id). */
  name?: string;
  /** The stable id of this worker across reconnects (default: a new UUID). */
  instanceId?: string;
  /** How many attempts run at once (default 4). */
  capacity?: number;
  /** Labels shown by ListExecutors; a task with `requiredLabels` is assigned only to workers that have every one of them. */
  labels?: Record<string, string>;
  /** Workflows whose every task this worker serves. */
  workflows?: readonly Workflow[];
  /** More handlers, by handler name. */
  handlers?: Record<string, Handler> | ReadonlyMap<string, Handler>;
  /** Bytes of context values kept to be referenced instead of sent (default 64 MiB; 0 turns references off). */
  valueCacheBytes?: number;
  /** Heartbeat interval instead of the server's (only to test lease handling). */
  heartbeatIntervalMs?: number;
  /** First reconnection delay (default 50 ms); it doubles, with jitter, up to `reconnectMaxMs`. */
  reconnectMinMs?: number;
  /** Longest reconnection delay (default 5 s, and never above a third of the lease). */
  reconnectMaxMs?: number;
  /** How long a cancelled handler may take to return before its attempt is reported failed anyway (default 5 s). */
  cancelGraceMs?: number;
  /** Where log lines go (default: warnings and errors to stderr). */
  logger?: Logger;
}

/** The reason an attempt's `ctx.signal` is aborted with. */
export class CancelledError extends Error {
  /**
   * @param reason - the server's reason, or the worker's
   */
  constructor(reason: string) {
    super(`cancelled: ${reason}`);
    this.name = "CancelledError";
  }
}

interface Running {
  controller: AbortController;
  cancelReason: string | undefined;
  graceTimer: NodeJS.Timeout | undefined;
  reported: boolean;
}

const defaultLogger: Logger = (level, message) => {
  if (level === "warn" || level === "error") process.stderr.write(`tributary worker ${level}: ${message}\n`);
};

function threadUrl(): URL {
  // Under a TypeScript loader (tsx) this module is a .ts file, and so is its sibling.
  const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  return new URL(`./stream-thread${extension}`, import.meta.url);
}

/**
 * An executor: connects to the server on construction and serves its
 * handlers until {@link Worker.shutdown} or {@link Worker.abort}.
 */
export class Worker {
  /** The worker's stable instance id. */
  readonly instanceId: string;
  private readonly handlers: Map<string, Handler>;
  private readonly thread: Thread;
  private readonly running = new Map<string, Running>();
  private readonly logger: Logger;
  private readonly cancelGraceMs: number;
  private current: WorkerStatus = { connected: false, registrations: 0, executorId: "", running: 0, unacknowledged: 0 };
  private statusWaiters: (() => void)[] = [];
  private finished: Promise<ShutdownReport>;
  private exited: Promise<void>;
  private shutdownStarted = false;

  /**
   * Starts the worker: it connects, and keeps reconnecting, on its own.
   *
   * @param options - the server, the handlers and settings
   * @throws `Error` when no handler is given or a handler name is invalid
   */
  constructor(options: WorkerOptions) {
    this.handlers = new Map();
    for (const workflow of options.workflows ?? []) {
      for (const [name, handler] of workflow.handlers()) this.handlers.set(name, handler);
    }
    const extra: Iterable<[string, Handler]> =
      options.handlers instanceof Map
        ? (options.handlers as ReadonlyMap<string, Handler>).entries()
        : Object.entries((options.handlers ?? {}) as Record<string, Handler>);
    for (const [name, handler] of extra) this.handlers.set(name, handler);
    if (this.handlers.size === 0) throw new Error("a worker needs at least one handler");
    for (const name of this.handlers.keys()) {
      if (!isValidHandler(name)) throw new Error(`invalid handler name ${JSON.stringify(name)}`);
    }
    this.instanceId = options.instanceId ?? randomUUID();
    this.logger = options.logger ?? defaultLogger;
    this.cancelGraceMs = options.cancelGraceMs ?? 5_000;
    const config: StreamConfig = {
      serverUrl: options.serverUrl,
      namespace: options.namespace ?? "default",
      apiKey: options.apiKey,
      name: options.name ?? `${hostname()}/${process.pid}`,
      instanceId: this.instanceId,
      handlers: [...this.handlers.keys()].sort(),
      capacity: Math.max(0, Math.floor(options.capacity ?? 4)),
      labels: { ...(options.labels ?? {}) },
      valueCacheBytes: Math.max(0, Math.floor(options.valueCacheBytes ?? DEFAULT_VALUE_CACHE_BYTES)),
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      reconnectMinMs: options.reconnectMinMs ?? 50,
      reconnectMaxMs: Math.max(options.reconnectMaxMs ?? 5_000, options.reconnectMinMs ?? 50),
    };
    this.thread = new Thread(threadUrl(), { workerData: config });
    let resolveFinished: (report: ShutdownReport) => void = () => {};
    this.finished = new Promise((resolve) => (resolveFinished = resolve));
    this.exited = new Promise((resolve) => this.thread.once("exit", () => resolve()));
    this.thread.on("message", (message: FromStream) => {
      switch (message.type) {
        case "attempt":
          this.startAttempt(message.attempt);
          break;
        case "cancel":
          this.cancel(message.attemptId, message.reason);
          break;
        case "status":
          this.current = message.status;
          for (const waiter of this.statusWaiters.splice(0)) waiter();
          break;
        case "log":
          this.logger(message.level, message.message);
          break;
        case "finished":
          resolveFinished(message.report);
          break;
      }
    });
    this.thread.on("error", (error) => {
      this.logger("error", `the stream thread failed: ${error.stack ?? error.message}`);
      resolveFinished({ drained: false, cancelledAttempts: this.running.size });
    });
  }

  /** What the worker is doing now. */
  get status(): WorkerStatus {
    return { ...this.current };
  }

  /**
   * Resolves once the worker is registered with the server.
   *
   * @param options - how long to wait (default 10 s)
   * @throws `Error` when it did not register in time
   */
  async waitUntilConnected(options: { timeoutMs?: number } = {}): Promise<void> {
    await this.waitForStatus((status) => status.connected, options.timeoutMs ?? 10_000, "register with the server");
  }

  /**
   * Resolves once `predicate` holds for the worker's status.
   *
   * @param predicate - the condition
   * @param timeoutMs - how long to wait
   * @param what - what is awaited, for the error message
   * @throws `Error` after `timeoutMs`
   */
  async waitForStatus(predicate: (status: WorkerStatus) => boolean, timeoutMs = 10_000, what = "reach the status"): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.current)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the worker did not ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.statusWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * Stops gracefully: asks for no more work, lets running attempts finish
   * and their results be acknowledged, and cancels whatever still runs when
   * the deadline passes.
   *
   * @param options - the deadline (default 30 s)
   * @returns whether everything drained
   */
  async shutdown(options: { deadlineMs?: number } = {}): Promise<ShutdownReport> {
    if (!this.shutdownStarted) {
      this.shutdownStarted = true;
      this.post({ type: "shutdown", deadlineMs: options.deadlineMs ?? 30_000 });
    }
    const report = await this.finished;
    const exited = await Promise.race([this.exited.then(() => true), delay(2_000).then(() => false)]);
    if (!exited) await this.thread.terminate();
    return report;
  }

  /**
   * Stops at once, as a crash would: the stream closes, running attempts
   * are abandoned unreported, and the server re-queues them.
   */
  async abort(): Promise<void> {
    for (const running of this.running.values()) running.controller.abort(new CancelledError("the worker was aborted"));
    this.running.clear();
    await this.thread.terminate();
  }

  /**
   * Serves until SIGTERM or SIGINT, then shuts down gracefully.
   *
   * @param options - the shutdown deadline (default 30 s)
   * @returns the shutdown's report
   */
  async runUntilSignal(options: { deadlineMs?: number } = {}): Promise<ShutdownReport> {
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off("SIGTERM", stop);
        process.off("SIGINT", stop);
        resolve();
      };
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
    });
    return this.shutdown(options);
  }

  private post(message: ToStream): void {
    this.thread.postMessage(message);
  }

  private report(attemptId: string, outcome: Outcome): void {
    const running = this.running.get(attemptId);
    if (running === undefined || running.reported) return;
    running.reported = true;
    clearTimeout(running.graceTimer);
    this.running.delete(attemptId);
    this.post({ type: "result", attemptId, outcome });
  }

  private cancel(attemptId: string, reason: string): void {
    const running = this.running.get(attemptId);
    if (running === undefined || running.cancelReason !== undefined) return;
    running.cancelReason = reason;
    running.controller.abort(new CancelledError(reason));
    running.graceTimer = setTimeout(
      () => this.report(attemptId, { kind: "failed", message: `cancelled: ${reason} (the handler did not return within ${this.cancelGraceMs} ms)`, nonRetryable: false }),
      this.cancelGraceMs,
    );
  }

  private startAttempt(attempt: AttemptMessage): void {
    if (this.running.has(attempt.attemptId)) return;
    const controller = new AbortController();
    const running: Running = { controller, cancelReason: undefined, graceTimer: undefined, reported: false };
    this.running.set(attempt.attemptId, running);
    const handler = this.handlers.get(attempt.handler);
    if (handler === undefined) {
      this.report(attempt.attemptId, {
        kind: "failed",
        message: `this worker has no handler ${JSON.stringify(attempt.handler)}`,
        nonRetryable: true,
      });
      return;
    }
    let context: Context;
    try {
      context = Context.fromJson(attempt.inputJson, controller.signal, {
        runId: attempt.runId,
        workflowName: attempt.workflowName,
        taskId: attempt.taskId,
        attemptId: attempt.attemptId,
        attemptNumber: attempt.attemptNumber,
        handler: attempt.handler,
        deadlineUnixMs: attempt.deadlineUnixMs,
        mapIndex: attempt.mapIndex,
      });
    } catch (error) {
      this.report(attempt.attemptId, { kind: "failed", message: (error as Error).message, nonRetryable: true });
      return;
    }
    // A macrotask later, so that a synchronous handler starts after this message is handled.
    setImmediate(() => {
      Promise.resolve()
        .then(() => handler(context))
        .then(
          () => {
            if (running.cancelReason !== undefined) {
              this.report(attempt.attemptId, { kind: "failed", message: `cancelled: ${running.cancelReason}`, nonRetryable: false });
              return;
            }
            let delta: { set: string; removed: string[] };
            try {
              delta = context.deltaJson();
            } catch (error) {
              this.report(attempt.attemptId, { kind: "failed", message: `the context cannot be encoded: ${String(error)}`, nonRetryable: true });
              return;
            }
            this.report(attempt.attemptId, { kind: "completed", setJson: delta.set, removedKeys: delta.removed });
          },
          (error: unknown) => {
            if (running.cancelReason !== undefined) {
              this.report(attempt.attemptId, { kind: "failed", message: `cancelled: ${running.cancelReason}`, nonRetryable: false });
            } else {
              this.report(attempt.attemptId, failure(error));
            }
          },
        );
    });
  }
}

function failure(error: unknown): Outcome {
  if (error instanceof TaskError) return { kind: "failed", message: error.message, nonRetryable: !error.retryable };
  if (error instanceof Error) return { kind: "failed", message: `${error.name}: ${error.message}`, nonRetryable: false };
  return { kind: "failed", message: `the handler threw ${String(error)}`, nonRetryable: false };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
