/**
 * Lossless JSON. Contexts travel as JSON text, and `JSON.parse` would round
 * integers beyond 2^53 and long decimals through doubles; this parser keeps
 * every number exactly:
 *
 * - an integer that is a safe JavaScript integer becomes a `number`;
 * - any other integer becomes a `bigint`;
 * - any other number becomes a `number` when the double has the same decimal
 *   value as the text, and a {@link JsonNumber} holding the text otherwise.
 *
 * {@link stringifyJson} writes `bigint` and {@link JsonNumber} back as their
 * digits, so a value parsed here serializes to the same JSON value.
 *
 * @module
 */

/** A JSON number kept as its text, because no `number` holds it exactly. */
export class JsonNumber {
  /** The number as written in JSON, e.g. `123456789012345678901234567890.123456789`. */
  readonly text: string;

  /**
   * Wraps JSON number text; throws a `SyntaxError` when `text` is not one.
   *
   * @param text - a JSON number, e.g. `"1.5e400"`
   */
  constructor(text: string) {
    if (!NUMBER_PATTERN.test(text)) {
      throw new SyntaxError(`not a JSON number: ${preview(text)}`);
    }
    this.text = text;
  }

  /** The number rounded to the nearest double. */
  toNumber(): number {
    return Number(this.text);
  }

  /** The text. */
  toString(): string {
    return this.text;
  }
}

/** A JSON object as this SDK represents it. */
export interface JsonObject {
  [key: string]: JsonValue;
}

/** A JSON array as this SDK represents it. */
export type JsonArray = JsonValue[];

/**
 * A JSON value: `number` for numbers a double holds exactly, `bigint` for
 * larger integers, {@link JsonNumber} for other numbers a double would round.
 */
export type JsonValue = null | boolean | number | bigint | string | JsonNumber | JsonArray | JsonObject;

/** Raised for text that is not JSON; says where and what was found. */
export class JsonSyntaxError extends SyntaxError {
  /** The offset in the text, in UTF-16 code units. */
  readonly position: number;

  /**
   * @param message - what is wrong
   * @param position - where
   */
  constructor(message: string, position: number) {
    super(`${message} at position ${position}`);
    this.name = "JsonSyntaxError";
    this.position = position;
  }
}

const NUMBER_PATTERN = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/**
 * Text whose numbers all have at most 15 significant digits and exponents of
 * at most two digits parses exactly with `JSON.parse` (a double keeps 15
 * decimal digits); anything else may need the exact parser. Digit runs inside
 * strings only make the check conservative.
 */
const MAYBE_INEXACT = /[\d.]{16,}|[eE][+-]?\d{3}/;

function preview(text: string): string {
  return text.length > 40 ? `${JSON.stringify(text.slice(0, 40))}...` : JSON.stringify(text);
}

/**
 * Parses JSON text losslessly (see the module's description).
 *
 * @param text - JSON text
 * @returns the value
 * @throws {@link JsonSyntaxError} naming the position of the first error
 */
export function parseJson(text: string): JsonValue {
  if (!MAYBE_INEXACT.test(text)) {
    try {
      return JSON.parse(text) as JsonValue;
    } catch {
      // Fall through to the exact parser, whose message gives the position.
    }
  }
  const parser = new Parser(text);
  parser.skipWhitespace();
  const value = parser.value();
  parser.skipWhitespace();
  if (parser.position < text.length) {
    throw new JsonSyntaxError("unexpected text after the JSON value", parser.position);
  }
  return value;
}

/**
 * Splits the JSON text of an object into its members, each value kept as
 * its exact JSON text (not parsed). Later duplicates of a key win, as in
 * `JSON.parse`.
 *
 * @param text - JSON text of an object
 * @returns the keys, in order, with their values' text
 * @throws {@link JsonSyntaxError} when `text` is not a JSON object
 */
export function splitObject(text: string): Map<string, string> {
  const parser = new Parser(text);
  parser.skipWhitespace();
  if (text.charCodeAt(parser.position) !== 0x7b) {
    throw new JsonSyntaxError("expected a JSON object", parser.position);
  }
  const members = new Map<string, string>();
  parser.position++;
  parser.skipWhitespace();
  if (text.charCodeAt(parser.position) === 0x7d) {
    parser.position++;
  } else {
    for (;;) {
      parser.skipWhitespace();
      const key = parser.string();
      parser.skipWhitespace();
      parser.expect(0x3a, "':'");
      parser.skipWhitespace();
      const start = parser.position;
      parser.skipValue();
      members.delete(key);
      members.set(key, text.slice(start, parser.position));
      parser.skipWhitespace();
      const next = text.charCodeAt(parser.position);
      parser.position++;
      if (next === 0x2c) continue;
      if (next === 0x7d) break;
      throw new JsonSyntaxError("expected ',' or '}' in an object", parser.position - 1);
    }
  }
  parser.skipWhitespace();
  if (parser.position < text.length) {
    throw new JsonSyntaxError("unexpected text after the JSON object", parser.position);
  }
  return members;
}

/**
 * Checks that `text` is exactly one JSON value, without building it.
 *
 * @param text - the text to check
 * @throws {@link JsonSyntaxError} when it is not
 */
export function checkJson(text: string): void {
  const parser = new Parser(text);
  parser.skipWhitespace();
  parser.skipValue();
  parser.skipWhitespace();
  if (parser.position < text.length) {
    throw new JsonSyntaxError("unexpected text after the JSON value", parser.position);
  }
}

class Parser {
  position = 0;

  constructor(private readonly text: string) {}

  skipWhitespace(): void {
    const text = this.text;
    let position = this.position;
    for (;;) {
      const code = text.charCodeAt(position);
      if (code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09) position++;
      else break;
    }
    this.position = position;
  }

  expect(code: number, what: string): void {
    if (this.text.charCodeAt(this.position) !== code) {
      throw new JsonSyntaxError(`expected ${what}`, this.position);
    }
    this.position++;
  }

  value(): JsonValue {
    const code = this.text.charCodeAt(this.position);
    switch (code) {
      case 0x7b:
        return this.object();
      case 0x5b:
        return this.array();
      case 0x22:
        return this.string();
      case 0x74:
        return this.literal("true", true);
      case 0x66:
        return this.literal("false", false);
      case 0x6e:
        return this.literal("null", null);
      default:
        if (code === 0x2d || (code >= 0x30 && code <= 0x39)) return numberFromText(this.numberText());
        throw new JsonSyntaxError(
          Number.isNaN(code) ? "unexpected end of JSON" : `unexpected character ${JSON.stringify(this.text[this.position])}`,
          this.position,
        );
    }
  }

  /** Moves past one value without building it. */
  skipValue(): void {
    const code = this.text.charCodeAt(this.position);
    switch (code) {
      case 0x7b:
        this.position++;
        this.skipWhitespace();
        if (this.text.charCodeAt(this.position) === 0x7d) {
          this.position++;
          return;
        }
        for (;;) {
          this.skipWhitespace();
          this.skipString();
          this.skipWhitespace();
          this.expect(0x3a, "':'");
          this.skipWhitespace();
          this.skipValue();
          this.skipWhitespace();
          const next = this.text.charCodeAt(this.position++);
          if (next === 0x2c) continue;
          if (next === 0x7d) return;
          throw new JsonSyntaxError("expected ',' or '}' in an object", this.position - 1);
        }
      case 0x5b:
        this.position++;
        this.skipWhitespace();
        if (this.text.charCodeAt(this.position) === 0x5d) {
          this.position++;
          return;
        }
        for (;;) {
          this.skipWhitespace();
          this.skipValue();
          this.skipWhitespace();
          const next = this.text.charCodeAt(this.position++);
          if (next === 0x2c) continue;
          if (next === 0x5d) return;
          throw new JsonSyntaxError("expected ',' or ']' in an array", this.position - 1);
        }
      case 0x22:
        this.skipString();
        return;
      default:
        this.value();
    }
  }

  literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.position)) {
      throw new JsonSyntaxError(`unexpected character ${JSON.stringify(this.text[this.position])}`, this.position);
    }
    this.position += word.length;
    return value;
  }

  numberText(): string {
    const text = this.text;
    const start = this.position;
    let position = start;
    if (text.charCodeAt(position) === 0x2d) position++;
    const digitsFrom = (from: number): number => {
      let at = from;
      while (at < text.length && text.charCodeAt(at) >= 0x30 && text.charCodeAt(at) <= 0x39) at++;
      return at;
    };
    const intEnd = digitsFrom(position);
    if (intEnd === position || (text.charCodeAt(position) === 0x30 && intEnd - position > 1)) {
      throw new JsonSyntaxError("invalid number", start);
    }
    position = intEnd;
    if (text.charCodeAt(position) === 0x2e) {
      const fractionEnd = digitsFrom(position + 1);
      if (fractionEnd === position + 1) throw new JsonSyntaxError("invalid number", start);
      position = fractionEnd;
    }
    const e = text.charCodeAt(position);
    if (e === 0x65 || e === 0x45) {
      position++;
      const sign = text.charCodeAt(position);
      if (sign === 0x2b || sign === 0x2d) position++;
      const exponentEnd = digitsFrom(position);
      if (exponentEnd === position) throw new JsonSyntaxError("invalid number", start);
      position = exponentEnd;
    }
    this.position = position;
    return text.slice(start, position);
  }

  skipString(): void {
    const text = this.text;
    if (text.charCodeAt(this.position) !== 0x22) {
      throw new JsonSyntaxError("expected a string", this.position);
    }
    let position = this.position + 1;
    for (;;) {
      const quote = text.indexOf('"', position);
      if (quote < 0) throw new JsonSyntaxError("unterminated string", this.position);
      let backslashes = 0;
      while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes++;
      if (backslashes % 2 === 0) {
        // Control characters must be escaped inside strings.
        for (let at = position; at < quote; at++) {
          if (text.charCodeAt(at) < 0x20) throw new JsonSyntaxError("control character in a string", at);
        }
        this.position = quote + 1;
        return;
      }
      position = quote + 1;
    }
  }

  string(): string {
    const start = this.position;
    this.skipString();
    try {
      return JSON.parse(this.text.slice(start, this.position)) as string;
    } catch {
      throw new JsonSyntaxError("invalid escape in a string", start);
    }
  }

  array(): JsonArray {
    this.position++;
    const items: JsonArray = [];
    this.skipWhitespace();
    if (this.text.charCodeAt(this.position) === 0x5d) {
      this.position++;
      return items;
    }
    for (;;) {
      this.skipWhitespace();
      items.push(this.value());
      this.skipWhitespace();
      const next = this.text.charCodeAt(this.position++);
      if (next === 0x2c) continue;
      if (next === 0x5d) return items;
      throw new JsonSyntaxError("expected ',' or ']' in an array", this.position - 1);
    }
  }

  object(): JsonObject {
    this.position++;
    const object: JsonObject = {};
    this.skipWhitespace();
    if (this.text.charCodeAt(this.position) === 0x7d) {
      this.position++;
      return object;
    }
    for (;;) {
      this.skipWhitespace();
      const key = this.string();
      this.skipWhitespace();
      this.expect(0x3a, "':'");
      this.skipWhitespace();
      setMember(object, key, this.value());
      this.skipWhitespace();
      const next = this.text.charCodeAt(this.position++);
      if (next === 0x2c) continue;
      if (next === 0x7d) return object;
      throw new JsonSyntaxError("expected ',' or '}' in an object", this.position - 1);
    }
  }
}

/** Sets a member as an own property, also for the key `__proto__`. */
export function setMember(object: JsonObject, key: string, value: JsonValue): void {
  if (key === "__proto__") {
    Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    object[key] = value;
  }
}

/**
 * The value of JSON number text, as described in the module's description.
 *
 * @param text - a JSON number
 * @returns a `number`, `bigint` or {@link JsonNumber}
 */
export function numberFromText(text: string): number | bigint | JsonNumber {
  if (!/[.eE]/.test(text)) {
    const value = Number(text);
    if (Number.isSafeInteger(value)) return value;
    return BigInt(text);
  }
  const value = Number(text);
  if (Number.isFinite(value) && sameDecimal(text, String(value))) return value;
  return new JsonNumber(text);
}

/** Whether two decimal texts denote the same number. */
function sameDecimal(a: string, b: string): boolean {
  const x = normalizeDecimal(a);
  const y = normalizeDecimal(b);
  return x.negative === y.negative && x.digits === y.digits && x.exponent === y.exponent;
}

/** A decimal as sign, significant digits without zeros at either end, and the power of ten of its last digit. */
function normalizeDecimal(text: string): { negative: boolean; digits: string; exponent: number } {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) return { negative: false, digits: text, exponent: 0 };
  const fraction = match[3] ?? "";
  let digits = (match[2] ?? "") + fraction;
  let exponent = Number(match[4] ?? "0") - fraction.length;
  digits = digits.replace(/^0+/, "");
  const trimmed = digits.replace(/0+$/, "");
  exponent += digits.length - trimmed.length;
  if (trimmed === "") return { negative: false, digits: "", exponent: 0 };
  return { negative: match[1] === "-", digits: trimmed, exponent };
}

/** Raised for a value that has no JSON form (a function, `NaN`, a cycle). */
export class JsonValueError extends TypeError {
  /**
   * @param message - what is wrong and where
   */
  constructor(message: string) {
    super(message);
    this.name = "JsonValueError";
  }
}

/**
 * Writes a value as compact JSON: `bigint` and {@link JsonNumber} as their
 * digits, object keys in their order. Objects with a `toJSON` method (a
 * `Date`) are written as what it returns.
 *
 * @param value - the value
 * @returns JSON text
 * @throws {@link JsonValueError} for values with no JSON form (`NaN`, `Infinity`, `undefined`, functions, cycles), naming the path
 */
export function stringifyJson(value: unknown): string {
  const parts: string[] = [];
  write(value, parts, "$", new Set());
  return parts.join("");
}

function write(value: unknown, parts: string[], path: string, seen: Set<object>): void {
  switch (typeof value) {
    case "string":
      parts.push(JSON.stringify(value));
      return;
    case "number":
      if (!Number.isFinite(value)) throw new JsonValueError(`${path} is ${value}, which JSON cannot represent`);
      parts.push(String(value));
      return;
    case "bigint":
      parts.push(value.toString());
      return;
    case "boolean":
      parts.push(value ? "true" : "false");
      return;
    case "undefined":
    case "function":
    case "symbol":
      throw new JsonValueError(`${path} is ${typeof value}, which JSON cannot represent`);
    case "object":
      break;
  }
  if (value === null) {
    parts.push("null");
    return;
  }
  if (value instanceof JsonNumber) {
    parts.push(value.text);
    return;
  }
  const object = value;
  if (seen.has(object)) throw new JsonValueError(`${path} refers to itself (a cycle)`);
  const toJSON = (object as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === "function") {
    write((toJSON as () => unknown).call(object), parts, path, seen);
    return;
  }
  seen.add(object);
  if (Array.isArray(object)) {
    parts.push("[");
    object.forEach((item: unknown, index) => {
      if (index > 0) parts.push(",");
      write(item === undefined ? null : item, parts, `${path}[${index}]`, seen);
    });
    parts.push("]");
  } else if (object instanceof Map) {
    parts.push("{");
    let first = true;
    for (const [key, item] of object as Map<unknown, unknown>) {
      if (item === undefined) continue;
      if (!first) parts.push(",");
      first = false;
      parts.push(JSON.stringify(String(key)), ":");
      write(item, parts, `${path}.${String(key)}`, seen);
    }
    parts.push("}");
  } else {
    parts.push("{");
    let first = true;
    for (const key of Object.keys(object)) {
      const item = (object as Record<string, unknown>)[key];
      if (item === undefined) continue;
      if (!first) parts.push(",");
      first = false;
      parts.push(JSON.stringify(key), ":");
      write(item, parts, `${path}.${key}`, seen);
    }
    parts.push("}");
  }
  seen.delete(object);
}

/**
 * Whether two JSON values are equal as JSON: numbers by exact decimal value
 * (so `1`, `1n`, `1.0` and `new JsonNumber("1e0")` are equal), objects
 * whatever their key order.
 *
 * @param a - one value
 * @param b - the other
 * @returns whether they are equal
 */
export function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  const numeric = (v: JsonValue): string | undefined =>
    typeof v === "number" || typeof v === "bigint" ? String(v) : v instanceof JsonNumber ? v.text : undefined;
  const na = numeric(a);
  const nb = numeric(b);
  if (na !== undefined || nb !== undefined) {
    return na !== undefined && nb !== undefined && sameDecimal(na, nb);
  }
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, index) => jsonEqual(item, b[index] as JsonValue));
  }
  const objectA = a as JsonObject;
  const objectB = b as JsonObject;
  const keysA = Object.keys(objectA);
  if (keysA.length !== Object.keys(objectB).length) return false;
  return keysA.every(
    (key) => Object.prototype.hasOwnProperty.call(objectB, key) && jsonEqual(objectA[key] as JsonValue, objectB[key] as JsonValue),
  );
}
