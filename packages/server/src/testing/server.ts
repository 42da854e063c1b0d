import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startServer, createLogger, type RunningServer } from '../server.js';
import type { ServerConfig } from '../config.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON bodies
export type TestResponse = { status: number; body: any; headers: Headers; text: string };

export interface TestServer extends RunningServer {
  adminPassword: string;
  dataDir: string;
  /** Signs in and returns a bearer token. */
  login(username: string, password: string): Promise<string>;
  /** Creates a user through the admin API and returns a token for it. */
  createUser(username: string, role?: 'user' | 'admin'): Promise<{ id: string; token: string; password: string }>;
  adminToken: string;
  /** fetch against this server with an optional bearer token. */
  request(method: string, urlPath: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string>; raw?: string }): Promise<TestResponse>;
  stop(): Promise<void>;
}

/** Starts a real server on a free port with a temporary data dir and an admin account. */
export async function startTestServer(overrides: Partial<ServerConfig> = {}, env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'wegent-srv-'));
  const adminPassword = `Adm1n-${randomBytes(9).toString('base64url')}`;
  const server = await startServer(
    { port: 0, host: '127.0.0.1', dataDir, databaseUrl: `sqlite:${path.join(dataDir, 'wegent.db')}`, rate: { login: 0, default: 0, send: 0, aiCreate: 0 }, ...overrides },
    // Sandboxes are off unless a test asks for a driver: probing and building the executor image is slow.
    { WEGENT_ADMIN_PASSWORD: adminPassword, WEGENT_SANDBOX_DRIVER: 'none', ...env },
    createLogger('silent'),
  );
  const request: TestServer['request'] = async (method, urlPath, opts = {}) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined = opts.raw;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(server.url + urlPath, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed, headers: res.headers, text };
  };
  const login = async (username: string, password: string) => {
    const res = await request('POST', '/api/v1/auth/login', { body: { username, password } });
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
    return res.body.accessToken as string;
  };
  const adminToken = await login('admin', adminPassword);
  let n = 0;
  const createUser: TestServer['createUser'] = async (username, role = 'user') => {
    const password = `Pw-${randomBytes(9).toString('base64url')}1a`;
    const res = await request('POST', '/api/v1/admin/users', { token: adminToken, body: { username, email: `${username}.${n++}@example.com`, password, role } });
    if (res.status !== 201) throw new Error(`create user failed: ${res.status} ${res.text}`);
    return { id: res.body.id, token: await login(username, password), password };
  };
  return {
    ...server,
    adminPassword,
    dataDir,
    adminToken,
    login,
    createUser,
    request,
    async stop() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
