/**
 * Schedules: {@link Client.createSchedule} and its siblings start runs of a
 * workflow at the times a cron expression names (docs/schedules.md).
 *
 * @module
 */

import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { CatchUpPolicy as PbCatchUpPolicy, OverlapPolicy as PbOverlapPolicy } from "./gen/index.js";
import type { Schedule as PbSchedule } from "./gen/index.js";
import { parseJson } from "./json.js";
import type { JsonValue } from "./json.js";

/** What a fire does while the run its schedule started last is active: drop it, keep one waiting, or start anyway. */
export type OverlapPolicy = "SKIP" | "QUEUE" | "ALLOW";

/** Which fire times missed while the server was down are fired: none, the latest, or all up to `maxCatchUp`. */
export type CatchUpPolicy = "NONE" | "LAST" | "ALL";

/** A schedule to create with {@link Client.createSchedule}. */
export interface NewSchedule {
  /** Its id (the rules of workflow names). */
  scheduleId: string;
  /** The workflow to start runs of. */
  workflowName: string;
  /** A pinned version; the latest at each fire when absent. */
  workflowVersion?: string;
  /** 5 fields: minute hour day-of-month month day-of-week. */
  cron: string;
  /** An IANA time zone; UTC when absent. */
  timeZone?: string;
  /** The input context of every run; `{}` when absent. */
  input?: unknown;
  /** SKIP when absent. */
  overlap?: OverlapPolicy;
  /** NONE when absent. */
  catchUp?: CatchUpPolicy;
  /** With `catchUp: "ALL"` only: 1-100. */
  maxCatchUp?: number;
  /** Create it paused. */
  paused?: boolean;
}

/** A schedule as the server reports it; times in milliseconds since the Unix epoch. */
export interface Schedule {
  scheduleId: string;
  workflowName: string;
  /** Empty for the latest version at each fire. */
  workflowVersion: string;
  cron: string;
  timeZone: string;
  /** The input context of every run. */
  input: JsonValue;
  overlap: OverlapPolicy;
  catchUp: CatchUpPolicy;
  maxCatchUp: number;
  paused: boolean;
  createdAtMs: number | undefined;
  /** The next fire times (none while paused). */
  nextFireTimesMs: number[];
  /** The fire time of the last run it started. */
  lastFireTimeMs: number | undefined;
  /** The last run it started; empty before its first. */
  lastRunId: string;
  /** A fire time waiting for the active run to end. */
  queuedFireTimeMs: number | undefined;
  /** Why the last fire that should have started a run did not. */
  lastError: string;
  /** The latest fire time the scheduler has dealt with. */
  firesHandledThroughMs: number | undefined;
}

function ms(timestamp: Timestamp | undefined): number | undefined {
  return timestamp === undefined ? undefined : Number(timestampMs(timestamp));
}

export function overlapToProto(overlap: OverlapPolicy | undefined): PbOverlapPolicy {
  return PbOverlapPolicy[overlap ?? "SKIP"];
}

export function catchUpToProto(catchUp: CatchUpPolicy | undefined): PbCatchUpPolicy {
  return PbCatchUpPolicy[catchUp ?? "NONE"];
}

export function convertSchedule(schedule: PbSchedule): Schedule {
  return {
    scheduleId: schedule.scheduleId,
    workflowName: schedule.workflowName,
    workflowVersion: schedule.workflowVersion,
    cron: schedule.cron,
    timeZone: schedule.timeZone,
    input: parseJson(schedule.inputContextJson),
    overlap: schedule.overlapPolicy === PbOverlapPolicy.QUEUE ? "QUEUE" : schedule.overlapPolicy === PbOverlapPolicy.ALLOW ? "ALLOW" : "SKIP",
    catchUp: schedule.catchUpPolicy === PbCatchUpPolicy.LAST ? "LAST" : schedule.catchUpPolicy === PbCatchUpPolicy.ALL ? "ALL" : "NONE",
    maxCatchUp: schedule.maxCatchUp,
    paused: schedule.paused,
    createdAtMs: ms(schedule.createdAt),
    nextFireTimesMs: schedule.nextFireTimes.map((time) => Number(timestampMs(time))),
    lastFireTimeMs: ms(schedule.lastFireTime),
    lastRunId: schedule.lastRunId,
    queuedFireTimeMs: ms(schedule.queuedFireTime),
    lastError: schedule.lastError,
    firesHandledThroughMs: ms(schedule.firesHandledThrough),
  };
}
