/**
 * The model gateway (sandbox.md §11): an HTTP server on the sandbox's `<run>/gateway.sock` (inside:
 * `/run/wegent/gateway.sock`, reached from 127.0.0.1:4000 through the agent). It forwards model
 * calls of the active grant to the Model's base URL with the real credential, so the API key never
 * enters the sandbox. Budgets per turn, usage read from the answers.
 */
import { chmod, chown, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { checkAddress, guardedLookup, type AddressRules } from './address.js';
import { UsageReader, type TokenUsage } from './usage.js';

export const GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024;
export const GATEWAY_MAX_CONCURRENT = 4;
export const GATEWAY_MAX_REQUESTS = 500;

/** The turn's resolved Model as the gateway needs it (the server maps its Model resource onto this). */
export interface GatewayModel {
  protocol: string;
  modelId: string;
  smallModelId?: string;
  apiFormat?: 'chat/completions' | 'responses';
  /** Provider default when absent (Anthropic, OpenAI). */
  baseUrl?: string;
  apiKey?: string;
  /** The Model's extra headers (secret values). */
  headers?: Record<string, string>;
  /** runtime.md §3.5: loopback/private hosts allowed (Models of admins, public Models). */
  allowPrivate?: boolean;
}

export interface GatewayUsageRecord extends TokenUsage {
  sandboxId: string;
  turnId: string;
  /** The modelId the request was sent with. */
  model: string;
  protocol: string;
  route: string;
  status: number;
}

/** Access to the turn's Model through the gateway, until revoked (turn end). */
export interface ModelGrant {
  readonly turnId: string;
  /** Ends the grant and cuts its requests still running. */
  revoke(): void;
}

export interface ModelGatewayOptions {
  sandboxId: string;
  socketPath: string;
  /** Owner of the socket file: the sandbox user's host uid (only it and root reach the run folder). */
  socketOwner?: { uid: number; gid: number };
  onUsage?(record: GatewayUsageRecord): void;
  /** Address rules on top of each Model's own `allowPrivate`. */
  privateHostsAllow?: readonly string[];
  /** Every Model may reach private addresses (tests with a loopback model server; trusted installs). */
  allowPrivateTargets?: boolean;
}

interface Grant {
  turnId: string;
  model: GatewayModel;
  active: Set<{ cut(): void }>;
  total: number;
  revoked: boolean;
}

const ROUTES: Record<string, { method: string; protocols: string[] }> = {
  '/v1/messages': { method: 'POST', protocols: ['anthropic'] },
  '/v1/messages/count_tokens': { method: 'POST', protocols: ['anthropic'] },
  '/v1/chat/completions': { method: 'POST', protocols: ['openai', 'openai-compatible'] },
  '/v1/responses': { method: 'POST', protocols: ['openai', 'openai-compatible'] },
  '/v1/models': { method: 'GET', protocols: ['anthropic', 'openai', 'openai-compatible'] },
};

const DEFAULT_BASE: Record<string, string> = { anthropic: 'https://api.anthropic.com/v1', openai: 'https://api.openai.com/v1' };

/** Incoming headers never forwarded: credentials of the sandbox, hop-by-hop, and what the gateway sets. */
const DROP_REQUEST = new Set(['authorization', 'x-api-key', 'api-key', 'proxy-authorization', 'x-goog-api-key', 'cookie', 'host', 'content-length',
  'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection', 'accept-encoding', 'forwarded', 'x-forwarded-for']);
const DROP_RESPONSE = new Set(['set-cookie', 'set-cookie2', 'connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'trailer', 'upgrade']);

function routeFor(protocol: string, apiFormat?: string): string {
  if (protocol === 'anthropic') return 'POST /v1/messages';
  return apiFormat === 'responses' ? 'POST /v1/responses' : 'POST /v1/chat/completions';
}

function sendError(res: ServerResponse, status: number, type: string, message: string): void {
  if (res.headersSent) { res.destroy(); return; }
  // One shape both SDK families read: `error.message` (OpenAI) inside an Anthropic-style envelope.
  // A refused body may still be arriving: the connection is not reused.
  res.writeHead(status, { 'content-type': 'application/json', ...(status === 413 ? { connection: 'close' } : {}) });
  res.end(JSON.stringify({ type: 'error', error: { type, message } }));
}

export class ModelGateway {
  private server: Server | undefined;
  private readonly grants: Grant[] = [];

  constructor(private readonly opts: ModelGatewayOptions) {}

  get socketPath(): string { return this.opts.socketPath; }

  async start(): Promise<void> {
    if (this.server) return;
    await rm(this.opts.socketPath, { force: true });
    const server = createServer((req, res) => { this.handle(req, res).catch((err: unknown) => sendError(res, 502, 'api_error', `the model gateway failed: ${(err as Error).message}`)); });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(this.opts.socketPath, () => { server.off('error', reject); resolve(); }); });
    this.server = server;
    // The run folder (0700, the sandbox user's) is the access control; the socket itself is open to that user.
    await chmod(this.opts.socketPath, 0o666);
    // A server that is not root cannot give files away; its own uid is then the sandbox user's (§1).
    if (this.opts.socketOwner) await chown(this.opts.socketPath, this.opts.socketOwner.uid, this.opts.socketOwner.gid).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EPERM') throw err; });
  }

  /** Gives the sandbox access to `model` for the turn, until `revoke()`. */
  grant(turnId: string, model: GatewayModel): ModelGrant {
    const g: Grant = { turnId, model: { ...model, headers: { ...model.headers } }, active: new Set(), total: 0, revoked: false };
    this.grants.push(g);
    return {
      turnId,
      revoke: () => {
        if (g.revoked) return;
        g.revoked = true;
        this.grants.splice(this.grants.indexOf(g), 1);
        for (const r of [...g.active]) r.cut();
      },
    };
  }

  /** Revokes every grant of a turn (the turn ended). */
  revokeTurn(turnId: string): void {
    for (const g of this.grants.filter((x) => x.turnId === turnId)) {
      g.revoked = true;
      this.grants.splice(this.grants.indexOf(g), 1);
      for (const r of [...g.active]) r.cut();
    }
  }

  async close(): Promise<void> {
    for (const g of this.grants.splice(0)) { g.revoked = true; for (const r of [...g.active]) r.cut(); }
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await rm(this.opts.socketPath, { force: true });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const path = url.pathname.replace(/\/+$/, '');
    // Parallel turns of one task share its sandbox: a request counts on the most recent live grant.
    const grant = this.grants[this.grants.length - 1];
    if (!grant) { req.resume(); sendError(res, 403, 'permission_error', 'no model is available to this sandbox right now'); return; }
    const { model } = grant;
    const route = ROUTES[path];
    if (!route || route.method !== req.method) { req.resume(); sendError(res, 404, 'not_found_error', `the model gateway has no route ${req.method} ${path}`); return; }
    if (!route.protocols.includes(model.protocol)) {
      req.resume();
      const use = ['anthropic', 'openai', 'openai-compatible'].includes(model.protocol) ? routeFor(model.protocol, model.apiFormat) : 'no route of this gateway';
      sendError(res, 400, 'invalid_request_error', `this sandbox's model speaks ${model.protocol}; use ${use}`);
      return;
    }
    if (path === '/v1/models') { req.resume(); this.listModels(res, model); return; }
    if (grant.active.size >= GATEWAY_MAX_CONCURRENT) { req.resume(); sendError(res, 429, 'rate_limit_error', `at most ${GATEWAY_MAX_CONCURRENT} model requests may run at once in this sandbox`); return; }
    if (grant.total >= GATEWAY_MAX_REQUESTS) { req.resume(); sendError(res, 429, 'rate_limit_error', `this turn has used its ${GATEWAY_MAX_REQUESTS} model requests`); return; }
    grant.total++;

    const entry = { cut: () => undefined as void };
    grant.active.add(entry);
    try {
      await this.forward(req, res, grant, path, url.search, entry);
    } finally {
      grant.active.delete(entry);
    }
  }

  private listModels(res: ServerResponse, model: GatewayModel): void {
    const ids = [...new Set([model.modelId, model.smallModelId].filter((x): x is string => !!x))];
    const body = model.protocol === 'anthropic'
      ? { data: ids.map((id) => ({ type: 'model', id, display_name: id, created_at: '1970-01-01T00:00:00Z' })), has_more: false, first_id: ids[0] ?? null, last_id: ids[ids.length - 1] ?? null }
      : { object: 'list', data: ids.map((id) => ({ id, object: 'model', created: 0, owned_by: 'wegent' })) };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private readBody(req: IncomingMessage): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > GATEWAY_MAX_BODY_BYTES) { resolve(undefined); req.resume(); return; }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > GATEWAY_MAX_BODY_BYTES) { resolve(undefined); req.removeAllListeners('data'); req.resume(); return; }
        chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  }

  private async forward(req: IncomingMessage, res: ServerResponse, grant: Grant, path: string, search: string, entry: { cut(): void }): Promise<void> {
    const { model } = grant;
    const raw = await this.readBody(req);
    if (raw === undefined) { sendError(res, 413, 'request_too_large', 'the request body is larger than 10 MiB'); return; }
    let body: Record<string, unknown>;
    try {
      const parsed = JSON.parse(raw.toString('utf8')) as unknown;
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      body = parsed as Record<string, unknown>;
    } catch { sendError(res, 400, 'invalid_request_error', 'the request body must be a JSON object'); return; }
    // Only the granted model ids are forwarded; anything else is rewritten to modelId (runtime.md §12.3).
    body.model = model.smallModelId && body.model === model.smallModelId ? model.smallModelId : model.modelId;
    const payload = Buffer.from(JSON.stringify(body));

    const base = new URL(model.baseUrl ?? DEFAULT_BASE[model.protocol] ?? '');
    const target = new URL(base.href.replace(/\/+$/, '') + path.replace(/^\/v1/, '') + search);
    const rules: AddressRules = { allowPrivate: this.opts.allowPrivateTargets === true || model.allowPrivate === true, privateHostsAllow: this.opts.privateHostsAllow };
    const host = target.hostname.replace(/^\[|\]$/g, '');
    try {
      if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error(`the Model's base URL must be http or https`);
      if (isIP(host)) checkAddress(host, host, rules);
    } catch (err) { sendError(res, 502, 'api_error', (err as Error).message); return; }

    const headers: OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !DROP_REQUEST.has(k.toLowerCase())) headers[k] = v;
    for (const [k, v] of Object.entries(model.headers ?? {})) headers[k.toLowerCase()] = v;
    if (model.protocol === 'anthropic') {
      if (model.apiKey) headers['x-api-key'] = model.apiKey;
      headers['anthropic-version'] ??= '2023-06-01';
    } else if (model.apiKey) {
      headers.authorization = `Bearer ${model.apiKey}`;
    }
    headers['content-type'] = 'application/json';
    headers['content-length'] = payload.length;
    // Plain bytes let the gateway read usage from the answer.
    headers['accept-encoding'] = 'identity';

    await new Promise<void>((resolve) => {
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      const upstream = send(target, { method: 'POST', headers, lookup: guardedLookup(rules) });
      let done = false;
      const finish = () => { if (!done) { done = true; resolve(); } };
      entry.cut = () => { upstream.destroy(); res.destroy(); finish(); };
      // The sandbox's program went away: the provider call goes with it.
      res.on('close', () => { if (!res.writableFinished) { upstream.destroy(); finish(); } });
      upstream.on('error', (err) => {
        const refused = (err as Error).name === 'AddressRefusedError';
        sendError(res, 502, 'api_error', refused ? err.message : `the model provider is not reachable: ${err.message}`);
        finish();
      });
      upstream.on('response', (up) => {
        const out: OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !DROP_RESPONSE.has(k.toLowerCase())) out[k] = v;
        res.writeHead(up.statusCode ?? 502, out);
        res.flushHeaders();
        const reader = new UsageReader(/event-stream/i.test(String(up.headers['content-type'] ?? '')));
        up.on('data', (c: Buffer) => { reader.write(c); res.write(c); });
        up.on('end', () => {
          res.end();
          const usage = reader.end();
          if (usage && this.opts.onUsage) {
            try {
              this.opts.onUsage({ ...usage, sandboxId: this.opts.sandboxId, turnId: grant.turnId, model: String(body.model), protocol: model.protocol, route: path, status: up.statusCode ?? 0 });
            } catch { /* a failing recorder never breaks the call */ }
          }
          finish();
        });
        up.on('error', () => { res.destroy(); finish(); });
      });
      upstream.end(payload);
    });
  }
}
