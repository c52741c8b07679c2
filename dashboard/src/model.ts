/**
 * A run as the dashboard knows it, folded from its events: the run's
 * status, each task's state, attempts and waits, the conflicts, and the
 * event log. Folding is deterministic, so a page reloaded mid-run shows the
 * same state as one that followed the run from its start.
 *
 * @module
 */

import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { RunEventType, RunStatus, SkipReason, TaskState } from "./gen/tributary/v1/run_pb.js";
import type { RunEvent } from "./gen/tributary/v1/run_pb.js";

/** Milliseconds of a protobuf timestamp. */
export function ms(timestamp: Timestamp | undefined): number | undefined {
  return timestamp === undefined ? undefined : Number(timestampMs(timestamp));
}

/** The name of an enum value without its prefix, e.g. `SUCCEEDED`. */
export function runStatusName(status: RunStatus): string {
  return RunStatus[status] ?? "UNSPECIFIED";
}

/** Task state names, e.g. `RETRY_SCHEDULED`. */
export function taskStateName(state: TaskState): string {
  return TaskState[state] ?? "UNSPECIFIED";
}

/** The event type's name, e.g. `TASK_SUCCEEDED`. */
export function eventTypeName(type: RunEventType): string {
  return RunEventType[type] ?? "UNSPECIFIED";
}

/** Whether a run status name is final. */
export function isFinished(status: string): boolean {
  return status === "SUCCEEDED" || status === "FAILED" || status === "CANCELLED";
}

/** One event, as shown in the log. */
export interface LoggedEvent {
  sequence: number;
  type: string;
  timeMs: number;
  taskId: string;
  attemptNumber: number;
  executorId: string;
  detail: string;
}

/** One attempt of a task. */
export interface AttemptView {
  id: string;
  number: number;
  executorId: string;
  /** ASSIGNED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, LOST or CANCELLED. */
  state: string;
  error: string;
  assignedAtMs: number;
  startedAtMs: number | undefined;
  endedAtMs: number | undefined;
}

/** A span of a task waiting: queued for an executor, or for a retry delay. */
export interface WaitView {
  kind: "queued" | "retry";
  fromMs: number;
  /** When it ended (queued: assigned; retry: due); undefined while open. */
  toMs: number | undefined;
}

/** One task of the run (or one instance of a mapped task). */
export interface TaskView {
  id: string;
  state: string;
  skipReason: string;
  error: string;
  attempts: AttemptView[];
  waits: WaitView[];
  /** For a mapped task once expanded: how many instances it has. */
  mapSize: number;
  /** For a mapped task: its instances by element index (each a TaskView). */
  instances: TaskView[];
}

function newTask(id: string): TaskView {
  return { id, state: "WAITING", skipReason: "", error: "", attempts: [], waits: [], mapSize: 0, instances: [] };
}

/** How many instances of a mapped task are in each state. */
export function instanceCounts(task: TaskView): Map<string, number> {
  const counts = new Map<string, number>();
  for (const instance of task.instances) counts.set(instance.state, (counts.get(instance.state) ?? 0) + 1);
  return counts;
}

/** A key written by two tasks with no path between them. */
export interface ConflictView {
  key: string;
  winningTaskId: string;
  overriddenTaskId: string;
}

/** The run folded from its events. */
export class RunModel {
  readonly runId: string;
  status = "PENDING";
  createdAtMs: number | undefined;
  finishedAtMs: number | undefined;
  /** How many RUN_RETRIED events were applied (the run's `retry_count`). */
  retryCount = 0;
  /** The last sequence applied: WatchRun resumes after it. */
  lastSequence = 0n;
  readonly tasks = new Map<string, TaskView>();
  readonly events: LoggedEvent[] = [];
  readonly conflicts: ConflictView[] = [];
  /** Bumped by every applied event, so views can tell what changed. */
  version = 0;

  constructor(runId: string, taskIds: Iterable<string>) {
    this.runId = runId;
    for (const id of taskIds) this.tasks.set(id, newTask(id));
  }

  /** How many tasks are in each state. */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const task of this.tasks.values()) counts.set(task.state, (counts.get(task.state) ?? 0) + 1);
    return counts;
  }

  /**
   * Applies one event; an event at or before the last applied sequence (a
   * resumed stream repeating itself) is ignored. Returns whether it applied.
   */
  apply(event: RunEvent): boolean {
    if (event.sequence <= this.lastSequence) return false;
    this.lastSequence = event.sequence;
    this.version++;
    const type = eventTypeName(event.type);
    const time = ms(event.time) ?? 0;
    // Events about an instance of a mapped task name the task and the
    // instance's index: they change the instance, not the task.
    const task =
      event.taskId === "" ? undefined : event.mapIndex !== undefined ? this.instance(event.taskId, event.mapIndex) : this.task(event.taskId);
    const attempt = task && event.attemptId !== "" ? task.attempts.find((a) => a.id === event.attemptId) : undefined;
    const endAttempt = (state: string): void => {
      if (!attempt) return;
      if (attempt.endedAtMs === undefined) attempt.endedAtMs = time;
      // A timed-out or lost attempt keeps that state through the failure
      // that follows it.
      if (attempt.state !== "TIMED_OUT" && attempt.state !== "LOST") attempt.state = state;
      if (event.error !== "") attempt.error = event.error;
    };
    let detail = "";
    switch (event.type) {
      case RunEventType.RUN_QUEUED:
        // Waiting for a slot of its concurrency key; RUN_STARTED follows.
        this.status = "QUEUED";
        this.createdAtMs = time;
        detail = `queued at position ${event.queuePosition} of key ${JSON.stringify(event.concurrencyKey)}`;
        break;
      case RunEventType.RUN_STARTED:
        if (this.status === "QUEUED") this.status = "PENDING";
        this.createdAtMs ??= time;
        break;
      case RunEventType.RUN_FINISHED:
        this.status = runStatusName(event.runStatus);
        this.finishedAtMs = time;
        detail = this.status.toLowerCase();
        break;
      case RunEventType.RUN_RETRIED:
        // The run is open again; the reset tasks start over, but their
        // attempts and waits stay as history (attempt numbers go on).
        this.status = "RUNNING";
        this.finishedAtMs = undefined;
        this.retryCount++;
        for (const id of event.retriedTaskIds) {
          const reset = this.task(id);
          reset.state = "WAITING";
          reset.error = "";
          reset.skipReason = "";
        }
        detail = `retry ${this.retryCount}: ${event.retriedTaskIds.length} task${event.retriedTaskIds.length === 1 ? "" : "s"} reset${event.taskId ? ` from ${event.taskId}` : ""}`;
        break;
      case RunEventType.TASK_MAPPED:
        if (task) {
          task.state = "RUNNING";
          task.mapSize = event.mapSize;
          closeWait(task, time);
        }
        detail = `${event.mapSize} instance${event.mapSize === 1 ? "" : "s"}`;
        break;
      case RunEventType.TASK_READY:
        if (task) {
          task.state = "READY";
          task.waits.push({ kind: "queued", fromMs: time, toMs: undefined });
        }
        break;
      case RunEventType.TASK_ASSIGNED:
        if (this.status === "PENDING") this.status = "RUNNING";
        if (task) {
          task.state = "ASSIGNED";
          closeWait(task, time);
          task.attempts.push({
            id: event.attemptId,
            number: event.attemptNumber,
            executorId: event.executorId,
            state: "ASSIGNED",
            error: "",
            assignedAtMs: time,
            startedAtMs: undefined,
            endedAtMs: undefined,
          });
        }
        break;
      case RunEventType.TASK_STARTED:
        if (task) task.state = "RUNNING";
        if (attempt) {
          attempt.state = "RUNNING";
          attempt.startedAtMs = time;
        }
        break;
      case RunEventType.TASK_SUCCEEDED:
        if (task) task.state = "SUCCEEDED";
        endAttempt("SUCCEEDED");
        break;
      case RunEventType.TASK_FAILED:
        if (task) {
          task.state = "FAILED";
          task.error = event.error;
        }
        endAttempt("FAILED");
        detail = event.error;
        break;
      case RunEventType.TASK_RETRY_SCHEDULED: {
        const due = ms(event.nextAttemptAt);
        if (task) {
          task.state = "RETRY_SCHEDULED";
          task.error = event.error;
          task.waits.push({ kind: "retry", fromMs: time, toMs: due });
        }
        endAttempt("FAILED");
        detail = `${event.error} (retry at ${due === undefined ? "?" : new Date(due).toLocaleTimeString()})`;
        break;
      }
      case RunEventType.TASK_TIMED_OUT:
        endAttempt("TIMED_OUT");
        if (attempt) attempt.state = "TIMED_OUT";
        detail = event.error;
        break;
      case RunEventType.TASK_SKIPPED:
        if (task) {
          task.state = "SKIPPED";
          task.skipReason = SkipReason[event.skipReason] ?? "";
          closeWait(task, time);
        }
        detail = (SkipReason[event.skipReason] ?? "").toLowerCase().replace(/_/g, " ");
        break;
      case RunEventType.TASK_CANCELLED:
        if (task) {
          task.state = "CANCELLED";
          closeWait(task, time);
        }
        endAttempt("CANCELLED");
        break;
      case RunEventType.CONTEXT_CONFLICT:
        if (event.conflict) {
          this.conflicts.push({ ...event.conflict });
          detail = `key ${event.conflict.key}: ${event.conflict.winningTaskId} overrides ${event.conflict.overriddenTaskId}`;
        }
        break;
      case RunEventType.EXECUTOR_CONNECTED:
        if (attempt) attempt.executorId = event.executorId;
        detail = "attempt reclaimed after a server restart";
        break;
      case RunEventType.EXECUTOR_LOST:
        endAttempt("LOST");
        if (attempt) attempt.state = "LOST";
        detail = event.error;
        break;
      default:
        break;
    }
    this.events.push({
      sequence: Number(event.sequence),
      type,
      timeMs: time,
      taskId: event.mapIndex === undefined ? event.taskId : `${event.taskId}[${event.mapIndex}]`,
      attemptNumber: event.attemptNumber,
      executorId: event.executorId,
      detail,
    });
    return true;
  }

  private task(id: string): TaskView {
    let task = this.tasks.get(id);
    if (!task) {
      // A task the definition did not list cannot happen; keep it visible
      // rather than drop its events.
      task = newTask(id);
      this.tasks.set(id, task);
    }
    return task;
  }

  private instance(id: string, index: number): TaskView {
    const task = this.task(id);
    while (task.instances.length <= index) task.instances.push(newTask(`${id}[${task.instances.length}]`));
    return task.instances[index] as TaskView;
  }
}

function closeWait(task: TaskView, time: number): void {
  const open = task.waits[task.waits.length - 1];
  if (open && open.kind === "queued" && open.toMs === undefined) open.toMs = time;
}
