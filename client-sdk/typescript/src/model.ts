/**
 * What the client returns: runs, tasks, attempts, events and workflow
 * versions as plain objects, converted from the protobuf messages (enums as
 * names, timestamps as Unix milliseconds, contexts parsed losslessly).
 *
 * @module
 */

import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AttemptState,
  RunEventType,
  RunStatus as PbRunStatus,
  SkipReason as PbSkipReason,
  TaskState as PbTaskState,
} from "./gen/index.js";
import type { Run as PbRun, RunEvent as PbRunEvent, TaskDefinition as PbTaskDefinition, TaskRun as PbTaskRun, Workflow as PbWorkflow } from "./gen/index.js";
import { ProtocolError } from "./errors.js";
import { parseJson } from "./json.js";
import type { JsonObject } from "./json.js";
import type { WorkflowDefinitionJson } from "./validate.js";

/** The status of a run. */
export type RunStatus = "QUEUED" | "PENDING" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELLED";
/** The state of a task within a run. */
export type TaskState =
  | "WAITING"
  | "READY"
  | "ASSIGNED"
  | "RUNNING"
  | "SUCCEEDED"
  | "FAILED"
  | "SKIPPED"
  | "CANCELLED"
  | "RETRY_SCHEDULED";
/** Why a task was skipped. */
export type SkipReason = "UPSTREAM_FAILED" | "RULE_NOT_MET";
/** What happened in a {@link RunEvent}; see `tributary.v1.RunEventType`. */
export type RunEventKind =
  | "RUN_STARTED"
  | "RUN_FINISHED"
  | "TASK_READY"
  | "TASK_ASSIGNED"
  | "TASK_STARTED"
  | "TASK_SUCCEEDED"
  | "TASK_FAILED"
  | "TASK_RETRY_SCHEDULED"
  | "TASK_TIMED_OUT"
  | "TASK_SKIPPED"
  | "TASK_CANCELLED"
  | "CONTEXT_CONFLICT"
  | "EXECUTOR_CONNECTED"
  | "EXECUTOR_LOST"
  | "RUN_RETRIED"
  | "RUN_QUEUED"
  | "TASK_MAPPED";

/**
 * Whether a run status is final.
 *
 * @param status - the status
 * @returns true for SUCCEEDED, FAILED and CANCELLED
 */
export function isTerminal(status: RunStatus): boolean {
  return status === "SUCCEEDED" || status === "FAILED" || status === "CANCELLED";
}

/** One attempt of a task. */
export interface AttemptOutcome {
  /** The attempt's id. */
  id: string;
  /** 1 for the first attempt. */
  number: number;
  /** The executor it was assigned to. */
  executorId: string;
  /** Its state: `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `LOST`, ... */
  state: string;
  /** Its failure message, or empty. */
  error: string;
}

/** What happened to one task of a run. */
export interface TaskOutcome {
  /** The task's id. */
  taskId: string;
  /** Its state. */
  state: TaskState;
  /** Set when skipped. */
  skipReason: SkipReason | undefined;
  /** The error of the last failed attempt, or empty. */
  error: string;
  /** Every attempt, oldest first. */
  attempts: AttemptOutcome[];
  /** For an instance of a mapped task (an entry of its `instances`): its element index. */
  mapIndex: number | undefined;
  /**
   * For a mapped task once expanded: its instances in element order; possibly
   * a window of them (from `instancesFrom`, at most `maxInstances` or as many
   * as fit in one answer; see {@link Client.getRun}), each entry's `mapIndex`
   * saying which.
   */
  instances: TaskOutcome[];
  /**
   * For a mapped task once expanded: how many of all its instances, listed in
   * `instances` or not, are in each state (states with none left out); empty
   * otherwise.
   */
  instanceCounts: Partial<Record<TaskState, number>>;
}

/** A key written by two tasks with no path between them. */
export interface Conflict {
  /** The key. */
  key: string;
  /** The task whose write won (later in canonical order). */
  winningTaskId: string;
  /** The task whose write was overridden. */
  overriddenTaskId: string;
}

/** A run with its tasks and context. */
export interface Run {
  /** The run's id. */
  id: string;
  /** The workflow's name. */
  workflowName: string;
  /** The workflow version the run is pinned to. */
  workflowVersion: string;
  /** The run's status. */
  status: RunStatus;
  /** The input context, parsed losslessly. */
  input: JsonObject;
  /** The run's context (final once the run is terminal), parsed losslessly. */
  context: JsonObject;
  /** The context's JSON text as the server sent it. */
  contextJson: string;
  /** The idempotency key, or empty. */
  idempotencyKey: string;
  /** When the run was created (Unix ms). */
  createdAtMs: number | undefined;
  /** When the run became terminal (Unix ms). */
  finishedAtMs: number | undefined;
  /** Every task, in canonical order (empty in {@link Client.listRuns}). */
  tasks: TaskOutcome[];
  /** Keys written by unordered tasks (empty in {@link Client.listRuns}). */
  conflicts: Conflict[];
  /** How many times {@link Client.retryRun} re-ran the run. */
  retryCount: number;
  /** The run's concurrency key; empty when its workflow has no concurrency policy. */
  concurrencyKey: string;
  /** While QUEUED, its position in its key's queue (1 starts next); 0 otherwise. */
  queuePosition: number;
}

/** One event of a run's log. Fields a kind does not set are empty, zero or undefined. */
export interface RunEvent {
  /** Global position in the server's event log; {@link Client.watchEvents} resumes from it. */
  cursor: bigint;
  /** Position within the run's events: 1, 2, 3, ...; {@link Client.watchRun} resumes from it. */
  sequence: bigint;
  /** The run's id. */
  runId: string;
  /** The run's workflow. */
  workflowName: string;
  /** What happened. */
  kind: RunEventKind;
  /** When the server recorded it (Unix ms). */
  timeMs: number;
  /** The task concerned, for task events. */
  taskId: string;
  /** The attempt concerned, if any. */
  attemptId: string;
  /** The attempt's number, or 0. */
  attemptNumber: number;
  /** The executor of the attempt, or the reconnected/lost executor. */
  executorId: string;
  /** The failure message, for failures, timeouts and lost executors. */
  error: string;
  /** Why the task was skipped, for TASK_SKIPPED. */
  skipReason: SkipReason | undefined;
  /** When the retry is due (Unix ms), for TASK_RETRY_SCHEDULED. */
  nextAttemptAtMs: number | undefined;
  /** The final status, for RUN_FINISHED. */
  runStatus: RunStatus | undefined;
  /** The conflict, for CONTEXT_CONFLICT. */
  conflict: Conflict | undefined;
  /** The tasks reset, for RUN_RETRIED, in canonical order. */
  retriedTaskIds: string[];
  /** The run's concurrency key, for RUN_QUEUED. */
  concurrencyKey: string;
  /** The run's position in its key's queue when it was queued, for RUN_QUEUED; 0 otherwise. */
  queuePosition: number;
  /** For an event about an instance of a mapped task (`taskId` is the mapped task's): its element index. */
  mapIndex: number | undefined;
  /** The number of instances, for TASK_MAPPED; 0 otherwise. */
  mapSize: number;
}

/** A stored workflow version. */
export interface RegisteredWorkflow {
  /** The normalized definition (defaults filled in, tasks sorted). */
  definition: WorkflowDefinitionJson;
  /** The version hash computed by the server. */
  version: string;
  /** The version's sequence number, 1 for the first. */
  sequence: bigint;
  /** Whether this version is the latest. */
  latest: boolean;
  /** From RegisterWorkflow: false when the same definition was registered before. */
  created: boolean;
}

function ms(timestamp: Timestamp | undefined): number | undefined {
  return timestamp === undefined ? undefined : Number(timestampMs(timestamp));
}

function enumName<E extends Record<string, string | number>>(enumeration: E, value: number, what: string): string {
  const name = (enumeration as Record<number, string | undefined>)[value];
  if (name === undefined || name === "UNSPECIFIED") throw new ProtocolError(`${what} ${value} is not known to this SDK`);
  return name;
}

export function runStatus(value: PbRunStatus): RunStatus {
  return enumName(PbRunStatus, value, "run status") as RunStatus;
}

function skipReason(value: PbSkipReason): SkipReason | undefined {
  return value === PbSkipReason.UNSPECIFIED ? undefined : (enumName(PbSkipReason, value, "skip reason") as SkipReason);
}

function parseObject(text: string, what: string): JsonObject {
  if (text === "") return {};
  const value = parseJson(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ProtocolError(`${what} is not a JSON object`);
  }
  return value as JsonObject;
}

function convertTaskRun(t: PbTaskRun): TaskOutcome {
  return {
    taskId: t.taskId,
    state: enumName(PbTaskState, t.state, "task state") as TaskState,
    skipReason: skipReason(t.skipReason),
    error: t.error,
    attempts: t.attempts.map((a) => ({
      id: a.id,
      number: a.number,
      executorId: a.executorId,
      state: enumName(AttemptState, a.state, "attempt state"),
      error: a.error,
    })),
    mapIndex: t.mapIndex,
    instances: t.instances.map(convertTaskRun),
    instanceCounts: Object.fromEntries(
      t.instanceCounts.map((c) => [enumName(PbTaskState, c.state, "task state") as TaskState, c.count]),
    ),
  };
}

export function convertRun(run: PbRun): Run {
  return {
    id: run.id,
    workflowName: run.workflowName,
    workflowVersion: run.workflowVersion,
    status: runStatus(run.status),
    input: parseObject(run.inputContextJson, "the run's input"),
    context: parseObject(run.contextJson, "the run's context"),
    contextJson: run.contextJson,
    idempotencyKey: run.idempotencyKey,
    createdAtMs: ms(run.createdAt),
    finishedAtMs: ms(run.finishedAt),
    tasks: run.tasks.map(convertTaskRun),
    conflicts: run.conflicts.map((c) => ({
      key: c.key,
      winningTaskId: c.winningTaskId,
      overriddenTaskId: c.overriddenTaskId,
    })),
    retryCount: run.retryCount,
    concurrencyKey: run.concurrencyKey,
    queuePosition: run.queuePosition,
  };
}

export function convertEvent(event: PbRunEvent): RunEvent {
  return {
    cursor: event.cursor,
    sequence: event.sequence,
    runId: event.runId,
    workflowName: event.workflowName,
    kind: enumName(RunEventType, event.type, "event type") as RunEventKind,
    timeMs: ms(event.time) ?? 0,
    taskId: event.taskId,
    attemptId: event.attemptId,
    attemptNumber: event.attemptNumber,
    executorId: event.executorId,
    error: event.error,
    skipReason: skipReason(event.skipReason),
    nextAttemptAtMs: ms(event.nextAttemptAt),
    runStatus: event.runStatus === PbRunStatus.UNSPECIFIED ? undefined : runStatus(event.runStatus),
    conflict: event.conflict
      ? { key: event.conflict.key, winningTaskId: event.conflict.winningTaskId, overriddenTaskId: event.conflict.overriddenTaskId }
      : undefined,
    retriedTaskIds: [...event.retriedTaskIds],
    concurrencyKey: event.concurrencyKey,
    queuePosition: event.queuePosition,
    mapIndex: event.mapIndex,
    mapSize: event.mapSize,
  };
}

function convertTask(t: PbTaskDefinition): WorkflowDefinitionJson["tasks"][number] {
  const task: WorkflowDefinitionJson["tasks"][number] = { id: t.id, dependencies: [...t.dependencies] };
  if (t.retryAttempts !== undefined) task.retry_attempts = t.retryAttempts;
  if (t.retryDelayMs !== undefined) task.retry_delay_ms = Number(t.retryDelayMs);
  if (t.retryBackoff !== "") task.retry_backoff = t.retryBackoff;
  if (t.retryMaxDelayMs !== undefined) task.retry_max_delay_ms = Number(t.retryMaxDelayMs);
  if (t.retryJitter !== undefined) task.retry_jitter = t.retryJitter;
  if (t.timeoutMs !== undefined) task.timeout_ms = Number(t.timeoutMs);
  if (t.triggerRule !== "") task.trigger_rule = t.triggerRule;
  if (t.handler !== "") task.handler = t.handler;
  if (Object.keys(t.requiredLabels).length > 0) task.required_labels = { ...t.requiredLabels };
  if (t.maxInFlight !== undefined) task.max_in_flight = t.maxInFlight;
  if (t.mapOver !== "") task.map_over = t.mapOver;
  if (t.mapOutput !== "") task.map_output = t.mapOutput;
  if (t.mapMaxInstances !== undefined) task.map_max_instances = t.mapMaxInstances;
  return task;
}

export function convertWorkflow(w: PbWorkflow): Omit<RegisteredWorkflow, "created"> {
  return {
    definition: {
      name: w.definition?.name ?? "",
      description: w.definition?.description ?? "",
      tasks: (w.definition?.tasks ?? []).map(convertTask),
      ...(w.definition?.concurrency === undefined
        ? {}
        : {
            concurrency: {
              ...(w.definition.concurrency.keyPointer === "" ? {} : { key_pointer: w.definition.concurrency.keyPointer }),
              ...(w.definition.concurrency.fixedKey === "" ? {} : { fixed_key: w.definition.concurrency.fixedKey }),
              ...(w.definition.concurrency.maxActiveRuns === undefined
                ? {}
                : { max_active_runs: w.definition.concurrency.maxActiveRuns }),
              ...(w.definition.concurrency.strategy === "" ? {} : { strategy: w.definition.concurrency.strategy }),
            },
          }),
    },
    version: w.version,
    sequence: w.sequence,
    latest: w.latest,
  };
}
