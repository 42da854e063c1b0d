import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { AddressRefusedError, resolveAllowedAddresses, systemResolver, type AddressPolicy, type HostResolver, type ResolvedAddress } from './address-policy.js';

/**
 * HTTP requests whose connection goes only to an address that passed the address policy: the host is
 * resolved and checked first, and the socket's DNS lookup is pinned to that checked address, so a DNS
 * answer that changes in between (rebinding) has no effect (runtime.md §6.2 step 2). Node's built-in
 * fetch cannot pin its lookup without the undici package, hence this small client on node:http.
 */

export interface PinnedRequestOptions {
  url: URL;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  policy: AddressPolicy;
  resolver?: HostResolver;
  signal?: AbortSignal;
  /** Keep-alive agents to reuse (a socket is only reused for the same policy); none → one connection per request. */
  agents?: { http: http.Agent; https: https.Agent };
}

export interface PinnedResponse {
  status: number;
  statusText: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  /** The body, decompressed when the server compressed it. */
  body: Readable;
  /** The address the connection went to. */
  address: ResolvedAddress;
  /** Closes the connection at once. */
  destroy(): void;
}

/** The error a request rejects with when its signal aborts. */
export function abortError(): Error {
  return new DOMException('This operation was aborted', 'AbortError');
}

function pinnedLookup(address: ResolvedAddress): LookupFunction {
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [{ address: address.address, family: address.family }]);
    else callback(null, address.address, address.family);
  }) as unknown as LookupFunction;
}

/** Sends one request to a checked address; rejects with `AddressRefusedError`, a network error or an AbortError. */
export async function pinnedRequest(options: PinnedRequestOptions): Promise<PinnedResponse> {
  const { url, signal } = options;
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AddressRefusedError('scheme', url.hostname);
  if (url.username || url.password) throw new AddressRefusedError('userinfo', url.hostname);
  if (signal?.aborted) throw abortError();
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const addresses = await resolveAllowedAddresses(options.policy, hostname, options.resolver ?? systemResolver);
  if (signal?.aborted) throw abortError();
  const address = addresses[0]!;
  const isHttps = url.protocol === 'https:';
  const mod = isHttps ? https : http;
  const agent = options.agents ? (isHttps ? options.agents.https : options.agents.http) : false;

  return await new Promise<PinnedResponse>((resolve, reject) => {
    let settled = false;
    const req = mod.request({
      protocol: url.protocol,
      host: hostname,
      port: url.port || (isHttps ? 443 : 80),
      path: url.pathname + url.search,
      method: options.method ?? 'GET',
      headers: options.headers,
      agent,
      lookup: pinnedLookup(address),
    });
    const onAbort = () => {
      req.destroy(abortError());
      if (!settled) {
        settled = true;
        reject(abortError());
      }
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      if (!settled) {
        settled = true;
        reject(signal?.aborted ? abortError() : err);
      }
    });
    req.on('response', (res) => {
      settled = true;
      res.on('close', () => signal?.removeEventListener('abort', onAbort));
      const encoding = String(res.headers['content-encoding'] ?? '').toLowerCase().trim();
      let body: Readable = res;
      if (encoding === 'gzip' || encoding === 'x-gzip' || encoding === 'deflate' || encoding === 'br') {
        const decoder = encoding === 'br' ? zlib.createBrotliDecompress() : encoding === 'deflate' ? zlib.createInflate() : zlib.createGunzip();
        res.on('error', (err) => decoder.destroy(err));
        body = res.pipe(decoder);
      }
      resolve({
        status: res.statusCode ?? 0,
        statusText: res.statusMessage ?? '',
        headers: res.headers,
        rawHeaders: res.rawHeaders,
        body,
        address,
        destroy: () => {
          res.destroy();
          req.destroy();
        },
      });
    });
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

/** Raised into a response body when the connection breaks before the body ended. */
export class StreamCutError extends Error {
  override readonly name = 'StreamCutError';
  constructor(cause?: unknown) {
    super('the connection closed before the response ended', { cause });
  }
}

/** A `fetch` for the AI SDK providers that connects only to addresses the policy allows. */
export interface PinnedFetch {
  fetch: typeof globalThis.fetch;
  /** Closes idle keep-alive connections. */
  close(): void;
}

/** Creates a pinned `fetch` with its own keep-alive agents. */
export function createPinnedFetch(policy: AddressPolicy, resolver?: HostResolver): PinnedFetch {
  const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : undefined;
    const url = new URL(request ? request.url : String(input));
    const headers: Record<string, string> = {};
    new Headers(init?.headers ?? request?.headers).forEach((value, key) => (headers[key] = value));
    const rawBody = init?.body ?? undefined;
    let body: string | Uint8Array | undefined;
    if (typeof rawBody === 'string') body = rawBody;
    else if (rawBody instanceof Uint8Array) body = rawBody;
    else if (rawBody instanceof ArrayBuffer) body = new Uint8Array(rawBody);
    else if (rawBody != null) body = new Uint8Array(await new Response(rawBody).arrayBuffer());
    const signal = init?.signal ?? request?.signal ?? undefined;
    let res: PinnedResponse;
    try {
      res = await pinnedRequest({ url, method: init?.method ?? request?.method ?? 'GET', headers, body, policy, resolver, signal, agents });
    } catch (err) {
      if (err instanceof AddressRefusedError || (err instanceof Error && err.name === 'AbortError')) throw err;
      // Shaped like undici's failure so the AI SDK treats it as a retryable connection error.
      throw new TypeError('fetch failed', { cause: err });
    }
    const responseHeaders = new Headers();
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) responseHeaders.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
    const noBody = res.status === 204 || res.status === 304 || (init?.method ?? 'GET').toUpperCase() === 'HEAD';
    return new Response(noBody ? null : toWebStream(res, signal), { status: res.status, statusText: res.statusText, headers: responseHeaders });
  };
  return {
    fetch: fetchImpl as typeof globalThis.fetch,
    close: () => {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

/** A web stream over a response body: a broken connection becomes `StreamCutError`, an abort an AbortError. */
function toWebStream(res: PinnedResponse, signal: AbortSignal | undefined): ReadableStream<Uint8Array> {
  const body = res.body;
  let done = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const fail = (err: unknown) => {
        if (done) return;
        done = true;
        controller.error(signal?.aborted ? abortError() : err);
      };
      body.on('data', (chunk: Buffer) => {
        if (done) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 1) <= 0) body.pause();
      });
      body.on('end', () => {
        if (done) return;
        done = true;
        controller.close();
      });
      body.on('error', (err) => fail(new StreamCutError(err)));
      body.on('close', () => fail(new StreamCutError()));
      signal?.addEventListener('abort', () => fail(abortError()), { once: true });
    },
    pull() {
      body.resume();
    },
    cancel() {
      done = true;
      res.destroy();
    },
  }, { highWaterMark: 16 });
}
