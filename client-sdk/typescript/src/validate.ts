/**
 * Local validation of workflow definitions with the server's rules and
 * messages (proven by the shared `tests/vectors/validation.json`). Size
 * limits are configured on the server and only checked there.
 *
 * @module
 */

/** The retry backoffs the server knows. */
export const BACKOFFS = ["fixed", "linear", "exponential"] as const;
/** A retry backoff. */
export type Backoff = (typeof BACKOFFS)[number];
/** The trigger rules the server knows. */
export const TRIGGER_RULES = ["all_success", "all_done", "one_success", "one_failed", "none_failed"] as const;
/** A trigger rule. */
export type TriggerRule = (typeof TRIGGER_RULES)[number];
/** The largest `retry_attempts`. */
export const MAX_RETRY_ATTEMPTS = 100;
/** The largest `retry_delay_ms` and `retry_max_delay_ms` (one day). */
export const MAX_DELAY_MS = 86_400_000;
/** The largest `timeout_ms` (seven days). */
export const MAX_TIMEOUT_MS = 604_800_000;
/** The largest `max_in_flight` (the largest capacity a worker may register). */
export const MAX_IN_FLIGHT = 10_000;
/** The most `required_labels` of a task (and labels of a worker). */
export const MAX_LABELS = 64;
/** The longest label key, in UTF-8 bytes. */
export const MAX_LABEL_KEY_BYTES = 63;
/** The longest label value, in UTF-8 bytes. */
export const MAX_LABEL_VALUE_BYTES = 256;
/** What a concurrency policy may do with a run started while its key is full. */
export const CONCURRENCY_STRATEGIES = ["queue", "cancel_newest", "cancel_in_progress"] as const;
/** The largest `max_active_runs` of a concurrency policy. */
export const MAX_ACTIVE_RUNS_LIMIT = 10_000;
/** The longest `key_pointer` and `fixed_key`, in UTF-8 bytes. */
export const MAX_POLICY_KEY_BYTES = 128;
/** The longest `map_over` and `map_output` key, in UTF-8 bytes. */
export const MAX_MAP_KEY_BYTES = 256;
/** The largest `map_max_instances` of a mapped task. */
export const MAP_MAX_INSTANCES_LIMIT = 100_000;
/** The key under which an instance of a mapped task finds its element. */
export const MAP_ELEMENT_KEY = "map_element";
/** The key under which an instance of a mapped task finds its element's 0-based index. */
export const MAP_INDEX_KEY = "map_index";
const DEFAULT_RETRY_DELAY_MS = 1_000;
const DEFAULT_RETRY_MAX_DELAY_MS = 30_000;

/**
 * A task definition in the wire's (and definition files') field names;
 * unset settings take the server's defaults.
 */
export interface TaskDefinitionJson {
  /** The task's id. */
  id: string;
  /** Ids of the tasks it waits for. */
  dependencies?: string[];
  /** Retries after the first attempt (default 0). */
  retry_attempts?: number;
  /** Base retry delay in ms (default 1000). */
  retry_delay_ms?: number;
  /** `fixed`, `linear` or `exponential` (default). */
  retry_backoff?: string;
  /** Upper bound of a retry delay in ms (default 30000). */
  retry_max_delay_ms?: number;
  /** Whether retry delays are jittered (default true). */
  retry_jitter?: boolean;
  /** Time limit of one attempt in ms; unset means the server's default. */
  timeout_ms?: number;
  /** When the task runs (default `all_success`). */
  trigger_rule?: string;
  /** The routing key (default `<workflow>.<task id>`). */
  handler?: string;
  /** Executor labels the task requires: only workers with every one of them are assigned it. */
  required_labels?: Record<string, string>;
  /** At most this many attempts of the handler in flight across the namespace (1 to 10000); unset means no limit. */
  max_in_flight?: number;
  /** Maps the task over the array at this context key: one instance per element. */
  map_over?: string;
  /** The key the gathered outputs are written to (default the task's id). */
  map_output?: string;
  /** The most instances of a mapped task (default 10000). */
  map_max_instances?: number;
}

/**
 * How many runs of a workflow may be active at once per key, in the wire's
 * field names: exactly one of `key_pointer` (a JSON pointer into the run's
 * input) and `fixed_key`.
 */
export interface ConcurrencyPolicyJson {
  /** A JSON pointer into the run's input, starting with `/`. */
  key_pointer?: string;
  /** The same key for every run. */
  fixed_key?: string;
  /** Active runs allowed per key (default 1). */
  max_active_runs?: number;
  /** `queue` (default), `cancel_newest` or `cancel_in_progress`. */
  strategy?: string;
}

/** A workflow definition in the wire's field names. */
export interface WorkflowDefinitionJson {
  /** The workflow's name. */
  name: string;
  /** Free text for people. */
  description?: string;
  /** The tasks. */
  tasks: TaskDefinitionJson[];
  /** The concurrency policy; unset means no limit. */
  concurrency?: ConcurrencyPolicyJson;
}

/** Why a definition is invalid; the message is the server's. */
export class DefinitionError extends Error {
  /**
   * @param message - the server's message for this error
   */
  constructor(message: string) {
    super(message);
    this.name = "DefinitionError";
  }
}

/**
 * Quotes like the server's messages do (Rust's `{:?}` of a string).
 *
 * @param text - the text
 * @returns it quoted and escaped
 */
export function quote(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    if (char === '"') out += '\\"';
    else if (char === "\\") out += "\\\\";
    else if (char === "\n") out += "\\n";
    else if (char === "\r") out += "\\r";
    else if (char === "\t") out += "\\t";
    else if (char === "\0") out += "\\0";
    else if (code < 0x20 || code === 0x7f) out += `\\u{${code.toString(16)}}`;
    else out += char;
  }
  return `${out}"`;
}

/**
 * Whether `text` is a valid workflow name or task id: 1-64 characters of
 * `a-z 0-9 _ -`, starting with a letter.
 *
 * @param text - the name
 * @returns whether it is valid
 */
export function isValidIdentifier(text: string): boolean {
  return /^[a-z][a-z0-9_-]{0,63}$/.test(text);
}

/**
 * Whether `text` is a valid handler name: 1-128 characters of
 * `a-z A-Z 0-9 _ - . : /`.
 *
 * @param text - the handler name
 * @returns whether it is valid
 */
export function isValidHandler(text: string): boolean {
  return /^[a-zA-Z0-9_.:/-]{1,128}$/.test(text);
}

const IDENTIFIER_RULE = "must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter";

/**
 * Checks a definition the way the server does, with the server's messages.
 *
 * @param definition - the definition
 * @throws {@link DefinitionError} for the first problem found
 */
export function validateDefinition(definition: WorkflowDefinitionJson): void {
  if (!isValidIdentifier(definition.name)) {
    throw new DefinitionError(`invalid workflow name ${quote(definition.name)}: ${IDENTIFIER_RULE}`);
  }
  if (definition.tasks.length === 0) {
    throw new DefinitionError(`workflow ${quote(definition.name)} has no tasks`);
  }
  if (definition.concurrency !== undefined) {
    const problem = checkConcurrency(definition.concurrency);
    if (problem !== undefined) throw new DefinitionError(`workflow ${quote(definition.name)}: concurrency ${problem}`);
  }
  const ids = new Map<string, TaskDefinitionJson>();
  for (const task of definition.tasks) {
    if (!isValidIdentifier(task.id)) throw new DefinitionError(`invalid task id ${quote(task.id)}: ${IDENTIFIER_RULE}`);
    checkSettings(task);
    if (ids.has(task.id)) throw new DefinitionError(`duplicate task id ${quote(task.id)}`);
    ids.set(task.id, task);
  }
  for (const task of definition.tasks) {
    const seen = new Set<string>();
    for (const dependency of task.dependencies ?? []) {
      if (dependency === task.id) throw new DefinitionError(`task ${quote(task.id)} depends on itself`);
      if (!ids.has(dependency)) {
        throw new DefinitionError(`task ${quote(task.id)} depends on unknown task ${quote(dependency)}`);
      }
      if (seen.has(dependency)) {
        throw new DefinitionError(`task ${quote(task.id)} lists dependency ${quote(dependency)} more than once`);
      }
      seen.add(dependency);
    }
  }
  const cycle = findCycle(definition.tasks);
  if (cycle) throw new DefinitionError(`cycle detected: ${cycle.join(" -> ")}`);
}

/**
 * What is wrong with a concurrency policy, in the server's words.
 *
 * @param policy - the policy
 * @returns the problem, or undefined when there is none
 */
export function checkConcurrency(policy: ConcurrencyPolicyJson): string | undefined {
  const pointer = policy.key_pointer ?? "";
  const fixedKey = policy.fixed_key ?? "";
  if (pointer === "" && fixedKey === "") return "needs one of key_pointer and fixed_key";
  if (pointer !== "" && fixedKey !== "") return "has both key_pointer and fixed_key; set one";
  if (pointer !== "") {
    const size = utf8.encode(pointer).length;
    if (size > MAX_POLICY_KEY_BYTES) return `key_pointer is ${size} bytes, over the limit of ${MAX_POLICY_KEY_BYTES}`;
    if (!pointer.startsWith("/") || pointer.includes("\0") || /~(?![01])/.test(pointer)) {
      return `key_pointer ${quote(pointer)} is not a JSON pointer: must start with / and use ~ only in ~0 and ~1`;
    }
  } else {
    const size = utf8.encode(fixedKey).length;
    if (size > MAX_POLICY_KEY_BYTES) return `fixed_key is ${size} bytes, over the limit of ${MAX_POLICY_KEY_BYTES}`;
    if (fixedKey.includes("\0")) return "fixed_key contains U+0000";
  }
  const limit = policy.max_active_runs;
  if (limit !== undefined && (limit < 1 || limit > MAX_ACTIVE_RUNS_LIMIT || !Number.isInteger(limit))) {
    return `max_active_runs must be between 1 and ${MAX_ACTIVE_RUNS_LIMIT}, got ${limit}`;
  }
  const strategy = policy.strategy ?? "";
  if (strategy !== "" && !(CONCURRENCY_STRATEGIES as readonly string[]).includes(strategy)) {
    return `unknown strategy ${quote(strategy)}; expected one of queue, cancel_newest, cancel_in_progress`;
  }
  return undefined;
}

function checkSettings(task: TaskDefinitionJson): void {
  const inRange = (field: string, value: number, min: number, max: number): number => {
    if (value < min || value > max || !Number.isInteger(value)) {
      throw new DefinitionError(`task ${quote(task.id)}: ${field} must be between ${min} and ${max}, got ${value}`);
    }
    return value;
  };
  if (task.retry_attempts !== undefined) inRange("retry_attempts", task.retry_attempts, 0, MAX_RETRY_ATTEMPTS);
  const delay =
    task.retry_delay_ms !== undefined ? inRange("retry_delay_ms", task.retry_delay_ms, 0, MAX_DELAY_MS) : DEFAULT_RETRY_DELAY_MS;
  const maxDelay =
    task.retry_max_delay_ms !== undefined
      ? inRange("retry_max_delay_ms", task.retry_max_delay_ms, 0, MAX_DELAY_MS)
      : Math.max(DEFAULT_RETRY_MAX_DELAY_MS, delay);
  if (maxDelay < delay) {
    throw new DefinitionError(
      `task ${quote(task.id)}: retry_max_delay_ms (${maxDelay}) must be at least retry_delay_ms (${delay})`,
    );
  }
  if (task.timeout_ms !== undefined) inRange("timeout_ms", task.timeout_ms, 1, MAX_TIMEOUT_MS);
  if (task.max_in_flight !== undefined) inRange("max_in_flight", task.max_in_flight, 1, MAX_IN_FLIGHT);
  const backoff = task.retry_backoff ?? "";
  if (backoff !== "" && !(BACKOFFS as readonly string[]).includes(backoff)) {
    throw new DefinitionError(
      `task ${quote(task.id)}: unknown retry_backoff ${quote(backoff)}; expected one of ${BACKOFFS.join(", ")}`,
    );
  }
  const rule = task.trigger_rule ?? "";
  if (rule !== "" && !(TRIGGER_RULES as readonly string[]).includes(rule)) {
    throw new DefinitionError(
      `task ${quote(task.id)}: unknown trigger_rule ${quote(rule)}; expected one of ${TRIGGER_RULES.join(", ")}`,
    );
  }
  const handler = task.handler ?? "";
  if (handler !== "" && !isValidHandler(handler)) {
    throw new DefinitionError(
      `task ${quote(task.id)}: invalid handler ${quote(handler)}: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /`,
    );
  }
  const problem = checkLabels(task.required_labels ?? {});
  if (problem !== undefined) throw new DefinitionError(`task ${quote(task.id)}: required_labels ${problem}`);
  const mapProblem = checkMap(task);
  if (mapProblem !== undefined) throw new DefinitionError(`task ${quote(task.id)}: ${mapProblem}`);
}

function checkMap(task: TaskDefinitionJson): string | undefined {
  const over = task.map_over ?? "";
  const output = task.map_output ?? "";
  if (over === "") {
    if (output !== "") return "map_output is set but map_over is not";
    if (task.map_max_instances !== undefined) return "map_max_instances is set but map_over is not";
    return undefined;
  }
  for (const [field, key] of [
    ["map_over", over],
    ["map_output", output],
  ] as const) {
    const size = utf8.encode(key).length;
    if (size > MAX_MAP_KEY_BYTES) return `${field} is ${size} bytes, over the limit of ${MAX_MAP_KEY_BYTES}`;
    if (key.includes("\0")) return `${field} contains U+0000`;
  }
  const max = task.map_max_instances;
  if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > MAP_MAX_INSTANCES_LIMIT)) {
    return `map_max_instances must be between 1 and ${MAP_MAX_INSTANCES_LIMIT}, got ${max}`;
  }
  return undefined;
}

const utf8 = new TextEncoder();

/**
 * What is wrong with a set of labels, by the server's rule for workers'
 * labels and tasks' required labels (checked in the keys' UTF-8 byte order,
 * as the server does), or undefined.
 *
 * @param labels - the labels by key
 * @returns the problem, naming the label, or undefined
 */
export function checkLabels(labels: Readonly<Record<string, string>>): string | undefined {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) return `has ${keys.length} labels, over the limit of ${MAX_LABELS}`;
  const encoded = keys.map((key) => ({ key, bytes: utf8.encode(key) }));
  encoded.sort((a, b) => {
    const common = Math.min(a.bytes.length, b.bytes.length);
    for (let i = 0; i < common; i++) {
      const difference = (a.bytes[i] ?? 0) - (b.bytes[i] ?? 0);
      if (difference !== 0) return difference;
    }
    return a.bytes.length - b.bytes.length;
  });
  for (const { key, bytes } of encoded) {
    const value = labels[key] ?? "";
    if (key === "") return "has an empty key";
    if (bytes.length > MAX_LABEL_KEY_BYTES) {
      return `key ${quote(key)} is ${bytes.length} bytes, over the limit of ${MAX_LABEL_KEY_BYTES}`;
    }
    if (key.includes("\0")) return `key ${quote(key)} contains U+0000`;
    const valueBytes = utf8.encode(value).length;
    if (valueBytes > MAX_LABEL_VALUE_BYTES) {
      return `value of ${quote(key)} is ${valueBytes} bytes, over the limit of ${MAX_LABEL_VALUE_BYTES}`;
    }
    if (value.includes("\0")) return `value of ${quote(key)} contains U+0000`;
  }
  return undefined;
}

const byteOrder = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The cycle the server reports: within the strongly connected component
 * whose sorted ids are smallest, a depth-first path from its smallest id
 * along sorted dependants back to it.
 */
function findCycle(tasks: TaskDefinitionJson[]): string[] | undefined {
  const dependants = new Map<string, string[]>();
  for (const task of tasks) dependants.set(task.id, []);
  for (const task of tasks) {
    for (const dependency of task.dependencies ?? []) dependants.get(dependency)?.push(task.id);
  }
  const components = stronglyConnected([...dependants.keys()], (id) => dependants.get(id) ?? []);
  const cyclic = components
    .filter((component) => component.length > 1)
    .map((component) => [...component].sort(byteOrder));
  if (cyclic.length === 0) return undefined;
  cyclic.sort((a, b) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const order = byteOrder(a[i] as string, b[i] as string);
      if (order !== 0) return order;
    }
    return a.length - b.length;
  });
  const component = cyclic[0] as string[];
  const members = new Set(component);
  const start = component[0] as string;
  const successors = (id: string): string[] =>
    (dependants.get(id) ?? []).filter((next) => members.has(next)).sort(byteOrder);
  const path = [start];
  const visited = new Set([start]);
  const nextChoice = [0];
  while (path.length > 0) {
    const current = path[path.length - 1] as string;
    const candidates = successors(current);
    if (candidates.includes(start)) return [...path, start];
    const choice = nextChoice[nextChoice.length - 1] as number;
    const next = candidates[choice];
    if (next !== undefined) {
      nextChoice[nextChoice.length - 1] = choice + 1;
      if (!visited.has(next)) {
        visited.add(next);
        path.push(next);
        nextChoice.push(0);
      }
    } else {
      path.pop();
      nextChoice.pop();
    }
  }
  return undefined;
}

/** Tarjan's strongly connected components, iteratively. */
function stronglyConnected(nodes: string[], edges: (node: string) => string[]): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: { node: string; edge: number }[] = [{ node: root, edge: 0 }];
    index.set(root, counter);
    low.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const frame = work[work.length - 1] as { node: string; edge: number };
      const out = edges(frame.node);
      if (frame.edge < out.length) {
        const next = out[frame.edge++] as string;
        if (!index.has(next)) {
          index.set(next, counter);
          low.set(next, counter++);
          stack.push(next);
          onStack.add(next);
          work.push({ node: next, edge: 0 });
        } else if (onStack.has(next)) {
          low.set(frame.node, Math.min(low.get(frame.node) as number, index.get(next) as number));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(frame.node) as number));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        for (;;) {
          const member = stack.pop() as string;
          onStack.delete(member);
          component.push(member);
          if (member === frame.node) break;
        }
        components.push(component);
      }
    }
  }
  return components;
}
