import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { startTestServer, type TestServer } from '../testing/server.js';
import { startServer, createLogger } from '../server.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function decodeJwt(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
}

describe('accounts over HTTP', () => {
  let s: TestServer;
  let n = 0;
  const uniq = (base: string) => `${base}${++n}`;

  beforeAll(async () => {
    s = await startTestServer();
  }, 30_000);
  afterAll(async () => {
    await s?.stop();
  });
  beforeEach(() => {
    for (const counter of Object.values(s.ctx.accounts.limits)) counter.reset();
  });

  describe('login', () => {
    it('signs in with JSON and answers a bearer token with the user', async () => {
      const res = await s.request('POST', '/api/v1/auth/login', { body: { username: 'admin', password: s.adminPassword } });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ tokenType: 'bearer', expiresIn: 24 * 3600, user: { username: 'admin', role: 'admin', isActive: true } });
      const claims = decodeJwt(res.body.accessToken);
      expect(claims).toMatchObject({ sub: res.body.user.id, role: 'admin', iss: 'wegent' });
      expect(typeof claims.tv).toBe('number');
      expect(typeof claims.jti).toBe('string');
      expect((claims.exp as number) - (claims.iat as number)).toBe(24 * 3600);
      const me = await s.request('GET', '/api/v1/auth/me', { token: res.body.accessToken });
      expect(me.status).toBe(200);
      expect(me.body.username).toBe('admin');
      expect(me.body.lastLoginAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });

    it('signs in with an OAuth2 password-grant form and answers in RFC 6749 shape', async () => {
      const raw = new URLSearchParams({ grant_type: 'password', username: 'admin', password: s.adminPassword, scope: '', client_id: 'cli' }).toString();
      const res = await s.request('POST', '/api/v1/auth/login', { raw, headers: FORM });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ token_type: 'bearer', expires_in: 24 * 3600, user: { username: 'admin' } });
      expect(res.body.accessToken).toBeUndefined();
      expect((await s.request('GET', '/api/v1/auth/me', { token: res.body.access_token })).status).toBe(200);
    });

    it('accepts the e-mail address in place of the username, in any case', async () => {
      const u = await s.createUser(uniq('mailer'));
      const me = await s.request('GET', '/api/v1/auth/me', { token: u.token });
      const res = await s.request('POST', '/api/v1/auth/login', { body: { username: me.body.email.toUpperCase(), password: u.password } });
      expect(res.status).toBe(200);
      expect(res.body.user.id).toBe(u.id);
    });

    it('answers an unknown user and a wrong password with the same 401', async () => {
      const wrong = await s.request('POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'not-the-password-1' } });
      const unknown = await s.request('POST', '/api/v1/auth/login', { body: { username: 'nobody-here', password: 'not-the-password-1' } });
      expect(wrong.status).toBe(401);
      expect(unknown.status).toBe(401);
      expect(wrong.body).toEqual(unknown.body);
      expect(wrong.body).toMatchObject({ kind: 'Status', reason: 'Unauthorized', message: 'incorrect username or password', code: 401 });
      expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="wegent"');
    });

    it('refuses a login with a missing field or an unknown field with 422', async () => {
      const missing = await s.request('POST', '/api/v1/auth/login', { body: { username: 'admin' } });
      expect(missing.status).toBe(422);
      expect(missing.body.details.causes[0].field).toBe('password');
      const extra = await s.request('POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'x', remember: true } });
      expect(extra.status).toBe(422);
    });

    it('limits login attempts per (IP, username) and answers 429 with Retry-After', async () => {
      const counter = s.ctx.accounts.limits.loginPerUser;
      const saved = counter.limit;
      counter.limit = 3;
      try {
        const name = uniq('throttled');
        for (let i = 0; i < 3; i++) {
          const r = await s.request('POST', '/api/v1/auth/login', { body: { username: name, password: 'wrong-password-1' } });
          expect(r.status).toBe(401);
          expect(r.headers.get('ratelimit-limit')).toBe('3');
        }
        const limited = await s.request('POST', '/api/v1/auth/login', { body: { username: name, password: 'wrong-password-1' } });
        expect(limited.status).toBe(429);
        expect(limited.body.reason).toBe('TooManyRequests');
        expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
        expect(limited.body.details.retryAfterSeconds).toBe(Number(limited.headers.get('retry-after')));
        // Another username from the same IP is still let through.
        expect((await s.request('POST', '/api/v1/auth/login', { body: { username: 'admin', password: s.adminPassword } })).status).toBe(200);
      } finally {
        counter.limit = saved;
      }
    });
  });

  describe('credentials on requests', () => {
    it('answers 401 without a credential or with a malformed one', async () => {
      const variants: Record<string, string>[] = [{}, { authorization: 'Bearer' }, { authorization: 'Basic YWRtaW46eA==' }, { authorization: 'Bearer not.a.jwt' }, { 'x-api-key': 'wgt_nope' }];
      for (const headers of variants) {
        const res = await s.request('GET', '/api/v1/auth/me', { headers });
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe('Bearer realm="wegent"');
      }
    });

    it('gives a non-admin 403 on admin routes', async () => {
      const u = await s.createUser(uniq('plain'));
      const res = await s.request('GET', '/api/v1/admin/users', { token: u.token });
      expect(res.status).toBe(403);
      expect(res.body.reason).toBe('Forbidden');
    });

    it('refuses a token and an API key after their user is disabled, and the login with 403', async () => {
      const u = await s.createUser(uniq('leaver'));
      const key = (await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'ci' } })).body.key as string;
      expect((await s.request('GET', '/api/v1/auth/me', { headers: { 'x-api-key': key } })).status).toBe(200);
      const patch = await s.request('PATCH', `/api/v1/admin/users/${u.id}`, { token: s.adminToken, body: { isActive: false } });
      expect(patch.status).toBe(200);
      expect(patch.body.isActive).toBe(false);
      expect((await s.request('GET', '/api/v1/auth/me', { token: u.token })).status).toBe(401);
      expect((await s.request('GET', '/api/v1/auth/me', { headers: { 'x-api-key': key } })).status).toBe(401);
      const login = await s.request('POST', '/api/v1/auth/login', { body: { username: u.id && patch.body.username, password: u.password } });
      expect(login.status).toBe(403);
      expect(login.body.message).toBe('this account is disabled');
      const wrong = await s.request('POST', '/api/v1/auth/login', { body: { username: patch.body.username, password: 'wrong-password-9' } });
      expect(wrong.status).toBe(401);
      // Re-enabled: signs in again, but the old token stays dead (the token version moved on).
      expect((await s.request('PATCH', `/api/v1/admin/users/${u.id}`, { token: s.adminToken, body: { isActive: true } })).status).toBe(200);
      expect((await s.request('GET', '/api/v1/auth/me', { token: u.token })).status).toBe(401);
      expect((await s.request('GET', '/api/v1/auth/me', { headers: { 'x-api-key': key } })).status).toBe(200);
      expect(await s.login(patch.body.username, u.password)).toBeTruthy();
    });

    it('stops a user disabled by another server instance within 5 seconds', async () => {
      const u = await s.createUser(uniq('elsewhere'));
      expect((await s.request('GET', '/api/v1/auth/me', { token: u.token })).status).toBe(200);
      // Another instance writes straight to the shared database; this process only has its cache.
      await s.ctx.storage.db.updateTable('users').set({ is_active: 0 }).where('id', '=', u.id).execute();
      const took = await waitFor(async () => (await s.request('GET', '/api/v1/auth/me', { token: u.token })).status === 401, 5000);
      expect(took).toBeLessThan(5000);
    });
  });

  describe('long-lived connections', () => {
    it('re-checks a principal and announces the change: logout, key revoke, disable', async () => {
      const u = await s.createUser(uniq('socketeer'));
      const changes: { userId: string; code: string }[] = [];
      const off = s.ctx.accounts.onCredentialsChanged((c) => changes.push(c));
      try {
        const jwt = (await s.ctx.accounts.authenticateCredential(u.token))!;
        const created = (await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'sock' } })).body;
        const viaKey = (await s.ctx.accounts.authenticateCredential(created.key))!;
        expect(await s.ctx.accounts.recheckPrincipal(jwt)).toBe('ok');
        expect(await s.ctx.accounts.recheckPrincipal(viaKey)).toBe('ok');
        await s.request('DELETE', `/api/v1/auth/api-keys/${created.id}`, { token: u.token });
        expect(await s.ctx.accounts.recheckPrincipal(viaKey)).toBe('REVOKED');
        await s.request('POST', '/api/v1/auth/logout', { token: u.token });
        expect(await s.ctx.accounts.recheckPrincipal(jwt)).toBe('REVOKED');
        await s.request('PATCH', `/api/v1/admin/users/${u.id}`, { token: s.adminToken, body: { isActive: false } });
        expect(await s.ctx.accounts.recheckPrincipal(jwt)).toBe('ACCOUNT_DISABLED');
        expect(changes.map((c) => [c.userId, c.code])).toEqual([
          [u.id, 'REVOKED'],
          [u.id, 'REVOKED'],
          [u.id, 'ACCOUNT_DISABLED'],
        ]);
      } finally {
        off();
      }
    });
  });

  describe('refresh and logout', () => {
    it('refreshes a token into a new working one', async () => {
      const u = await s.createUser(uniq('refresher'));
      const res = await s.request('POST', '/api/v1/auth/refresh', { token: u.token });
      expect(res.status).toBe(200);
      expect(res.body.accessToken).not.toBe(u.token);
      expect(decodeJwt(res.body.accessToken).jti).not.toBe(decodeJwt(u.token).jti);
      expect((await s.request('GET', '/api/v1/auth/me', { token: res.body.accessToken })).body.id).toBe(u.id);
    });

    it('accepts an empty body with any content type, and refuses a body of another type with 415', async () => {
      const u = await s.createUser(uniq('bodiless'));
      expect((await s.request('POST', '/api/v1/auth/refresh', { token: u.token, raw: '', headers: { 'content-type': 'text/plain' } })).status).toBe(200);
      expect((await s.request('POST', '/api/v1/auth/refresh', { token: u.token, raw: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(200);
      expect((await s.request('POST', '/api/v1/auth/logout', { token: u.token, raw: '{oops', headers: { 'content-type': 'application/json' } })).status).toBe(400);
      expect((await s.request('POST', '/api/v1/auth/logout', { token: u.token, raw: 'bye', headers: { 'content-type': 'text/plain' } })).status).toBe(415);
      expect((await s.request('POST', '/api/v1/auth/logout', { token: u.token, raw: '', headers: { 'content-type': 'text/plain' } })).status).toBe(204);
    });

    it('revokes the token on logout, and only that token', async () => {
      const u = await s.createUser(uniq('quitter'));
      const other = await s.login((await s.request('GET', '/api/v1/auth/me', { token: u.token })).body.username, u.password);
      const res = await s.request('POST', '/api/v1/auth/logout', { token: u.token });
      expect(res.status).toBe(204);
      expect(res.text).toBe('');
      expect((await s.request('GET', '/api/v1/auth/me', { token: u.token })).status).toBe(401);
      expect((await s.request('POST', '/api/v1/auth/refresh', { token: u.token })).status).toBe(401);
      expect((await s.request('GET', '/api/v1/auth/me', { token: other })).status).toBe(200);
      const jti = decodeJwt(u.token).jti as string;
      expect(await s.ctx.accounts.store.isTokenRevoked(jti)).toBe(true);
    });

    it('refuses refresh and logout with an API key (400)', async () => {
      const u = await s.createUser(uniq('keyholder'));
      const key = (await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'k' } })).body.key as string;
      const refresh = await s.request('POST', '/api/v1/auth/refresh', { token: key });
      expect(refresh.status).toBe(400);
      const logout = await s.request('POST', '/api/v1/auth/logout', { token: key });
      expect(logout.status).toBe(400);
      expect(logout.body.message).toBe('revoke API keys with DELETE /auth/api-keys/{id}');
    });
  });

  describe('own account', () => {
    it('changes display name, locale and e-mail, and refuses a taken e-mail with 409', async () => {
      const a = await s.createUser(uniq('alice'));
      const b = await s.createUser(uniq('bob'));
      const bEmail = (await s.request('GET', '/api/v1/auth/me', { token: b.token })).body.email as string;
      const res = await s.request('PATCH', '/api/v1/auth/me', { token: a.token, body: { displayName: 'Alice A.', locale: 'zh-CN', email: `${uniq('alice')}@example.org` } });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ displayName: 'Alice A.', locale: 'zh-CN' });
      const taken = await s.request('PATCH', '/api/v1/auth/me', { token: a.token, body: { email: bEmail.toUpperCase() } });
      expect(taken.status).toBe(409);
      expect(taken.body.reason).toBe('AlreadyExists');
      expect(taken.body.details.causes[0].field).toBe('email');
      expect((await s.request('PATCH', '/api/v1/auth/me', { token: a.token, body: { role: 'admin' } })).status).toBe(422);
      expect((await s.request('PATCH', '/api/v1/auth/me', { token: a.token, body: { locale: 'fr' } })).status).toBe(422);
    });

    it('sets a default model only when it resolves to an own or public llm Model', async () => {
      const u = await s.createUser(uniq('modeler'));
      const pub = await s.request('PATCH', '/api/v1/auth/me', { token: u.token, body: { defaultModel: { name: 'demo-offline', namespace: 'default' } } });
      expect(pub.status).toBe(200);
      expect(pub.body.defaultModel).toEqual({ name: 'demo-offline', namespace: 'default' });
      const missing = await s.request('PATCH', '/api/v1/auth/me', { token: u.token, body: { defaultModel: { name: 'no-such-model' } } });
      expect(missing.status).toBe(422);
      expect(missing.body.details.causes[0]).toMatchObject({ field: 'defaultModel', reason: 'FieldValueNotFound' });
      const own = await s.request('POST', '/api/v1/namespaces/default/models', { token: u.token, body: { apiVersion: 'agent.wecode.io/v1', kind: 'Model', metadata: { name: 'my-llm' }, spec: { protocol: 'openai', modelId: 'gpt-x' } } });
      expect(own.status).toBe(201);
      const emb = await s.request('POST', '/api/v1/namespaces/default/models', { token: u.token, body: { apiVersion: 'agent.wecode.io/v1', kind: 'Model', metadata: { name: 'my-embedder' }, spec: { protocol: 'openai', modelId: 'e', modelType: 'embedding' } } });
      expect(emb.status).toBe(201);
      expect((await s.request('PATCH', '/api/v1/auth/me', { token: u.token, body: { defaultModel: { name: 'my-llm', namespace: 'default' } } })).body.defaultModel.name).toBe('my-llm');
      const notLlm = await s.request('PATCH', '/api/v1/auth/me', { token: u.token, body: { defaultModel: { name: 'my-embedder', namespace: 'default' } } });
      expect(notLlm.status).toBe(422);
      expect(notLlm.body.details.causes[0].field).toBe('defaultModel');
      const cleared = await s.request('PATCH', '/api/v1/auth/me', { token: u.token, body: { defaultModel: null } });
      expect(cleared.status).toBe(200);
      expect(cleared.body.defaultModel).toBeNull();
    });

    it('changes the password, answers a new token, and every older token stops working', async () => {
      const u = await s.createUser(uniq('rotator'));
      const username = (await s.request('GET', '/api/v1/auth/me', { token: u.token })).body.username as string;
      const second = await s.login(username, u.password);
      const res = await s.request('POST', '/api/v1/auth/me/password', { token: u.token, body: { currentPassword: u.password, newPassword: 'fresh-Secret-42' } });
      expect(res.status).toBe(200);
      expect(res.body.tokenType).toBe('bearer');
      expect((await s.request('GET', '/api/v1/auth/me', { token: u.token })).status).toBe(401);
      expect((await s.request('GET', '/api/v1/auth/me', { token: second })).status).toBe(401);
      expect((await s.request('GET', '/api/v1/auth/me', { token: res.body.accessToken })).status).toBe(200);
      expect((await s.request('POST', '/api/v1/auth/login', { body: { username, password: u.password } })).status).toBe(401);
      expect((await s.request('POST', '/api/v1/auth/login', { body: { username, password: 'fresh-Secret-42' } })).status).toBe(200);
    });

    it('refuses a wrong current password and a weak new one with 422 naming the field', async () => {
      const u = await s.createUser(uniq('careful'));
      const wrong = await s.request('POST', '/api/v1/auth/me/password', { token: u.token, body: { currentPassword: 'not-mine-123', newPassword: 'fresh-Secret-42' } });
      expect(wrong.status).toBe(422);
      expect(wrong.body.details.causes[0]).toMatchObject({ field: 'currentPassword', message: 'incorrect' });
      const weak = await s.request('POST', '/api/v1/auth/me/password', { token: u.token, body: { currentPassword: u.password, newPassword: 'password1' } });
      expect(weak.status).toBe(422);
      expect(weak.body.details.causes[0].field).toBe('newPassword');
      expect(weak.body.message).toContain('most common passwords');
      expect((await s.request('GET', '/api/v1/auth/me', { token: u.token })).status).toBe(200);
    });
  });

  describe('API keys', () => {
    it('shows a new key once, lists it without its secret, and accepts it as Bearer and X-API-Key', async () => {
      const u = await s.createUser(uniq('automator'));
      const created = await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'deploy bot' } });
      expect(created.status).toBe(201);
      const key = created.body.key as string;
      expect(key).toMatch(/^wgt_[A-Za-z0-9]{10}_[A-Za-z0-9_-]{43}$/);
      expect(created.body).toMatchObject({ name: 'deploy bot', prefix: key.slice(0, 14), expiresAt: null });
      const secret = key.slice(15);
      const list = await s.request('GET', '/api/v1/auth/api-keys', { token: u.token });
      expect(list.status).toBe(200);
      expect(list.body.items).toEqual([{ id: created.body.id, name: 'deploy bot', prefix: key.slice(0, 14), createdAt: created.body.createdAt, lastUsedAt: null, expiresAt: null }]);
      expect(list.text).not.toContain(secret);
      const stored = await s.ctx.storage.db.selectFrom('api_keys').selectAll().where('id', '=', created.body.id).executeTakeFirstOrThrow();
      expect(JSON.stringify(stored)).not.toContain(secret);

      expect((await s.request('GET', '/api/v1/auth/me', { token: key })).body.id).toBe(u.id);
      expect((await s.request('GET', '/api/v1/auth/me', { headers: { 'x-api-key': key } })).body.id).toBe(u.id);
      await waitFor(async () => (await s.request('GET', '/api/v1/auth/api-keys', { token: u.token })).body.items[0].lastUsedAt !== null, 3000);
      const tampered = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
      expect((await s.request('GET', '/api/v1/auth/me', { token: tampered })).status).toBe(401);
    });

    it('revokes a key at once and hides other users\' keys as 404', async () => {
      const u = await s.createUser(uniq('revoker'));
      const other = await s.createUser(uniq('snoop'));
      const created = (await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'temp' } })).body;
      expect((await s.request('DELETE', `/api/v1/auth/api-keys/${created.id}`, { token: other.token })).status).toBe(404);
      expect((await s.request('GET', '/api/v1/auth/me', { token: created.key })).status).toBe(200);
      expect((await s.request('DELETE', `/api/v1/auth/api-keys/${created.id}`, { token: u.token })).status).toBe(204);
      expect((await s.request('GET', '/api/v1/auth/me', { token: created.key })).status).toBe(401);
      expect((await s.request('GET', '/api/v1/auth/api-keys', { token: u.token })).body.items).toEqual([]);
      expect((await s.request('DELETE', `/api/v1/auth/api-keys/${created.id}`, { token: u.token })).status).toBe(404);
    });

    it('answers 401 "API key expired" once a key passes its expiry', async () => {
      const u = await s.createUser(uniq('shortlived'));
      const created = await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'week', expiresInDays: 7 } });
      expect(created.status).toBe(201);
      const expiresIn = Date.parse(created.body.expiresAt) - Date.parse(created.body.createdAt);
      expect(expiresIn).toBe(7 * 86_400_000);
      await s.ctx.storage.db.updateTable('api_keys').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('id', '=', created.body.id).execute();
      const res = await s.request('GET', '/api/v1/auth/me', { token: created.body.key });
      expect(res.status).toBe(401);
      expect(res.body.message).toBe('API key expired');
    });

    it('validates the name and lifetime, and caps a user at 50 keys', async () => {
      const u = await s.createUser(uniq('hoarder'));
      expect((await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: '' } })).status).toBe(422);
      expect((await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'x', expiresInDays: 0 } })).status).toBe(422);
      expect((await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'x', expiresInDays: 3651 } })).status).toBe(422);
      const results = [];
      for (let i = 0; i < 50; i++) results.push((await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: `k${i}` } })).status);
      expect(results.every((st) => st === 201)).toBe(true);
      const over = await s.request('POST', '/api/v1/auth/api-keys', { token: u.token, body: { name: 'one too many' } });
      expect(over.status).toBe(422);
      expect(over.body.message).toContain('at most 50 API keys');
    });
  });

  describe('admin: users', () => {
    it('creates users, refusing duplicates case-insensitively with the field named', async () => {
      const name = uniq('Carol');
      const created = await s.request('POST', '/api/v1/admin/users', { token: s.adminToken, body: { username: name, email: `${name}@example.com`, password: 'Carol-pass-77' } });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ username: name, role: 'user', displayName: name, isActive: true, defaultModel: null, locale: 'en', lastLoginAt: null });
      const dupName = await s.request('POST', '/api/v1/admin/users', { token: s.adminToken, body: { username: name.toLowerCase(), email: `other-${name}@example.com`, password: 'Carol-pass-77' } });
      expect(dupName.status).toBe(409);
      expect(dupName.body.reason).toBe('AlreadyExists');
      expect(dupName.body.details.causes.map((c: { field: string }) => c.field)).toEqual(['username']);
      const dupMail = await s.request('POST', '/api/v1/admin/users', { token: s.adminToken, body: { username: `${name}x`, email: `${name}@EXAMPLE.com`, password: 'Carol-pass-77' } });
      expect(dupMail.status).toBe(409);
      expect(dupMail.body.details.causes.map((c: { field: string }) => c.field)).toEqual(['email']);
    });

    it.each([
      [{ username: 'ab' }, 'username'],
      [{ username: '-dash' }, 'username'],
      [{ username: 'has space' }, 'username'],
      [{ email: 'not-an-email' }, 'email'],
      [{ password: 'short1' }, 'password'],
      [{ password: 'abcdefghij' }, 'password'],
      [{ password: 'Dave-2024-dave' }, 'password'],
      [{ password: 'abc123' }, 'password'],
      [{ role: 'root' }, 'role'],
    ])('refuses an invalid user %j with 422 on %s', async (change, field) => {
      const body = { username: 'dave', email: 'dave@example.com', password: 'Good-pass-123', ...change };
      const res = await s.request('POST', '/api/v1/admin/users', { token: s.adminToken, body });
      expect(res.status).toBe(422);
      expect(res.body.reason).toBe('Invalid');
      expect(res.body.details.causes[0].field).toBe(field);
    });

    it('refuses unknown fields in a new user with 422', async () => {
      const body = { username: 'dave', email: 'dave@example.com', password: 'Good-pass-123', isAdmin: true };
      const res = await s.request('POST', '/api/v1/admin/users', { token: s.adminToken, body });
      expect(res.status).toBe(422);
      expect(res.body.message).toContain('isAdmin');
    });

    it('lists users with filters and keyset pages', async () => {
      const tag = `pg${Date.now().toString(36)}`;
      for (let i = 0; i < 5; i++) await s.createUser(`${tag}-${i}`);
      const first = await s.request('GET', `/api/v1/admin/users?q=${tag}&limit=2`, { token: s.adminToken });
      expect(first.status).toBe(200);
      expect(first.body.items.map((u: { username: string }) => u.username)).toEqual([`${tag}-0`, `${tag}-1`]);
      expect(first.body.metadata.continue).toBeTruthy();
      const second = await s.request('GET', `/api/v1/admin/users?q=${tag}&limit=2&continue=${first.body.metadata.continue}`, { token: s.adminToken });
      expect(second.body.items.map((u: { username: string }) => u.username)).toEqual([`${tag}-2`, `${tag}-3`]);
      const third = await s.request('GET', `/api/v1/admin/users?q=${tag}&limit=2&continue=${second.body.metadata.continue}`, { token: s.adminToken });
      expect(third.body.items.map((u: { username: string }) => u.username)).toEqual([`${tag}-4`]);
      expect(third.body.metadata.continue).toBeUndefined();
      const mismatched = await s.request('GET', `/api/v1/admin/users?q=zzz&limit=2&continue=${first.body.metadata.continue}`, { token: s.adminToken });
      expect(mismatched.status).toBe(400);
      expect(mismatched.body.message).toBe('invalid continue token');
      expect((await s.request('GET', '/api/v1/admin/users?continue=garbage', { token: s.adminToken })).status).toBe(400);
      expect((await s.request('GET', '/api/v1/admin/users?limit=201', { token: s.adminToken })).status).toBe(400);
      const admins = await s.request('GET', '/api/v1/admin/users?role=admin', { token: s.adminToken });
      expect(admins.body.items.every((u: { role: string }) => u.role === 'admin')).toBe(true);
      expect(admins.body.items.some((u: { username: string }) => u.username === 'admin')).toBe(true);
      const wildcard = await s.request('GET', `/api/v1/admin/users?q=${encodeURIComponent('%')}`, { token: s.adminToken });
      expect(wildcard.body.items).toEqual([]);
    });

    it('reads one user, 404 for an unknown id', async () => {
      const u = await s.createUser(uniq('readme'));
      const res = await s.request('GET', `/api/v1/admin/users/${u.id}`, { token: s.adminToken });
      expect(res.status).toBe(200);
      expect(res.body.id).toBe(u.id);
      expect((await s.request('GET', '/api/v1/admin/users/00000000-0000-4000-8000-000000000000', { token: s.adminToken })).status).toBe(404);
      expect((await s.request('PATCH', '/api/v1/admin/users/00000000-0000-4000-8000-000000000000', { token: s.adminToken, body: { displayName: 'x' } })).status).toBe(404);
    });

    it('resets a password (old tokens die, new password works) and promotes/demotes', async () => {
      const u = await s.createUser(uniq('forgetful'));
      const reset = await s.request('PATCH', `/api/v1/admin/users/${u.id}`, { token: s.adminToken, body: { password: 'Brand-new-pass-5', displayName: 'Forgetful' } });
      expect(reset.status).toBe(200);
      expect(reset.body.displayName).toBe('Forgetful');
      expect((await s.request('GET', '/api/v1/auth/me', { token: u.token })).status).toBe(401);
      const token = await s.login(reset.body.username, 'Brand-new-pass-5');
      const promoted = await s.request('PATCH', `/api/v1/admin/users/${u.id}`, { token: s.adminToken, body: { role: 'admin' } });
      expect(promoted.body.role).toBe('admin');
      expect((await s.request('GET', '/api/v1/admin/users', { token })).status).toBe(200);
      const demoted = await s.request('PATCH', `/api/v1/admin/users/${u.id}`, { token: s.adminToken, body: { role: 'user' } });
      expect(demoted.body.role).toBe('user');
      expect((await s.request('GET', '/api/v1/auth/me', { token })).status).toBe(401);
      const weak = await s.request('PATCH', `/api/v1/admin/users/${u.id}`, { token: s.adminToken, body: { password: 'weak' } });
      expect(weak.status).toBe(422);
    });
  });

  describe('admin: settings and registration', () => {
    it('answers the environment defaults until an admin changes them', async () => {
      const res = await s.request('GET', '/api/v1/admin/settings', { token: s.adminToken });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ registration: 'closed', defaultModel: { name: 'demo-offline', namespace: 'default' } });
    });

    it('opens and closes registration', async () => {
      const closed = await s.request('POST', '/api/v1/auth/register', { body: { username: uniq('early'), email: `${uniq('early')}@example.com`, password: 'Early-bird-12' } });
      expect(closed.status).toBe(403);
      expect(closed.body.message).toBe('registration is closed; ask an administrator for an account');

      const open = await s.request('PATCH', '/api/v1/admin/settings', { token: s.adminToken, body: { registration: 'open' } });
      expect(open.body.registration).toBe('open');
      const name = uniq('newcomer');
      const reg = await s.request('POST', '/api/v1/auth/register', { body: { username: name, email: `${name}@example.com`, password: 'Newcomer-pass-1', displayName: 'New Comer' } });
      expect(reg.status).toBe(201);
      expect(reg.body).toMatchObject({ username: name, role: 'user', displayName: 'New Comer', isActive: true });
      expect(reg.body.accessToken).toBeUndefined();
      expect(await s.login(name, 'Newcomer-pass-1')).toBeTruthy();
      const dup = await s.request('POST', '/api/v1/auth/register', { body: { username: name.toUpperCase(), email: `x${name}@example.com`, password: 'Newcomer-pass-1' } });
      expect(dup.status).toBe(409);
      const weakName = uniq('weak');
      const weak = await s.request('POST', '/api/v1/auth/register', { body: { username: weakName, email: `${weakName}@example.com`, password: `x${weakName.toUpperCase()}-1` } });
      expect(weak.status).toBe(422);
      expect(weak.body.details.causes[0]).toMatchObject({ field: 'password', message: 'must not contain the username' });
      expect((await s.request('POST', '/api/v1/auth/register', { body: { username: uniq('sneaky'), email: 'sneaky@example.com', password: 'Sneaky-pass-1', role: 'admin' } })).status).toBe(422);

      await s.request('PATCH', '/api/v1/admin/settings', { token: s.adminToken, body: { registration: 'closed' } });
      expect((await s.request('POST', '/api/v1/auth/register', { body: { username: uniq('late'), email: `${uniq('late')}@example.com`, password: 'Late-comer-12' } })).status).toBe(403);
    });

    it('limits registration to 5 per hour per IP', async () => {
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await s.request('POST', '/api/v1/auth/register', { body: { username: uniq('spam'), email: `${uniq('spam')}@example.com`, password: 'Spammy-pass-12' } })).status);
      expect(statuses).toEqual([403, 403, 403, 403, 403, 429]);
    });

    it('sets the system default model only to a public llm Model', async () => {
      const u = await s.createUser(uniq('privateer'));
      await s.request('POST', '/api/v1/namespaces/default/models', { token: u.token, body: { apiVersion: 'agent.wecode.io/v1', kind: 'Model', metadata: { name: 'private-llm' }, spec: { protocol: 'openai', modelId: 'p' } } });
      const privateRef = await s.request('PATCH', '/api/v1/admin/settings', { token: s.adminToken, body: { defaultModel: { name: 'private-llm', namespace: 'default' } } });
      expect(privateRef.status).toBe(422);
      expect(privateRef.body.details.causes[0]).toMatchObject({ field: 'defaultModel', reason: 'FieldValueNotFound' });
      const emb = await s.request('POST', '/api/v1/namespaces/default/models?scope=public', { token: s.adminToken, body: { apiVersion: 'agent.wecode.io/v1', kind: 'Model', metadata: { name: 'public-embedder' }, spec: { protocol: 'openai', modelId: 'e', modelType: 'embedding' } } });
      expect(emb.status).toBe(201);
      expect((await s.request('PATCH', '/api/v1/admin/settings', { token: s.adminToken, body: { defaultModel: { name: 'public-embedder', namespace: 'default' } } })).status).toBe(422);
      const llm = await s.request('POST', '/api/v1/namespaces/default/models?scope=public', { token: s.adminToken, body: { apiVersion: 'agent.wecode.io/v1', kind: 'Model', metadata: { name: 'public-llm' }, spec: { protocol: 'openai', modelId: 'l' } } });
      expect(llm.status).toBe(201);
      const ok = await s.request('PATCH', '/api/v1/admin/settings', { token: s.adminToken, body: { defaultModel: { name: 'public-llm', namespace: 'default' } } });
      expect(ok.status).toBe(200);
      expect(ok.body).toEqual({ registration: 'closed', defaultModel: { name: 'public-llm', namespace: 'default' } });
      expect(await s.ctx.accounts.getSystemDefaultModel()).toEqual({ name: 'public-llm', namespace: 'default' });
      expect((await s.request('GET', '/api/v1/admin/settings', { token: u.token })).status).toBe(403);
      expect((await s.request('PATCH', '/api/v1/admin/settings', { token: s.adminToken, body: { registration: 'maybe' } })).status).toBe(422);
    });
  });

  describe('password storage', () => {
    it('stores an argon2id hash and never returns it', async () => {
      const u = await s.createUser(uniq('hashed'));
      const row = await s.ctx.storage.db.selectFrom('users').select(['password_hash']).where('id', '=', u.id).executeTakeFirstOrThrow();
      expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
      const bodies = [
        (await s.request('GET', '/api/v1/auth/me', { token: u.token })).text,
        (await s.request('GET', `/api/v1/admin/users/${u.id}`, { token: s.adminToken })).text,
        (await s.request('GET', '/api/v1/admin/users?limit=200', { token: s.adminToken })).text,
      ];
      for (const text of bodies) {
        expect(text).not.toContain('argon2');
        expect(text).not.toContain(u.password);
        expect(text.toLowerCase()).not.toContain('"password');
      }
    });

    it('re-hashes a password stored with older parameters at the next login', async () => {
      const { hash } = await import('@node-rs/argon2');
      const u = await s.createUser(uniq('legacy'));
      const username = (await s.request('GET', '/api/v1/auth/me', { token: u.token })).body.username as string;
      const old = await hash(u.password, { memoryCost: 4096, timeCost: 3, parallelism: 1, algorithm: 2 as never });
      await s.ctx.storage.db.updateTable('users').set({ password_hash: old }).where('id', '=', u.id).execute();
      await s.login(username, u.password);
      const row = await s.ctx.storage.db.selectFrom('users').select(['password_hash']).where('id', '=', u.id).executeTakeFirstOrThrow();
      expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
      expect(await s.login(username, u.password)).toBeTruthy();
    });
  });
});

describe('last active admin', () => {
  let s: TestServer;
  beforeEach(async () => {
    s = await startTestServer();
  }, 30_000);
  afterEach(async () => {
    await s?.stop();
  });

  it('cannot be disabled or demoted, while a second admin can', async () => {
    const adminId = (await s.request('GET', '/api/v1/auth/me', { token: s.adminToken })).body.id as string;
    const demote = await s.request('PATCH', `/api/v1/admin/users/${adminId}`, { token: s.adminToken, body: { role: 'user' } });
    expect(demote.status).toBe(409);
    expect(demote.body).toMatchObject({ reason: 'Conflict', message: 'cannot disable or demote the last active admin' });
    expect((await s.request('PATCH', `/api/v1/admin/users/${adminId}`, { token: s.adminToken, body: { isActive: false } })).status).toBe(409);

    const second = await s.createUser('second-admin', 'admin');
    expect((await s.request('PATCH', `/api/v1/admin/users/${second.id}`, { token: s.adminToken, body: { isActive: false } })).status).toBe(200);
    expect((await s.request('PATCH', `/api/v1/admin/users/${adminId}`, { token: s.adminToken, body: { role: 'user' } })).status).toBe(409);
    // A disabled admin does not count: re-enable the second, then the first may step down.
    expect((await s.request('PATCH', `/api/v1/admin/users/${second.id}`, { token: s.adminToken, body: { isActive: true } })).status).toBe(200);
    expect((await s.request('PATCH', `/api/v1/admin/users/${adminId}`, { token: s.adminToken, body: { role: 'user' } })).status).toBe(200);
    expect((await s.request('GET', '/api/v1/admin/users', { token: s.adminToken })).status).toBe(401);
  });

  it('holds when two admins demote each other at the same moment', async () => {
    const adminId = (await s.request('GET', '/api/v1/auth/me', { token: s.adminToken })).body.id as string;
    const b = await s.createUser('race-b', 'admin');
    // Exactly two active admins; each demotes the other at once: one must be refused.
    const [ra, rb] = await Promise.all([
      s.request('PATCH', `/api/v1/admin/users/${b.id}`, { token: s.adminToken, body: { role: 'user' } }),
      s.request('PATCH', `/api/v1/admin/users/${adminId}`, { token: b.token, body: { role: 'user' } }),
    ]);
    // The loser is refused (409), or, when the winner's demotion landed first, its own token is already dead (401).
    expect(ra.status === 200 ? [401, 409] : [200]).toContain(rb.status);
    expect([ra.status, rb.status]).toContain(200);
    const left = await s.ctx.accounts.store.countActiveAdmins();
    expect(left).toBe(1);
  });
});

describe('logout across a restart', () => {
  it('keeps a logged-out token revoked after the server restarts', async () => {
    const s = await startTestServer();
    const dbUrl = s.ctx.config.databaseUrl;
    const dataDir = s.dataDir;
    const keep = s.adminToken;
    const drop = await s.login('admin', s.adminPassword);
    expect((await s.request('POST', '/api/v1/auth/logout', { token: drop })).status).toBe(204);
    await s.close();
    const again = await startServer({ port: 0, host: '127.0.0.1', dataDir, databaseUrl: dbUrl, rate: { login: 0, default: 0, send: 0, aiCreate: 0 } }, { WEGENT_ADMIN_PASSWORD: 'Ignored-now-123' }, createLogger('silent'));
    try {
      const me = (token: string) => fetch(`${again.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
      expect(await me(drop)).toBe(401);
      expect(await me(keep)).toBe(200);
      // WEGENT_ADMIN_PASSWORD never resets an existing admin's password.
      const login = await fetch(`${again.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'Ignored-now-123' }) });
      expect(login.status).toBe(401);
    } finally {
      await again.close();
      rmSync(path.resolve(dataDir), { recursive: true, force: true });
    }
  }, 30_000);
});
