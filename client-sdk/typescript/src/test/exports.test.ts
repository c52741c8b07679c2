import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const DIST = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PACKAGE = JSON.parse(readFileSync(resolve(DIST, "../package.json"), "utf8")) as {
  exports: Record<string, { default: string; types: string }>;
};

/** Every module specifier a compiled file imports statically or dynamically, following relative ones. */
function importGraph(entry: string): { files: string[]; packages: Set<string> } {
  const files: string[] = [];
  const packages = new Set<string>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop() as string;
    if (files.includes(file)) continue;
    files.push(file);
    const source = readFileSync(file, "utf8");
    for (const match of source.matchAll(/(?:import|export)\s[^;]*?from\s*"([^"]+)"|import\(\s*"([^"]+)"\s*\)|import\s*"([^"]+)"/g)) {
      const specifier = match[1] ?? match[2] ?? match[3] ?? "";
      if (specifier.startsWith(".")) pending.push(join(dirname(file), specifier));
      else packages.add(specifier);
    }
  }
  return { files, packages };
}

test("the browser entry points import nothing of Node", () => {
  for (const entry of [".", "./client"]) {
    const target = PACKAGE.exports[entry];
    assert.ok(target, `package.json exports ${entry}`);
    const { files, packages } = importGraph(resolve(DIST, "..", target.default));
    assert.ok(files.length > 5);
    const nodeOnly = [...packages].filter((p) => p.startsWith("node:") || p.includes("connect-node") || !/^@(connectrpc|bufbuild)\//.test(p));
    assert.deepEqual(nodeOnly, [], `${entry} reaches ${nodeOnly.join(", ")}`);
  }
});

test("the worker and node entry points use Node's gRPC transport", () => {
  const worker = importGraph(resolve(DIST, "..", PACKAGE.exports["./worker"]?.default ?? ""));
  assert.ok(worker.packages.has("node:worker_threads"));
  const thread = importGraph(resolve(DIST, "worker/stream-thread.js"));
  assert.ok(thread.packages.has("@connectrpc/connect-node"));
  const node = importGraph(resolve(DIST, "..", PACKAGE.exports["./node"]?.default ?? ""));
  assert.ok(node.packages.has("@connectrpc/connect-node"));
});

test("every export of package.json exists with its types", async () => {
  for (const [entry, target] of Object.entries(PACKAGE.exports)) {
    assert.doesNotThrow(() => readFileSync(resolve(DIST, "..", target.types)), `${entry} types`);
    const module = (await import(resolve(DIST, "..", target.default))) as Record<string, unknown>;
    assert.ok(Object.keys(module).length > 0, `${entry} exports something`);
  }
});
