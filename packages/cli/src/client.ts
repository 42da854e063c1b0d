import { readConfig } from './config-store.js';
import { isStatusBody, NoCredentialsError, ServerRefusedError, UnreachableError, UsageError } from './errors.js';

export const DEFAULT_SERVER = 'http://127.0.0.1:8000';

type Env = Record<string, string | undefined>;

export interface ApiResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON when the server answered JSON, else the text (undefined when empty). */
  body: unknown;
}

export interface RequestOptions {
  query?: Record<string, string | undefined>;
  /** A JSON value (sent as application/json) or, with `contentType`, a raw text body. */
  json?: unknown;
  text?: string;
  contentType?: string;
  /** Whether the route needs a credential (all but login). */
  auth?: boolean;
}

/** Normalises a server URL given by the user; a malformed one is a usage error. */
export function normalizeServerUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`invalid server URL '${raw}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`invalid server URL '${raw}': use http:// or https://`);
  return url.toString().replace(/\/+$/, '');
}

/** The server: --server, else $WEGENT_SERVER, else the one stored by login, else the local default. */
export function resolveServer(flag: string | undefined, env: Env): string {
  const raw = flag || env.WEGENT_SERVER || readConfig(env)?.server || DEFAULT_SERVER;
  return normalizeServerUrl(raw);
}

/**
 * The credential: $WEGENT_TOKEN, else the stored token — but only when it was stored for this very
 * server, so that pointing the CLI elsewhere never sends a token to a server that did not issue it.
 */
export function resolveToken(server: string, env: Env): string | undefined {
  if (env.WEGENT_TOKEN) return env.WEGENT_TOKEN;
  const cfg = readConfig(env);
  if (cfg && normalizeServerUrl(cfg.server) === server) return cfg.token;
  return undefined;
}

/** Describes why fetch failed in a few words ("connect ECONNREFUSED 127.0.0.1:9"). */
function networkCause(err: unknown): string {
  const cause = (err as { cause?: { message?: string; code?: string; errors?: Array<{ message?: string }> } }).cause;
  if (cause) {
    if (cause.message) return cause.message;
    if (cause.errors?.[0]?.message) return cause.errors[0].message;
    if (cause.code) return cause.code;
  }
  return (err as Error).message || String(err);
}

/** A thin HTTP client for the Wegent API: Status errors and network failures become CLI errors. */
export class WegentClient {
  constructor(
    readonly server: string,
    private readonly token: string | undefined,
  ) {}

  async request(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.auth !== false) {
      if (!this.token) throw new NoCredentialsError(this.server);
      headers.authorization = `Bearer ${this.token}`;
    }
    let body: string | undefined;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers['content-type'] = 'application/json';
    } else if (opts.text !== undefined) {
      body = opts.text;
      headers['content-type'] = opts.contentType ?? 'text/plain';
    }
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method, headers, body });
      text = await res.text();
    } catch (e) {
      throw new UnreachableError(this.server, networkCause(e));
    }
    let parsed: unknown = text === '' ? undefined : text;
    if (text && /json/i.test(res.headers.get('content-type') ?? '')) {
      try {
        parsed = JSON.parse(text);
      } catch {
        /* keep the text */
      }
    }
    if (res.status >= 400) {
      const hint = res.status === 401 && opts.auth !== false ? "run 'wegent login' to sign in again, or check WEGENT_TOKEN" : undefined;
      if (isStatusBody(parsed)) throw new ServerRefusedError(res.status, parsed.reason || String(res.status), parsed.message, parsed, { hint });
      const snippet = typeof parsed === 'string' ? parsed.slice(0, 200).trim() : '';
      throw new ServerRefusedError(res.status, res.statusText || `HTTP ${res.status}`, snippet || `HTTP ${res.status}`, parsed, { hint });
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  async get<T = unknown>(path: string, query?: Record<string, string | undefined>): Promise<T> {
    return (await this.request('GET', path, { query })).body as T;
  }
}

/** Builds the client for a command from the global --server option and the environment. */
export function clientFor(serverFlag: string | undefined, env: Env): WegentClient {
  const server = resolveServer(serverFlag, env);
  return new WegentClient(server, resolveToken(server, env));
}
