import { test } from "node:test";
import assert from "node:assert/strict";
import { parseJson } from "../json.js";
import { References } from "../worker/references.js";
import { ENTRY_OVERHEAD_BYTES, ValueCache, entryBytes, utf8Length } from "../worker/value-cache.js";

const name = (key: string, writerAttemptId = "w1") => ({ key, writerAttemptId });

test("utf8Length counts UTF-8 bytes", () => {
  assert.equal(utf8Length("abc"), 3);
  assert.equal(utf8Length("é"), 2);
  assert.equal(utf8Length("中"), 3);
  assert.equal(utf8Length("😀"), 4);
  assert.equal(utf8Length('"x"'), Buffer.byteLength('"x"'));
});

test("each value counts its text, its name and the entry's overhead", () => {
  assert.equal(entryBytes("run", name("k", "w1"), '"é"'), 4 + 3 + 1 + 2 + ENTRY_OVERHEAD_BYTES);
});

test("the cache evicts the least recently used values to stay within its bytes", () => {
  const entry = (key: string, json: string): number => entryBytes("r", name(key), json);
  const cache = new ValueCache(entry("a", '"aaa"') + entry("b", '"bb"') + 1);
  cache.put("r", name("a"), '"aaa"');
  cache.put("r", name("b"), '"bb"');
  assert.equal(cache.bytes, entry("a", '"aaa"') + entry("b", '"bb"'));
  assert.equal(cache.get("r", name("a")), '"aaa"'); // a is now the most recent
  cache.put("r", name("c"), '"c"'); // no room for three: b, the least recent, goes
  assert.equal(cache.get("r", name("b")), undefined);
  assert.equal(cache.get("r", name("a")), '"aaa"');
  assert.equal(cache.get("r", name("c")), '"c"');
  assert.equal(cache.bytes, entry("a", '"aaa"') + entry("c", '"c"'));
  cache.put("r", name("huge"), `"${"x".repeat(cache.capacityBytes)}"`);
  assert.equal(cache.get("r", name("huge")), undefined, "a value larger than the cache is not kept");
  assert.equal(cache.bytes, entry("a", '"aaa"') + entry("c", '"c"'), "and evicts nothing");
});

test("values are named by run, writer and key; forgetRun and clear drop them", () => {
  const cache = new ValueCache(1_000);
  cache.put("r1", name("k", "a1"), "1");
  cache.put("r1", name("k", "a2"), "2");
  cache.put("r2", name("k", "a1"), "3");
  assert.equal(cache.get("r1", name("k", "a2")), "2");
  assert.equal(cache.get("r2", name("k", "a1")), "3");
  cache.forgetRun("r1");
  assert.equal(cache.get("r1", name("k", "a1")), undefined);
  assert.equal(cache.get("r2", name("k", "a1")), "3");
  assert.equal(cache.size, 1);
  cache.clear();
  assert.equal(cache.size, 0);
  assert.equal(cache.bytes, 0);
});

test("an assignment's references resolve from the cache and inline values are kept", () => {
  const cache = new ValueCache(1_000);
  const references = new References(cache);
  cache.put("r", name("produced", "a0"), "18446744073709551617");
  const first = references.assign({
    runId: "r",
    attemptId: "a1",
    inputContextJson: '{"in":{"x":[1,2]}}',
    inlineValues: [name("in", "")],
    references: [name("produced", "a0")],
  });
  assert.equal(first.kind, "ready");
  assert.deepEqual(parseJson(first.kind === "ready" ? first.inputJson : ""), { in: { x: [1, 2] }, produced: 18446744073709551617n });
  assert.equal(cache.get("r", name("in", "")), '{"x":[1,2]}', "the inline value is kept under its name");
  const second = references.assign({ runId: "r", attemptId: "a2", inputContextJson: "{}", inlineValues: [], references: [name("in", "")] });
  assert.equal(second.kind, "ready");
});

test("missing references are fetched; the answer completes the assignment", () => {
  const cache = new ValueCache(ENTRY_OVERHEAD_BYTES); // smaller than the value: it cannot be kept, only used
  const references = new References(cache);
  const resolution = references.assign({
    runId: "r",
    attemptId: "a1",
    inputContextJson: '{"small":1}',
    inlineValues: [],
    references: [name("big", "a0")],
  });
  assert.deepEqual(resolution, { kind: "fetch", attemptId: "a1", runId: "r", refs: [name("big", "a0")] });
  assert.deepEqual(references.attemptIds(), ["a1"]);
  const outcomes = references.values("r", [{ name: name("big", "a0"), json: '"a long value"' }]);
  assert.equal(outcomes.length, 1);
  const [outcome] = outcomes;
  assert.equal(outcome?.kind, "ready");
  assert.deepEqual(parseJson(outcome?.kind === "ready" ? outcome.inputJson : ""), { small: 1, big: "a long value" });
  assert.deepEqual(references.attemptIds(), []);
});

test("a value the server no longer has fails the attempt that asked for it, retryably", () => {
  const references = new References(new ValueCache(1_000));
  references.assign({ runId: "r", attemptId: "a1", inputContextJson: "{}", inlineValues: [], references: [name("gone", "a0")] });
  const outcomes = references.values("r", []);
  assert.equal(outcomes.length, 1);
  assert.equal(outcomes[0]?.kind, "failed");
  assert.match(outcomes[0]?.kind === "failed" ? outcomes[0].message : "", /no longer has the referenced value\(s\) "gone" of run r/);
});

test("a cancelled or disconnected wait is forgotten", () => {
  const references = new References(new ValueCache(1_000));
  references.assign({ runId: "r", attemptId: "a1", inputContextJson: "{}", inlineValues: [], references: [name("k", "w")] });
  references.assign({ runId: "r", attemptId: "a2", inputContextJson: "{}", inlineValues: [], references: [name("j", "w")] });
  assert.equal(references.drop("a1"), true);
  assert.equal(references.drop("a1"), false);
  // The answer to a1's fetch was dropped with it; a2's fetch is now the oldest.
  const outcomes = references.values("r", []);
  assert.deepEqual(outcomes.map((o) => [o.kind, o.attemptId]), [["failed", "a2"]]);
  references.assign({ runId: "r", attemptId: "a3", inputContextJson: "{}", inlineValues: [], references: [name("k", "w")] });
  assert.deepEqual(references.clear(), ["a3"]);
});
