import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { JsonNumber, JsonSyntaxError, jsonEqual, parseJson, splitObject, stringifyJson } from "../json.js";
import type { JsonObject } from "../json.js";
import { REPO_ROOT } from "./harness.js";

/** The raw text of each element of the top-level `values` array of conformance/values.json. */
function rawValues(): string[] {
  const text = readFileSync(join(REPO_ROOT, "conformance/values.json"), "utf8");
  const members = splitObject(text);
  const array = members.get("values");
  assert.ok(array !== undefined);
  // Each element re-split through an object wrapper keeps its exact text.
  const parsed = parseJson(array) as unknown[];
  return parsed.map((value) => stringifyJson(value));
}

test("integers beyond 2^53 and 2^64 parse exactly and write back the same digits", () => {
  const text = '{"a":9007199254740993,"b":18446744073709551617,"c":-340282366920938463463374607431768211457,"d":1}';
  const value = parseJson(text) as JsonObject;
  assert.equal(value.a, 9007199254740993n);
  assert.equal(value.b, 18446744073709551617n);
  assert.equal(value.c, -340282366920938463463374607431768211457n);
  assert.equal(value.d, 1);
  assert.equal(stringifyJson(value), text);
});

test("a decimal a double would round is kept as its text", () => {
  const value = parseJson("123456789012345678901234567890.123456789");
  assert.ok(value instanceof JsonNumber);
  assert.equal(stringifyJson(value), "123456789012345678901234567890.123456789");
  assert.equal(parseJson("1.0000000000000002"), 1.0000000000000002);
  assert.equal(parseJson("1e-7"), 1e-7);
  assert.equal(parseJson("2.5"), 2.5);
});

test("every value of conformance/values.json round-trips exactly", () => {
  const text = readFileSync(join(REPO_ROOT, "conformance/values.json"), "utf8");
  const original = (parseJson(text) as JsonObject).values as unknown[];
  const again = parseJson(stringifyJson(original)) as unknown[];
  assert.equal(again.length, 18);
  original.forEach((value, index) => {
    assert.ok(jsonEqual(value as never, again[index] as never), `value ${index} changed: ${stringifyJson(value)}`);
  });
  // The textual form of the big numbers is exactly the input's.
  const written = rawValues();
  assert.ok(written.includes("18446744073709551617"));
  assert.ok(written.includes("-340282366920938463463374607431768211457"));
  assert.ok(written.includes("123456789012345678901234567890.123456789"));
  assert.ok(written.some((w) => w.includes("36893488147419103232")));
});

test("jsonEqual compares numbers by exact value and objects regardless of order", () => {
  assert.ok(jsonEqual(1, 1n));
  assert.ok(jsonEqual(new JsonNumber("1.50"), 1.5));
  assert.ok(!jsonEqual(new JsonNumber("123456789012345678901234567890.123456789"), new JsonNumber("123456789012345678901234567890.12345679")));
  assert.ok(jsonEqual({ a: 1, b: [true, null] }, { b: [true, null], a: 1 }));
  assert.ok(!jsonEqual({ a: 1 }, { a: 1, b: 2 }));
  assert.ok(!jsonEqual("1", 1));
});

test("a __proto__ key is an own member, not a prototype", () => {
  const value = parseJson('{"__proto__": {"polluted": 1}, "n": 123456789012345678901}') as JsonObject;
  assert.deepEqual(Object.keys(value), ["__proto__", "n"]);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(stringifyJson(value), '{"__proto__":{"polluted":1},"n":123456789012345678901}');
});

test("syntax errors name the position", () => {
  assert.throws(() => parseJson('{"a": 12345678901234567890,}'), (error: unknown) => {
    assert.ok(error instanceof JsonSyntaxError);
    assert.equal(error.position, 27);
    return true;
  });
  assert.throws(() => parseJson('[1, 2'), JsonSyntaxError);
  assert.throws(() => parseJson('"\u0001"'), JsonSyntaxError);
  assert.throws(() => splitObject("[1]"), /expected a JSON object at position 0/);
});

test("splitObject keeps each member's exact text, the last duplicate winning", () => {
  const members = splitObject('{"a": [1, {"b": "x\\"y"}], "big": 1.000000000000000000001, "a": "again"}');
  assert.deepEqual([...members.entries()], [
    ["big", "1.000000000000000000001"],
    ["a", '"again"'],
  ]);
});

test("values with no JSON form are refused with their path", () => {
  assert.throws(() => stringifyJson({ a: [1, Number.NaN] }), /\$\.a\[1\] is NaN/);
  assert.throws(() => stringifyJson({ f: () => 1 }), /\$\.f is function/);
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assert.throws(() => stringifyJson(cycle), /cycle/);
  assert.equal(stringifyJson({ skip: undefined, d: new Date(0) }), '{"d":"1970-01-01T00:00:00.000Z"}');
});
