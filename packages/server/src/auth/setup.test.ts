import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../server.js';
import { FirstRunError } from './service.js';

interface FreshServer {
  server: RunningServer;
  logLines: string[];
  request(method: string, urlPath: string, opts?: { body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; body: any }>;
}

const started: { server?: RunningServer; dir: string }[] = [];

/** A server on a new, empty database: no admin, WEGENT_ADMIN_PASSWORD as given (unset by default). */
async function freshServer(env: Record<string, string> = {}): Promise<FreshServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'wegent-setup-'));
  const entry: { server?: RunningServer; dir: string } = { dir };
  started.push(entry);
  const logLines: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logLines.push(line) });
  const server = await startServer({ port: 0, host: '127.0.0.1', dataDir: dir, databaseUrl: `sqlite:${path.join(dir, 'wegent.db')}` }, env, log);
  entry.server = server;
  return {
    server,
    logLines,
    async request(method, urlPath, opts = {}) {
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      if (opts.body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(server.url + urlPath, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
  };
}

function setupTokenFrom(logLines: string[]): string {
  const line = logLines.find((l) => l.includes('setup token'));
  const m = /setup token ([A-Za-z0-9_-]+)/.exec(line ?? '');
  if (!m) throw new Error('no setup token in the log');
  return m[1]!;
}

afterEach(async () => {
  for (const entry of started.splice(0)) {
    await entry.server?.close();
    rmSync(entry.dir, { recursive: true, force: true });
  }
});

const REMOTE = { 'x-forwarded-for': '203.0.113.7' };

describe('first-run setup', () => {
  it('is required on an empty database and needs no token from loopback', async () => {
    const f = await freshServer();
    expect((await f.request('GET', '/api/v1/setup')).body).toEqual({ setupRequired: true, setupTokenRequired: false });
    const res = await f.request('POST', '/api/v1/setup', { body: { password: 'First-boss-42' } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ tokenType: 'bearer', user: { username: 'admin', role: 'admin', email: 'admin@localhost' } });
    const me = await f.request('GET', '/api/v1/auth/me', { headers: { authorization: `Bearer ${res.body.accessToken}` } });
    expect(me.body.role).toBe('admin');
    expect((await f.request('GET', '/api/v1/setup')).body).toEqual({ setupRequired: false, setupTokenRequired: false });
    const again = await f.request('POST', '/api/v1/setup', { body: { username: 'intruder', password: 'Second-admin-42' } });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ reason: 'Conflict', message: 'setup is already complete' });
  });

  it('prints the setup token once, and requires it from a non-loopback (proxied) caller', async () => {
    const f = await freshServer();
    const token = setupTokenFrom(f.logLines);
    expect(f.logLines.filter((l) => l.includes(token))).toHaveLength(1);
    expect(f.logLines.find((l) => l.includes(token))).toContain(`/api/v1/setup`);
    expect((await f.request('GET', '/api/v1/setup', { headers: REMOTE })).body).toEqual({ setupRequired: true, setupTokenRequired: true });
    expect((await f.request('GET', '/api/v1/setup', { headers: { forwarded: 'for=203.0.113.7' } })).body.setupTokenRequired).toBe(true);

    const missing = await f.request('POST', '/api/v1/setup', { headers: REMOTE, body: { password: 'First-boss-42' } });
    expect(missing.status).toBe(403);
    const wrong = await f.request('POST', '/api/v1/setup', { headers: REMOTE, body: { password: 'First-boss-42', setupToken: 'nope' } });
    expect(wrong.status).toBe(403);
    const ok = await f.request('POST', '/api/v1/setup', { headers: REMOTE, body: { username: 'root-user', email: 'root@example.com', password: 'First-boss-42', setupToken: token } });
    expect(ok.status).toBe(201);
    expect(ok.body.user).toMatchObject({ username: 'root-user', email: 'root@example.com', role: 'admin' });
  });

  it('lets exactly one of several concurrent setups win; the others get 409', async () => {
    const f = await freshServer();
    const results = await Promise.all(
      ['one', 'two', 'three', 'four', 'five'].map((name) => f.request('POST', '/api/v1/setup', { body: { username: `admin-${name}`, email: `${name}@example.com`, password: 'Racing-admin-42' } })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409]);
    for (const r of results.filter((x) => x.status === 409)) expect(r.body.message).toBe('setup is already complete');
    expect(await f.server.ctx.accounts.store.countActiveAdmins()).toBe(1);
  });

  it('refuses a weak password or a bad username with 422, and stays open', async () => {
    const f = await freshServer();
    const weak = await f.request('POST', '/api/v1/setup', { body: { password: 'admin1234' } });
    expect(weak.status).toBe(422);
    expect(weak.body.details.causes[0]).toMatchObject({ field: 'password', message: 'must not contain the username' });
    const bad = await f.request('POST', '/api/v1/setup', { body: { username: 'a', password: 'First-boss-42' } });
    expect(bad.status).toBe(422);
    expect((await f.request('GET', '/api/v1/setup')).body.setupRequired).toBe(true);
  });

  it('limits setup attempts to 5 per hour per IP', async () => {
    const f = await freshServer();
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await f.request('POST', '/api/v1/setup', { headers: REMOTE, body: { password: 'First-boss-42' } })).status);
    expect(statuses).toEqual([403, 403, 403, 403, 403, 429]);
  });
});

describe('non-interactive setup (WEGENT_ADMIN_PASSWORD)', () => {
  it('creates user admin with WEGENT_ADMIN_EMAIL and prints no setup token', async () => {
    const f = await freshServer({ WEGENT_ADMIN_PASSWORD: 'Env-boss-pass-9', WEGENT_ADMIN_EMAIL: 'ops@example.com' });
    expect(f.logLines.some((l) => l.includes('setup token'))).toBe(false);
    const login = await f.request('POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'Env-boss-pass-9' } });
    expect(login.status).toBe(200);
    expect(login.body.user).toMatchObject({ email: 'ops@example.com', role: 'admin' });
    expect(f.logLines.join('\n')).not.toContain('Env-boss-pass-9');
  });

  it('stops the start with a clear message when the password is weak', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'wegent-setup-'));
    try {
      const start = startServer({ port: 0, host: '127.0.0.1', dataDir: dir, databaseUrl: `sqlite:${path.join(dir, 'wegent.db')}` }, { WEGENT_ADMIN_PASSWORD: 'password1' }, pino({ level: 'silent' }));
      await expect(start).rejects.toBeInstanceOf(FirstRunError);
      await expect(start).rejects.toThrow('WEGENT_ADMIN_PASSWORD is too weak: it is one of the most common passwords');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
