/**
 * The task context: a JSON object a task reads and writes, with the seed's
 * rules (`insert` never overwrites, `update` never creates) and a record of
 * what the task changed, which the worker sends back as the attempt's delta.
 *
 * @module
 */

import { JsonNumber, parseJson, splitObject, stringifyJson } from "./json.js";
import type { JsonArray, JsonObject, JsonValue } from "./json.js";

/** What went wrong in a {@link Context} operation. */
export type ContextErrorKind = "key_exists" | "key_missing" | "wrong_type" | "invalid";

/** Why a {@link Context} operation was refused; the message names the key. */
export class ContextError extends Error {
  /** What went wrong: `key_exists`, `key_missing`, `wrong_type` or `invalid`. */
  readonly kind: ContextErrorKind;
  /** The key concerned, if any. */
  readonly key: string | undefined;

  /**
   * @param kind - what went wrong
   * @param message - the message
   * @param key - the key concerned
   */
  constructor(kind: ContextErrorKind, message: string, key?: string) {
    super(message);
    this.name = "ContextError";
    this.kind = kind;
    this.key = key;
  }
}

/** The types {@link Context.get} can check for, by name. */
export interface JsonTypes {
  /** A `number`; integers beyond 2^53 and decimals a double would round are refused. */
  number: number;
  /** An integer, as a `bigint`. */
  bigint: bigint;
  /** A string. */
  string: string;
  /** `true` or `false`. */
  boolean: boolean;
  /** A JSON object. */
  object: JsonObject;
  /** A JSON array. */
  array: JsonArray;
  /** `null`. */
  null: null;
}

/** A type name of {@link JsonTypes}. */
export type JsonTypeName = keyof JsonTypes;

/**
 * Converts a JSON value to a `T`, or throws (any error) when it cannot; its
 * message becomes part of the {@link ContextError}.
 */
export type JsonDecoder<T> = ((value: JsonValue) => T) & { readonly typeName?: string };

/** Information about the attempt a context belongs to (empty outside a worker). */
export interface AttemptInfo {
  /** The run's id. */
  readonly runId: string;
  /** The workflow's name. */
  readonly workflowName: string;
  /** The task's id. */
  readonly taskId: string;
  /** The attempt's id. */
  readonly attemptId: string;
  /** 1 for the first attempt. */
  readonly attemptNumber: number;
  /** The handler name the task was routed by. */
  readonly handler: string;
  /** When the attempt times out, in Unix milliseconds, if the server said. */
  readonly deadlineUnixMs: number | undefined;
  /** For an instance of a mapped task (`taskId` is the mapped task's): its element's index, also in the input under `map_index`. */
  readonly mapIndex: number | undefined;
}

/** One value: JSON text from the input, parsed on first read, or a written value. */
interface Entry {
  raw: string | undefined;
  value: JsonValue | undefined;
  parsed: boolean;
}

const NEVER_ABORTED = new AbortController().signal;

const NO_ATTEMPT: AttemptInfo = {
  runId: "",
  workflowName: "",
  taskId: "",
  attemptId: "",
  attemptNumber: 0,
  handler: "",
  deadlineUnixMs: undefined,
  mapIndex: undefined,
};

/**
 * A task's view of the run's context: a JSON object. It starts from the
 * task's input (the run's input plus the writes of its succeeded ancestors);
 * writes are recorded as a delta of top-level keys (keys set, input keys
 * removed) and only the delta travels back. Values are replaced whole.
 *
 * Input values stay JSON text until read, and numbers are read losslessly
 * (see {@link parseJson}): integers beyond 2^53 are `bigint`s and survive a
 * round trip exactly.
 *
 * ```ts
 * const ctx = Context.fromJson('{"n": 18446744073709551617}');
 * ctx.insert("doubled", ctx.get("n", "bigint") * 2n);
 * ctx.deltaJson(); // {"set":'{"doubled":36893488147419103234}', removed: []}
 * ```
 */
export class Context {
  private readonly entries = new Map<string, Entry>();
  private readonly inputKeys: ReadonlySet<string>;
  private readonly setKeys = new Set<string>();
  private readonly removedKeys = new Set<string>();
  /** Aborted when the server cancels the attempt (the run was cancelled, or it timed out) or the worker stops. */
  readonly signal: AbortSignal;
  /** The attempt this context belongs to. */
  readonly attempt: AttemptInfo;

  private constructor(entries: Map<string, Entry>, signal: AbortSignal, attempt: AttemptInfo) {
    this.entries = entries;
    this.inputKeys = new Set(entries.keys());
    this.signal = signal;
    this.attempt = attempt;
  }

  /**
   * A context whose input is `data` (nothing recorded as written).
   *
   * @param data - the input object
   * @returns the context
   */
  static fromObject(data: JsonObject = {}): Context {
    const entries = new Map<string, Entry>();
    for (const key of Object.keys(data)) {
      entries.set(key, { raw: undefined, value: data[key], parsed: true });
    }
    return new Context(entries, NEVER_ABORTED, NO_ATTEMPT);
  }

  /**
   * A context whose input is JSON text of an object, as on the wire; each
   * value is parsed when first read.
   *
   * @param text - JSON text of an object; empty means `{}`
   * @param signal - the attempt's cancellation
   * @param attempt - the attempt's identity
   * @returns the context
   * @throws {@link ContextError} (kind `invalid`) when the text is not a JSON object
   */
  static fromJson(text: string, signal: AbortSignal = NEVER_ABORTED, attempt: AttemptInfo = NO_ATTEMPT): Context {
    const entries = new Map<string, Entry>();
    if (text.trim() !== "") {
      let members: Map<string, string>;
      try {
        members = splitObject(text);
      } catch (error) {
        throw new ContextError("invalid", `invalid context: ${(error as Error).message}`);
      }
      for (const [key, raw] of members) entries.set(key, { raw, value: undefined, parsed: false });
    }
    return new Context(entries, signal, attempt);
  }

  /** Whether the attempt was cancelled (see {@link Context.signal}). */
  get cancelled(): boolean {
    return this.signal.aborted;
  }

  /**
   * Throws the cancellation's reason if the attempt was cancelled: a cheap
   * check for loops of synchronous work.
   */
  throwIfCancelled(): void {
    this.signal.throwIfAborted();
  }

  /**
   * Reads `key`. With a type name (`"number"`, `"bigint"`, `"string"`,
   * `"boolean"`, `"object"`, `"array"`, `"null"`) or a decoder function,
   * checks the value and returns it typed.
   *
   * @param key - the key
   * @param type - what the value must be
   * @returns the value
   * @throws {@link ContextError} `key_missing` when absent, `wrong_type` (naming the key and the type) when the value is not of the type
   */
  get(key: string): JsonValue;
  get<N extends JsonTypeName>(key: string, type: N): JsonTypes[N];
  get<T>(key: string, type: JsonDecoder<T>): T;
  get(key: string, type?: JsonTypeName | JsonDecoder<unknown>): unknown {
    const value = this.valueOf(key);
    if (type === undefined) return value;
    if (typeof type === "function") {
      try {
        return type(value);
      } catch (error) {
        const name = type.typeName ?? (type.name || "the decoder's type");
        throw new ContextError(
          "wrong_type",
          `context key ${JSON.stringify(key)} cannot be read as ${name}: ${(error as Error).message}`,
          key,
        );
      }
    }
    return convert(key, value, type);
  }

  /**
   * Reads `key` if present.
   *
   * @param key - the key
   * @returns the value, or `undefined` when absent
   */
  tryGet(key: string): JsonValue | undefined {
    return this.entries.has(key) ? this.valueOf(key) : undefined;
  }

  /**
   * The exact JSON text of the value of `key` (as received, for an unread
   * input value).
   *
   * @param key - the key
   * @returns the JSON text
   * @throws {@link ContextError} `key_missing` when absent
   */
  getJson(key: string): string {
    const entry = this.entry(key);
    if (!entry.parsed && entry.raw !== undefined) return entry.raw;
    return stringifyJson(entry.value);
  }

  /**
   * Whether `key` is present (in the input or written by this task).
   *
   * @param key - the key
   * @returns whether it is present
   */
  contains(key: string): boolean {
    return this.entries.has(key);
  }

  /**
   * Adds `key`.
   *
   * @param key - the key
   * @param value - its value (anything {@link stringifyJson} can write)
   * @throws {@link ContextError} `key_exists` when the key is present
   */
  insert(key: string, value: unknown): void {
    if (this.entries.has(key)) {
      throw new ContextError(
        "key_exists",
        `context key ${JSON.stringify(key)} already exists; use update or upsert to change it`,
        key,
      );
    }
    this.write(key, value);
  }

  /**
   * Replaces the value of `key`.
   *
   * @param key - the key
   * @param value - its new value
   * @throws {@link ContextError} `key_missing` when the key is absent
   */
  update(key: string, value: unknown): void {
    if (!this.entries.has(key)) throw missing(key);
    this.write(key, value);
  }

  /**
   * Sets `key` whether or not it is present.
   *
   * @param key - the key
   * @param value - its value
   * @returns the previous value, or `undefined`
   */
  upsert(key: string, value: unknown): JsonValue | undefined {
    const previous = this.tryGet(key);
    this.write(key, value);
    return previous;
  }

  /**
   * Removes `key`. The removal is part of the delta when the key came from
   * the input; a key this task wrote and then removed leaves no trace.
   *
   * @param key - the key
   * @returns the removed value, or `undefined` when it was absent
   */
  remove(key: string): JsonValue | undefined {
    if (!this.entries.has(key)) return undefined;
    const value = this.valueOf(key);
    this.discard(key);
    return value;
  }

  /**
   * Removes `key` like {@link Context.remove} without reading (parsing) its value.
   *
   * @param key - the key
   * @returns whether it was present
   */
  discard(key: string): boolean {
    if (!this.entries.delete(key)) return false;
    this.setKeys.delete(key);
    if (this.inputKeys.has(key)) this.removedKeys.add(key);
    return true;
  }

  /** The keys present now, in order. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** The number of keys present now. */
  get size(): number {
    return this.entries.size;
  }

  /** A copy of the whole context as it is now; every value parsed. */
  data(): JsonObject {
    const data: JsonObject = {};
    for (const key of this.entries.keys()) setOwn(data, key, this.valueOf(key));
    return data;
  }

  /** This task's delta: the keys it set with their values, and the input keys it removed (sorted). */
  delta(): { set: JsonObject; removed: string[] } {
    const set: JsonObject = {};
    for (const key of this.setKeys) setOwn(set, key, this.valueOf(key));
    return { set, removed: [...this.removedKeys].sort() };
  }

  /**
   * The delta as sent to the server: JSON text of the object of keys set,
   * and the input keys removed (sorted).
   */
  deltaJson(): { set: string; removed: string[] } {
    const parts: string[] = [];
    for (const key of this.setKeys) parts.push(`${JSON.stringify(key)}:${this.getJson(key)}`);
    return { set: `{${parts.join(",")}}`, removed: [...this.removedKeys].sort() };
  }

  private entry(key: string): Entry {
    const entry = this.entries.get(key);
    if (entry === undefined) throw missing(key);
    return entry;
  }

  private valueOf(key: string): JsonValue {
    const entry = this.entry(key);
    if (!entry.parsed) {
      entry.value = parseJson(entry.raw ?? "null");
      entry.parsed = true;
      entry.raw = undefined;
    }
    return entry.value as JsonValue;
  }

  private write(key: string, value: unknown): void {
    // Serializing now rejects values without a JSON form at the call that
    // wrote them, and keeps the task from changing the value afterwards.
    let raw: string;
    try {
      raw = stringifyJson(value);
    } catch (error) {
      throw new ContextError("invalid", `context key ${JSON.stringify(key)}: ${(error as Error).message}`, key);
    }
    this.entries.delete(key);
    this.entries.set(key, { raw, value: undefined, parsed: false });
    this.setKeys.delete(key);
    this.setKeys.add(key);
    this.removedKeys.delete(key);
  }
}

function missing(key: string): ContextError {
  return new ContextError("key_missing", `context key ${JSON.stringify(key)} not found`, key);
}

function setOwn(object: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

function describe(value: JsonValue): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof JsonNumber) return `the number ${value.text}`;
  switch (typeof value) {
    case "bigint":
      return `the integer ${value}`;
    case "number":
      return `the number ${value}`;
    case "string":
      return "a string";
    case "boolean":
      return `${value}`;
    default:
      return "an object";
  }
}

function convert(key: string, value: JsonValue, type: JsonTypeName): unknown {
  const wrong = (why?: string): ContextError =>
    new ContextError(
      "wrong_type",
      `context key ${JSON.stringify(key)} cannot be read as ${type}: it is ${describe(value)}${why ? ` (${why})` : ""}`,
      key,
    );
  switch (type) {
    case "number":
      if (typeof value === "number") return value;
      if (typeof value === "bigint") throw wrong("beyond 2^53, a number would round it; read it as bigint");
      if (value instanceof JsonNumber) throw wrong("a number would round it");
      throw wrong();
    case "bigint":
      if (typeof value === "bigint") return value;
      if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
      if (value instanceof JsonNumber && /^-?\d+$/.test(value.text)) return BigInt(value.text);
      throw wrong(typeof value === "number" || value instanceof JsonNumber ? "not an integer" : undefined);
    case "string":
    case "boolean":
      if (typeof value === type) return value;
      throw wrong();
    case "null":
      if (value === null) return value;
      throw wrong();
    case "array":
      if (Array.isArray(value)) return value;
      throw wrong();
    case "object":
      if (value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof JsonNumber)) return value;
      throw wrong();
  }
}
