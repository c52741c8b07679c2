/**
 * The stream thread of a {@link Worker}: the one owner of the executor's
 * `Connect` stream. It registers, heartbeats at the server's interval,
 * forwards assignments (with referenced values resolved) and cancellations
 * to the main thread, keeps results until acknowledged, and on a broken
 * stream or a lease without acknowledgements reconnects with jittered
 * backoff, listing the attempts it holds and resending their results.
 * Running here, away from the handlers, heartbeats go on while a handler
 * keeps the main thread busy.
 *
 * @module
 */

import { parentPort, workerData } from "node:worker_threads";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WideWindowSessionManager, http2Options } from "../http2.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ExecutorService, ResultDisposition } from "../gen/index.js";
import type { Assign, ConnectRequestSchema, ResultAck, Values } from "../gen/index.js";
import { splitObject } from "../json.js";
import { References } from "./references.js";
import type { Resolution } from "./references.js";
import { ValueCache, utf8Length } from "./value-cache.js";
import type { FromStream, LogLevel, Outcome, StreamConfig, ToStream, WorkerStatus } from "./messages.js";

type Request = MessageInitShape<typeof ConnectRequestSchema>;

/** The message limit assumed until the server states its own (gRPC's usual). */
const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** How long a finishing worker waits for the server to close the stream. */
const CLOSE_GRACE_MS = 1_000;
/** The longest failure message the server keeps. */
const MAX_FAILURE_BYTES = 65_536;

/** An async iterable fed by `push`: the request side of the stream. */
class RequestQueue implements AsyncIterable<Request> {
  private items: Request[] = [];
  private head = 0;
  private waiting: ((result: IteratorResult<Request>) => void) | undefined;
  private closed = false;

  push(item: Request): void {
    if (this.closed) return;
    const waiting = this.waiting;
    if (waiting) {
      this.waiting = undefined;
      waiting({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  close(): void {
    this.closed = true;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<Request> {
    return {
      next: (): Promise<IteratorResult<Request>> => {
        if (this.head < this.items.length) {
          const value = this.items[this.head++] as Request;
          if (this.head > 1024 && this.head * 2 > this.items.length) {
            this.items = this.items.slice(this.head);
            this.head = 0;
          }
          return Promise.resolve({ value, done: false });
        }
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiting = resolve));
      },
      return: (): Promise<IteratorResult<Request>> => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
      throw: (error: unknown): Promise<IteratorResult<Request>> => {
        this.close();
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      },
    };
  }
}

interface Unacked {
  runId: string;
  request: Request;
  setJson: string | undefined;
}

interface Session {
  queue: RequestQueue;
  abort: AbortController;
  registered: boolean;
  closing: boolean;
}

interface Drain {
  deadlinePassed: boolean;
  cancelled: number;
  timer: NodeJS.Timeout;
}

class StreamDriver {
  private readonly running = new Map<string, { runId: string }>();
  private readonly unacked = new Map<string, Unacked>();
  private readonly cache: ValueCache;
  private readonly references: References;
  private session: Session | undefined;
  private drain: Drain | undefined;
  private maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  private leaseMs: number | undefined;
  private wake: (() => void) | undefined;
  private readonly status: WorkerStatus = { connected: false, registrations: 0, executorId: "", running: 0, unacknowledged: 0 };

  constructor(
    private readonly config: StreamConfig,
    private readonly post: (message: FromStream) => void,
  ) {
    this.cache = new ValueCache(config.valueCacheBytes);
    this.references = new References(this.cache);
  }

  handle(message: ToStream): void {
    switch (message.type) {
      case "result":
        this.onResult(message.attemptId, message.outcome);
        break;
      case "shutdown":
        this.onShutdown(message.deadlineMs);
        break;
    }
  }

  async run(): Promise<void> {
    let backoff = this.config.reconnectMinMs;
    while (!this.drainComplete()) {
      await this.runSession(() => (backoff = this.config.reconnectMinMs));
      this.publish({ connected: false });
      if (this.drainComplete()) break;
      const cap = Math.min(this.config.reconnectMaxMs, this.leaseMs === undefined ? Infinity : this.leaseMs / 3);
      const wait = Math.min(backoff, cap) * (0.5 + Math.random() * 0.5);
      backoff = Math.min(backoff * 2, cap);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.wake = done;
      });
      this.wake = undefined;
    }
    const drain = this.drain;
    if (drain) clearTimeout(drain.timer);
    this.post({
      type: "finished",
      report: { drained: drain ? !drain.deadlinePassed : true, cancelledAttempts: drain?.cancelled ?? 0 },
    });
  }

  private log(level: LogLevel, message: string): void {
    this.post({ type: "log", level, message });
  }

  private publish(change: Partial<WorkerStatus>): void {
    Object.assign(this.status, change, { running: this.running.size, unacknowledged: this.unacked.size });
    this.post({ type: "status", status: { ...this.status } });
  }

  private send(request: Request): void {
    const session = this.session;
    if (session?.registered) session.queue.push(request);
  }

  /** One stream: connect, register, serve until it breaks or the drain is complete. */
  private async runSession(registered: () => void): Promise<void> {
    const manager = new WideWindowSessionManager(this.config.serverUrl, {}, http2Options(this.config.serverUrl));
    const transport = createGrpcTransport({ baseUrl: this.config.serverUrl, sessionManager: manager });
    const client = createClient(ExecutorService, transport);
    const session: Session = { queue: new RequestQueue(), abort: new AbortController(), registered: false, closing: false };
    this.session = session;
    // The server forgets what a broken stream was given or asked for.
    this.cache.clear();
    for (const attemptId of this.references.clear()) {
      this.onResult(attemptId, { kind: "failed", message: "the stream broke while fetching referenced values", nonRetryable: false });
    }
    const held = [...new Set([...this.running.keys(), ...this.unacked.keys()])].sort();
    session.queue.push({
      message: {
        case: "register",
        value: {
          name: this.config.name,
          instanceId: this.config.instanceId,
          handlers: this.config.handlers,
          maxConcurrentAttempts: this.config.capacity,
          labels: this.config.labels,
          heldAttemptIds: held,
          valueCacheBytes: BigInt(this.config.valueCacheBytes),
        },
      },
    });
    let heartbeat: NodeJS.Timeout | undefined;
    let closeTimer: NodeJS.Timeout | undefined;
    try {
      const responses = client.connect(session.queue, {
        headers: {
          "x-tributary-namespace": this.config.namespace,
          ...(this.config.apiKey === undefined ? {} : { authorization: `Bearer ${this.config.apiKey}` }),
        },
        signal: session.abort.signal,
      });
      for await (const response of responses) {
        const message = response.message;
        if (!session.registered) {
          if (message.case !== "registered") {
            this.log("warn", `expected Registered first, got ${message.case ?? "an empty message"}`);
            return;
          }
          const value = message.value;
          session.registered = true;
          registered();
          if (value.maxMessageBytes > 0n) this.maxMessageBytes = Number(value.maxMessageBytes);
          const leaseMs = Math.max(1, Number(value.leaseTimeoutMs));
          this.leaseMs = leaseMs;
          this.publish({ connected: true, registrations: this.status.registrations + 1, executorId: value.executorId });
          this.log("debug", `registered as ${value.executorId} holding ${held.length} attempt(s)`);
          if (this.drain) this.send(capacityZero());
          for (const unacked of this.unacked.values()) this.send(unacked.request);
          const interval = this.config.heartbeatIntervalMs ?? Math.max(1, Number(value.heartbeatIntervalMs));
          let lastAck = Date.now();
          session.queue.push({ message: { case: "heartbeat", value: {} } });
          heartbeat = setInterval(() => {
            if (Date.now() - lastAck > leaseMs) {
              this.log("warn", "no heartbeat acknowledgement within the lease; cancelling attempts and reconnecting");
              this.cancelAll("the worker lost its lease on the server");
              session.abort.abort();
              return;
            }
            this.send({ message: { case: "heartbeat", value: {} } });
          }, interval);
          this.onHeartbeatAck = () => (lastAck = Date.now());
        } else {
          switch (message.case) {
            case "heartbeatAck":
              this.onHeartbeatAck();
              break;
            case "assign":
              this.onAssign(message.value);
              break;
            case "cancel":
              this.onCancel(message.value.attemptId, message.value.reason);
              break;
            case "resultAck":
              this.onAck(message.value);
              break;
            case "values":
              this.onValues(message.value);
              break;
            case "forgetRun":
              this.cache.forgetRun(message.value.runId);
              break;
            default:
              break;
          }
        }
        if (!session.closing && this.drainComplete()) {
          // End the request side so that what was queued is delivered, and
          // give the server a moment to close its side.
          session.closing = true;
          session.queue.close();
          closeTimer = setTimeout(() => session.abort.abort(), CLOSE_GRACE_MS);
        }
      }
    } catch (error) {
      if (!session.closing) this.log("debug", `the stream ended: ${(error as Error).message}`);
    } finally {
      clearInterval(heartbeat);
      clearTimeout(closeTimer);
      this.onHeartbeatAck = () => {};
      session.queue.close();
      this.session = undefined;
      manager.abort();
    }
  }

  private onHeartbeatAck: () => void = () => {};

  /** Re-checks the drain after a change made outside the stream's loop. */
  private checkDrain(): void {
    if (!this.drainComplete()) return;
    const session = this.session;
    if (session === undefined) {
      this.wake?.();
    } else if (!session.closing) {
      session.closing = true;
      session.queue.close();
      setTimeout(() => session.abort.abort(), CLOSE_GRACE_MS).unref();
    }
  }

  private onAssign(assign: Assign): void {
    const attemptId = assign.attemptId;
    if (this.running.has(attemptId) || this.unacked.has(attemptId)) return; // reclaimed: never run twice
    this.running.set(attemptId, { runId: assign.runId });
    this.send({ message: { case: "started", value: { attemptId } } });
    this.publish({});
    const resolution = this.references.assign({
      runId: assign.runId,
      attemptId,
      inputContextJson: assign.inputContextJson,
      inlineValues: assign.inlineValues,
      references: assign.references,
    });
    this.resolved(resolution, assign);
  }

  private resolved(resolution: Resolution, assign?: Assign): void {
    switch (resolution.kind) {
      case "ready":
        if (assign) this.startAttempt(assign, resolution.inputJson);
        else this.startPending(resolution.attemptId, resolution.inputJson);
        break;
      case "fetch":
        this.log("debug", `fetching ${resolution.refs.length} referenced value(s) of run ${resolution.runId} for attempt ${resolution.attemptId}`);
        this.send({ message: { case: "fetchValues", value: { runId: resolution.runId, refs: resolution.refs } } });
        if (assign) this.waitingAssigns.set(assign.attemptId, assign);
        break;
      case "failed":
        this.waitingAssigns.delete(resolution.attemptId);
        this.onResult(resolution.attemptId, { kind: "failed", message: resolution.message, nonRetryable: false });
        break;
    }
  }

  private readonly waitingAssigns = new Map<string, Assign>();

  private startPending(attemptId: string, inputJson: string): void {
    const assign = this.waitingAssigns.get(attemptId);
    this.waitingAssigns.delete(attemptId);
    if (assign) this.startAttempt(assign, inputJson);
  }

  private startAttempt(assign: Assign, inputJson: string): void {
    this.post({
      type: "attempt",
      attempt: {
        runId: assign.runId,
        workflowName: assign.workflowName,
        taskId: assign.taskId,
        attemptId: assign.attemptId,
        attemptNumber: assign.attemptNumber,
        handler: assign.handler,
        inputJson,
        deadlineUnixMs: assign.deadline ? Number(timestampMs(assign.deadline)) : undefined,
        mapIndex: assign.mapIndex,
      },
    });
  }

  private onValues(values: Values): void {
    const outcomes = this.references.values(
      values.runId,
      values.values.map((value) => ({
        name: { key: value.ref?.key ?? "", writerAttemptId: value.ref?.writerAttemptId ?? "" },
        json: value.valueJson,
      })),
    );
    for (const outcome of outcomes) this.resolved(outcome);
  }

  private onCancel(attemptId: string, reason: string): void {
    if (this.references.drop(attemptId)) {
      this.waitingAssigns.delete(attemptId);
      this.onResult(attemptId, { kind: "failed", message: `cancelled: ${reason}`, nonRetryable: false });
    } else if (this.running.has(attemptId)) {
      this.log("debug", `cancelling attempt ${attemptId}: ${reason}`);
      this.post({ type: "cancel", attemptId, reason });
    }
  }

  private cancelAll(reason: string): number {
    let count = 0;
    for (const attemptId of [...this.running.keys()]) {
      this.onCancel(attemptId, reason);
      count++;
    }
    return count;
  }

  private onResult(attemptId: string, outcome: Outcome): void {
    const running = this.running.get(attemptId);
    if (running === undefined) return;
    this.running.delete(attemptId);
    const request = this.fit(attemptId, outcome);
    const setJson = request.message?.case === "completed" ? outcome.kind === "completed" ? outcome.setJson : undefined : undefined;
    this.unacked.set(attemptId, { runId: running.runId, request, setJson });
    this.send(request);
    this.publish({});
    this.checkDrain();
  }

  /** A result too large for the server would break the stream on every resend: it becomes a non-retryable failure saying by how much. */
  private fit(attemptId: string, outcome: Outcome): Request {
    if (outcome.kind === "completed") {
      const bytes =
        utf8Length(outcome.setJson) + outcome.removedKeys.reduce((sum, key) => sum + utf8Length(key) + 8, 0) + attemptId.length + 32;
      if (bytes <= this.maxMessageBytes) {
        return { message: { case: "completed", value: { attemptId, setJson: outcome.setJson, removedKeys: outcome.removedKeys } } };
      }
      outcome = {
        kind: "failed",
        message: `the task's result is ${bytes} bytes, over the server's message limit of ${this.maxMessageBytes} bytes by ${bytes - this.maxMessageBytes}`,
        nonRetryable: true,
      };
    }
    let message = outcome.message.replaceAll("\u0000", "\\u0000");
    if (utf8Length(message) > MAX_FAILURE_BYTES) {
      message = Buffer.from(message, "utf8").subarray(0, MAX_FAILURE_BYTES).toString("utf8").replace(/\uFFFD$/, "");
    }
    return { message: { case: "failed", value: { attemptId, message, nonRetryable: outcome.nonRetryable } } };
  }

  private onAck(ack: ResultAck): void {
    const unacked = this.unacked.get(ack.attemptId);
    if (unacked === undefined) return;
    this.unacked.delete(ack.attemptId);
    switch (ack.disposition) {
      case ResultDisposition.ACCEPTED:
        if (unacked.setJson !== undefined && this.config.valueCacheBytes > 0) {
          try {
            for (const [key, json] of splitObject(unacked.setJson)) {
              this.cache.put(unacked.runId, { key, writerAttemptId: ack.attemptId }, json);
            }
          } catch {
            // The server accepted it, so it is an object; nothing to keep otherwise.
          }
        }
        break;
      case ResultDisposition.REJECTED:
        this.log("warn", `the server rejected the result of attempt ${ack.attemptId}: ${ack.reason}`);
        break;
      case ResultDisposition.STALE:
        this.log("info", `the result of attempt ${ack.attemptId} is stale (the attempt was replaced or its run ended)`);
        break;
      case ResultDisposition.NOT_HELD:
        this.log("info", `the server says this worker does not hold attempt ${ack.attemptId}; its result was dropped`);
        break;
      default:
        this.log("warn", `unknown disposition ${ack.disposition} for attempt ${ack.attemptId}`);
    }
    this.publish({});
    this.checkDrain();
  }

  private onShutdown(deadlineMs: number): void {
    if (this.drain) return;
    const timer = setTimeout(() => {
      const drain = this.drain;
      if (!drain) return;
      drain.deadlinePassed = true;
      drain.cancelled += this.cancelAll("the worker is shutting down");
      this.checkDrain();
    }, deadlineMs);
    this.drain = { deadlinePassed: false, cancelled: 0, timer };
    this.send(capacityZero());
    this.checkDrain();
  }

  /** Shutdown is complete once nothing runs and every result is acknowledged, or, after the deadline, once nothing runs. */
  private drainComplete(): boolean {
    const drain = this.drain;
    if (drain === undefined) return false;
    return this.running.size === 0 && (this.unacked.size === 0 || drain.deadlinePassed);
  }
}

function capacityZero(): Request {
  return { message: { case: "capacityChanged", value: { maxConcurrentAttempts: 0 } } };
}

const port = parentPort;
if (port) {
  const driver = new StreamDriver(workerData as StreamConfig, (message) => port.postMessage(message));
  port.on("message", (message: ToStream) => driver.handle(message));
  void driver.run().then(() => port.close());
}
