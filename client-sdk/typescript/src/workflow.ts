/**
 * Tasks and workflows: a task is its definition (what the server stores)
 * plus its handler (what a worker runs); a workflow groups tasks.
 *
 * ```ts
 * const generate = task({ id: "generate_data", retryAttempts: 2 }, async (ctx) => {
 *   ctx.insert("numbers", [1, 2, 3]);
 * });
 * const sum = task({ id: "sum", dependencies: ["generate_data"] }, async (ctx) => {
 *   ctx.insert("sum", ctx.get("numbers", "array").reduce((a, b) => a + Number(b), 0));
 * });
 * const numbers = workflow("numbers", [generate, sum]);
 * ```
 *
 * @module
 */

import type { Context } from "./context.js";
import { DefinitionError, validateDefinition } from "./validate.js";
import type { Backoff, ConcurrencyPolicyJson, TaskDefinitionJson, TriggerRule, WorkflowDefinitionJson } from "./validate.js";

/** A task handler: an async function of the attempt's context. Throw to fail the attempt. */
export type Handler = (ctx: Context) => void | Promise<void>;

/** A task's settings, as written in code; unset settings take the server's defaults. */
export interface TaskOptions {
  /** The task's id: 1-64 characters of `a-z 0-9 _ -`, starting with a letter. */
  id: string;
  /** Ids of the tasks that must finish first. */
  dependencies?: readonly string[];
  /** Retries after the first attempt (default 0, at most 100): the task runs at most `1 + retryAttempts` times. */
  retryAttempts?: number;
  /** Base delay before a retry in ms (default 1000). */
  retryDelayMs?: number;
  /** How the delay grows (default `exponential`). */
  retryBackoff?: Backoff;
  /** Upper bound of a retry delay in ms (default 30000). */
  retryMaxDelayMs?: number;
  /** Whether retry delays are multiplied by a random factor in [0.5, 1] (default true). */
  retryJitter?: boolean;
  /** Time limit of one attempt in ms (default: the server's). */
  timeoutMs?: number;
  /** When the task runs once its dependencies are terminal (default `all_success`). */
  triggerRule?: TriggerRule;
  /** The routing key (default `<workflow>.<task id>`). */
  handler?: string;
  /** Executor labels the task requires: only workers registered with every one of them (`labels` of the worker) are assigned it. */
  requiredLabels?: Readonly<Record<string, string>>;
  /**
   * At most this many attempts of the task's handler in flight at once, across every worker and run of the namespace
   * (1 to 10000; default: no limit beyond the workers' capacity), for a handler that calls something with a limit of its own.
   */
  maxInFlight?: number;
  /**
   * Maps the task over the JSON array at this context key: at run time it
   * runs once per element, each instance finding its element under
   * `map_element` and its 0-based index under `map_index`, and setting its
   * output at `mapOutput`; the outputs are gathered in element order into
   * one array at that key.
   */
  mapOver?: string;
  /** The key the gathered outputs are written to (and each instance sets); default the task's id. */
  mapOutput?: string;
  /** The most instances of a mapped task (default 10000, at most 100000). */
  mapMaxInstances?: number;
}

/** A task: its settings and its handler. Made by {@link task}. */
export interface Task {
  /** The task's settings. */
  readonly options: Readonly<TaskOptions>;
  /** The task's code. */
  readonly run: Handler;
}

/**
 * Declares a task.
 *
 * @param options - the task's id, dependencies and settings
 * @param run - the handler, `async (ctx) => { ... }`
 * @returns the task
 */
export function task(options: TaskOptions, run: Handler): Task {
  return Object.freeze({ options: Object.freeze({ ...options }), run });
}

/**
 * The wire definition of a task.
 *
 * @param options - the task's settings
 * @returns the definition in the wire's field names
 */
export function taskDefinition(options: TaskOptions): TaskDefinitionJson {
  const definition: TaskDefinitionJson = { id: options.id, dependencies: [...(options.dependencies ?? [])] };
  if (options.retryAttempts !== undefined) definition.retry_attempts = options.retryAttempts;
  if (options.retryDelayMs !== undefined) definition.retry_delay_ms = options.retryDelayMs;
  if (options.retryBackoff !== undefined) definition.retry_backoff = options.retryBackoff;
  if (options.retryMaxDelayMs !== undefined) definition.retry_max_delay_ms = options.retryMaxDelayMs;
  if (options.retryJitter !== undefined) definition.retry_jitter = options.retryJitter;
  if (options.timeoutMs !== undefined) definition.timeout_ms = options.timeoutMs;
  if (options.triggerRule !== undefined) definition.trigger_rule = options.triggerRule;
  if (options.handler !== undefined) definition.handler = options.handler;
  if (options.requiredLabels !== undefined && Object.keys(options.requiredLabels).length > 0) {
    definition.required_labels = { ...options.requiredLabels };
  }
  if (options.maxInFlight !== undefined) definition.max_in_flight = options.maxInFlight;
  if (options.mapOver !== undefined) definition.map_over = options.mapOver;
  if (options.mapOutput !== undefined) definition.map_output = options.mapOutput;
  if (options.mapMaxInstances !== undefined) definition.map_max_instances = options.mapMaxInstances;
  return definition;
}

/** A named group of tasks, registered with a client and served by a worker. */
export class Workflow {
  /** The workflow's name. */
  readonly name: string;
  /** Free text for people (part of the version hash). */
  readonly description: string;
  /** The tasks, in the order given. */
  readonly tasks: readonly Task[];
  /** How many runs may be active at once per key; unset means no limit. */
  readonly concurrency: ConcurrencyPolicyJson | undefined;

  /**
   * @param name - the workflow's name
   * @param tasks - its tasks
   * @param description - free text for people
   * @param concurrency - the concurrency policy, if any
   */
  constructor(name: string, tasks: readonly Task[], description = "", concurrency?: ConcurrencyPolicyJson) {
    this.name = name;
    this.tasks = Object.freeze([...tasks]);
    this.description = description;
    this.concurrency = concurrency === undefined ? undefined : Object.freeze({ ...concurrency });
  }

  /** The definition a client registers. */
  definition(): WorkflowDefinitionJson {
    const definition: WorkflowDefinitionJson = {
      name: this.name,
      description: this.description,
      tasks: this.tasks.map((t) => taskDefinition(t.options)),
    };
    if (this.concurrency !== undefined) definition.concurrency = { ...this.concurrency };
    return definition;
  }

  /**
   * The handler name a task is routed by: its `handler`, else `<workflow>.<task id>`.
   *
   * @param task - a task of this workflow
   * @returns the handler name
   */
  handlerName(task: Task): string {
    return task.options.handler ?? `${this.name}.${task.options.id}`;
  }

  /** Every handler of the workflow by handler name. */
  handlers(): Map<string, Handler> {
    return new Map(this.tasks.map((t) => [this.handlerName(t), t.run]));
  }

  /**
   * The task with this id.
   *
   * @param id - the task's id
   * @returns the task, or `undefined`
   */
  task(id: string): Task | undefined {
    return this.tasks.find((t) => t.options.id === id);
  }

  /**
   * Checks the definition the way the server does, with the server's messages.
   *
   * @throws {@link DefinitionError}
   */
  validate(): void {
    validateDefinition(this.definition());
  }
}

/**
 * Groups tasks into a workflow.
 *
 * @param name - the workflow's name
 * @param tasks - its tasks
 * @param options - an optional description and concurrency policy
 * @returns the workflow
 */
export function workflow(
  name: string,
  tasks: readonly Task[],
  options: { description?: string; concurrency?: ConcurrencyPolicyJson } = {},
): Workflow {
  return new Workflow(name, tasks, options.description ?? "", options.concurrency);
}

const TASK_FIELDS = new Set([
  "id",
  "dependencies",
  "retry_attempts",
  "retry_delay_ms",
  "retry_backoff",
  "retry_max_delay_ms",
  "retry_jitter",
  "timeout_ms",
  "trigger_rule",
  "handler",
  "required_labels",
  "max_in_flight",
  "map_over",
  "map_output",
  "map_max_instances",
]);

/**
 * Reads a workflow definition in the definition-file format (the wire's
 * field names), refusing unknown fields and wrong types by name.
 *
 * @param value - parsed JSON
 * @returns the definition
 * @throws {@link DefinitionError}
 */
export function definitionFromJson(value: unknown): WorkflowDefinitionJson {
  const object = (what: string, v: unknown): Record<string, unknown> => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new DefinitionError(`${what} must be an object`);
    return v as Record<string, unknown>;
  };
  const root = object("the definition", value);
  for (const key of Object.keys(root)) {
    if (!["name", "description", "tasks", "concurrency"].includes(key)) throw new DefinitionError(`unknown field ${JSON.stringify(key)} in the definition`);
  }
  if (typeof root.name !== "string") throw new DefinitionError("the definition's name must be a string");
  if (!Array.isArray(root.tasks)) throw new DefinitionError("the definition's tasks must be a list");
  const tasks = root.tasks.map((item: unknown, index) => {
    const t = object(`task ${index}`, item);
    for (const key of Object.keys(t)) {
      if (!TASK_FIELDS.has(key)) throw new DefinitionError(`unknown field ${JSON.stringify(key)} in task ${index}`);
    }
    for (const key of ["id", "retry_backoff", "trigger_rule", "handler", "map_over", "map_output"]) {
      if (t[key] !== undefined && typeof t[key] !== "string") throw new DefinitionError(`task ${index}: ${key} must be a string`);
    }
    for (const key of ["retry_attempts", "retry_delay_ms", "retry_max_delay_ms", "timeout_ms", "max_in_flight", "map_max_instances"]) {
      if (t[key] !== undefined && typeof t[key] !== "number") throw new DefinitionError(`task ${index}: ${key} must be a number`);
    }
    if (t.retry_jitter !== undefined && typeof t.retry_jitter !== "boolean") {
      throw new DefinitionError(`task ${index}: retry_jitter must be a boolean`);
    }
    if (
      t.required_labels !== undefined &&
      (t.required_labels === null ||
        typeof t.required_labels !== "object" ||
        Array.isArray(t.required_labels) ||
        Object.values(t.required_labels).some((v) => typeof v !== "string"))
    ) {
      throw new DefinitionError(`task ${index}: required_labels must be an object of strings`);
    }
    if (t.dependencies !== undefined && (!Array.isArray(t.dependencies) || t.dependencies.some((d) => typeof d !== "string"))) {
      throw new DefinitionError(`task ${index}: dependencies must be a list of strings`);
    }
    return t as unknown as TaskDefinitionJson;
  });
  const definition: WorkflowDefinitionJson = { name: root.name, tasks };
  if (root.concurrency !== undefined) {
    const policy = object("the definition's concurrency", root.concurrency);
    for (const key of Object.keys(policy)) {
      if (!["key_pointer", "fixed_key", "max_active_runs", "strategy"].includes(key)) {
        throw new DefinitionError(`unknown field ${JSON.stringify(key)} in the definition's concurrency`);
      }
    }
    for (const key of ["key_pointer", "fixed_key", "strategy"]) {
      if (policy[key] !== undefined && typeof policy[key] !== "string") throw new DefinitionError(`concurrency: ${key} must be a string`);
    }
    if (policy.max_active_runs !== undefined && typeof policy.max_active_runs !== "number") {
      throw new DefinitionError("concurrency: max_active_runs must be a number");
    }
    definition.concurrency = policy;
  }
  if (root.description !== undefined) {
    if (typeof root.description !== "string") throw new DefinitionError("the definition's description must be a string");
    definition.description = root.description;
  }
  return definition;
}
