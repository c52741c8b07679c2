import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Context, ContextError } from "../context.js";
import { JsonNumber, jsonEqual, parseJson, stringifyJson } from "../json.js";
import type { JsonObject, JsonValue } from "../json.js";
import { VECTORS } from "./harness.js";

interface OpsCase {
  name: string;
  input: JsonObject;
  ops: { op: string; key: string; value?: JsonValue }[];
  data: JsonObject;
  set: JsonObject;
  removed: string[];
  errors: (string | null)[];
}

interface RuleCase {
  name: string;
  input: JsonObject;
  deltas: { task: string; position: number; set: JsonObject; removed: string[] }[];
  expected: JsonObject;
  expected_json?: string;
}

function vectors<T>(file: string): T[] {
  return (parseJson(readFileSync(join(VECTORS, file), "utf8")) as unknown as { cases: T[] }).cases;
}

/** Canonical text: keys sorted byte-wise at every level, compact. */
function canonical(value: JsonValue): string {
  if (value === null || typeof value !== "object" || value instanceof JsonNumber) return stringifyJson(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const keys = Object.keys(value).sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k] as JsonValue)}`).join(",")}}`;
}

test("tests/vectors/context_ops.json: every case", () => {
  const cases = vectors<OpsCase>("context_ops.json");
  assert.ok(cases.length >= 10);
  for (const c of cases) {
    // Through the wire form too: the input arrives as JSON text.
    const context = Context.fromJson(stringifyJson(c.input));
    const errors = c.ops.map((op) => {
      try {
        if (op.op === "insert") context.insert(op.key, op.value);
        else if (op.op === "update") context.update(op.key, op.value);
        else if (op.op === "upsert") context.upsert(op.key, op.value);
        else if (op.op === "remove") context.remove(op.key);
        else throw new Error(`unknown op ${op.op}`);
        return null;
      } catch (error) {
        if (error instanceof ContextError) return error.kind;
        throw error;
      }
    });
    assert.deepEqual(errors, c.errors, c.name);
    assert.ok(jsonEqual(context.data(), c.data), `${c.name}: data ${stringifyJson(context.data())}`);
    const delta = context.delta();
    assert.ok(jsonEqual(delta.set, c.set), `${c.name}: set ${stringifyJson(delta.set)}`);
    assert.deepEqual(delta.removed, c.removed, c.name);
    const wire = context.deltaJson();
    assert.ok(jsonEqual(parseJson(wire.set), c.set), `${c.name}: set_json ${wire.set}`);
    assert.deepEqual(wire.removed, c.removed, c.name);
  }
});

test("tests/vectors/context.json: deltas applied in canonical order give the expected context", () => {
  const cases = vectors<RuleCase>("context.json");
  assert.ok(cases.length >= 9);
  for (const c of cases) {
    let text = stringifyJson(c.input);
    for (const delta of [...c.deltas].sort((a, b) => a.position - b.position)) {
      const context = Context.fromJson(text);
      for (const [key, value] of Object.entries(delta.set)) context.upsert(key, value);
      for (const key of delta.removed) context.remove(key);
      // The next task's input is this one's output, as JSON text.
      const data = context.data();
      text = stringifyJson(data);
    }
    const result = parseJson(text) as JsonObject;
    assert.ok(jsonEqual(result, c.expected), `${c.name}: ${text}`);
    if (c.expected_json !== undefined) assert.equal(canonical(result), c.expected_json, c.name);
  }
});

test("an unread input value is sent back as the exact text received", () => {
  const context = Context.fromJson('{"n": 1.000000000000000000000000001, "s": "é"}');
  context.upsert("copy", context.get("n"));
  assert.equal(context.deltaJson().set, '{"copy":1.000000000000000000000000001}');
  assert.equal(context.getJson("s"), '"é"');
});

test("typed get names the key and the type", () => {
  const context = Context.fromJson('{"n": "seven", "big": 18446744073709551617, "f": 1.5, "i": 3}');
  assert.throws(() => context.get("n", "number"), (error: unknown) => {
    assert.ok(error instanceof ContextError);
    assert.equal(error.kind, "wrong_type");
    assert.equal(error.key, "n");
    assert.equal(error.message, 'context key "n" cannot be read as number: it is a string');
    return true;
  });
  assert.throws(() => context.get("big", "number"), /"big" cannot be read as number: it is the integer 18446744073709551617 \(beyond 2\^53/);
  assert.equal(context.get("big", "bigint"), 18446744073709551617n);
  assert.equal(context.get("i", "bigint"), 3n);
  assert.throws(() => context.get("f", "bigint"), /not an integer/);
  assert.throws(() => context.get("missing"), /context key "missing" not found/);
  const positive = Object.assign((value: JsonValue): number => {
    if (typeof value !== "number" || value <= 0) throw new Error("not a positive number");
    return value;
  }, { typeName: "a positive number" });
  assert.equal(context.get("i", positive), 3);
  assert.throws(() => context.get("n", positive), /"n" cannot be read as a positive number: not a positive number/);
});

test("insert never overwrites, update never creates, and bad values are refused at the write", () => {
  const context = Context.fromObject({ a: 1 });
  assert.throws(() => context.insert("a", 2), /context key "a" already exists; use update or upsert/);
  assert.throws(() => context.update("b", 2), /context key "b" not found/);
  assert.throws(() => context.insert("c", Number.POSITIVE_INFINITY), (error: unknown) => error instanceof ContextError && error.kind === "invalid");
  assert.equal(context.contains("c"), false);
  assert.equal(context.upsert("a", 5), 1);
  assert.equal(context.discard("a"), true);
  assert.deepEqual(context.delta(), { set: {}, removed: ["a"] });
  assert.equal(context.size, 0);
});
