import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { openStorage, type Storage } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrations.js';
import { SecretBox } from '../secrets/keyring.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../server.js';
import { createTestDatabase, DATABASE_ENGINES, type TestDatabase } from '../testing/databases.js';
import { ResourceService } from '../resources/service.js';
import { ApiError } from '../errors.js';
import { AccountService } from './service.js';
import { AccountStore, type UserRow } from './store.js';
import { isUniqueViolation } from '../storage/database.js';

const loopback = { socket: { remoteAddress: '127.0.0.1' }, headers: {} } as unknown as FastifyRequest;

function userRow(username: string, extra: Partial<UserRow> = {}): UserRow {
  return {
    id: randomUUID(),
    username,
    username_fold: username.toLowerCase(),
    email: `${username}@Example.com`,
    email_fold: `${username}@example.com`.toLowerCase(),
    display_name: username,
    password_hash: 'x',
    role: 'user',
    is_active: 1,
    token_version: 1,
    default_model: null,
    locale: 'en',
    created_at: new Date().toISOString(),
    last_login_at: null,
    ...extra,
  };
}

async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof ApiError) return e.reason;
    throw e;
  }
}

describe.each(DATABASE_ENGINES)('account store on %s', (engine) => {
  let tdb: TestDatabase;
  let storage: Storage;
  let store: AccountStore;

  beforeAll(async () => {
    tdb = await createTestDatabase(engine);
    storage = await openStorage(tdb.url);
    await migrateToLatest(storage.db as never, storage.dialect);
    store = new AccountStore(storage.db, storage.dialect);
  }, 60_000);
  afterAll(async () => {
    await storage?.close();
    await tdb?.drop();
  });

  it('finds users by username or e-mail, case-insensitively', async () => {
    const row = userRow('Finder');
    await store.insertUser(row);
    expect((await store.findUserByLogin('finder'))?.id).toBe(row.id);
    expect((await store.findUserByLogin('FINDER@example.COM'))?.id).toBe(row.id);
    expect(await store.findUserByLogin('nobody')).toBeUndefined();
    expect(await store.takenIdentity('FINDER', 'other@example.com')).toEqual({ username: true, email: false });
    expect(await store.takenIdentity('other', 'finder@EXAMPLE.com')).toEqual({ username: false, email: true });
    expect(await store.takenIdentity('finder', undefined, row.id)).toEqual({ username: false, email: false });
  });

  it('reports a duplicate folded username as a unique violation', async () => {
    await store.insertUser(userRow('Dupe'));
    const err = await store.insertUser(userRow('DUPE', { email: 'other@x.org', email_fold: 'other@x.org' })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isUniqueViolation(err)).toBe(true);
  });

  it('bumps the token version and counts active admins', async () => {
    const before = await store.countActiveAdmins();
    const a = userRow('bossy', { role: 'admin' });
    await store.insertUser(a);
    await store.insertUser(userRow('sleepy', { role: 'admin', is_active: 0 }));
    expect(await store.countActiveAdmins()).toBe(before + 1);
    expect(await store.countActiveAdmins(a.id)).toBe(before);
    await store.updateUser(a.id, { display_name: 'Bossy' }, true);
    await store.updateUser(a.id, {}, true);
    const after = await store.findUserById(a.id);
    expect(Number(after!.token_version)).toBe(3);
    expect(after!.display_name).toBe('Bossy');
  });

  it('lists users by folded name with filters, keyset and escaped wildcards', async () => {
    for (const name of ['list_a', 'list-b', 'listxc', 'list_d']) await store.insertUser(userRow(name, { is_active: name === 'list-b' ? 0 : 1 }));
    const names = (rows: UserRow[]) => rows.map((r) => r.username);
    expect(names(await store.listUsers({ q: 'list_', limit: 10 }))).toEqual(['list_a', 'list_d']);
    expect(names(await store.listUsers({ q: 'LIST', isActive: false, limit: 10 }))).toEqual(['list-b']);
    const page = await store.listUsers({ q: 'list', limit: 2 });
    expect(names(page)).toEqual(['list-b', 'list_a', 'list_d']);
    expect(names(await store.listUsers({ q: 'list', limit: 2, afterUsernameFold: 'list_a' }))).toEqual(['list_d', 'listxc']);
    expect(await store.listUsers({ q: '%', limit: 10 })).toEqual([]);
    expect(names(await store.listUsers({ q: 'example.com', role: 'admin', limit: 100 }))).toContain('bossy');
  });

  it('stores API keys, counts only usable ones, revokes once and records use', async () => {
    const owner = userRow('keyowner');
    await store.insertUser(owner);
    const now = new Date();
    const key = (keyId: string, expires: string | null) => ({
      id: randomUUID(),
      user_id: owner.id,
      key_id: keyId,
      secret_hash: 'a'.repeat(64),
      name: keyId,
      created_at: now.toISOString(),
      last_used_at: null,
      expires_at: expires,
      revoked_at: null,
    });
    const live = key('live000001', null);
    const expired = key('expired001', new Date(now.getTime() - 1000).toISOString());
    await store.insertApiKey(live);
    await store.insertApiKey(expired);
    expect(await store.countUsableApiKeys(owner.id, now.toISOString())).toBe(1);
    expect((await store.listApiKeys(owner.id)).map((k) => k.key_id).sort()).toEqual(['expired001', 'live000001']);
    expect(await store.revokeApiKey(live.id, randomUUID(), now.toISOString())).toBeUndefined();
    expect(await store.revokeApiKey(live.id, owner.id, now.toISOString())).toBe('live000001');
    expect(await store.revokeApiKey(live.id, owner.id, now.toISOString())).toBeUndefined();
    expect((await store.findApiKeyByKeyId('live000001'))?.revoked_at).toBe(now.toISOString());
    await store.touchApiKey(expired.id, now.toISOString());
    expect((await store.findApiKeyByKeyId('expired001'))?.last_used_at).toBe(now.toISOString());
  });

  it('keeps revoked token ids until they expire', async () => {
    const past = new Date(Date.now() - 60_000).toISOString();
    const future = new Date(Date.now() + 3_600_000).toISOString();
    await store.revokeToken('jti-old', past);
    await store.revokeToken('jti-new', future);
    await store.revokeToken('jti-new', future);
    expect(await store.isTokenRevoked('jti-new')).toBe(true);
    expect(await store.isTokenRevoked('jti-never')).toBe(false);
    await store.pruneRevokedTokens(new Date().toISOString());
    expect(await store.isTokenRevoked('jti-old')).toBe(false);
    expect(await store.isTokenRevoked('jti-new')).toBe(true);
  });

  it('writes settings as JSON, twice over', async () => {
    await store.putSetting('accounts.test', { a: 1 });
    await store.putSetting('accounts.test', { a: 1 });
    await store.transaction((tx) => tx.putSetting('accounts.test', 'open'));
    expect(await store.getSetting('accounts.test')).toBe('open');
    expect(await store.getSetting('accounts.absent')).toBeUndefined();
  });

  describe('account service on the same database', () => {
    let svc: AccountService;

    beforeAll(async () => {
      // A database of its own: setup needs one without admins.
      const own = await createTestDatabase(engine);
      const s2 = await openStorage(own.url);
      await migrateToLatest(s2.db as never, s2.dialect);
      const config = { ...loadConfig({}), adminPassword: undefined };
      const log = createLogger('silent');
      svc = new AccountService(s2, config, randomBytes(64), log, new ResourceService(s2, new SecretBox(randomBytes(32)), config, log));
      await svc.prepareFirstRun();
      cleanup.push(async () => {
        await s2.close();
        await own.drop();
      });
    }, 60_000);
    const cleanup: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of cleanup) await c();
    });

    it('lets exactly one of concurrent setups create the first admin', async () => {
      const results = await Promise.all(
        ['a', 'b', 'c', 'd', 'e', 'f'].map((x) => outcome(svc.setup(loopback, { username: `first-${x}`, email: `${x}@example.com`, password: 'Racing-boss-42' }))),
      );
      expect(results.filter((r) => r === 'ok')).toHaveLength(1);
      expect(results.filter((r) => r === 'Conflict')).toHaveLength(5);
      expect(await svc.store.countActiveAdmins()).toBe(1);
    }, 60_000);

    it('never lets two concurrent demotions remove the last active admin', async () => {
      const first = (await svc.listUsers({ role: 'admin', limit: 10 })).items[0]!;
      const second = await svc.createUser({ username: 'second-boss', email: 'second@example.com', password: 'Deputy-chief-42', role: 'admin' });
      const results = await Promise.all([outcome(svc.updateUser(first.id, { role: 'user' })), outcome(svc.updateUser(second.id, { isActive: false }))]);
      expect(results.sort()).toEqual(['Conflict', 'ok']);
      expect(await svc.store.countActiveAdmins()).toBe(1);
    }, 60_000);

    it('issues tokens that authenticate, and stop after logout', async () => {
      const u = await svc.createUser({ username: 'tokened', email: 'tokened@example.com', password: 'Holder-pass-1', role: 'user' });
      const { accessToken } = await svc.login('tokened', 'Holder-pass-1');
      const p = await svc.authenticateCredential(accessToken);
      expect(p).toMatchObject({ userId: u.id, username: 'tokened', role: 'user', via: 'jwt' });
      await svc.logout(p!);
      expect(await svc.authenticateCredential(accessToken)).toBeNull();
      expect(await svc.store.isTokenRevoked(p!.jti!)).toBe(true);
    }, 60_000);
  });
});
