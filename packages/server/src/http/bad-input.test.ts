import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { sql } from 'kysely';
import { startTestServer, type TestServer } from '../testing/server.js';

/**
 * Property: no body a client can send to any write route produces a 5xx, every error is a Status
 * body, and a request that fails writes nothing.
 */
let server: TestServer;
let user: { id: string; token: string };
let victim: { id: string };
let writeRoutes: Array<{ method: string; path: string }>;

const validDocs = [
  { apiVersion: 'agent.wecode.io/v1', kind: 'Ghost', metadata: { name: 'fz-ghost', labels: { a: 'b' } }, spec: { systemPrompt: 'x', skills: ['s'], mcpServers: { m: { url: 'http://127.0.0.1:9/mcp', headers: { Authorization: 'Bearer t0k3n-123456789' } } } } },
  { kind: 'Shell', metadata: { name: 'fz-shell' }, spec: { shellType: 'Chat', supportModel: ['openai'] } },
  { kind: 'Model', metadata: { name: 'fz-model' }, spec: { protocol: 'openai-compatible', modelId: 'm', baseUrl: 'http://127.0.0.1:9/v1', apiKey: 'sk-0123456789abcdef' } },
  { kind: 'Bot', metadata: { name: 'fz-bot' }, spec: { ghostRef: { name: 'fz-ghost' }, shellRef: { name: 'Chat' } } },
  { kind: 'Team', metadata: { name: 'fz-team' }, spec: { members: [{ botRef: { name: 'fz-bot' }, role: 'leader' }], collaborationModel: 'pipeline' } },
  { kind: 'Skill', metadata: { name: 'fz-skill' }, spec: { description: 'd', bindShells: ['Chat'] } },
  { kind: 'Workspace', metadata: { name: 'fz-ws' }, spec: { repository: { gitUrl: 'https://example.com/a.git', branchName: 'main' } } },
  { kind: 'Task', metadata: { name: 'fz-task' }, spec: { teamRef: { name: 'wegent-chat' }, prompt: 'hi' } },
  { username: 'fz-user', email: 'fz@example.com', password: 'Fz-password-123', role: 'user' },
  { name: 'fz-key', expiresInDays: 3 },
];

/** Replaces one random subtree of a value by another random value. */
function mutate(value: unknown, path: number[], replacement: unknown): unknown {
  if (!path.length || value === null || typeof value !== 'object') return replacement;
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value as object);
  if (!entries.length) return replacement;
  const [k] = entries[path[0]! % entries.length]!;
  const copy: any = Array.isArray(value) ? [...value] : { ...(value as object) };
  copy[k] = mutate(copy[k], path.slice(1), replacement);
  return copy;
}

const weird = fc.oneof(
  fc.constantFrom(null, '', ' ', -1, 0, 1e308, true, [], {}, '******', '******abcd', 'a'.repeat(300), 'ä', '../../etc/passwd', '__proto__', 'constructor', '\u0000', 'kind', 'Ghost'),
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ maxLength: 80, unit: 'binary' }),
);

const bodyArb = fc.oneof(
  fc.record({ kind: fc.constant('mutated' as const), doc: fc.constantFrom(...validDocs), path: fc.array(fc.nat(20), { maxLength: 5 }), value: weird }).map(({ doc, path, value }) => ({ json: mutate(doc, path, value) })),
  fc.jsonValue({ maxDepth: 5 }).map((json) => ({ json })),
  fc.string({ maxLength: 400, unit: 'binary' }).map((raw) => ({ raw })),
  fc.record({ doc: fc.constantFrom(...validDocs), cut: fc.nat(400) }).map(({ doc, cut }) => ({ raw: JSON.stringify(doc).slice(0, cut) })),
  fc.record({ docs: fc.array(fc.constantFrom(...validDocs), { minLength: 1, maxLength: 4 }), path: fc.array(fc.nat(20), { maxLength: 4 }), value: weird, cut: fc.option(fc.nat(600)) }).map(({ docs, path, value, cut }) => {
    const text = docs.map((d, i) => stringify(i === 0 ? mutate(d, path, value) : d)).join('---\n');
    return { yaml: cut === null ? text : text.slice(0, cut) };
  }),
  fc.constantFrom(
    { yaml: 'a: &a [1,2]\nb: *a\nc: !!python/object:os.system ls\n' },
    { yaml: 'kind: Ghost\nkind: Bot\nmetadata: {name: dup}\n' },
    { yaml: `x: ${'['.repeat(200)}${']'.repeat(200)}` },
    { raw: `{"a":${'['.repeat(100)}${']'.repeat(100)}}` },
    { raw: '{"__proto__": {"admin": true}, "metadata": {"name": "proto"}, "spec": {"systemPrompt": "x"}}' },
  ),
);

const contentTypes = fc.constantFrom('application/json', 'application/yaml', 'text/yaml', 'application/merge-patch+json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', undefined);
const names = fc.constantFrom('fz-ghost', 'Chat', 'wegent-chat', 'nope', 'x'.repeat(70), '%E4', 'a b', '..');
const plurals = fc.constantFrom('ghosts', 'models', 'shells', 'bots', 'teams', 'skills', 'workspaces', 'tasks', 'widgets');

async function digest(): Promise<string> {
  const db = server.ctx.storage.db;
  const parts = await Promise.all([
    db.selectFrom('resources').select([sql<number>`count(*)`.as('n'), sql<number>`max(resource_version)`.as('v')]).executeTakeFirst(),
    db.selectFrom('resource_refs').select(sql<number>`count(*)`.as('n')).executeTakeFirst(),
    // Only what a request writes: the job queue's own bookkeeping row changes in the background.
    db.selectFrom('counters').selectAll().where('name', '=', 'resource_version').execute(),
    db.selectFrom('users').select([sql<number>`count(*)`.as('n')]).executeTakeFirst(),
    db.selectFrom('users').select(['id', 'role', 'is_active', 'token_version', 'email', 'display_name', 'password_hash']).orderBy('id').execute(),
    db.selectFrom('api_keys').select(['id', 'revoked_at']).orderBy('id').execute(),
    db.selectFrom('settings').selectAll().orderBy('key').execute(),
  ]);
  return JSON.stringify(parts);
}

beforeAll(async () => {
  server = await startTestServer();
  user = await server.createUser('fuzzer');
  victim = await server.createUser('victim');
  const doc = (await server.request('GET', '/api/openapi.json')).body;
  writeRoutes = [];
  for (const [p, methods] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const m of Object.keys(methods)) {
      if (!['post', 'put', 'patch'].includes(m)) continue;
      if (/\/auth\/logout$|\/auth\/refresh$/.test(p)) continue; // would end the fuzzer's own session
      writeRoutes.push({ method: m.toUpperCase(), path: p });
    }
  }
});
afterAll(async () => server?.stop());

describe('malformed input on every write route', () => {
  it('names a missing field and an unknown field of a schema-checked body', async () => {
    const res = await server.request('POST', '/api/v1/auth/api-keys', { token: user.token, body: { nme: 'typo' } });
    expect(res.status).toBe(422);
    expect(res.body.details.causes).toEqual([
      { field: 'name', reason: 'FieldValueRequired', message: 'required value' },
      { field: 'nme', reason: 'FieldValueNotSupported', message: 'unknown field' },
    ]);
  });

  it('covers the write routes of the OpenAPI document', () => {
    expect(writeRoutes.length).toBeGreaterThanOrEqual(15);
  });

  it('never answers 5xx and writes nothing when it refuses (2,400 random bodies)', async () => {
    let count = 0;
    await fc.assert(
      fc.asyncProperty(fc.nat(), bodyArb, contentTypes, names, plurals, fc.boolean(), fc.boolean(), async (routeIndex, body, ct, name, plural, asAdmin, publicScope) => {
        const route = writeRoutes[routeIndex % writeRoutes.length]!;
        const url =
          route.path
            .replace('{ns}', 'default')
            .replace('{plural}', plural)
            .replace('{name}', encodeURIComponent(name).replace(/%25/g, '%'))
            .replace('{id}', victim.id) + (publicScope ? '?scope=public' : '');
        const headers: Record<string, string> = {};
        let raw: string | undefined;
        if ('json' in body) {
          raw = JSON.stringify(body.json) ?? 'null';
          headers['content-type'] = ct ?? 'application/json';
        } else if ('yaml' in body) {
          raw = body.yaml;
          headers['content-type'] = ct ?? 'application/yaml';
        } else {
          raw = body.raw;
          if (ct) headers['content-type'] = ct;
        }
        const before = await digest();
        const res = await server.request(route.method, url, { token: asAdmin ? server.adminToken : user.token, raw, headers });
        count++;
        expect(res.status, `${route.method} ${url} → ${res.text.slice(0, 300)}`).toBeLessThan(500);
        if (res.status >= 400) {
          expect(res.body).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: res.status });
          expect(typeof res.body.message).toBe('string');
          expect(await digest(), `${route.method} ${url} failed with ${res.status} but wrote`).toBe(before);
        }
      }),
      { numRuns: 2400, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 100000) },
    );
    expect(count).toBeGreaterThanOrEqual(2000);
  }, 240_000);
});
