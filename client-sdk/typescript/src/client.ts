/**
 * The {@link Client}: registers workflows, starts, reads, lists, cancels and
 * waits for runs, and follows events. It runs in Node and in browsers: it
 * takes any Connect transport (gRPC-Web from a browser with
 * {@link createClient}, gRPC over HTTP/2 from Node with `createNodeClient`
 * of `@tributary-dev/sdk/node`).
 *
 * @module
 */

import { Code, ConnectError, createClient as createConnectClient } from "@connectrpc/connect";
import type { CallOptions, Client as ConnectClient, Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ExecutorService, RunEventType, RunService, RunStatus as PbRunStatus, ScheduleService, WorkflowService } from "./gen/index.js";
import { ProtocolError } from "./errors.js";
import { stringifyJson } from "./json.js";
import type { JsonObject } from "./json.js";
import { convertEvent, convertRun, convertWorkflow, runStatus } from "./model.js";
import type { RegisteredWorkflow, Run, RunEvent, RunEventKind, RunStatus } from "./model.js";
import { catchUpToProto, convertSchedule, overlapToProto } from "./schedule.js";
import type { NewSchedule, Schedule } from "./schedule.js";
import { validateDefinition } from "./validate.js";
import type { WorkflowDefinitionJson } from "./validate.js";
import { Workflow } from "./workflow.js";

/** The metadata entry naming the namespace of every call. */
export const NAMESPACE_HEADER = "x-tributary-namespace";
/** The namespace used when none is given. */
export const DEFAULT_NAMESPACE = "default";

/** A started (or, with an idempotency key, existing) run. */
export interface StartedRun {
  /** The run's id. */
  runId: string;
  /** The version the run is pinned to. */
  workflowVersion: string;
  /** False when an idempotency key matched an existing run. */
  created: boolean;
}

/** Options of {@link Client.retryRun}. */
export interface RetryOptions {
  /** Re-run this task and everything downstream of it, instead of the failed, skipped and cancelled tasks. */
  fromTask?: string;
  /** An id of this retry: the same id as the run's latest retry returns that retry's answer again. */
  requestId?: string;
}

/** What {@link Client.retryRun} reset. */
export interface RetriedRun {
  /** The run's id. */
  runId: string;
  /** The run's status now (RUNNING, or terminal again when no reset task could run). */
  status: RunStatus;
  /** How many times the run has been retried, this retry included. */
  retryCount: number;
  /** The tasks reset, in canonical order. */
  retriedTaskIds: string[];
}

/** Options of {@link Client.startRun}. */
export interface StartOptions {
  /** The same key with an identical request returns the existing run. */
  idempotencyKey?: string;
  /** A version hash to run instead of the latest. */
  workflowVersion?: string;
}

/** Options of {@link Client.getRun}: which instances of each mapped task are listed. */
export interface GetRunOptions {
  /** The element index of the first instance listed under each mapped task (default 0). */
  instancesFrom?: number;
  /**
   * At most this many instances listed under each mapped task (0 lists none;
   * unset: no limit of the caller's own). The server lists no more than fit
   * in one answer either way, the same number under every mapped task.
   */
  maxInstances?: number;
}

/** Filters of {@link Client.listRuns}. */
export interface ListRunsOptions {
  /** Only runs of this workflow. */
  workflowName?: string;
  /** Only runs with this status. */
  status?: RunStatus;
  /** Page size (0 or unset: the server's default, 100). */
  pageSize?: number;
  /** The token of the previous page. */
  pageToken?: string;
}

/** One page of runs, newest first. */
export interface RunPage {
  /** The runs, without tasks. */
  runs: Run[];
  /** The token of the next page; empty on the last. */
  nextPageToken: string;
}

/** Options of {@link Client.watchRun}. */
export interface WatchRunOptions {
  /** Deliver events after this sequence (default 0: all). */
  afterSequence?: bigint | number;
  /** Stops following. */
  signal?: AbortSignal;
}

/** Options of {@link Client.watchEvents}. */
export interface WatchEventsOptions {
  /** Deliver events after this cursor (default 0: the retained history). */
  afterCursor?: bigint | number;
  /** Start at the current end, with no history (`afterCursor` must be unset). */
  fromNow?: boolean;
  /** Only events of runs of these workflows. */
  workflowNames?: string[];
  /** Only events of these runs. */
  runIds?: string[];
  /** Only events of these kinds. */
  kinds?: RunEventKind[];
  /** Stops following. */
  signal?: AbortSignal;
}

/** A connected executor. */
export interface ExecutorInfo {
  /** The id given at registration. */
  executorId: string;
  /** Its name. */
  name: string;
  /** Its stable instance id. */
  instanceId: string;
  /** The handlers it serves. */
  handlers: string[];
  /** Its capacity. */
  maxConcurrentAttempts: number;
  /** Attempts in flight on it. */
  inFlightAttemptIds: string[];
  /** Its labels. */
  labels: Record<string, string>;
}

/** Options of a {@link Client}. */
export interface ClientOptions {
  /** The Connect transport to call through. */
  transport: Transport;
  /** The namespace (default `default`). A key acts in its own namespace; naming another is PERMISSION_DENIED. */
  namespace?: string;
  /** An API key, sent as `authorization: Bearer <key>` with every call. */
  apiKey?: string;
  /** How long to wait before following a stream again after the server went away (default 200 ms, doubling up to 5 s). */
  resumeDelayMs?: number;
}

/**
 * Whether an error is worth retrying the call for: the server restarted,
 * is stopping, or the connection dropped.
 *
 * @param error - what a call threw
 * @returns whether it is transient
 */
export function isTransient(error: unknown): boolean {
  const connectError = ConnectError.from(error);
  return [Code.Unavailable, Code.Unknown, Code.Canceled, Code.DeadlineExceeded, Code.Aborted, Code.Internal].includes(
    connectError.code,
  );
}

function checkUint32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`${name} must be an integer between 0 and ${0xffff_ffff}, got ${value}`);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * A connection to a Tributary server, scoped to one namespace.
 *
 * ```ts
 * const client = createClient("http://127.0.0.1:50051");
 * await client.registerWorkflow(myWorkflow);
 * const { runId } = await client.startRun("numbers", { n: 1 });
 * const run = await client.wait(runId);
 * ```
 */
export class Client {
  /** The namespace of every call. */
  readonly namespace: string;
  private readonly transport: Transport;
  private readonly workflows: ConnectClient<typeof WorkflowService>;
  private readonly runs: ConnectClient<typeof RunService>;
  private readonly executors: ConnectClient<typeof ExecutorService>;
  private readonly schedules: ConnectClient<typeof ScheduleService>;
  private readonly resumeDelayMs: number;
  private readonly apiKey: string | undefined;

  /**
   * @param options - the transport and namespace
   */
  constructor(options: ClientOptions) {
    this.transport = options.transport;
    this.namespace = options.namespace ?? DEFAULT_NAMESPACE;
    this.workflows = createConnectClient(WorkflowService, options.transport);
    this.runs = createConnectClient(RunService, options.transport);
    this.executors = createConnectClient(ExecutorService, options.transport);
    this.schedules = createConnectClient(ScheduleService, options.transport);
    this.resumeDelayMs = options.resumeDelayMs ?? 200;
    this.apiKey = options.apiKey;
  }

  /**
   * The same connection in another namespace.
   *
   * @param namespace - the namespace
   * @returns a client of that namespace
   */
  withNamespace(namespace: string): Client {
    return new Client({
      transport: this.transport,
      namespace,
      resumeDelayMs: this.resumeDelayMs,
      ...(this.apiKey === undefined ? {} : { apiKey: this.apiKey }),
    });
  }

  private options(signal?: AbortSignal): CallOptions {
    const headers: Record<string, string> = { [NAMESPACE_HEADER]: this.namespace };
    if (this.apiKey !== undefined) headers.authorization = `Bearer ${this.apiKey}`;
    return { headers, ...(signal ? { signal } : {}) };
  }

  /**
   * Validates a workflow locally (the server's rules and messages), then
   * registers it; the same definition registered again gets the same version.
   *
   * @param workflow - a {@link Workflow} or a definition in the wire's field names
   * @param options - `validateLocally: false` leaves validation to the server alone
   * @returns the stored version
   * @throws {@link DefinitionError} for an invalid definition, `ConnectError` from the server
   */
  async registerWorkflow(
    workflow: Workflow | WorkflowDefinitionJson,
    options: { validateLocally?: boolean } = {},
  ): Promise<RegisteredWorkflow> {
    const definition = workflow instanceof Workflow ? workflow.definition() : workflow;
    if (options.validateLocally ?? true) validateDefinition(definition);
    const response = await this.workflows.registerWorkflow(
      {
        definition: {
          name: definition.name,
          description: definition.description ?? "",
          tasks: definition.tasks.map((t) => ({
            id: t.id,
            dependencies: t.dependencies ?? [],
            retryAttempts: t.retry_attempts,
            retryDelayMs: t.retry_delay_ms === undefined ? undefined : BigInt(t.retry_delay_ms),
            retryBackoff: t.retry_backoff ?? "",
            retryMaxDelayMs: t.retry_max_delay_ms === undefined ? undefined : BigInt(t.retry_max_delay_ms),
            retryJitter: t.retry_jitter,
            timeoutMs: t.timeout_ms === undefined ? undefined : BigInt(t.timeout_ms),
            triggerRule: t.trigger_rule ?? "",
            handler: t.handler ?? "",
            requiredLabels: { ...(t.required_labels ?? {}) },
            maxInFlight: t.max_in_flight,
            mapOver: t.map_over ?? "",
            mapOutput: t.map_output ?? "",
            mapMaxInstances: t.map_max_instances,
          })),
          concurrency:
            definition.concurrency === undefined
              ? undefined
              : {
                  keyPointer: definition.concurrency.key_pointer ?? "",
                  fixedKey: definition.concurrency.fixed_key ?? "",
                  maxActiveRuns: definition.concurrency.max_active_runs,
                  strategy: definition.concurrency.strategy ?? "",
                },
        },
      },
      this.options(),
    );
    if (!response.workflow) throw new ProtocolError("RegisterWorkflow returned no workflow");
    return { ...convertWorkflow(response.workflow), created: response.created };
  }

  /**
   * Reads a workflow version: the latest, or the one named.
   *
   * @param name - the workflow's name
   * @param version - a version hash or a sequence number
   * @returns the version
   */
  async getWorkflow(name: string, version?: string | bigint): Promise<RegisteredWorkflow> {
    const selector =
      version === undefined
        ? { case: undefined }
        : typeof version === "string"
          ? { case: "version" as const, value: version }
          : { case: "sequence" as const, value: version };
    const response = await this.workflows.getWorkflow({ name, selector }, this.options());
    if (!response.workflow) throw new ProtocolError("GetWorkflow returned no workflow");
    return { ...convertWorkflow(response.workflow), created: false };
  }

  /**
   * Lists the namespace's workflows (latest versions), by name.
   *
   * @param options - paging
   * @returns one page
   */
  async listWorkflows(options: { pageSize?: number; pageToken?: string } = {}): Promise<{
    workflows: RegisteredWorkflow[];
    nextPageToken: string;
  }> {
    const response = await this.workflows.listWorkflows(
      { pageSize: options.pageSize ?? 0, pageToken: options.pageToken ?? "" },
      this.options(),
    );
    return {
      workflows: response.workflows.map((w) => ({ ...convertWorkflow(w), created: false })),
      nextPageToken: response.nextPageToken,
    };
  }

  /**
   * Starts a run of a workflow.
   *
   * @param workflowName - the workflow's name
   * @param input - the input context: an object (written losslessly) or JSON text of one
   * @param options - an idempotency key, a pinned version
   * @returns the run's id
   */
  async startRun(workflowName: string, input: JsonObject | string = {}, options: StartOptions = {}): Promise<StartedRun> {
    const response = await this.runs.startRun(
      {
        workflowName,
        workflowVersion: options.workflowVersion ?? "",
        inputContextJson: typeof input === "string" ? input : stringifyJson(input),
        idempotencyKey: options.idempotencyKey ?? "",
      },
      this.options(),
    );
    return { runId: response.runId, workflowVersion: response.workflowVersion, created: response.created };
  }

  /**
   * Reads a run with its tasks and context.
   *
   * @param runId - the run's id
   * @param options - which instances of each mapped task to list (default:
   *   all that fit in one answer); `instanceCounts` count all of them anyway
   * @returns the run
   */
  async getRun(runId: string, options: GetRunOptions = {}): Promise<Run> {
    const instancesFrom = options.instancesFrom ?? 0;
    checkUint32("instancesFrom", instancesFrom);
    if (options.maxInstances !== undefined) checkUint32("maxInstances", options.maxInstances);
    const response = await this.runs.getRun(
      { runId, instancesFrom, maxInstances: options.maxInstances },
      this.options(),
    );
    if (!response.run) throw new ProtocolError("GetRun returned no run");
    return convertRun(response.run);
  }

  /**
   * Lists runs, newest first.
   *
   * @param options - filters and paging
   * @returns one page
   */
  async listRuns(options: ListRunsOptions = {}): Promise<RunPage> {
    const response = await this.runs.listRuns(
      {
        workflowName: options.workflowName ?? "",
        status: options.status === undefined ? PbRunStatus.UNSPECIFIED : PbRunStatus[options.status],
        pageSize: options.pageSize ?? 0,
        pageToken: options.pageToken ?? "",
      },
      this.options(),
    );
    return { runs: response.runs.map(convertRun), nextPageToken: response.nextPageToken };
  }

  /**
   * Cancels a run that has not finished; executors running its attempts are told to stop.
   *
   * @param runId - the run's id
   * @returns the run's status (CANCELLED)
   */
  async cancelRun(runId: string): Promise<RunStatus> {
    const response = await this.runs.cancelRun({ runId }, this.options());
    return runStatus(response.status);
  }

  /**
   * Re-runs a finished run in place: its failed, skipped and cancelled tasks
   * (or `options.fromTask` and everything downstream of it) run again;
   * succeeded tasks keep their outputs. A run still going is
   * FAILED_PRECONDITION.
   *
   * @param runId - the run's id
   * @param options - the task to re-run from, and an id of this retry
   * @returns what was reset
   */
  async retryRun(runId: string, options: RetryOptions = {}): Promise<RetriedRun> {
    const response = await this.runs.retryRun(
      { runId, fromTask: options.fromTask ?? "", requestId: options.requestId ?? "" },
      this.options(),
    );
    return {
      runId: response.runId,
      status: runStatus(response.status),
      retryCount: response.retryCount,
      retriedTaskIds: [...response.retriedTaskIds],
    };
  }

  /**
   * Creates a schedule; it fires from now on. A bad cron expression, time
   * zone or policy is INVALID_ARGUMENT, an unknown workflow NOT_FOUND, an id
   * in use ALREADY_EXISTS.
   *
   * @param schedule - the schedule
   * @returns the schedule with its next fire times
   */
  async createSchedule(schedule: NewSchedule): Promise<Schedule> {
    const response = await this.schedules.createSchedule(
      {
        scheduleId: schedule.scheduleId,
        workflowName: schedule.workflowName,
        workflowVersion: schedule.workflowVersion ?? "",
        cron: schedule.cron,
        timeZone: schedule.timeZone ?? "",
        inputContextJson: stringifyJson(schedule.input ?? {}),
        overlapPolicy: overlapToProto(schedule.overlap),
        catchUpPolicy: catchUpToProto(schedule.catchUp),
        maxCatchUp: schedule.maxCatchUp ?? 0,
        paused: schedule.paused ?? false,
      },
      this.options(),
    );
    return convertSchedule(this.answered(response.schedule));
  }

  /**
   * Reads a schedule.
   *
   * @param scheduleId - its id
   * @param nextFireCount - how many next fire times (0: 5, at most 100)
   * @returns the schedule
   */
  async getSchedule(scheduleId: string, nextFireCount = 0): Promise<Schedule> {
    const response = await this.schedules.getSchedule({ scheduleId, nextFireCount }, this.options());
    return convertSchedule(this.answered(response.schedule));
  }

  /**
   * Lists every schedule of the namespace.
   *
   * @returns the schedules, by id
   */
  async listSchedules(): Promise<Schedule[]> {
    const schedules: Schedule[] = [];
    let pageToken = "";
    for (;;) {
      const page = await this.schedules.listSchedules({ pageSize: 1000, pageToken }, this.options());
      schedules.push(...page.schedules.map(convertSchedule));
      if (page.nextPageToken === "") return schedules;
      pageToken = page.nextPageToken;
    }
  }

  /**
   * Pauses a schedule: fire times that pass while it is paused never fire.
   *
   * @param scheduleId - its id
   * @returns the schedule
   */
  async pauseSchedule(scheduleId: string): Promise<Schedule> {
    const response = await this.schedules.pauseSchedule({ scheduleId }, this.options());
    return convertSchedule(this.answered(response.schedule));
  }

  /**
   * Resumes a paused schedule from now on (the paused period is not caught up).
   *
   * @param scheduleId - its id
   * @returns the schedule
   */
  async resumeSchedule(scheduleId: string): Promise<Schedule> {
    const response = await this.schedules.resumeSchedule({ scheduleId }, this.options());
    return convertSchedule(this.answered(response.schedule));
  }

  /**
   * Deletes a schedule; the runs it started stay.
   *
   * @param scheduleId - its id
   */
  async deleteSchedule(scheduleId: string): Promise<void> {
    await this.schedules.deleteSchedule({ scheduleId }, this.options());
  }

  private answered<T>(value: T | undefined): T {
    if (value === undefined) throw new ProtocolError("the answer holds no schedule");
    return value;
  }

  /**
   * Lists the executors connected in the namespace.
   *
   * @returns the executors, oldest connection first
   */
  async listExecutors(): Promise<ExecutorInfo[]> {
    const response = await this.executors.listExecutors({}, this.options());
    return response.executors.map((e) => ({
      executorId: e.executorId,
      name: e.name,
      instanceId: e.instanceId,
      handlers: [...e.handlers],
      maxConcurrentAttempts: e.maxConcurrentAttempts,
      inFlightAttemptIds: [...e.inFlightAttemptIds],
      labels: { ...e.labels },
    }));
  }

  /**
   * Waits until the run is terminal and returns it. It follows the run's
   * events, so it returns as soon as the run finishes, and follows again
   * after a server restart.
   *
   * @param runId - the run's id
   * @param options - a signal to stop waiting (the promise then rejects with the signal's reason)
   * @returns the finished run
   */
  async wait(runId: string, options: { signal?: AbortSignal } = {}): Promise<Run> {
    // The stream ends after the RUN_FINISHED that ends the log; a retried
    // run has earlier ones.
    for await (const event of this.watchRun(runId, options)) void event;
    options.signal?.throwIfAborted();
    return this.retrying(() => this.getRun(runId), options.signal);
  }

  /**
   * A run's events: those recorded after `afterSequence`, then live ones,
   * ending after the RUN_FINISHED that ends the log (a retried run's earlier
   * ones are followed by RUN_RETRIED). After a disconnect or a server restart it
   * follows again from the last sequence delivered, so no event is missed
   * or repeated.
   *
   * @param runId - the run's id
   * @param options - where to start, and a signal to stop
   * @returns the events
   */
  async *watchRun(runId: string, options: WatchRunOptions = {}): AsyncGenerator<RunEvent, void, undefined> {
    let afterSequence = BigInt(options.afterSequence ?? 0);
    let finished = false;
    let delay = this.resumeDelayMs;
    const signal = options.signal;
    while (!signal?.aborted) {
      try {
        for await (const response of this.runs.watchRun({ runId, afterSequence }, this.options(signal))) {
          if (!response.event) throw new ProtocolError("WatchRun sent no event");
          const event = convertEvent(response.event);
          afterSequence = event.sequence;
          delay = this.resumeDelayMs;
          finished = event.kind === "RUN_FINISHED";
          yield event;
        }
        // A stream that ends with the run finished is the log's end (the
        // server ends it there); one that ends otherwise is followed again.
        if (finished) return;
      } catch (error) {
        if (signal?.aborted) return;
        if (!isTransient(error)) throw error;
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 5_000);
    }
  }

  /**
   * Every event of the namespace (optionally filtered), in commit order:
   * the history after `afterCursor`, then live events; it never ends on its
   * own. After a disconnect or a server restart it follows again from the
   * cursor of the last event delivered.
   *
   * @param options - where to start, filters, and a signal to stop
   * @returns the events
   */
  async *watchEvents(options: WatchEventsOptions = {}): AsyncGenerator<RunEvent, void, undefined> {
    let afterCursor = BigInt(options.afterCursor ?? 0);
    let fromNow = options.fromNow ?? false;
    let delay = this.resumeDelayMs;
    const signal = options.signal;
    while (!signal?.aborted) {
      try {
        const request = {
          afterCursor,
          fromNow,
          workflowNames: options.workflowNames ?? [],
          runIds: options.runIds ?? [],
          types: (options.kinds ?? []).map((kind) => RunEventType[kind]),
        };
        for await (const response of this.runs.watchEvents(request, this.options(signal))) {
          if (!response.event) throw new ProtocolError("WatchEvents sent no event");
          const event = convertEvent(response.event);
          afterCursor = event.cursor;
          fromNow = false;
          delay = this.resumeDelayMs;
          yield event;
        }
      } catch (error) {
        if (signal?.aborted) return;
        if (!isTransient(error)) throw error;
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 5_000);
    }
  }

  private async retrying<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let delay = this.resumeDelayMs;
    for (;;) {
      try {
        return await call();
      } catch (error) {
        if (!isTransient(error) || signal?.aborted) throw error;
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

/**
 * A client speaking gRPC-Web over `fetch`: works in browsers, and in Node.
 * In Node, `createNodeClient` of `@tributary-dev/sdk/node` speaks gRPC over
 * HTTP/2 instead.
 *
 * @param baseUrl - the server's URL, e.g. `http://127.0.0.1:50051`
 * @param options - the namespace and the API key
 * @returns the client
 */
export function createClient(baseUrl: string, options: { namespace?: string; apiKey?: string } = {}): Client {
  const transport = createGrpcWebTransport({ baseUrl, useBinaryFormat: true });
  return new Client({ transport, ...options });
}

