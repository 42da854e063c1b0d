// The fake model server: a real loopback HTTP server answering model calls from a per-test script.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { anthropicDialect } from './anthropic.js';
import type { Dialect, ReplyContext } from './dialect.js';
import { GOOGLE_PATH, googleDialect } from './google.js';
import { openaiChatDialect, openaiErrorAnswer } from './openai-chat.js';
import { openaiResponsesDialect } from './openai-responses.js';
import { playJson, playStream, sendError, sendJson } from './reply.js';
import {
  describeReply,
  normalizeReply,
  replyMatches,
  replyUsage,
  type FakeEndpoint,
  type FakeRecordedRequest,
  type FakeReply,
  type FakeReplyInput,
  type QueuedReply,
} from './script.js';
import { ExchangeEnded, ReplyWire } from './wire.js';

export interface StartFakeModelServerOptions {
  /** Model ids listed by `GET /v1/models` (default `['gpt-4o-mini', 'claude-sonnet-4-5', 'gemini-2.5-flash']`). */
  models?: readonly string[];
}

/** A running fake model server. */
export interface FakeModelServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** `<url>/v1`, the `baseURL` for `createOpenAI`, `createOpenAICompatible` and the `openai` SDK. */
  readonly openaiBaseUrl: string;
  /** `<url>/v1`, the `baseURL` for `createAnthropic`. */
  readonly anthropicBaseUrl: string;
  /** `<url>/v1beta`, the `baseURL` for `createGoogleGenerativeAI`. */
  readonly googleBaseUrl: string;
  /** Every request received since the start or the last `reset()`, in arrival order (a live array). */
  readonly requests: readonly FakeRecordedRequest[];
  /** Scripted replies not used up yet. */
  readonly unusedReplies: readonly FakeReply[];
  /**
   * Queues replies after those already queued. A request takes the first queued reply whose `match`
   * accepts it; with no such reply it gets a 500 in the provider's format ("no scripted reply").
   */
  script(replies: readonly FakeReplyInput[]): void;
  /** Resolves with the first recorded request (past or future) matching `predicate`; rejects after `timeoutMs` (default 5,000). */
  waitForRequest(predicate?: (request: FakeRecordedRequest) => boolean, timeoutMs?: number): Promise<FakeRecordedRequest>;
  /**
   * Resolves with the first matching request whose exchange has ended (finished, closed by the client,
   * or cut); check `closedEarly` to see whether the client hung up first.
   */
  waitForClose(predicate?: (request: FakeRecordedRequest) => boolean, timeoutMs?: number): Promise<FakeRecordedRequest>;
  /** Forgets queued replies and recorded requests (replies in flight carry on). */
  reset(): void;
  /** Ends open exchanges and stops the server. */
  close(): Promise<void>;
}

type Route = { endpoint: 'models' | 'unknown' } | { endpoint: FakeEndpoint; dialect: Dialect };

/** Endpoints are matched by path suffix, so a test may put any prefix in front of `/v1`. */
function route(method: string, path: string): Route {
  if (method === 'POST') {
    if (path.endsWith('/chat/completions')) return { endpoint: 'openai-chat', dialect: openaiChatDialect };
    if (path.endsWith('/responses')) return { endpoint: 'openai-responses', dialect: openaiResponsesDialect };
    if (path.endsWith('/messages')) return { endpoint: 'anthropic', dialect: anthropicDialect };
    if (GOOGLE_PATH.test(path)) return { endpoint: 'google', dialect: googleDialect };
    // Dify (`/chat-messages`, `/workflows/run`, `/completion-messages` and their stop endpoints) goes here.
  }
  if (method === 'GET' && path.endsWith('/models')) return { endpoint: 'models' };
  return { endpoint: 'unknown' };
}

const DEFAULT_MODELS = ['gpt-4o-mini', 'claude-sonnet-4-5', 'gemini-2.5-flash'];

class FakeModelServerImpl implements FakeModelServer {
  readonly url: string;
  readonly openaiBaseUrl: string;
  readonly anthropicBaseUrl: string;
  readonly googleBaseUrl: string;
  readonly requests: FakeRecordedRequest[] = [];
  private queue: QueuedReply[] = [];
  private readonly openWires = new Set<ReplyWire>();
  private readonly waiters = new Set<() => void>();
  private idCounter = 0;
  private closed = false;

  constructor(
    private readonly server: Server,
    private readonly models: readonly string[],
  ) {
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    this.openaiBaseUrl = `${this.url}/v1`;
    this.anthropicBaseUrl = `${this.url}/v1`;
    this.googleBaseUrl = `${this.url}/v1beta`;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((error: unknown) => this.failExchange(res, error));
    });
  }

  get unusedReplies(): readonly FakeReply[] {
    return this.queue.map((q) => q.reply);
  }

  script(replies: readonly FakeReplyInput[]): void {
    this.queue.push(...replies.map(normalizeReply));
  }

  waitForRequest(predicate: (request: FakeRecordedRequest) => boolean = () => true, timeoutMs = 5_000): Promise<FakeRecordedRequest> {
    return this.waitFor(() => this.requests.find(predicate), timeoutMs, 'matching request');
  }

  waitForClose(predicate: (request: FakeRecordedRequest) => boolean = () => true, timeoutMs = 5_000): Promise<FakeRecordedRequest> {
    return this.waitFor(() => this.requests.find((r) => r.endedAt !== undefined && predicate(r)), timeoutMs, 'matching request to end');
  }

  reset(): void {
    this.queue = [];
    this.requests.length = 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const wire of this.openWires) wire.abandon();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.notify();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawBody = await readBody(req);
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    const target = route(method, url.pathname);
    const dialect = 'dialect' in target ? target.dialect : undefined;
    const body = parseJson(rawBody);
    const facts = dialect?.describe(body, url.pathname, url.searchParams);
    const draft: FakeRecordedRequest = {
      index: this.requests.length,
      method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: flattenHeaders(req),
      rawBody,
      body,
      protocol: target.endpoint,
      model: facts?.model,
      stream: facts?.stream ?? false,
      lastUserText: facts?.lastUserText,
      systemText: facts?.systemText,
      reply: undefined,
      at: Date.now(),
      closedEarly: false,
      finished: false,
      endedAt: undefined,
    };
    const refusal = dialect !== undefined && body !== undefined ? dialect.refuse?.(draft) : undefined;
    const queued = dialect !== undefined && body !== undefined && refusal === undefined ? this.take(draft) : undefined;
    const record: FakeRecordedRequest = { ...draft, reply: queued?.reply };
    this.requests.push(record);
    const wire = new ReplyWire(res, record, queued?.reply.chunkBytes, () => {
      this.openWires.delete(wire);
      this.notify();
    });
    this.openWires.add(wire);
    this.notify();

    if (target.endpoint === 'models') return sendJson(wire, 200, this.modelList(record));
    if (dialect === undefined) {
      return sendError(wire, { errorAnswer: openaiErrorAnswer }, { status: 404, message: `fake model server: no endpoint for ${method} ${url.pathname}` }, undefined);
    }
    if (body === undefined) return sendError(wire, dialect, { status: 400, message: 'fake model server: the request body is not JSON' }, record.model);
    if (refusal !== undefined) return sendError(wire, dialect, { status: 400, message: refusal }, record.model);
    if (queued === undefined) {
      return sendError(wire, dialect, { status: 500, message: this.noReplyMessage(record), headers: { 'x-should-retry': 'false' } }, record.model);
    }
    const ctx: ReplyContext = {
      request: record,
      model: record.model ?? 'unknown',
      usage: replyUsage(queued.reply),
      finishReason: queued.reply.finishReason,
      newId: (prefix) => `${prefix}fake${++this.idCounter}`,
      created: Math.floor(record.at / 1000),
    };
    const play = record.stream ? playStream : playJson;
    await play(wire, dialect, ctx, queued.reply.steps);
  }

  /** Takes the first queued reply that accepts the request, using it up when its `times` run out. */
  private take(record: FakeRecordedRequest): QueuedReply | undefined {
    const index = this.queue.findIndex((q) => replyMatches(q.reply, record));
    if (index < 0) return undefined;
    const queued = this.queue[index]!;
    queued.remaining -= 1;
    if (queued.remaining <= 0) this.queue.splice(index, 1);
    return queued;
  }

  private noReplyMessage(record: FakeRecordedRequest): string {
    const about = [`${record.method} ${record.path}`];
    if (record.model !== undefined) about.push(`model ${record.model}`);
    if (record.lastUserText !== undefined) about.push(`last user text ${JSON.stringify(record.lastUserText.slice(0, 80))}`);
    const waiting = this.queue.length === 0 ? 'no replies are queued' : `queued but not matching: ${this.queue.map((q) => describeReply(q.reply)).join('; ')}`;
    return `fake model server: no scripted reply for ${about.join(', ')} (${waiting})`;
  }

  private modelList(record: FakeRecordedRequest): unknown {
    if (record.headers['anthropic-version'] !== undefined) {
      const data = this.models.map((id) => ({ type: 'model', id, display_name: id, created_at: '2025-01-01T00:00:00Z' }));
      return { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null };
    }
    return { object: 'list', data: this.models.map((id) => ({ id, object: 'model', created: 1_735_689_600, owned_by: 'fake-model-server' })) };
  }

  private failExchange(res: ServerResponse, error: unknown): void {
    if (error instanceof ExchangeEnded) return;
    const message = `fake model server: internal error: ${error instanceof Error ? error.stack ?? error.message : String(error)}`;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message, type: 'server_error', param: null, code: null } }));
  }

  private waitFor(find: () => FakeRecordedRequest | undefined, timeoutMs: number, what: string): Promise<FakeRecordedRequest> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = find();
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (this.closed) {
          done();
          reject(new Error(`fake model server: closed while waiting for a ${what}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        const seen = this.requests.map((r) => `${r.method} ${r.path}`).join(', ') || 'none';
        reject(new Error(`fake model server: no ${what} within ${timeoutMs} ms (requests so far: ${seen})`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** Starts a fake model server on an ephemeral loopback port. */
export async function startFakeModelServer(options: StartFakeModelServerOptions = {}): Promise<FakeModelServer> {
  const server = createServer({ noDelay: true, keepAliveTimeout: 1_000 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return new FakeModelServerImpl(server, options.models ?? DEFAULT_MODELS);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}
