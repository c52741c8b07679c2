import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConnectError } from "@connectrpc/connect";
import { DefinitionError, validateDefinition } from "../validate.js";
import type { WorkflowDefinitionJson } from "../validate.js";
import { definitionFromJson, task, workflow } from "../workflow.js";
import { TestServer, VECTORS } from "./harness.js";
import { createClient } from "../client.js";
import { create } from "@bufbuild/protobuf";
import { WorkflowSchema } from "../gen/index.js";
import { convertWorkflow } from "../model.js";

interface Case {
  name: string;
  definition: unknown;
  error: { code: string; message: string } | null;
}

const cases = (JSON.parse(readFileSync(join(VECTORS, "validation.json"), "utf8")) as { cases: Case[] }).cases;

test("tests/vectors/validation.json: local validation gives the server's messages", () => {
  assert.ok(cases.length >= 28);
  for (const c of cases) {
    const definition = definitionFromJson(c.definition);
    if (c.error === null) {
      assert.doesNotThrow(() => validateDefinition(definition), c.name);
    } else {
      assert.throws(() => validateDefinition(definition), (error: unknown) => {
        assert.ok(error instanceof DefinitionError, c.name);
        assert.equal(error.message, c.error?.message, c.name);
        return true;
      });
    }
  }
});

test("tests/vectors/validation.json: the server agrees (raw definitions sent past local validation)", async () => {
  const server = await TestServer.start();
  try {
    // gRPC-Web from Node: the transport a browser uses.
    const client = createClient(server.url);
    for (const c of cases) {
      const definition = definitionFromJson(c.definition);
      const registration = client.registerWorkflow(definition, { validateLocally: false });
      if (c.error === null) {
        await registration;
      } else {
        await assert.rejects(registration, (error: unknown) => {
          const connectError = ConnectError.from(error);
          assert.equal(connectError.rawMessage, c.error?.message, c.name);
          return true;
        });
      }
    }
  } finally {
    await server.stop();
  }
});

test("the typed builders produce the wire definition", () => {
  const wf = workflow("etl", [
    task({ id: "extract", retryAttempts: 2, retryBackoff: "linear", timeoutMs: 1000, maxInFlight: 5 }, () => {}),
    task({ id: "load", dependencies: ["extract"], triggerRule: "all_done", handler: "etl.load:v2", requiredLabels: { gpu: "true" } }, () => {}),
  ], { description: "d" });
  const expected: WorkflowDefinitionJson = {
    name: "etl",
    description: "d",
    tasks: [
      { id: "extract", dependencies: [], retry_attempts: 2, retry_backoff: "linear", timeout_ms: 1000, max_in_flight: 5 },
      { id: "load", dependencies: ["extract"], trigger_rule: "all_done", handler: "etl.load:v2", required_labels: { gpu: "true" } },
    ],
  };
  assert.deepEqual(wf.definition(), expected);
  assert.deepEqual([...wf.handlers().keys()], ["etl.extract", "etl.load:v2"]);
  assert.throws(() => workflow("etl", [task({ id: "a", dependencies: ["a"] }, () => {})]).validate(), /task "a" depends on itself/);
  assert.throws(() => definitionFromJson({ name: "w", tasks: [{ id: "a", retries: 1 }] }), /unknown field "retries" in task 0/);
  assert.throws(
    () => definitionFromJson({ name: "w", tasks: [{ id: "a", required_labels: { gpu: 1 } }] }),
    /task 0: required_labels must be an object of strings/,
  );
  assert.deepEqual(definitionFromJson({ name: "w", tasks: [{ id: "a", required_labels: { gpu: "true" } }] }).tasks[0]?.required_labels, { gpu: "true" });
  assert.throws(() => definitionFromJson({ name: "w", tasks: [{ id: "a", max_in_flight: "5" }] }), /task 0: max_in_flight must be a number/);
  assert.throws(
    () => workflow("w", [task({ id: "a", maxInFlight: 0 }, () => {})]).validate(),
    (error: unknown) => error instanceof DefinitionError && error.message === 'task "a": max_in_flight must be between 1 and 10000, got 0',
  );
});

test("max_in_flight comes back from the wire only when set", () => {
  const registered = convertWorkflow(
    create(WorkflowSchema, { definition: { name: "w", tasks: [{ id: "charge", maxInFlight: 5 }, { id: "plain" }] } }),
  );
  assert.equal(registered.definition.tasks[0]?.max_in_flight, 5);
  assert.ok(!("max_in_flight" in (registered.definition.tasks[1] ?? {})));
});
