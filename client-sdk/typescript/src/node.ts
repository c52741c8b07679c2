/**
 * Node-only helpers: a {@link Client} speaking gRPC over HTTP/2.
 *
 * @module
 */

import { createGrpcTransport } from "@connectrpc/connect-node";
import { Client } from "./client.js";
import { WideWindowSessionManager, http2Options } from "./http2.js";

/**
 * A client speaking gRPC over HTTP/2 (Node's `http2`), for Node programs.
 *
 * @param baseUrl - the server's URL, e.g. `http://127.0.0.1:50051`
 * @param options - the namespace and the API key
 * @returns the client
 */
export function createNodeClient(baseUrl: string, options: { namespace?: string; apiKey?: string } = {}): Client {
  const sessionManager = new WideWindowSessionManager(baseUrl, {}, http2Options(baseUrl));
  return new Client({ transport: createGrpcTransport({ baseUrl, sessionManager }), ...options });
}

export * from "./index.js";
