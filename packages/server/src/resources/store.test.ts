import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { openStorage, type Storage } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrations.js';
import { SecretBox } from '../secrets/keyring.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../server.js';
import { createTestDatabase, DATABASE_ENGINES, type TestDatabase } from '../testing/databases.js';
import { ResourceService, type Actor } from './service.js';
import { ApiError } from '../errors.js';

const alice: Actor = { userId: '11111111-1111-4111-8111-111111111111', isAdmin: false };
const bob: Actor = { userId: '22222222-2222-4222-8222-222222222222', isAdmin: false };
const admin: Actor = { userId: '33333333-3333-4333-8333-333333333333', isAdmin: true };

const ghost = (name: string, extra: Record<string, unknown> = {}) => ({ kind: 'Ghost', metadata: { name }, spec: { systemPrompt: `I am ${name}`, ...extra } });
const shell = (name: string) => ({ kind: 'Shell', metadata: { name }, spec: { shellType: 'Chat' } });
const bot = (name: string, ghostName: string, shellName: string) => ({ kind: 'Bot', metadata: { name }, spec: { ghostRef: { name: ghostName }, shellRef: { name: shellName } } });

async function openService(engine: TestDatabase['name']): Promise<{ tdb: TestDatabase; storage: Storage; svc: ResourceService }> {
  const tdb = await createTestDatabase(engine);
  const storage = await openStorage(tdb.url);
  await migrateToLatest(storage.db as never, storage.dialect);
  return { tdb, storage, svc: new ResourceService(storage, new SecretBox(randomBytes(32)), loadConfig({}), createLogger('silent')) };
}

async function rejection(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected the call to fail');
}

describe.each(DATABASE_ENGINES)('resource store on %s', (engine) => {
  let tdb: TestDatabase;
  let storage: Storage;
  let svc: ResourceService;
  const opts = { public: false, dryRun: false, routeNamespace: 'default' };

  beforeAll(async () => {
    ({ tdb, storage, svc } = await openService(engine));
  });
  afterAll(async () => {
    await storage?.close();
    await tdb?.drop();
  });

  it('creates a resource with server metadata and reads it back', async () => {
    const item = await svc.create(alice, ghost('reviewer', { systemPrompt: 'Line one\n  "quoted" — ✓\n' }), { ...opts, routeKind: 'Ghost' });
    expect(item.action).toBe('created');
    const got = (await svc.get(alice, 'Ghost', 'default', 'reviewer')) as any;
    expect(got.metadata).toMatchObject({ name: 'reviewer', namespace: 'default', generation: 1, scope: 'user' });
    expect(got.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(got.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(got.spec.systemPrompt).toBe('Line one\n  "quoted" — ✓\n');
  });

  it('keeps one user’s resources invisible to another', async () => {
    await expect(svc.get(bob, 'Ghost', 'default', 'reviewer')).rejects.toMatchObject({ code: 404 });
  });

  it('refuses names that differ only by case, on every database alike', async () => {
    const err = await rejection(svc.create(alice, ghost('REVIEWER'), { ...opts, routeKind: 'Ghost' }));
    expect(err.code).toBe(409);
    expect(err.reason).toBe('AlreadyExists');
    expect(err.message).toContain("conflicts with existing 'reviewer'");
    // Bob may have his own, differing only by case.
    await svc.create(bob, ghost('REVIEWER'), { ...opts, routeKind: 'Ghost' });
  });

  it('bumps resourceVersion on every write and refuses a stale one', async () => {
    const before = (await svc.get(alice, 'Ghost', 'default', 'reviewer')) as any;
    const changed = await svc.replace(alice, { ...ghost('reviewer', { systemPrompt: 'v2' }), metadata: { name: 'reviewer', resourceVersion: before.metadata.resourceVersion } }, { ...opts, routeKind: 'Ghost', pathName: 'reviewer' });
    expect(Number(changed.resourceVersion)).toBeGreaterThan(Number(before.metadata.resourceVersion));
    expect((changed.object as any).metadata.generation).toBe(2);
    const stale = await rejection(svc.replace(alice, { ...ghost('reviewer', { systemPrompt: 'v3' }), metadata: { name: 'reviewer', resourceVersion: before.metadata.resourceVersion } }, { ...opts, routeKind: 'Ghost', pathName: 'reviewer' }));
    expect(stale.code).toBe(409);
    expect(stale.reason).toBe('Conflict');
  });

  it('refuses to delete a Ghost that a Bot references, then allows it once the Bot is gone', async () => {
    await svc.apply(alice, [bot('rb', 'reviewer', 'sh'), shell('sh')], { public: false, dryRun: false, defaultNamespace: 'default' });
    const err = await rejection(svc.delete(alice, 'Ghost', 'default', 'reviewer', { public: false, dryRun: false }));
    expect(err.code).toBe(409);
    expect(err.message).toBe("Ghost 'reviewer' is still used by Bot 'rb' (namespace default); change or delete it first");
    expect(err.details.causes?.[0]).toEqual({ field: 'referrers[0]', reason: 'ResourceInUse', message: 'Bot default/rb (spec.ghostRef)' });
    await svc.delete(alice, 'Bot', 'default', 'rb', { public: false, dryRun: false });
    await svc.delete(alice, 'Ghost', 'default', 'reviewer', { public: false, dryRun: false });
    await expect(svc.get(alice, 'Ghost', 'default', 'reviewer')).rejects.toMatchObject({ code: 404 });
  });

  it('frees a soft-deleted name: re-creating it gets a new uid and a higher resourceVersion', async () => {
    const first = await svc.create(alice, ghost('phoenix'), { ...opts, routeKind: 'Ghost' });
    await svc.delete(alice, 'Ghost', 'default', 'phoenix', { public: false, dryRun: false });
    const second = await svc.create(alice, ghost('phoenix'), { ...opts, routeKind: 'Ghost' });
    expect(second.uid).not.toBe(first.uid);
    expect(Number(second.resourceVersion)).toBeGreaterThan(Number(first.resourceVersion));
    const rows = await storage.db.selectFrom('resources').select(['uid', 'live']).where('name', '=', 'phoenix').execute();
    expect(rows).toHaveLength(2);
  });

  it('purges soft-deleted rows past the retention period and keeps live ones', async () => {
    await svc.create(alice, ghost('short-lived'), { ...opts, routeKind: 'Ghost' });
    await svc.delete(alice, 'Ghost', 'default', 'short-lived', { public: false, dryRun: false });
    expect(await svc.store.purgeDeleted('2000-01-01T00:00:00.000Z')).toBe(0);
    expect(await svc.store.purgeDeleted(new Date(Date.now() + 1000).toISOString())).toBeGreaterThanOrEqual(1);
    const left = await storage.db.selectFrom('resources').select('name').where('live', 'is', null).execute();
    expect(left).toEqual([]);
    expect((await svc.get(alice, 'Ghost', 'default', 'phoenix') as any).metadata.name).toBe('phoenix');
  });

  it('applies nothing when one document of a batch is invalid', async () => {
    const err = await rejection(svc.apply(alice, [ghost('batch-a'), bot('batch-bot', 'batch-a', 'no-such-shell'), ghost('batch-c')], { public: false, dryRun: false, defaultNamespace: 'default' }));
    expect(err.code).toBe(422);
    expect(err.details.causes?.[0]?.field).toBe('documents[1].spec.shellRef');
    const rows = await storage.db.selectFrom('resources').select('name').where('name', 'in', ['batch-a', 'batch-c', 'batch-bot']).execute();
    expect(rows).toEqual([]);
  });

  it('lists in (namespace, name) order with keyset pages and label selectors', async () => {
    const docs = Array.from({ length: 25 }, (_, i) => ({ ...ghost(`page-${String(i).padStart(2, '0')}`), metadata: { name: `page-${String(i).padStart(2, '0')}`, namespace: 'paging', labels: { parity: i % 2 ? 'odd' : 'even' } } }));
    await svc.apply(bob, docs, { public: false, dryRun: false, defaultNamespace: 'paging' });
    const seen: string[] = [];
    let after: [string, string, number] | undefined;
    for (;;) {
      const page = await svc.list(bob, 'Ghost', { namespace: 'paging', limit: 7, after, scope: 'all' });
      seen.push(...page.items.map((r) => r.name));
      if (!page.more) break;
      after = page.last;
    }
    expect(seen).toEqual(docs.map((d) => d.metadata.name));
    const odd = await svc.list(bob, 'Ghost', { namespace: 'paging', limit: 100, scope: 'all', selector: [{ op: 'eq', key: 'parity', value: 'odd' }] });
    expect(odd.items).toHaveLength(12);
  });

  it('stores secrets encrypted and reads them back masked', async () => {
    await svc.create(alice, { kind: 'Model', metadata: { name: 'm1' }, spec: { protocol: 'openai', modelId: 'gpt-4.1', apiKey: 'sk-test-1234567890abcdef' } }, { ...opts, routeKind: 'Model' });
    const row = await storage.db.selectFrom('resources').select('spec').where('name', '=', 'm1').executeTakeFirstOrThrow();
    expect(row.spec).not.toContain('sk-test-1234567890abcdef');
    expect(row.spec).toMatch(/enc:v1:/);
    const got = (await svc.get(alice, 'Model', 'default', 'm1')) as any;
    expect(got.spec.apiKey).toBe('******cdef');
    expect(got.status.effective.hasApiKey).toBe(true);
  });

  it('lets only public resources resolve references of public resources', async () => {
    await svc.apply(admin, [shell('pub-shell'), ghost('pub-ghost'), bot('pub-bot', 'pub-ghost', 'pub-shell')], { public: true, dryRun: false, defaultNamespace: 'default' });
    await svc.create(alice, ghost('private-ghost'), { ...opts, routeKind: 'Ghost' });
    const err = await rejection(svc.create(admin, bot('pub-bot-2', 'private-ghost', 'pub-shell'), { ...opts, public: true, routeKind: 'Bot' }));
    expect(err.details.causes?.[0]).toMatchObject({ field: 'spec.ghostRef', reason: 'FieldValueNotFound' });
    // A user's Bot may reference the public Ghost.
    await svc.create(alice, bot('uses-public', 'pub-ghost', 'pub-shell'), { ...opts, routeKind: 'Bot' });
  });
});

describe('status follows what a resource references', () => {
  let tdb: TestDatabase;
  let storage: Storage;
  let svc: ResourceService;
  beforeAll(async () => {
    ({ tdb, storage, svc } = await openService('sqlite'));
  });
  afterAll(async () => {
    await storage?.close();
    await tdb?.drop();
  });

  it('clears a Ghost’s missing-skill warning once the Skill is created', async () => {
    await svc.create(alice, ghost('skilled', { skills: ['later'] }), { public: false, dryRun: false, routeNamespace: 'default', routeKind: 'Ghost' });
    expect(((await svc.get(alice, 'Ghost', 'default', 'skilled')) as any).status.warnings).toEqual(["skill 'later' not found; it will be skipped at run time"]);
    await svc.create(alice, { kind: 'Skill', metadata: { name: 'later' }, spec: { description: 'd', bindShells: ['Chat'] } }, { public: false, dryRun: false, routeNamespace: 'default', routeKind: 'Skill' });
    expect(((await svc.get(alice, 'Ghost', 'default', 'skilled')) as any).status.warnings).toBeUndefined();
  });

  it('marks a Team unavailable when its Bot’s Shell changes to an unsupported type', async () => {
    await svc.apply(alice, [shell('flex'), ghost('g'), bot('b', 'g', 'flex'), { kind: 'Team', metadata: { name: 't' }, spec: { members: [{ botRef: { name: 'b' } }] } }], { public: false, dryRun: false, defaultNamespace: 'default' });
    expect(((await svc.get(alice, 'Team', 'default', 't')) as any).status.state).toBe('Available');
    await svc.replace(alice, { kind: 'Shell', metadata: { name: 'flex' }, spec: { shellType: 'Agno' } }, { public: false, dryRun: false, routeNamespace: 'default', routeKind: 'Shell', pathName: 'flex' });
    expect(((await svc.get(alice, 'Bot', 'default', 'b')) as any).status.state).toBe('Unavailable');
    const team = (await svc.get(alice, 'Team', 'default', 't')) as any;
    expect(team.status.state).toBe('Unavailable');
    expect(team.status.message).toContain("member 0 (Bot 'b') is unavailable");
  });
});
