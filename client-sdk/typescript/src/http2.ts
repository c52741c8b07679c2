/**
 * HTTP/2 connections tuned for large messages (Node only).
 *
 * @module
 */

import type http2 from "node:http2";
import { connect } from "node:net";
import { Http2SessionManager } from "@connectrpc/connect-node";

/** Connection-level receive window: room for whole large messages without a round trip per 64 KiB. */
const CONNECTION_WINDOW_BYTES = 32 * 1024 * 1024;

/** An HTTP/2 session manager that raises each connection's receive window once, as soon as a stream exists on it. */
export class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.Http2Session>();

  override async request(...args: Parameters<Http2SessionManager["request"]>): ReturnType<Http2SessionManager["request"]> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    }
    return stream;
  }
}

/**
 * HTTP/2 settings for large contexts: without TCP_NODELAY each 64 KiB
 * flow-control window of a large `Assign` waits on a delayed ACK (tens of
 * ms per window, half a second per MB); a larger stream window needs fewer
 * round trips.
 *
 * @param serverUrl - the server's URL
 * @returns options for `http2.connect`
 */
export function http2Options(serverUrl: string): http2.ClientSessionOptions {
  const url = new URL(serverUrl);
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const options: http2.ClientSessionOptions = { settings: { initialWindowSize: 16 * 1024 * 1024 } };
  if (url.protocol === "http:") options.createConnection = () => connect({ host: url.hostname, port, noDelay: true });
  return options;
}
