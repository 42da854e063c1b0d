import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseYamlDocuments } from '@wegent/core';
import { startTestServer, type TestServer } from '../testing/server.js';
import { createTestDatabase, DATABASE_ENGINES, type TestDatabase } from '../testing/databases.js';

const upstream = readFileSync(path.join(import.meta.dirname, 'fixtures/upstream.yaml'), 'utf8');

describe.each(DATABASE_ENGINES)('resource API on %s', (engine) => {
  let server: TestServer;
  let alice: { id: string; token: string };
  let bob: { id: string; token: string };

  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase(engine);
    server = await startTestServer({ databaseUrl: tdb.url });
    alice = await server.createUser('alice');
    bob = await server.createUser('bob');
  });
  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  const yaml = (token: string, method: string, url: string, body: string) => server.request(method, url, { token, raw: body, headers: { 'content-type': 'application/yaml' } });

  describe('upstream manifests', () => {
    it('apply unchanged, report per-document actions, and re-apply as unchanged', async () => {
      const first = await yaml(alice.token, 'POST', '/api/v1/namespaces/default/apply', upstream);
      expect(first.status, first.text).toBe(200);
      expect(first.body.results.map((r: any) => `${r.kind}/${r.name} ${r.action}`)).toEqual([
        'Shell/ClaudeCode created',
        'Shell/Agno created',
        'Shell/Dify created',
        'Shell/Chat created',
        'Ghost/developer-ghost created',
        'Ghost/spec-ghost created',
        'Model/acme-model created',
        'Bot/developer-bot created',
        'Bot/spec-bot created',
        'Team/dev-team created',
        'Team/spec-dev-team created',
        'KnowledgeBase/docs skipped',
      ]);
      expect(first.body.results[4].warnings).toContain("skill 'mermaid-diagram' not found; it will be skipped at run time");
      expect(first.body.results[4].warnings).toContain("unknown metadata field 'user_id' ignored");
      expect(first.body.results[11].warnings).toEqual(['kind KnowledgeBase is not supported by this server; document skipped']);
      const again = await yaml(alice.token, 'POST', '/api/v1/namespaces/default/apply', upstream);
      expect(again.status).toBe(200);
      expect(again.body.results.map((r: any) => r.action)).toEqual([...Array(11).fill('unchanged'), 'skipped']);
    });

    it('reads back unknown fields exactly, multi-line prompts byte for byte, and canonical aliases', async () => {
      const docs = parseYamlDocuments(upstream) as any[];
      const team = await server.request('GET', '/api/v1/namespaces/default/teams/dev-team', { token: alice.token });
      expect(team.body.spec.bind_mode).toEqual(['code']);
      expect(team.body.spec.workflow).toEqual({ mode: 'solo', steps: [{ name: 'plan' }, { name: 'build', retries: 2, note: null }] });
      expect(team.body.spec.description).toBe('Clarify the requirement, then implement it.');
      expect(team.body.spec.icon).toBe('robot');
      const pipeline = await server.request('GET', '/api/v1/namespaces/default/teams/spec-dev-team', { token: alice.token });
      expect(pipeline.body.spec.collaborationModel).toBe('pipeline');
      const ghost = await server.request('GET', '/api/v1/namespaces/default/ghosts/developer-ghost', { token: alice.token });
      expect(ghost.body.spec.systemPrompt).toBe(docs[4].spec.systemPrompt);
      expect(ghost.body.spec.mcpServers.github.env.GITHUB_PERSONAL_ACCESS_TOKEN).toBe('******2345');
      const shell = await server.request('GET', '/api/v1/namespaces/default/shells/ClaudeCode', { token: alice.token });
      expect(shell.body.spec).toEqual({ shellType: 'ClaudeCode', supportModel: [], baseImage: 'ghcr.io/wecode-ai/wegent-base-python3.12:1.0.0' });
      expect(shell.body.metadata.labels).toEqual({ type: 'local_engine' });
      expect(shell.body.metadata.scope).toBe('user');
      const agno = await server.request('GET', '/api/v1/namespaces/default/shells/Agno', { token: alice.token });
      expect(agno.body.status).toMatchObject({ state: 'Unavailable', message: 'shellType Agno is not supported by this server; use Chat, Code or ClaudeCode' });
      const bot = await server.request('GET', '/api/v1/namespaces/default/bots/developer-bot', { token: alice.token });
      expect(bot.body.spec.modelRef).toBeUndefined();
      expect(bot.body.status).toMatchObject({ state: 'Available', effectiveModel: null });
      const model = await server.request('GET', '/api/v1/namespaces/default/models/acme-model', { token: alice.token });
      expect(model.body.spec.modelGroup).toBe('Primary');
      expect(model.body.spec.modelConfig.env.api_key).toBe('******cdef');
      expect(model.body.status.effective).toMatchObject({ protocol: 'openai', modelId: 'acme-large', baseUrl: 'http://127.0.0.1:9/v1', hasApiKey: true });
    });

    it('never stores a secret in clear text', async () => {
      const rows = await server.ctx.storage.db.selectFrom('resources').select('spec').execute();
      const all = rows.map((r) => r.spec).join('\n');
      expect(all).not.toContain('ghp_abcdefghijklmnopqrstuvwxyz012345');
      expect(all).not.toContain('sk-upstream-0123456789abcdef');
    });

    it('keeps secrets when a read-back document is applied again', async () => {
      const model = await server.request('GET', '/api/v1/namespaces/default/models/acme-model', { token: alice.token });
      const put = await server.request('PUT', '/api/v1/namespaces/default/models/acme-model', { token: alice.token, body: model.body });
      expect(put.status).toBe(200);
      expect(put.body.metadata.resourceVersion).toBe(model.body.metadata.resourceVersion);
      const row = await server.ctx.storage.db.selectFrom('resources').select('spec').where('name', '=', 'acme-model').executeTakeFirstOrThrow();
      expect(server.ctx.secretBox.decrypt(JSON.parse(row.spec).modelConfig.env.api_key)).toBe('sk-upstream-0123456789abcdef');
    });

    it('refuses a mask that matches no stored secret', async () => {
      const res = await server.request('POST', '/api/v1/namespaces/default/models', { token: alice.token, body: { metadata: { name: 'masked' }, spec: { protocol: 'openai', modelId: 'x', apiKey: '******abcd' } } });
      expect(res.status).toBe(422);
      expect(res.body.details.causes[0]).toMatchObject({ field: 'spec.apiKey', message: 'this field holds a masked value; send the real secret' });
    });
  });

  describe('ownership', () => {
    it('hides another user’s resources (404) and lists only own plus public', async () => {
      const get = await server.request('GET', '/api/v1/namespaces/default/teams/dev-team', { token: bob.token });
      expect(get.status).toBe(404);
      expect(get.body).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404 });
      const list = await server.request('GET', '/api/v1/namespaces/default/teams', { token: bob.token });
      expect(list.body.items.map((t: any) => `${t.metadata.name}:${t.metadata.scope}`)).toEqual(['wegent-chat:public']);
      const del = await server.request('DELETE', '/api/v1/namespaces/default/teams/dev-team', { token: bob.token });
      expect(del.status).toBe(404);
      const put = await server.request('PUT', '/api/v1/namespaces/default/ghosts/spec-ghost', { token: bob.token, body: { metadata: { name: 'spec-ghost' }, spec: { systemPrompt: 'hijack' } } });
      expect(put.status).toBe(404);
    });

    it('lets only admins write public resources', async () => {
      const denied = await server.request('POST', '/api/v1/namespaces/default/ghosts?scope=public', { token: alice.token, body: { metadata: { name: 'pub' }, spec: { systemPrompt: 'x' } } });
      expect(denied.status).toBe(403);
      const change = await server.request('PATCH', '/api/v1/namespaces/default/shells/Code', { token: bob.token, body: { spec: { description: 'mine' } }, headers: { 'content-type': 'application/merge-patch+json' } });
      expect(change.status).toBe(403);
      expect(change.body.message).toBe("Shell 'Code' is public; only admins can change it, with ?scope=public");
      const ok = await server.request('POST', '/api/v1/namespaces/default/ghosts?scope=public', { token: server.adminToken, body: { metadata: { name: 'pub' }, spec: { systemPrompt: 'x' } } });
      expect(ok.status).toBe(201);
      expect(ok.body.metadata.scope).toBe('public');
      const seen = await server.request('GET', '/api/v1/namespaces/default/ghosts/pub', { token: bob.token });
      expect(seen.status).toBe(200);
    });

    it('refuses reserved wegent.io/ labels from non-admins', async () => {
      const res = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, body: { metadata: { name: 'labelled', labels: { 'wegent.io/demo': 'true' } }, spec: { systemPrompt: 'x' } } });
      expect(res.status).toBe(422);
      expect(res.body.details.causes[0]).toMatchObject({ field: 'metadata.labels[wegent.io/demo]', reason: 'FieldValueForbidden' });
    });
  });

  describe('writes', () => {
    it('answers 409 to a PUT with a stale resourceVersion and writes nothing', async () => {
      const created = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, body: { metadata: { name: 'versioned' }, spec: { systemPrompt: 'v1' } } });
      expect(created.status).toBe(201);
      const rv = created.body.metadata.resourceVersion;
      const ok = await server.request('PUT', '/api/v1/namespaces/default/ghosts/versioned', { token: alice.token, body: { metadata: { name: 'versioned', resourceVersion: rv }, spec: { systemPrompt: 'v2' } } });
      expect(ok.status).toBe(200);
      const stale = await server.request('PUT', '/api/v1/namespaces/default/ghosts/versioned', { token: alice.token, body: { metadata: { name: 'versioned', resourceVersion: rv }, spec: { systemPrompt: 'v3' } } });
      expect(stale.status).toBe(409);
      expect(stale.body.message).toBe('the object has been modified; read it again and re-apply your change');
      const now = await server.request('GET', '/api/v1/namespaces/default/ghosts/versioned', { token: alice.token });
      expect(now.body.spec.systemPrompt).toBe('v2');
    });

    it('merge-patches a spec and removes keys set to null', async () => {
      const res = await server.request('PATCH', '/api/v1/namespaces/default/ghosts/versioned', { token: alice.token, body: { metadata: { labels: { tier: 'gold' } }, spec: { description: 'patched', temperature: 0.5 } }, headers: { 'content-type': 'application/merge-patch+json' } });
      expect(res.status, res.text).toBe(200);
      expect(res.body.spec).toEqual({ systemPrompt: 'v2', description: 'patched', temperature: 0.5 });
      const removed = await server.request('PATCH', '/api/v1/namespaces/default/ghosts/versioned', { token: alice.token, body: { spec: { temperature: null } }, headers: { 'content-type': 'application/merge-patch+json' } });
      expect(removed.body.spec).toEqual({ systemPrompt: 'v2', description: 'patched' });
      expect(removed.body.metadata.labels).toEqual({ tier: 'gold' });
    });

    it('names the field of a reference that resolves to nothing', async () => {
      const res = await server.request('POST', '/api/v1/namespaces/default/bots', { token: alice.token, body: { metadata: { name: 'orphan' }, spec: { ghostRef: { name: 'reviewer-ghost' }, shellRef: { name: 'Chat' } } } });
      expect(res.status).toBe(422);
      expect(res.body.message).toBe("Bot 'orphan' is invalid: spec.ghostRef: Ghost 'reviewer-ghost' not found in namespace 'default' (neither yours nor public)");
      expect(res.body.details).toMatchObject({ name: 'orphan', kind: 'Bot', causes: [{ field: 'spec.ghostRef', reason: 'FieldValueNotFound' }] });
    });

    it('refuses to delete a Team member Bot and lists the referrers', async () => {
      const res = await server.request('DELETE', '/api/v1/namespaces/default/bots/developer-bot', { token: alice.token });
      expect(res.status).toBe(409);
      expect(res.body.reason).toBe('Conflict');
      expect(res.body.details.causes.map((c: any) => c.message)).toEqual(['Team default/dev-team (spec.members[0].botRef)', 'Team default/spec-dev-team (spec.members[1].botRef)']);
    });

    it('stores nothing on a dry run', async () => {
      const res = await server.request('POST', '/api/v1/namespaces/default/ghosts?dryRun=true', { token: alice.token, body: { metadata: { name: 'dry' }, spec: { systemPrompt: 'x' } } });
      expect(res.status).toBe(201);
      expect(res.body.metadata.uid).toBe('');
      expect((await server.request('GET', '/api/v1/namespaces/default/ghosts/dry', { token: alice.token })).status).toBe(404);
    });

    it('sends warnings as Warning headers too', async () => {
      const res = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, body: { metadata: { name: 'warned' }, spec: { systemPrompt: 'x', skills: ['nowhere'] } } });
      expect(res.headers.get('warning')).toBe('299 - "skill \'nowhere\' not found; it will be skipped at run time"');
      const odd = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, body: { 'ünknown\u0000"': 1, metadata: { name: 'warned-odd' }, spec: { systemPrompt: 'x' } } });
      expect(odd.status).toBe(201);
      expect(odd.headers.get('warning')).toBe('299 - "unknown top-level field \'\\u00fcnknown\\u0000\\"\' ignored"');
    });

    it('deletes a set atomically, ignoring references from inside the set', async () => {
      await yaml(bob.token, 'POST', '/api/v1/apply', 'kind: Ghost\nmetadata: {name: g}\nspec: {systemPrompt: hi}\n---\nkind: Bot\nmetadata: {name: b}\nspec: {ghostRef: {name: g}, shellRef: {name: Chat}}\n');
      const res = await yaml(bob.token, 'POST', '/api/v1/namespaces/default/delete', 'kind: Ghost\nmetadata: {name: g}\n---\nkind: Bot\nmetadata: {name: b}\n---\nkind: Ghost\nmetadata: {name: missing}\n---\nkind: KnowledgeBase\nmetadata: {name: docs}\n');
      expect(res.status, res.text).toBe(200);
      expect(res.body.results.map((r: any) => r.action)).toEqual(['deleted', 'deleted', 'notFound', 'skipped']);
      expect((await server.request('GET', '/api/v1/namespaces/default/bots/b', { token: bob.token })).status).toBe(404);
    });
  });

  describe('tasks through the resource API', () => {
    it('creates a Task from a manifest with a generated name, a UUIDv7 id and PENDING status', async () => {
      const res = await yaml(alice.token, 'POST', '/api/v1/apply', 'kind: Task\nmetadata: {namespace: default}\nspec:\n  title: First\n  prompt: Hello team\n  teamRef: {name: wegent-chat, user_id: 7}\n');
      expect(res.status, res.text).toBe(200);
      const [result] = res.body.results;
      expect(result.action).toBe('created');
      expect(result.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
      expect(result.name).toBe(`t-${result.uid.replace(/-/g, '').slice(-12)}`);
      const task = await server.request('GET', `/api/v1/namespaces/default/tasks/${result.name}`, { token: alice.token });
      expect(task.body.status.status).toBe('PENDING');
      expect(task.body.spec.teamRef).toEqual({ name: 'wegent-chat' });
      expect(task.body.metadata.labels['wegent.io/source']).toBe('manifest');
    });

    it('refuses to change an immutable Task field and to delete a Team with an active task', async () => {
      const list = await server.request('GET', '/api/v1/namespaces/default/tasks', { token: alice.token });
      const name = list.body.items[0].metadata.name;
      const res = await server.request('PATCH', `/api/v1/namespaces/default/tasks/${name}`, { token: alice.token, body: { spec: { prompt: 'changed' } }, headers: { 'content-type': 'application/merge-patch+json' } });
      expect(res.status).toBe(422);
      expect(res.body.details.causes[0]).toMatchObject({ field: 'spec.prompt', reason: 'FieldValueForbidden', message: 'field is immutable' });
      const title = await server.request('PATCH', `/api/v1/namespaces/default/tasks/${name}`, { token: alice.token, body: { spec: { title: 'Renamed' } }, headers: { 'content-type': 'application/merge-patch+json' } });
      expect(title.status).toBe(200);
      await yaml(alice.token, 'POST', '/api/v1/apply', 'kind: Team\nmetadata: {name: busy}\nspec: {members: [{botRef: {name: wegent-assistant}}]}\n---\nkind: Task\nmetadata: {name: busy-task}\nspec: {prompt: hi, teamRef: {name: busy}}\n');
      const del = await server.request('DELETE', '/api/v1/namespaces/default/teams/busy', { token: alice.token });
      expect(del.status).toBe(409);
      expect(del.body.details.causes[0].message).toBe('Task default/busy-task (spec.teamRef)');
    });
  });

  describe('reads', () => {
    it('pages with limit and continue and refuses a forged token', async () => {
      const docs = Array.from({ length: 12 }, (_, i) => `kind: Ghost\nmetadata: {name: p${String(i).padStart(2, '0')}, namespace: pages, labels: {n: "${i % 3}"}}\nspec: {systemPrompt: x}`).join('\n---\n');
      expect((await yaml(bob.token, 'POST', '/api/v1/apply', docs)).status).toBe(200);
      const names: string[] = [];
      let next = '';
      do {
        const res = await server.request('GET', `/api/v1/namespaces/pages/ghosts?limit=5${next ? `&continue=${next}` : ''}`, { token: bob.token });
        expect(res.body.kind).toBe('GhostList');
        names.push(...res.body.items.map((g: any) => g.metadata.name));
        next = res.body.metadata.continue ?? '';
      } while (next);
      expect(names).toHaveLength(12);
      const bad = await server.request('GET', '/api/v1/namespaces/pages/ghosts?continue=garbage', { token: bob.token });
      expect(bad.status).toBe(400);
      expect(bad.body.message).toBe('invalid continue token');
      const sel = await server.request('GET', `/api/v1/namespaces/pages/ghosts?labelSelector=${encodeURIComponent('n in (0,2),n!=2')}`, { token: bob.token });
      expect(sel.body.items.map((g: any) => g.metadata.name)).toEqual(['p00', 'p03', 'p06', 'p09']);
      const badSel = await server.request('GET', `/api/v1/namespaces/pages/ghosts?labelSelector=${encodeURIComponent('n in (0')}`, { token: bob.token });
      expect(badSel.status).toBe(400);
    });

    it('answers YAML when asked', async () => {
      const res = await server.request('GET', '/api/v1/namespaces/default/shells/Chat', { token: bob.token, headers: { accept: 'application/yaml' } });
      expect(res.headers.get('content-type')).toContain('application/yaml');
      expect(res.text).toContain('kind: Shell');
    });

    it('serves the seed-compatible aliases with the same bodies', async () => {
      const created = await server.request('POST', '/api/v1/kinds/ghosts?namespace=seedns', { token: bob.token, body: { apiVersion: 'v1', metadata: { name: 'legacy' }, spec: { systemPrompt: 'x', toolsEnabled: ['calculator'] } } });
      expect(created.status, created.text).toBe(201);
      expect(created.body.spec).toEqual({ systemPrompt: 'x', tools: ['calculator'] });
      const one = await server.request('GET', '/api/v1/kinds/ghosts/legacy?namespace=seedns', { token: bob.token });
      expect(one.body.metadata.namespace).toBe('seedns');
      const all = await server.request('GET', '/api/v1/kinds/ghosts', { token: bob.token });
      expect(all.body.items.map((g: any) => `${g.metadata.namespace}/${g.metadata.name}`)).toContain('seedns/legacy');
      const shell = await server.request('POST', '/api/v1/kinds/shells', { token: bob.token, body: { metadata: { name: 'seedshell' }, spec: { type: 'chat' } } });
      expect(shell.body.spec).toEqual({ shellType: 'Chat' });
    });

    it('lists namespaces with counts', async () => {
      const res = await server.request('GET', '/api/v1/namespaces', { token: bob.token });
      expect(res.body.items.find((n: any) => n.name === 'pages')).toEqual({ name: 'pages', own: 12, public: 0 });
      expect(res.body.items.find((n: any) => n.name === 'default').public).toBeGreaterThanOrEqual(8);
    });
  });

  describe('bad input', () => {
    it('names the document, line and column of invalid YAML', async () => {
      const res = await yaml(alice.token, 'POST', '/api/v1/apply', 'kind: Ghost\nmetadata: {name: a}\nspec: {systemPrompt: x}\n---\nkind: Ghost\nmetadata:\n  name: [unclosed\n');
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(/^document 2, line \d+, column \d+: /);
    });

    it('refuses a body over 1 MiB with 413', async () => {
      const res = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, body: { metadata: { name: 'big' }, spec: { systemPrompt: 'x'.repeat(1024 * 1024 + 10) } } });
      expect(res.status).toBe(413);
      expect(res.body.reason).toBe('RequestEntityTooLarge');
    });

    it('answers 404 for an unknown kind', async () => {
      const res = await server.request('GET', '/api/v1/namespaces/default/widgets', { token: alice.token });
      expect(res.status).toBe(404);
      expect(res.body.message).toBe("unknown resource type 'widgets'");
      const applied = await yaml(alice.token, 'POST', '/api/v1/apply', 'kind: Widget\nmetadata: {name: w}\nspec: {}\n');
      expect(applied.status).toBe(422);
      expect(applied.body.details.results[0]).toMatchObject({ action: 'error', kind: 'Widget', name: 'w' });
    });

    it('refuses a YAML alias bomb quickly', async () => {
      const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
      for (let i = 1; i < 200; i++) lines.push(`a${i}: &a${i} [*a${i - 1},*a${i - 1},*a${i - 1},*a${i - 1},*a${i - 1},*a${i - 1},*a${i - 1},*a${i - 1},*a${i - 1}]`);
      const started = Date.now();
      const res = await yaml(alice.token, 'POST', '/api/v1/apply', `kind: Ghost\nmetadata: {name: bomb}\nspec:\n  systemPrompt: x\n  extra:\n${lines.map((l) => `    ${l}`).join('\n')}\n`);
      expect(res.status).toBe(400);
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('refuses absurd nesting in JSON and YAML', async () => {
      const deep = '['.repeat(5000) + ']'.repeat(5000);
      const json = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, raw: `{"metadata":{"name":"deep"},"spec":{"systemPrompt":"x","extra":${deep}}}`, headers: { 'content-type': 'application/json' } });
      expect(json.status).toBe(400);
      const y = await yaml(alice.token, 'POST', '/api/v1/apply', `kind: Ghost\nmetadata: {name: deep}\nspec: {systemPrompt: x, extra: ${deep}}\n`);
      expect(y.status).toBe(400);
    });

    it('refuses over-long and malformed names with a field cause', async () => {
      for (const name of ['x'.repeat(64), '-x', 'a b', 'ä', 'a#b']) {
        const res = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, body: { metadata: { name }, spec: { systemPrompt: 'x' } } });
        expect(res.status, name).toBe(422);
        expect(res.body.details.causes[0]).toEqual({ field: 'metadata.name', reason: 'FieldValueInvalid', message: "must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit" });
      }
    });

    it('answers 415 to an unaccepted content type and 400 to a kind that contradicts the route', async () => {
      const res = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, raw: 'hello', headers: { 'content-type': 'text/plain' } });
      expect(res.status).toBe(415);
      const mismatch = await server.request('POST', '/api/v1/namespaces/default/ghosts', { token: alice.token, body: { kind: 'Bot', metadata: { name: 'x' }, spec: {} } });
      expect(mismatch.status).toBe(400);
    });

    it('answers 401 with WWW-Authenticate before reading the body', async () => {
      const res = await server.request('POST', '/api/v1/namespaces/default/ghosts', { raw: 'x'.repeat(2 * 1024 * 1024), headers: { 'content-type': 'application/json' } });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="wegent"');
    });
  });

  describe('API documents', () => {
    it('serves an OpenAPI 3.1 document and Swagger UI', async () => {
      const doc = await server.request('GET', '/api/openapi.json');
      expect(doc.status).toBe(200);
      expect(doc.body.openapi).toBe('3.1.0');
      expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/api/v1/namespaces/{ns}/{plural}/{name}', '/api/v1/apply', '/healthz']));
      const ui = await server.request('GET', '/api/docs/');
      expect(ui.status).toBe(200);
      expect(ui.text).toContain('swagger');
    });
  });
});
