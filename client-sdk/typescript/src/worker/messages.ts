/**
 * What the worker's two threads say to each other. The stream thread owns
 * the `Connect` stream (registration, heartbeats, results until
 * acknowledged, reconnection, value references); the main thread runs the
 * handlers. A handler busy on the CPU delays only the main thread, so
 * heartbeats go on.
 *
 * @module
 */

/** Settings of the stream thread. */
export interface StreamConfig {
  serverUrl: string;
  namespace: string;
  /** Sent as `authorization: Bearer <key>` when set. */
  apiKey: string | undefined;
  name: string;
  instanceId: string;
  handlers: string[];
  capacity: number;
  labels: Record<string, string>;
  valueCacheBytes: number;
  heartbeatIntervalMs: number | undefined;
  reconnectMinMs: number;
  reconnectMaxMs: number;
}

/** An attempt's outcome, as the main thread reports it. */
export type Outcome =
  | { kind: "completed"; setJson: string; removedKeys: string[] }
  | { kind: "failed"; message: string; nonRetryable: boolean };

/** A log line's level. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** What the worker is doing. */
export interface WorkerStatus {
  /** Whether a stream is open and registered. */
  connected: boolean;
  /** How many times the worker registered (1 + reconnections). */
  registrations: number;
  /** The executor id of the current (or last) registration. */
  executorId: string;
  /** Attempts assigned and not finished. */
  running: number;
  /** Results not acknowledged yet. */
  unacknowledged: number;
}

/** The outcome of a graceful shutdown. */
export interface ShutdownReport {
  /** True when every attempt finished and every result was acknowledged before the deadline. */
  drained: boolean;
  /** Attempts cancelled because the deadline passed. */
  cancelledAttempts: number;
}

/** Main thread to stream thread. */
export type ToStream =
  | { type: "result"; attemptId: string; outcome: Outcome }
  | { type: "shutdown"; deadlineMs: number };

/** An attempt to run, with its whole input. */
export interface AttemptMessage {
  runId: string;
  workflowName: string;
  taskId: string;
  attemptId: string;
  attemptNumber: number;
  handler: string;
  inputJson: string;
  deadlineUnixMs: number | undefined;
  mapIndex: number | undefined;
}

/** Stream thread to main thread. */
export type FromStream =
  | { type: "attempt"; attempt: AttemptMessage }
  | { type: "cancel"; attemptId: string; reason: string }
  | { type: "status"; status: WorkerStatus }
  | { type: "log"; level: LogLevel; message: string }
  | { type: "finished"; report: ShutdownReport };
