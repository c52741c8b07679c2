// The dashboard against a server with API keys on (`--admin-key`): keys
// made with the CLI, the key prompt in a real browser, a viewer's refused
// cancel, and a key revoked while its page is open.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ARTIFACTS, REPO_ROOT, Server, eventually, launchBrowser, openPage } from "./harness.mjs";

const SEED_DEFINITION = join(REPO_ROOT, "examples", "parallel_processing.workflow.yaml");
const ADMIN_KEY = `dashboard-test-admin-${randomBytes(24).toString("hex")}`;

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

describe("API keys", () => {
  let server;
  let viewer;
  let secondViewer;
  let client;
  let runId;

  /** Creates a key of namespace `default` with the admin key; returns `{ key_id, secret }`. */
  async function createKey(role) {
    const created = JSON.parse(await server.cli("key", "create", "--namespace", "default", "--role", role, "--label", `dashboard test ${role}`, "--api-key", ADMIN_KEY, "--json"));
    assert.match(created.secret, /^trb_/);
    return created;
  }

  async function runWithClientKey(...args) {
    return JSON.parse(await server.cli(...args, "--json", "--api-key", client.secret));
  }

  before(async () => {
    server = await Server.start(["--admin-key", ADMIN_KEY]);
    viewer = await createKey("viewer");
    secondViewer = await createKey("viewer");
    client = await createKey("client");
    await server.cli("workflow", "register", SEED_DEFINITION, "--api-key", client.secret);
    // No worker: the run stays waiting for one, so it can be cancelled.
    const started = await runWithClientKey("run", "start", "parallel_processing");
    runId = started.run_id ?? started.runId;
    assert.ok(runId, "run start printed a run id");
  });
  after(async () => {
    await server?.stop();
  });

  test("the dashboard asks for a key, refuses a wrong one, reads with a viewer key, cannot cancel or retry with it and asks again when it is revoked", async () => {
    const { page, errors } = await openPage(browser);
    const status = (selector) => page.$eval(selector, (e) => e.textContent ?? "").catch(() => "");
    const runState = () => page.$eval("#run-status [data-state]", (e) => e.dataset.state).catch(() => undefined);

    // The page itself is served without a key; its first call is refused.
    await page.goto(`${server.url}/#/runs`);
    await page.waitForSelector("dialog.key-dialog[open]");
    assert.equal(await page.locator(".runs-row[data-run]").count(), 0, "no run is shown before a key is given");
    assert.equal(await status(".key-error"), "", "a first visit needs no explanation");

    // A known key id with a wrong secret: refused in the prompt, which stays.
    const wrong = `${viewer.secret.slice(0, -4)}AAAA`;
    assert.notEqual(wrong, viewer.secret);
    await page.fill("#api-key", wrong);
    await page.keyboard.press("Enter");
    const refusal = await eventually("the wrong key to be refused", async () => {
      const text = await status(".key-error");
      return text !== "" ? text : undefined;
    });
    assert.match(refusal, /^The server refused this key: .+ \(unauthenticated\)\.$/);
    assert.ok(!refusal.includes(wrong.slice(-20)), `the refusal echoes no secret: ${refusal}`);
    assert.equal(await page.isVisible("dialog.key-dialog[open]"), true, "the prompt stays open");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("tributary.apiKey")), null, "a refused key is not kept");
    assert.equal(await page.locator(".runs-row[data-run]").count(), 0);
    await page.screenshot({ path: join(ARTIFACTS, "api-key-refused.png") });

    // The viewer key reads: the runs list, the executors, the run.
    await page.fill("#api-key", viewer.secret);
    await page.keyboard.press("Enter");
    await page.waitForSelector("dialog.key-dialog", { state: "hidden" });
    await page.waitForSelector(`.runs-row[data-run="${runId}"]`);
    assert.equal(await page.evaluate(() => sessionStorage.getItem("tributary.apiKey")), viewer.secret);
    assert.equal(await page.innerText("header .link-button"), "API key: set (forget)");

    await page.goto(`${server.url}/#/executors`);
    await page.waitForSelector("text=No executor is connected.");
    assert.equal(await status("main .message"), "");

    await page.goto(`${server.url}/#/runs/${runId}`);
    await page.waitForSelector(".dag .node");
    assert.equal(await page.locator(".dag .node").count(), 9);
    assert.equal(await page.locator(".tasks-row[data-task]").count(), 9);
    await page.waitForSelector("header .stream[data-stream='live']");

    // Cancelling needs a client key: the viewer's call is refused, shown
    // with the server's reason, and the run goes on.
    await page.click("#cancel-run");
    const denied = await eventually("the refused cancel to show", async () => {
      const text = await status("main .message");
      return text.startsWith("Cannot cancel") ? text : undefined;
    });
    assert.match(denied, /^Cannot cancel: .+ \(permission denied\)$/);
    assert.equal(await page.isVisible("dialog.key-dialog[open]"), false, "a refused action does not ask for another key");
    assert.equal(await page.isEnabled("#cancel-run"), true);
    const stored = await runWithClientKey("run", "get", runId);
    assert.doesNotMatch(String(stored.status), /cancel/i, "the run is not cancelled");

    // Revoked while the page follows the run: the stream ends and the
    // prompt comes back, saying why.
    await server.cli("key", "revoke", viewer.key_id, "--api-key", ADMIN_KEY);
    await page.waitForSelector("dialog.key-dialog[open]", { timeout: 10_000 });
    assert.match(await status(".key-error"), /^The server no longer accepts this tab's key: .+ \(unauthenticated\)\.$/);
    await page.waitForSelector("header .stream[data-stream='stopped']");
    assert.match(await status("main .message"), /^The live stream stopped: /);
    await page.screenshot({ path: join(ARTIFACTS, "api-key-revoked.png") });

    // Another viewer key brings the page back; the run, cancelled with the
    // client key, shows so live, and the viewer's retry is refused too.
    await page.fill("#api-key", secondViewer.secret);
    await page.keyboard.press("Enter");
    await page.waitForSelector("dialog.key-dialog", { state: "hidden" });
    await page.waitForSelector("header .stream[data-stream='live']");
    await page.waitForSelector(".dag .node");
    assert.equal(await status("main .message"), "");
    await runWithClientKey("run", "cancel", runId);
    await eventually("the page to show the run cancelled", async () => (await runState()) === "CANCELLED");
    await page.click("#retry-run");
    const retryDenied = await eventually("the refused retry to show", async () => {
      const text = await status("main .message");
      return text.startsWith("Cannot retry") ? text : undefined;
    });
    assert.match(retryDenied, /^Cannot retry: .+ \(permission denied\)$/);
    assert.equal(await page.isVisible("dialog.key-dialog[open]"), false);
    assert.match(String((await runWithClientKey("run", "get", runId)).status), /cancelled/i, "the run was not retried");
    await page.screenshot({ path: join(ARTIFACTS, "api-key-retry-denied.png") });

    assert.deepEqual(errors.filter((e) => !/Failed to load resource/.test(e)), []);
    await page.close();
  });
});
