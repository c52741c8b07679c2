/**
 * Test harness: a real `tributary` server process on a free loopback port
 * over a fresh SQLite file, found through `TRIBUTARY_BIN`, else the
 * repository's release then debug build.
 *
 * @module
 */

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createNodeClient } from "../node.js";
import type { Client } from "../client.js";

/** The repository's root (this file is client-sdk/typescript/dist/test/harness.js). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

/**
 * The server binary: `TRIBUTARY_BIN`, else `target/release/tributary`, else `target/debug/tributary`.
 *
 * @returns its path
 */
export function serverBinary(): string {
  const candidates = [
    process.env.TRIBUTARY_BIN,
    join(REPO_ROOT, "target/release/tributary"),
    join(REPO_ROOT, "target/debug/tributary"),
  ].filter((path): path is string => path !== undefined && path !== "");
  const found = candidates.find((path) => existsSync(path));
  if (found === undefined) {
    throw new Error(`no tributary binary: set TRIBUTARY_BIN or build it (looked at ${candidates.join(", ")})`);
  }
  return found;
}

/**
 * A free loopback port.
 *
 * @returns the port
 */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** Server settings for tests. */
export interface ServerOptions {
  /** `--heartbeat-interval-ms`. */
  heartbeatIntervalMs?: number;
  /** `--lease-timeout-ms`. */
  leaseTimeoutMs?: number;
  /** `--max-context-bytes`. */
  maxContextBytes?: number;
  /** `--max-definition-bytes`. */
  maxDefinitionBytes?: number;
  /** `--max-run-context-bytes`: with the other two, it sets the server's message limit. */
  maxRunContextBytes?: number;
  /** `--admin-key`: API keys on, this one an admin of every namespace. */
  adminKey?: string;
  /** More `tributary serve` arguments. */
  args?: string[];
}

/** A running server process. */
export class TestServer {
  private process: ChildProcess | undefined;
  private stderr = "";

  private constructor(
    /** The server's URL. */
    readonly url: string,
    private readonly port: number,
    private readonly directory: string,
    private readonly options: ServerOptions,
  ) {}

  /**
   * Starts a server on a fresh database and waits until it answers.
   *
   * @param options - heartbeat and lease settings
   * @returns the server
   */
  static async start(options: ServerOptions = {}): Promise<TestServer> {
    const port = await freePort();
    const directory = mkdtempSync(join(tmpdir(), "tributary-ts-test-"));
    const server = new TestServer(`http://127.0.0.1:${port}`, port, directory, options);
    await server.launch();
    return server;
  }

  /** A client of this server (gRPC over HTTP/2). */
  client(namespace?: string): Client {
    return createNodeClient(this.url, namespace === undefined ? {} : { namespace });
  }

  private async launch(): Promise<void> {
    const args = [
      "serve",
      "--listen",
      `127.0.0.1:${this.port}`,
      "--database-url",
      `sqlite://${join(this.directory, "tributary.db")}`,
      "--log-level",
      "warn",
    ];
    if (this.options.heartbeatIntervalMs !== undefined) args.push("--heartbeat-interval-ms", String(this.options.heartbeatIntervalMs));
    if (this.options.leaseTimeoutMs !== undefined) args.push("--lease-timeout-ms", String(this.options.leaseTimeoutMs));
    if (this.options.maxContextBytes !== undefined) args.push("--max-context-bytes", String(this.options.maxContextBytes));
    if (this.options.maxDefinitionBytes !== undefined) args.push("--max-definition-bytes", String(this.options.maxDefinitionBytes));
    if (this.options.maxRunContextBytes !== undefined) args.push("--max-run-context-bytes", String(this.options.maxRunContextBytes));
    if (this.options.adminKey !== undefined) args.push("--admin-key", this.options.adminKey);
    if (this.options.args !== undefined) args.push(...this.options.args);
    const child = spawn(serverBinary(), args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-8_000);
    });
    this.process = child;
    const client = createNodeClient(this.url, this.options.adminKey === undefined ? {} : { apiKey: this.options.adminKey });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}: ${this.stderr}`);
      try {
        await client.listWorkflows();
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`the server did not answer within 30 s: ${String(error)}; ${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Kills the server (SIGKILL) and starts it again on the same port and database. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** Freezes the server (SIGSTOP): it answers nothing until {@link TestServer.resume}. */
  pause(): void {
    this.process?.kill("SIGSTOP");
  }

  /** Lets a frozen server go on (SIGCONT). */
  resume(): void {
    this.process?.kill("SIGCONT");
  }

  /** Kills the server with SIGKILL and waits for it to exit. */
  async kill(): Promise<void> {
    const child = this.process;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  /** Stops the server and deletes its database. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.directory, { recursive: true, force: true });
  }
}

/**
 * Waits until `predicate` returns true, polling; throws after `timeoutMs`.
 *
 * @param predicate - the condition
 * @param what - what is awaited, for the error
 * @param timeoutMs - the limit (a safety net, not an assertion on speed)
 */
export async function eventually(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Directory of the shared JSON vectors. */
export const VECTORS = join(REPO_ROOT, "tests/vectors");
