// The dashboard in a real browser (Debian's chromium through
// playwright-core) against the real server binary and the Rust seed
// example as the worker.
import assert from "node:assert/strict";
import { request } from "node:http";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ARTIFACTS, REPO_ROOT, SEED_TASKS, Server, eventually, launchBrowser, openPage } from "./harness.mjs";

const SEED_DEFINITION = join(REPO_ROOT, "examples", "parallel_processing.workflow.yaml");
const PARTITIONS = ["process_partition_1", "process_partition_2", "process_partition_3"];

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** The state of every task row of the run page. */
async function taskStates(page) {
  return page.$$eval(".tasks-row[data-task]", (rows) => Object.fromEntries(rows.map((r) => [r.dataset.task, r.dataset.state])));
}

async function runStatus(page) {
  return page.$eval("#run-status [data-state]", (e) => e.dataset.state).catch(() => undefined);
}

/** The types of the whole (virtualized) event log, in sequence order, read by scrolling it. */
async function eventLogTypes(page) {
  return page.evaluate(async () => {
    const box = document.querySelector('[aria-label="event log"] .virtual');
    const seen = new Map();
    for (let top = 0; ; top += 150) {
      box.scrollTop = top;
      box.dispatchEvent(new Event("scroll"));
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      for (const row of box.querySelectorAll(".events-row")) seen.set(Number(row.children[0].textContent), row.dataset.type);
      if (top >= box.scrollHeight) break;
    }
    return [...seen.entries()].sort((a, b) => a[0] - b[0]).map((entry) => entry[1]);
  });
}

/** An HTTP/1.1 request over a real socket; resolves to status and headers. */
function rawRequest(url, method, headers, body) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("serving", () => {
  test("the dashboard is served at / with its assets, and CORS only when an origin is allowed", async () => {
    const plain = await Server.start();
    const cors = await Server.start(["--cors-allow-origin", "http://console.example.test"]);
    try {
      const index = await fetch(`${plain.url}/`);
      assert.equal(index.status, 200);
      assert.match(index.headers.get("content-type"), /text\/html/);
      assert.match(await index.text(), /<script type="module" src="\/app.js">/);
      const script = await fetch(`${plain.url}/app.js`);
      assert.equal(script.status, 200);
      assert.match(script.headers.get("content-type"), /javascript/);
      const etag = script.headers.get("etag");
      assert.equal((await fetch(`${plain.url}/app.js`, { headers: { "if-none-match": etag } })).status, 304);

      const preflightHeaders = {
        origin: "http://console.example.test",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,x-user-agent,x-tributary-namespace,authorization",
      };
      const path = "/tributary.v1.RunService/ListRuns";
      const refused = await rawRequest(`${plain.url}${path}`, "OPTIONS", preflightHeaders);
      assert.equal(refused.headers["access-control-allow-origin"], undefined);

      const allowed = await rawRequest(`${cors.url}${path}`, "OPTIONS", preflightHeaders);
      assert.ok(allowed.status >= 200 && allowed.status < 300, `preflight answered ${allowed.status}`);
      assert.equal(allowed.headers["access-control-allow-origin"], "http://console.example.test");
      const allowedHeaders = allowed.headers["access-control-allow-headers"];
      for (const name of ["x-grpc-web", "x-tributary-namespace", "authorization", "content-type"]) assert.match(allowedHeaders, new RegExp(name));

      const otherOrigin = await rawRequest(`${cors.url}${path}`, "OPTIONS", { ...preflightHeaders, origin: "http://evil.example.test" });
      assert.equal(otherOrigin.headers["access-control-allow-origin"], undefined);

      // A gRPC-Web call from the allowed origin: an empty ListRuns request.
      const call = await rawRequest(
        `${cors.url}${path}`,
        "POST",
        { origin: "http://console.example.test", "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        Buffer.from([0, 0, 0, 0, 0]),
      );
      assert.equal(call.status, 200);
      assert.equal(call.headers["access-control-allow-origin"], "http://console.example.test");
      assert.match(call.headers["access-control-expose-headers"], /grpc-status/);
      assert.match(call.headers["access-control-expose-headers"], /grpc-message/);
    } finally {
      await plain.stop();
      await cors.stop();
    }
  });
});

describe("the seed run", () => {
  let server;
  before(async () => {
    server = await Server.start();
    await server.cli("workflow", "register", SEED_DEFINITION);
    server.worker();
  });
  after(async () => {
    await server?.stop();
  });

  test("appears in the runs list live, its nine tasks turn succeeded live and the partitions overlap on the timeline", async () => {
    const { page, errors } = await openPage(browser);
    await page.goto(`${server.url}/`);
    await page.waitForSelector("header .stream[data-stream='live']");
    // Executors connect before the run starts, so the first partition
    // does not wait for one.
    await page.goto(`${server.url}/#/executors`);
    await page.waitForSelector("tr[data-executor]");
    await page.goto(`${server.url}/#/runs`);
    await page.waitForSelector("header .stream[data-stream='live']");

    const runId = await server.startRun("parallel_processing");
    const row = await page.waitForSelector(`.runs-row[data-run="${runId}"]`, { timeout: 10_000 });
    assert.ok(["PENDING", "RUNNING"].includes(await row.getAttribute("data-status")), "the new run shows as not finished");
    // A server without keys, on loopback: the runs came without a key and
    // nothing asks for one (the prompt is tested in api-keys.test.mjs).
    assert.equal(await page.isVisible("dialog.key-dialog"), false, "no key is asked for");

    // Open it from the keyboard.
    await page.focus(`a[href="#/runs/${runId}"]`);
    await page.keyboard.press("Enter");
    await page.waitForSelector(".dag .node");
    assert.equal(await page.locator(".dag .node").count(), 9);

    const seen = new Set();
    await eventually(
      "all nine tasks succeeded",
      async () => {
        const states = await taskStates(page);
        for (const state of Object.values(states)) seen.add(state);
        return SEED_TASKS.every((id) => states[id] === "SUCCEEDED");
      },
      60_000,
    );
    assert.ok(seen.has("RUNNING") || seen.has("ASSIGNED"), `the page showed tasks before they succeeded (saw ${[...seen].join(", ")})`);
    await eventually("the run shows succeeded", async () => (await runStatus(page)) === "SUCCEEDED");
    const nodeStates = await page.$$eval(".dag .node", (nodes) => nodes.map((n) => n.getAttribute("data-state")));
    assert.deepEqual(nodeStates, Array(9).fill("SUCCEEDED"));

    // The partitions ran side by side: their running bars overlap.
    const spans = await Promise.all(
      PARTITIONS.map((id) =>
        page.$eval(`.timeline-row[data-task="${id}"] .bar.running`, (bar) => [Number(bar.dataset.start), Number(bar.dataset.end)]),
      ),
    );
    const latestStart = Math.max(...spans.map(([start]) => start));
    const earliestEnd = Math.min(...spans.map(([, end]) => end));
    assert.ok(latestStart < earliestEnd, `the partitions overlap: ${JSON.stringify(spans)}`);

    // No event missing or repeated, and the last one is the run's end.
    const [count, last] = (await page.getAttribute("body", "data-run-events")).split("/").map(Number);
    assert.equal(count, last);
    await page.waitForSelector(".events-row[data-type='RUN_FINISHED']");

    if (process.env.DASHBOARD_UPDATE_README_SCREENSHOT === "1") {
      await page.screenshot({ path: join(REPO_ROOT, "docs", "images", "dashboard-run.png") });
    }

    // A task's attempts.
    await page.click(`.tasks-row[data-task="process_partition_2"] button`);
    await page.waitForSelector("#task-detail tr[data-attempt='1'] [data-state='SUCCEEDED']");

    // The context, as a tree.
    await page.click("details.context > summary");
    await page.waitForSelector("#context-tree .json-tree");
    assert.ok((await page.locator("#context-tree .json-key").count()) > 0);

    await page.screenshot({ path: join(ARTIFACTS, "run-seed.png"), fullPage: true });

    // The list: live status, filters, find by id.
    await page.goto(`${server.url}/#/runs`);
    await page.waitForSelector(`.runs-row[data-run="${runId}"][data-status="SUCCEEDED"]`);
    await page.selectOption("#filter-status", "FAILED");
    await page.waitForSelector(`.runs-row[data-run="${runId}"]`, { state: "detached" });
    await page.selectOption("#filter-status", "SUCCEEDED");
    await page.waitForSelector(`.runs-row[data-run="${runId}"]`);
    await page.selectOption("#filter-workflow", "parallel_processing");
    await page.fill("#find-run", runId.slice(0, 13));
    await page.waitForSelector(`.runs-row[data-run="${runId}"]`);
    await page.fill("#find-run", "ffffffff");
    await page.waitForSelector(`.runs-row[data-run="${runId}"]`, { state: "detached" });
    await page.screenshot({ path: join(ARTIFACTS, "runs.png") });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test("the executors and workflows views show the worker and the seed definition", async () => {
    const { page, errors } = await openPage(browser);
    await page.goto(`${server.url}/#/executors`);
    const executor = await page.waitForSelector("tr[data-executor]");
    assert.match(await executor.innerText(), /parallel_processing\.process_partition_1/);
    assert.match(await page.innerText(".summary"), /1 executor, 0 of 3 slots busy/);
    await page.screenshot({ path: join(ARTIFACTS, "executors.png") });

    // In-flight attempts show up live while a run goes.
    const runId = await server.startRun("parallel_processing");
    await page.waitForSelector("tr[data-executor]:not([data-in-flight='0'])", { timeout: 20_000 });
    await eventually("the run to end", async () => /succeeded/i.test(String((await server.getRun(runId)).status)), 60_000);
    await page.waitForSelector("tr[data-executor][data-in-flight='0']", { timeout: 20_000 });

    await page.goto(`${server.url}/#/workflows`);
    await page.click("tr[data-workflow='parallel_processing'] a");
    await page.waitForSelector(".dag .node");
    assert.equal(await page.locator(".dag .node").count(), 9);
    assert.match(await page.innerText("tr[data-task='cleanup']"), /all_done/);
    await page.screenshot({ path: join(ARTIFACTS, "workflow.png") });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test("keyboard navigation, and a narrow window without horizontal scrolling", async () => {
    const runId = await server.startRun("parallel_processing");
    const { page, errors } = await openPage(browser);
    await page.goto(`${server.url}/#/runs`);
    await page.waitForSelector(`.runs-row[data-run="${runId}"]`);
    // The skip link first, then the brand and the views.
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Workflows");
    await page.keyboard.press("Enter");
    await page.waitForSelector("tr[data-workflow]");
    assert.equal(await page.evaluate(() => location.hash), "#/workflows");

    const runHash = `#/runs/${runId}`;
    await page.setViewportSize({ width: 420, height: 800 });
    for (const hash of ["#/runs", "#/executors", "#/workflows/parallel_processing", runHash]) {
      await page.goto(`${server.url}/${hash}`);
      await page.waitForTimeout(300);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${hash} scrolls sideways by ${overflow}px at 420 px`);
    }
    await page.screenshot({ path: join(ARTIFACTS, "narrow-run.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe("failures", () => {
  let server;
  before(async () => {
    server = await Server.start();
  });
  after(async () => {
    await server?.stop();
  });

  test("a failed run shows its retries, retry waits, errors and skip reasons", async () => {
    const runId = await server.errorHandlingRun();
    const { page, errors } = await openPage(browser);
    await page.goto(`${server.url}/#/runs/${runId}`);
    await eventually("the run shows failed", async () => (await runStatus(page)) === "FAILED");
    const states = await taskStates(page);
    assert.equal(states.process_partition_2, "FAILED");
    assert.equal(states.combine_results, "SKIPPED");
    assert.equal(states.cleanup, "SUCCEEDED");
    assert.equal(states.flaky, "SUCCEEDED");
    assert.match(await page.innerText(".tasks-row[data-task='combine_results']"), /skipped: upstream failed/);
    assert.match(await page.innerText(".tasks-row[data-task='process_partition_2']"), /\S/);
    // flaky: a failed attempt, the retry wait, then the attempt that succeeded.
    assert.equal(await page.locator(".timeline-row[data-task='flaky'] .bar.wait-retry").count(), 1);
    assert.equal(await page.locator(".timeline-row[data-task='flaky'] .bar.running").count(), 2);
    await page.click(".tasks-row[data-task='flaky'] button");
    await page.waitForSelector("#task-detail tr[data-attempt='1'] [data-state='FAILED']");
    await page.waitForSelector("#task-detail tr[data-attempt='2'] [data-state='SUCCEEDED']");
    await page.waitForSelector(".dag .node[data-task='combine_results'][data-state='SKIPPED']");
    await page.screenshot({ path: join(ARTIFACTS, "run-failed.png"), fullPage: true });

    // Retried elsewhere (the CLI): the open page follows the run again. No
    // worker is left, so the reset tasks wait.
    assert.equal(await page.isEnabled("#retry-run"), true);
    await server.cli("run", "retry", runId);
    await eventually("the run shows running again", async () => (await runStatus(page)) === "RUNNING", 30_000);
    await eventually("the failed task to wait again", async () => (await taskStates(page)).process_partition_2 === "READY");
    const reset = await taskStates(page);
    assert.equal(reset.combine_results, "WAITING");
    assert.equal(reset.flaky, "SUCCEEDED");
    assert.equal(await page.innerText(".tasks-row[data-task='combine_results'] .error-text"), "");
    assert.equal(await page.innerText(".tasks-row[data-task='process_partition_2'] .error-text"), "");
    assert.equal(await page.innerText("#run-retries"), "retried 1×");
    assert.equal(await page.isDisabled("#retry-run"), true);
    assert.equal(await page.innerText("#run-status"), "running");
    const [count, last] = (await page.getAttribute("body", "data-run-events")).split("/").map(Number);
    assert.equal(count, last);
    assert.ok((await eventLogTypes(page)).includes("RUN_RETRIED"));
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe("a run held mid-way", () => {
  let server;
  before(async () => {
    server = await Server.start(["--heartbeat-interval-ms", "500", "--lease-timeout-ms", "3000"]);
    await server.cli("workflow", "register", SEED_DEFINITION);
    // Nobody serves the partitions: the run stops with them READY.
    server.worker(SEED_TASKS.filter((id) => !PARTITIONS.includes(id)));
  });
  after(async () => {
    await server?.stop();
  });

  test("shows the same state after a reload and after a server restart, is cancelled from the page, then retried to success", async () => {
    const { page, errors } = await openPage(browser);
    const runId = await server.startRun("parallel_processing");
    await page.goto(`${server.url}/#/runs/${runId}`);
    const held = (states) =>
      states.generate_data === "SUCCEEDED" && states.partition_data === "SUCCEEDED" && PARTITIONS.every((id) => states[id] === "READY");
    const before = await eventually("the partitions to wait", async () => {
      const states = await taskStates(page);
      return held(states) ? states : undefined;
    });
    const eventsBefore = await page.getAttribute("body", "data-run-events");
    assert.equal(await runStatus(page), "RUNNING");

    await page.reload();
    await page.waitForSelector(".tasks-row[data-task]");
    await eventually("the same events after the reload", async () => (await page.getAttribute("body", "data-run-events")) === eventsBefore);
    assert.deepEqual(await taskStates(page), before);

    // The server goes away and comes back: the page follows again from
    // the last event it has, without a gap or a duplicate.
    await server.restart();
    await page.waitForSelector("header .stream[data-stream='live']", { timeout: 30_000 });
    // A worker for the partitions: cancel once one of them is running, so
    // it has an attempt from before the retry.
    const partitionWorker = server.worker(PARTITIONS);
    await eventually("a partition to run", async () => {
      const states = await taskStates(page);
      return PARTITIONS.some((id) => states[id] === "RUNNING");
    }, 30_000);
    assert.equal(await page.isDisabled("#retry-run"), true, "no retry while the run is active");
    const cancel = await page.waitForSelector("#cancel-run:not([hidden])");
    await cancel.click();
    await eventually("the run shows cancelled", async () => (await runStatus(page)) === "CANCELLED", 30_000);
    const after = await taskStates(page);
    const cancelled = PARTITIONS.filter((id) => after[id] === "CANCELLED");
    assert.ok(cancelled.length > 0, "a partition was cancelled");
    for (const id of PARTITIONS) assert.match(after[id], /^(CANCELLED|SUCCEEDED)$/);
    assert.equal(after.generate_data, "SUCCEEDED");
    assert.equal(after.combine_results, "CANCELLED");
    const [count, last] = (await page.getAttribute("body", "data-run-events")).split("/").map(Number);
    assert.equal(count, last, "no event missing or repeated across the restart");
    assert.ok(count > Number(eventsBefore.split("/")[0]));
    assert.equal(await page.isHidden("#cancel-run"), true);
    const stored = await server.getRun(runId);
    assert.match(String(stored.status), /cancelled/i);
    await page.screenshot({ path: join(ARTIFACTS, "run-cancelled.png"), fullPage: true });
    // The cancelled attempts were running; the partitions' own worker goes,
    // so the retried tasks wait for the next one.
    const exited = new Promise((r) => partitionWorker.once("exit", r));
    partitionWorker.kill("SIGKILL");
    await exited;

    // Retry from the keyboard, with the runs list open in another tab.
    const list = await openPage(browser);
    await list.page.goto(`${server.url}/#/runs`);
    const rowStatus = () => list.page.getAttribute(`.runs-row[data-run="${runId}"]`, "data-status").catch(() => undefined);
    await eventually("the runs list shows the run cancelled", async () => (await rowStatus()) === "CANCELLED");
    assert.equal(await page.innerText("#run-retries"), "never");
    await page.focus("#retry-run");
    await page.keyboard.press("Enter");
    await eventually("the run shows running again", async () => (await runStatus(page)) === "RUNNING", 30_000);
    await eventually("the runs list shows it running again", async () => (await rowStatus()) === "RUNNING", 30_000);
    const reopened = await taskStates(page);
    for (const id of cancelled) assert.equal(reopened[id], "READY");
    assert.equal(reopened.generate_data, "SUCCEEDED");
    assert.equal(await page.innerText("#run-retries"), "retried 1×");
    assert.equal(await page.isDisabled("#retry-run"), true, "no retry while the run is active");

    server.worker(PARTITIONS);
    await eventually("the retried run succeeds", async () => (await runStatus(page)) === "SUCCEEDED", 60_000);
    await eventually("the runs list shows its new end", async () => (await rowStatus()) === "SUCCEEDED", 30_000);
    assert.match(await list.page.innerText(`.runs-row[data-run="${runId}"]`), /retried 1×/);
    assert.deepEqual(list.errors, []);
    await list.page.close();
    await page.bringToFront();
    const final = await taskStates(page);
    for (const id of SEED_TASKS) assert.equal(final[id], "SUCCEEDED", id);
    // The cancelled attempt and the new one, on the timeline and in the list.
    const retriedTask = cancelled[0];
    const bars = await page.$$eval(`.timeline-row[data-task="${retriedTask}"] .bar.running[data-attempt]`, (els) => els.map((e) => `${e.dataset.attempt}:${[...e.classList].find((c) => c.startsWith("attempt-"))}`));
    assert.deepEqual(bars, ["1:attempt-cancelled", "2:attempt-succeeded"]);
    await page.click(`.tasks-row[data-task="${retriedTask}"] button`);
    const attempts = await page.$$eval("#task-detail tr[data-attempt]", (rows) => rows.map((r) => `${r.dataset.attempt}:${r.querySelector("[data-state]")?.dataset.state}`));
    assert.deepEqual(attempts, ["1:CANCELLED", "2:SUCCEEDED"]);
    const [count2, last2] = (await page.getAttribute("body", "data-run-events")).split("/").map(Number);
    assert.equal(count2, last2, "no event missing or repeated across the retry");
    const types = await eventLogTypes(page);
    assert.equal(types.length, last2);
    assert.deepEqual(types.filter((t) => /^RUN_/.test(t)), ["RUN_STARTED", "RUN_FINISHED", "RUN_RETRIED", "RUN_FINISHED"]);
    assert.equal(types.at(-1), "RUN_FINISHED");
    const retriedRun = await server.getRun(runId);
    assert.match(String(retriedRun.status), /succeeded/i);
    assert.equal(retriedRun.tasks.find((t) => t.task_id === retriedTask)?.attempts, 2);
    await page.screenshot({ path: join(ARTIFACTS, "run-retried.png"), fullPage: true });

    // A refusal is shown with the server's own message: the call goes out
    // with a task the workflow does not have (a later protobuf field wins),
    // and the real server answers INVALID_ARGUMENT.
    await page.route("**/tributary.v1.RunService/RetryRun", async (route) => {
      const frame = route.request().postDataBuffer();
      const extra = Buffer.concat([Buffer.from([0x12, 7]), Buffer.from("no_task")]);
      const message = Buffer.concat([frame.subarray(5), extra]);
      const header = Buffer.alloc(5);
      header.writeUInt32BE(message.length, 1);
      await route.continue({ postData: Buffer.concat([header, message]) });
    });
    await page.click("#retry-from-task");
    await eventually("the refusal to show", async () => /^Cannot retry: .*no_task.* \(invalid argument\)$/.test(await page.innerText("p.message")));
    await page.unroute("**/tributary.v1.RunService/RetryRun");
    assert.equal(await runStatus(page), "SUCCEEDED");
    assert.equal(await page.isEnabled("#retry-from-task"), true);
    // Chromium logs the calls refused while the server was down as network
    // errors; anything else is the page's fault.
    assert.deepEqual(errors.filter((e) => !/Failed to load resource|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE/.test(e)), []);
    await page.close();
  });
});

describe("scale", () => {
  let server;
  before(async () => {
    server = await Server.start();
  });
  after(async () => {
    await server?.stop();
  });

  test("a run of 10,000 tasks opens and stays usable; a multi-megabyte context keeps big integers exact", async () => {
    // 100 layers of 100 tasks, each depending on two of the layer before.
    const tasks = [];
    for (let layer = 0; layer < 100; layer++) {
      for (let i = 0; i < 100; i++) {
        const dependencies = layer === 0 ? [] : [...new Set([`t${layer - 1}_${i}`, `t${layer - 1}_${(i * 7 + 3) % 100}`])];
        tasks.push({ id: `t${layer}_${i}`, dependencies });
      }
    }
    await server.register({ name: "ten_thousand", tasks });
    // An input context of a few megabytes with integers beyond 2^53.
    const items = Array.from({ length: 60_000 }, (_, i) => `{"id":${i},"big":1234567890123456789${i % 10},"name":"item number ${i}"}`);
    const input = `{"exact":123456789012345678901234567890,"items":[${items.join(",")}]}`;
    const inputFile = join(server.directory, "input.json");
    writeFileSync(inputFile, input);
    const runId = JSON.parse(await server.cli("run", "start", "ten_thousand", "--input", `@${inputFile}`, "--json")).run_id;

    const { page, errors } = await openPage(browser);
    await page.goto(`${server.url}/#/runs`);
    await page.waitForSelector(".runs-row");
    const started = Date.now();
    await page.evaluate((id) => {
      location.hash = `#/runs/${id}`;
    }, runId);
    await page.waitForSelector(".dag-collapsed .layer-row");
    await page.waitForSelector(".tasks-row[data-task='t0_0']");
    await page.waitForFunction(() => document.body.dataset.runRenderedMs !== undefined);
    await eventually("the first layer ready", async () => (await page.getAttribute(".tasks-row[data-task='t0_0']", "data-state")) === "READY");
    const openMs = Date.now() - started;
    const renderedMs = Number(await page.getAttribute("body", "data-run-rendered-ms"));
    assert.equal(await page.locator(".dag-collapsed .layer-row").count(), 100);
    // The task list is virtualized: few rows in the page, all reachable.
    assert.ok((await page.locator(".tasks-row[data-task]").count()) < 100);
    await page.$eval(".tasks-row[data-task]", (row) => {
      const scroller = row.closest(".virtual");
      scroller.scrollTop = scroller.scrollHeight;
    });
    await page.waitForSelector(".tasks-row[data-task='t99_99']");

    // The context: the big integer exactly, and a 60,000-item array opened in chunks.
    const contextStarted = Date.now();
    await page.click("details.context > summary");
    await page.waitForSelector("#context-tree .json-number");
    const contextMs = Date.now() - contextStarted;
    const exact = await page.$eval("#context-tree .json-leaf:has(> .json-key)", (leaf) => leaf.textContent);
    assert.equal(exact, "exact: 123456789012345678901234567890");
    await page.click("#context-tree .json-toggle:has-text('items')");
    await page.waitForSelector("#context-tree .json-more:has-text('show 200 more')");
    await page.click("#context-tree .json-children .json-children .json-toggle >> nth=0");
    assert.match(await page.innerText("#context-tree"), /big: 12345678901234567890/);
    await page.screenshot({ path: join(ARTIFACTS, "run-10000-tasks.png") });

    const timings = { tasks: 10_000, openMs, firstRenderMs: renderedMs, contextBytes: input.length, contextOpenMs: contextMs };
    writeFileSync(join(ARTIFACTS, "timings.json"), `${JSON.stringify(timings, null, 2)}\n`);
    console.log(`10,000-task run: shown in ${openMs} ms (first render ${renderedMs} ms); a ${input.length}-byte context opened in ${contextMs} ms`);
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe("a mapped task", () => {
  let server;
  before(async () => {
    server = await Server.start();
  });
  after(async () => {
    await server?.stop();
  });

  test("shows its instances under it, and the log names each instance", async () => {
    // Nobody serves the handler: the task is expanded and its instances wait.
    await server.register({ name: "crawl", tasks: [{ id: "fetch", handler: "nobody", map_over: "urls", map_output: "pages" }] });
    const inputFile = join(server.directory, "crawl-input.json");
    writeFileSync(inputFile, JSON.stringify({ urls: ["a", "b", "c"] }));
    const runId = JSON.parse(await server.cli("run", "start", "crawl", "--input", `@${inputFile}`, "--json")).run_id;
    const { page, errors } = await openPage(browser);
    await page.goto(`${server.url}/#/runs/${runId}`);
    await eventually("the task shows its instances", async () => (await page.innerText(".tasks-row[data-task='fetch']").catch(() => "")).includes("3 instances"));
    assert.equal((await taskStates(page)).fetch, "RUNNING");
    await page.click(".tasks-row[data-task='fetch'] button");
    await page.waitForSelector("#task-detail .instances[data-instances='3']");
    assert.match(await page.innerText("#task-detail .instances"), /Mapped into 3 instances: 3 ready/i);
    assert.equal(await page.locator("#task-detail tr[data-instance] [data-state='READY']").count(), 3);
    const types = await eventLogTypes(page);
    assert.ok(types.includes("TASK_MAPPED"), types.join(","));
    assert.match(await page.innerText("[aria-label='event log']"), /fetch\[2\]/);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
