import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, type TestResponse } from '../testing/server.js';
import { zip } from '../testing/zip.js';
import { sandboxRecord } from '../sandboxes/fixtures.js';

/**
 * Walks every route of the OpenAPI document as anonymous, another user, the owner and an admin
 * (api.md §11) and proves that nothing of the owner's leaks.
 */
let server: TestServer;
let alice: { id: string; token: string; password: string };
let bob: { id: string; token: string; password: string };
let aliceKeyId: string;
let aliceTask: { id: string; messageId: string };
let ghostUid: string;
let aliceResponseId: string;
let aliceSandboxId: string;
const MARKER = 'alice-private-marker-7f3a';
const ANON = [/^\/healthz$/, /^\/readyz$/, /^\/metrics$/, /^\/api\/openapi\.json$/, /^\/api\/docs/, /^\/api\/v1\/setup$/, /^\/api\/v1\/auth\/(login|register)$/];
const LAST = /\/auth\/(logout|refresh|me\/password)$/;

type Caller = 'anonymous' | 'other' | 'owner' | 'admin';
let routes: Array<{ method: string; path: string }>;
const results: Array<{ caller: Caller; method: string; path: string; url: string; res: TestResponse }> = [];

function fill(path: string): string {
  return path
    .replace('{ns}', 'default')
    .replace('{plural}', 'ghosts')
    .replace('{name}', 'mx-ghost')
    .replace('{id}', path.includes('api-keys') ? aliceKeyId : path.startsWith('/api/v1/tasks/') ? aliceTask.id : path.startsWith('/api/v1/responses/') ? aliceResponseId : path.startsWith('/api/v1/models/') ? 'default%23wegent-chat' : path.startsWith('/api/v1/sandboxes/') ? aliceSandboxId : alice.id)
    .replace('{messageId}', aliceTask.messageId)
    .replace(/\{[^}]+\}/g, 'x')
    .replace(/\*$/, '');
}

function bodyFor(method: string, path: string): unknown {
  if (method === 'GET' || method === 'DELETE') return undefined;
  if (/\/(apply|delete)$/.test(path)) return [{ kind: 'Ghost', metadata: { name: 'mx-ghost' }, spec: { systemPrompt: 'overwritten' } }];
  if (path.includes('{name}') || /\{plural\}$/.test(path)) return { kind: 'Ghost', metadata: { name: 'mx-ghost' }, spec: { systemPrompt: 'overwritten' } };
  return {};
}

beforeAll(async () => {
  server = await startTestServer();
  alice = await server.createUser('alice');
  bob = await server.createUser('bob');
  const ghost = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, body: { metadata: { name: 'mx-ghost' }, spec: { systemPrompt: MARKER } } });
  expect(ghost.status).toBe(201);
  ghostUid = ghost.body.metadata.uid;
  // A skill package of the same name, so that the package routes have an object of the owner's.
  const skillMd = `---\ndescription: ${MARKER}\n---\n${MARKER}\n`;
  const skill = await fetch(`${server.url}/api/v1/namespaces/default/skills/mx-ghost/package`, { method: 'PUT', headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'application/zip' }, body: zip([{ name: 'SKILL.md', data: skillMd }]) });
  expect(skill.status).toBe(201);
  const key = await server.request('POST', '/api/v1/auth/api-keys', { token: alice.token, body: { name: 'mx-key' } });
  expect(key.status).toBe(201);
  aliceKeyId = key.body.id;
  const task = await server.request('POST', '/api/v1/tasks', { token: alice.token, body: { team: 'wegent-chat', message: MARKER } });
  expect(task.status).toBe(201);
  aliceTask = { id: task.body.task.metadata.uid, messageId: task.body.messageId };
  // A second task for the Responses routes, whose DELETE removes the task of the response.
  const second = await server.request('POST', '/api/v1/tasks', { token: alice.token, body: { team: 'wegent-chat', message: MARKER } });
  aliceResponseId = `resp_${second.body.runId}`;
  // A sandbox record of alice's task, so that the sandbox routes have an object of the owner's.
  const sandbox = sandboxRecord({ ownerId: alice.id, taskId: aliceTask.id });
  await server.ctx.sandboxes!.store.insert(sandbox);
  aliceSandboxId = sandbox.id;
  const doc = (await server.request('GET', '/api/openapi.json')).body;
  routes = [];
  for (const [p, methods] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const m of Object.keys(methods)) if (['get', 'post', 'put', 'patch', 'delete'].includes(m)) routes.push({ method: m.toUpperCase(), path: p });
  }
  // Session-ending routes last (logout very last), deletes after the reads.
  const rank = (r: { method: string; path: string }) => (r.path.endsWith('/auth/logout') ? 3 : LAST.test(r.path) ? 2 : r.method === 'DELETE' ? 1 : 0);
  routes.sort((a, b) => rank(a) - rank(b));
  const callers: Array<[Caller, string | undefined]> = [
    ['anonymous', undefined],
    ['other', bob.token],
    ['admin', server.adminToken],
    ['owner', alice.token],
  ];
  for (const [caller, token] of callers) {
    for (const r of routes) {
      const resourceWrite = r.method !== 'GET' && /\/(namespaces|kinds)\/|\/(apply|delete)$/.test(r.path);
      const dry = resourceWrite ? '?dryRun=true' : '';
      const url = fill(r.path) + dry;
      const res = await server.request(r.method, url, { token, body: bodyFor(r.method, r.path) });
      results.push({ caller, method: r.method, path: r.path, url, res });
    }
  }
}, 120_000);
afterAll(async () => server?.stop());

const isAnon = (p: string) => ANON.some((re) => re.test(p));
const isAdminRoute = (p: string) => p.startsWith('/api/v1/admin/');
/** A package upload creates or replaces the caller's own Skill: there is no owner's object to hide. */
const isUpsert = (r: { method: string; path: string }) => r.method === 'PUT' && r.path.endsWith('/package');

describe('authorization matrix', () => {
  it('walks every route of the OpenAPI document for each of the four callers', () => {
    expect(routes.length).toBeGreaterThanOrEqual(30);
    expect(results).toHaveLength(routes.length * 4);
  });

  it('answers 401 with WWW-Authenticate to anonymous callers on every non-anonymous route', () => {
    for (const r of results.filter((x) => x.caller === 'anonymous' && !isAnon(x.path))) {
      expect(r.res.status, `${r.method} ${r.url}`).toBe(401);
      expect(r.res.headers.get('www-authenticate')).toBe('Bearer realm="wegent"');
      expect(r.res.text).not.toContain(MARKER);
    }
  });

  it('answers 403 to non-admins on every admin route', () => {
    for (const r of results.filter((x) => (x.caller === 'other' || x.caller === 'owner') && isAdminRoute(x.path))) {
      expect(r.res.status, `${r.caller} ${r.method} ${r.url}`).toBe(403);
    }
  });

  it('never shows another user the owner’s resources, ids or keys', () => {
    for (const r of results.filter((x) => x.caller === 'other')) {
      expect(r.res.text, `${r.method} ${r.url}`).not.toContain(MARKER);
      expect(r.res.text, `${r.method} ${r.url}`).not.toContain(ghostUid);
      expect(r.res.text, `${r.method} ${r.url}`).not.toContain(aliceKeyId);
      expect(r.res.text, `${r.method} ${r.url}`).not.toContain(aliceTask.id);
      expect(r.res.status, `${r.method} ${r.url}`).toBeLessThan(500);
      if ((r.path.includes('{name}') && !isUpsert(r)) || r.path.includes('api-keys/{id}') || r.path.startsWith('/api/v1/tasks/{id}') || r.path.startsWith('/api/v1/sandboxes/{id}')) expect([403, 404], `${r.method} ${r.url}`).toContain(r.res.status);
    }
  });

  it('treats the owner’s objects as nonexistent for an admin on the canonical routes', () => {
    for (const r of results.filter((x) => x.caller === 'admin' && !isAdminRoute(x.path))) {
      expect(r.res.text, `${r.method} ${r.url}`).not.toContain(MARKER);
      if ((r.path.includes('{name}') && !isUpsert(r)) || r.path.includes('api-keys/{id}') || r.path.startsWith('/api/v1/tasks/{id}')) expect(r.res.status, `${r.method} ${r.url}`).toBe(404);
    }
  });

  it('lets an admin read the owner’s resources through the admin routes, with the owner shown', () => {
    const r = results.find((x) => x.caller === 'admin' && x.method === 'GET' && x.path === '/api/v1/admin/users/{id}/namespaces/{ns}/{plural}/{name}')!;
    expect(r.res.status).toBe(200);
    expect(r.res.body.spec.systemPrompt).toBe(MARKER);
    expect(r.res.body.metadata.owner).toEqual({ id: alice.id, username: 'alice' });
  });

  it('gives the owner every route on their own objects', () => {
    for (const r of results.filter((x) => x.caller === 'owner' && !isAdminRoute(x.path) && !isAnon(x.path))) {
      expect([401, 403, 404], `${r.method} ${r.url}: ${r.res.text.slice(0, 200)}`).not.toContain(r.res.status);
      expect(r.res.status, `${r.method} ${r.url}`).toBeLessThan(500);
    }
    const own = results.find((x) => x.caller === 'owner' && x.method === 'GET' && x.path === '/api/v1/namespaces/{ns}/{plural}/{name}')!;
    expect(own.res.body.spec.systemPrompt).toBe(MARKER);
  });

  it('leaves the owner’s resource intact after every other caller tried every write', async () => {
    const res = await server.request('GET', '/api/v1/namespaces/default/ghosts/mx-ghost', { token: (await server.login('alice', alice.password)) });
    expect(res.body.spec.systemPrompt).toBe(MARKER);
    expect(res.body.metadata.uid).toBe(ghostUid);
  });
});
