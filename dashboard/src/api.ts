/**
 * The connection to the server that serves this page: gRPC-Web over
 * `fetch` (Connect-ES), the namespace and API key of every call, and the
 * resumption of event streams after a disconnect or a server restart.
 *
 * @module
 */

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { CallOptions, Client, Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ExecutorService } from "./gen/tributary/v1/executor_pb.js";
import { RunService } from "./gen/tributary/v1/run_pb.js";
import { WorkflowService } from "./gen/tributary/v1/workflow_pb.js";

const NAMESPACE_KEY = "tributary.namespace";
const API_KEY_KEY = "tributary.apiKey";

/** The namespace the dashboard shows (kept in localStorage). */
export function namespace(): string {
  return localStorage.getItem(NAMESPACE_KEY) || "default";
}

/** Switches namespace. */
export function setNamespace(value: string): void {
  localStorage.setItem(NAMESPACE_KEY, value.trim() || "default");
}

/** The API key entered by the user, kept for this tab only (sessionStorage). */
export function apiKey(): string | null {
  return sessionStorage.getItem(API_KEY_KEY);
}

/** Sets or clears the API key. */
export function setApiKey(value: string | null): void {
  if (value) sessionStorage.setItem(API_KEY_KEY, value);
  else sessionStorage.removeItem(API_KEY_KEY);
}

const headers: Interceptor = (next) => async (request) => {
  request.header.set("x-tributary-namespace", namespace());
  // A call may bring its own key (the prompt trying one before keeping it).
  const key = apiKey();
  if (key && !request.header.has("authorization")) request.header.set("authorization", `Bearer ${key}`);
  return next(request);
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [headers],
});

/** The run service. */
export const runs: Client<typeof RunService> = createClient(RunService, transport);
/** The workflow service. */
export const workflows: Client<typeof WorkflowService> = createClient(WorkflowService, transport);
/** The executor service. */
export const executors: Client<typeof ExecutorService> = createClient(ExecutorService, transport);

/**
 * Whether an error means "ask for an API key": the call had no key, or one
 * the server does not accept (unknown, revoked, expired). A refusal of a
 * good key (`PERMISSION_DENIED`: a viewer cancelling, another namespace) is
 * shown where it happened instead; asking again would not change it.
 */
export function needsKey(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Unauthenticated;
}

/** Whether a stream broke for a reason worth following it again for. */
export function isTransient(error: unknown): boolean {
  return [Code.Unavailable, Code.Unknown, Code.Canceled, Code.DeadlineExceeded, Code.Aborted, Code.Internal].includes(
    ConnectError.from(error).code,
  );
}

/** A short text for an error, for people. */
export function describeError(error: unknown): string {
  const connectError = ConnectError.from(error);
  return `${Code[connectError.code] ?? connectError.code}: ${connectError.rawMessage}`;
}

/** Options of a call that stops when the view closes. */
export function callOptions(signal: AbortSignal): CallOptions {
  return { signal };
}

/** Listeners told when a call needs an API key (the key prompt). */
const keyListeners = new Set<(error: unknown) => void>();

/** Registers the key prompt. */
export function onKeyNeeded(listener: (error: unknown) => void): void {
  keyListeners.add(listener);
}

/** Tells the key prompt that a call was refused for want of a (valid) key. */
export function keyNeeded(error: unknown): void {
  for (const listener of keyListeners) listener(error);
}

/**
 * The connection state of a view's stream, shown in the header: `ended`
 * when the stream is complete, `stopped` when it broke for good (a refused
 * key, a permanent error).
 */
export type StreamState = "connecting" | "live" | "reconnecting" | "ended" | "stopped";

/**
 * Follows a server stream, opening it again after transient errors with
 * a backoff (200 ms doubling to 5 s). `open` is called for every attempt,
 * so it resumes from what was delivered so far (a cursor, a sequence).
 * Stops when the signal aborts, when the stream ends normally and `reopen`
 * says so, or on a permanent error (reported through `onError`; an
 * `UNAUTHENTICATED` one, e.g. the key revoked, also asks for a key).
 */
export async function follow<T>(options: {
  open: (signal: AbortSignal) => AsyncIterable<T>;
  onMessage: (message: T) => void;
  onState: (state: StreamState) => void;
  onError: (error: unknown) => void;
  signal: AbortSignal;
  /** Whether to open again after a normal end (default: no). */
  reopenAfterEnd?: () => boolean;
}): Promise<void> {
  let delay = 200;
  options.onState("connecting");
  while (!options.signal.aborted) {
    try {
      let first = true;
      options.onState("live");
      for await (const message of options.open(options.signal)) {
        if (first) {
          first = false;
          delay = 200;
        }
        options.onMessage(message);
      }
      if (!options.reopenAfterEnd?.()) {
        options.onState("ended");
        return;
      }
    } catch (error) {
      if (options.signal.aborted) return;
      if (!isTransient(error)) {
        options.onState("stopped");
        if (needsKey(error)) keyNeeded(error);
        options.onError(error);
        return;
      }
    }
    options.onState("reconnecting");
    await sleep(delay, options.signal);
    delay = Math.min(delay * 2, 5_000);
  }
}

/** Resolves after `ms`, or at once when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * A random id for one user action (128 bits, hex), so a call repeated after
 * a lost answer is recognised by the server. `crypto.getRandomValues` works
 * on plain-HTTP origins too, unlike `crypto.randomUUID`.
 */
export function requestId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * An error for people: the server's message first, then the status code
 * in words (`failed precondition`), e.g. "the run is RUNNING (failed
 * precondition)".
 */
export function explainError(error: unknown): string {
  const connectError = ConnectError.from(error);
  const name = Code[connectError.code] ?? String(connectError.code);
  const words = name.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return connectError.rawMessage ? `${connectError.rawMessage} (${words})` : words;
}
