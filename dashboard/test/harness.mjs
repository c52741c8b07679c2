// What the browser tests share: the real `tributary` binary on a free port
// over a fresh SQLite file, the Rust seed example as a worker, the CLI to
// register workflows and start runs, and Debian's chromium driven by
// playwright-core (no browser download).
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Screenshots and timings, kept by CI as artifacts. */
export const ARTIFACTS = process.env.DASHBOARD_ARTIFACTS ?? join(REPO_ROOT, "target", "dashboard-screenshots");
mkdirSync(ARTIFACTS, { recursive: true });

const run = promisify(execFile);

function binary(envName, name) {
  const candidates = [process.env[envName], join(REPO_ROOT, "target", "debug", name), join(REPO_ROOT, "target", "release", name)].filter(Boolean);
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error(`no ${name} binary: set ${envName} or build it (looked at ${candidates.join(", ")})`);
  return found;
}

export const TRIBUTARY_BIN = binary("TRIBUTARY_BIN", "tributary");
export const PARALLEL_PROCESSING_BIN = binary("PARALLEL_PROCESSING_BIN", "parallel_processing");
export const ERROR_HANDLING_BIN = binary("ERROR_HANDLING_BIN", "error_handling");
export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A server process on a fresh database; `restart()` keeps port and database. */
export class Server {
  constructor(port, directory, extraArgs) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.directory = directory;
    this.extraArgs = extraArgs;
    this.children = [];
    this.stderr = "";
  }

  static async start(extraArgs = []) {
    const server = new Server(await freePort(), mkdtempSync(join(tmpdir(), "tributary-dashboard-")), extraArgs);
    await server.launch();
    return server;
  }

  async launch() {
    const args = ["serve", "--listen", `127.0.0.1:${this.port}`, "--database-url", `sqlite://${join(this.directory, "tributary.db")}`, "--log-level", "warn", ...this.extraArgs];
    this.process = spawn(TRIBUTARY_BIN, args, { stdio: ["ignore", "ignore", "pipe"] });
    this.process.stderr.on("data", (chunk) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-8000);
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (this.process.exitCode !== null) throw new Error(`the server exited with ${this.process.exitCode}: ${this.stderr}`);
      try {
        const response = await fetch(`${this.url}/`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`the server did not answer within 30 s: ${this.stderr}`);
      await sleep(50);
    }
  }

  /** Kills the server (SIGKILL) and starts it again on the same port and database. */
  async restart() {
    const child = this.process;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    await this.launch();
  }

  /** Runs the CLI against this server; returns stdout. */
  async cli(...args) {
    const { stdout } = await run(TRIBUTARY_BIN, [...args, "--server", this.url], { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  }

  /** Starts a run with the CLI; returns its id. */
  async startRun(workflow) {
    const out = JSON.parse(await this.cli("run", "start", workflow, "--json"));
    return out.run_id ?? out.runId;
  }

  async getRun(runId) {
    return JSON.parse(await this.cli("run", "get", runId, "--json"));
  }

  /** The seed example serving the given tasks (all by default), with its sleeps. */
  worker(handlers) {
    const args = ["--server", this.url, "--worker-only"];
    if (handlers) args.push("--handlers", handlers.join(","));
    const child = spawn(PARALLEL_PROCESSING_BIN, args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr.on("data", () => {});
    this.children.push(child);
    return child;
  }

  /** Runs the error_handling example against this server to its end; returns the run's id. */
  async errorHandlingRun() {
    const { stderr } = await run(ERROR_HANDLING_BIN, ["--server", this.url], { maxBuffer: 16 * 1024 * 1024 });
    const match = /Started run (\S+)/.exec(stderr);
    if (!match) throw new Error(`error_handling printed no run id: ${stderr.slice(-2000)}`);
    return match[1];
  }

  /** Registers a definition given as an object. */
  async register(definition) {
    const file = join(this.directory, `${definition.name}.json`);
    writeFileSync(file, JSON.stringify(definition));
    await this.cli("workflow", "register", file);
  }

  async stop() {
    for (const child of [...this.children, this.process]) {
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        await exited;
      }
    }
    rmSync(this.directory, { recursive: true, force: true });
  }
}

/** Chromium, headless, with a fresh profile. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), "tributary-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A page that records console errors and uncaught exceptions. */
export async function openPage(browser) {
  const page = await browser.context.newPage();
  const errors = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
  page.on("dialog", (dialog) => void dialog.accept());
  return { page, errors };
}

/** Polls `check` (async, returns truthy when done) until it holds or the limit passes. */
export async function eventually(what, check, limitMs = 30_000) {
  const deadline = Date.now() + limitMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${limitMs} ms${last ? `: ${last.message}` : ""}`);
    await sleep(100);
  }
}

export const SEED_TASKS = [
  "generate_data",
  "partition_data",
  "process_partition_1",
  "process_partition_2",
  "process_partition_3",
  "combine_results",
  "generate_report",
  "send_notifications",
  "cleanup",
];
