import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { openStorage, type Storage } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrations.js';
import { createTestDatabase, DATABASE_ENGINES, type TestDatabase } from '../testing/databases.js';
import { startTestServer, type TestServer } from '../testing/server.js';
import { until } from '../testing/wait.js';
import { createLogger, startServer, type RunningServer } from '../server.js';
import { PortAllocator } from '@wegent/sandbox';
import { SandboxPortStore, SandboxStore } from './store.js';
import { sandboxRecord as record } from './fixtures.js';
import { bareRepository, connected, disconnectAll, seenBy, send } from './e2e-support.js';

describe.each(DATABASE_ENGINES)('sandbox store on %s', (engine) => {
  let tdb: TestDatabase;
  let storage: Storage;
  let store: SandboxStore;

  beforeAll(async () => {
    tdb = await createTestDatabase(engine);
    storage = await openStorage(tdb.url);
    await migrateToLatest(storage.db as never, storage.dialect);
    store = new SandboxStore(storage.db);
  });
  afterAll(async () => {
    await storage?.close();
    await tdb?.drop();
  });

  it('stores every record field and reads it back unchanged', async () => {
    const r = record({ stateReason: null, exitCode: null, image: 'wegent-executor:abc' });
    await store.insert(r);
    expect(await store.get(r.id)).toEqual(r);
    const patched = await store.update(r.id, { state: 'Failed', stateReason: 'OOM', message: 'The sandbox ran out of memory (limit 1024 MiB) and was stopped.', exitCode: 137, oomKilled: true, endedAt: new Date('2026-01-02T04:00:00.000Z'), inUseBy: [] });
    expect(patched).toEqual({ ...r, state: 'Failed', stateReason: 'OOM', message: 'The sandbox ran out of memory (limit 1024 MiB) and was stopped.', exitCode: 137, oomKilled: true, endedAt: new Date('2026-01-02T04:00:00.000Z'), inUseBy: [] });
  });

  it('filters by task, owner, host and states, newest first', async () => {
    const owner = randomUUID();
    const task = randomUUID();
    const a = record({ ownerId: owner, taskId: task, createdAt: new Date('2026-02-01T00:00:00.000Z') });
    const b = record({ ownerId: owner, state: 'Deleted', createdAt: new Date('2026-02-02T00:00:00.000Z') });
    const c = record({ hostId: 'host-b' });
    for (const r of [a, b, c]) await store.insert(r);
    expect((await store.list({ ownerId: owner })).map((r) => r.id)).toEqual([b.id, a.id]);
    expect((await store.list({ taskId: task })).map((r) => r.id)).toEqual([a.id]);
    expect((await store.list({ ownerId: owner, states: ['Running'] })).map((r) => r.id)).toEqual([a.id]);
    expect((await store.list({ hostId: 'host-b' })).map((r) => r.id)).toEqual([c.id]);
    expect(await store.list({ ownerId: owner, states: [] })).toEqual([]);
  });

  it('never brings a Deleted record back to another state', async () => {
    const r = record({ state: 'Deleted', deletedAt: new Date() });
    await store.insert(r);
    const after = await store.update(r.id, { state: 'Failed', stateReason: 'CRASHED', message: 'late writer' });
    expect(after.state).toBe('Deleted');
    expect(after.message).toBeNull();
  });

  it('purges Deleted records older than the retention and keeps the rest', async () => {
    const old = record({ state: 'Deleted', deletedAt: new Date('2020-01-01T00:00:00.000Z') });
    const recent = record({ state: 'Deleted', deletedAt: new Date() });
    const live = record();
    for (const r of [old, recent, live]) await store.insert(r);
    expect(await store.purgeDeleted(new Date(Date.now() - 7 * 86_400_000))).toBeGreaterThanOrEqual(1);
    expect(await store.get(old.id)).toBeUndefined();
    expect(await store.get(recent.id)).toBeDefined();
    expect(await store.get(live.id)).toBeDefined();
  });

  it('port claims in the table: 200 concurrent allocations from two allocators never share a port, the 101st is refused, release frees', async () => {
    const hostId = `host-${randomUUID().slice(0, 8)}`;
    // Two allocators over the one table, as two server instances on one host would have.
    const a = new PortAllocator(new SandboxPortStore(storage.db), { hostId });
    const b = new PortAllocator(new SandboxPortStore(storage.db), { hostId });
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).allocate(`sbx-${i}`)));
    const ports = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
    expect(ports).toHaveLength(100);
    expect(new Set(ports).size).toBe(100);
    expect(ports.every((p) => p >= 10001 && p <= 10100)).toBe(true);
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(refused).toHaveLength(100);
    expect(refused[0]!.reason).toMatchObject({ code: 'NO_FREE_PORT', message: 'no free port in 10001–10100' });
    // Another host's range is its own.
    expect(await new PortAllocator(new SandboxPortStore(storage.db), { hostId: `${hostId}-2` }).allocate('other')).toEqual([10001]);
    const holder = results.findIndex((r) => r.status === 'fulfilled' && r.value[0] === 10042);
    await a.release(`sbx-${holder}`);
    expect(await b.allocate('next')).toEqual([10042]);
    expect(await a.reclaim((id) => id === 'next')).toHaveLength(99);
    expect(await new SandboxPortStore(storage.db).list(hostId)).toEqual([{ port: 10042, sandboxId: 'next' }]);
  }, 60_000);
});

afterAll(disconnectAll);

/** Model → Ghost → Bot on the given Shell → Team, and optionally a Workspace. */
function codeTeamManifest(baseUrl: string, opts: { shell: string; gitUrl?: string; ghostTools?: string[] }): string {
  return `kind: Model
metadata: {name: fake}
spec: {protocol: openai-compatible, modelId: fake-model, baseUrl: "${baseUrl}", apiKey: sk-test-0123456789}
---
kind: Ghost
metadata: {name: coder}
spec: {systemPrompt: You write code., tools: [${(opts.ghostTools ?? []).join(', ')}]}
---
kind: Bot
metadata: {name: coder}
spec: {ghostRef: {name: coder}, shellRef: {name: ${opts.shell}}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: coders}
spec: {members: [{botRef: {name: coder}, role: leader}]}
${opts.gitUrl ? `---
kind: Workspace
metadata: {name: repo}
spec: {repository: {gitUrl: "${opts.gitUrl}", branchName: main}}
` : ''}`;
}

describe('sandbox API and a server without sandboxes', () => {
  let server: TestServer;
  let fake: FakeModelServer;
  let alice: { id: string; token: string };
  let bob: { id: string; token: string };
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    fake = await startFakeModelServer();
    server = await startTestServer({ privateHostsAllow: ['127.0.0.1'] });
    alice = await server.createUser('alice');
    bob = await server.createUser('bob');
    const store = server.ctx.sandboxes!.store;
    const a1 = record({ ownerId: alice.id, state: 'Running' });
    const a2 = record({ ownerId: alice.id, state: 'Deleted', stateReason: 'IDLE_TIMEOUT', deletedAt: new Date(), createdAt: new Date('2026-01-01T00:00:00.000Z') });
    const b1 = record({ ownerId: bob.id });
    for (const r of [a1, a2, b1]) await store.insert(r);
    Object.assign(ids, { a1: a1.id, a2: a2.id, b1: b1.id });
    const res = await server.request('POST', '/api/v1/apply', { token: alice.token, raw: codeTeamManifest(fake.openaiBaseUrl, { shell: 'Code' }), headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(200);
  });
  afterAll(async () => {
    await server?.stop();
    await fake?.close();
  });

  it('lists only the caller’s own sandboxes, in the API shape', async () => {
    const res = await server.request('GET', '/api/v1/sandboxes', { token: alice.token });
    expect(res.status).toBe(200);
    expect(res.body.items.map((s: any) => s.id)).toEqual([ids.a1, ids.a2]);
    expect(res.body.items[0]).toEqual({
      id: ids.a1,
      taskId: expect.any(String),
      driver: 'bwrap',
      state: 'Running',
      stateReason: null,
      message: null,
      image: null,
      limits: { memoryMB: 1024, cpus: 1, pids: 256, diskMB: 2048, execTimeoutSeconds: 600, network: 'none' },
      ports: [{ container: 8080, host: 10001, url: 'http://127.0.0.1:10001' }],
      createdAt: '2026-01-02T03:04:05.678Z',
      readyAt: '2026-01-02T03:04:05.678Z',
      lastUsedAt: '2026-01-02T03:04:05.678Z',
      endedAt: null,
    });
    const filtered = await server.request('GET', '/api/v1/sandboxes?state=Deleted', { token: alice.token });
    expect(filtered.body.items.map((s: any) => s.id)).toEqual([ids.a2]);
  });

  it('treats another user’s sandbox as nonexistent for reading and stopping', async () => {
    expect((await server.request('GET', `/api/v1/sandboxes/${ids.b1}`, { token: alice.token })).status).toBe(404);
    const del = await server.request('DELETE', `/api/v1/sandboxes/${ids.b1}`, { token: alice.token });
    expect(del.status).toBe(404);
    expect(del.body).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404 });
    expect((await server.request('GET', '/api/v1/sandboxes?all=true', { token: alice.token })).body.items.map((s: any) => s.id)).not.toContain(ids.b1);
    expect((await server.request('GET', `/api/v1/sandboxes/${ids.b1}`, { token: bob.token })).status).toBe(200);
    expect((await server.request('GET', '/api/v1/sandboxes')).status).toBe(401);
  });

  it('lets an admin list everyone’s sandboxes with all=true and read any of them', async () => {
    const own = await server.request('GET', '/api/v1/sandboxes', { token: server.adminToken });
    expect(own.body.items).toEqual([]);
    const all = await server.request('GET', '/api/v1/sandboxes?all=true', { token: server.adminToken });
    expect(all.body.items.map((s: any) => s.id)).toEqual(expect.arrayContaining([ids.a1, ids.a2, ids.b1]));
    expect((await server.request('GET', `/api/v1/sandboxes/${ids.b1}`, { token: server.adminToken })).body.id).toBe(ids.b1);
  });

  it('refuses an unknown state filter with a 422 naming the field', async () => {
    const res = await server.request('GET', '/api/v1/sandboxes?state=Running,Sleeping', { token: alice.token });
    expect(res.status).toBe(422);
    expect(res.body.details.causes[0]).toMatchObject({ field: 'state', reason: 'FieldValueNotSupported' });
  });

  it('answers GET /tasks/{id}/sandbox with 404 for a task without a sandbox and for another user’s task', async () => {
    const task = await server.request('POST', '/api/v1/tasks', { token: alice.token, body: { team: 'coders', message: 'Hello' } });
    expect(task.status, task.text).toBe(201);
    const id = task.body.task.metadata.uid;
    // Its turn fails for want of a driver (the next test looks at that); it never had a sandbox.
    await until(async () => (await server.request('GET', `/api/v1/tasks/${id}`, { token: alice.token })).body.status.status === 'FAILED', 15_000, 'the run to fail');
    const none = await server.request('GET', `/api/v1/tasks/${id}/sandbox`, { token: alice.token });
    expect(none.status).toBe(404);
    expect(none.body).toMatchObject({ kind: 'Status', reason: 'NotFound', message: 'the task has no sandbox' });
    const other = await server.request('GET', `/api/v1/tasks/${id}/sandbox`, { token: bob.token });
    expect(other.status).toBe(404);
    expect(other.body.message).toBe('task not found');
  });

  it('reports sandbox unavailable in /readyz and stays ready', async () => {
    const res = await server.request('GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.body.checks.sandbox).toBe('unavailable');
  });

  it('fails a Code turn with SANDBOX_UNAVAILABLE and the reason when no driver is configured', async () => {
    const socket = await connected(server, alice.token);
    const seen = seenBy(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'code-none', team: 'coders', message: 'Fix it' });
    expect(ack.ok).toBe(true);
    const err = await until(() => seen.find(([n, p]) => n === 'chat:error' && p.subtaskId === ack.subtaskId));
    expect(err[1]).toMatchObject({ code: 'SANDBOX_UNAVAILABLE', message: 'no sandbox driver is available on this server: WEGENT_SANDBOX_DRIVER is none' });
    expect(fake.requests.length).toBe(0);
  });

  it('fails a ClaudeCode turn that asks for the claude-cli engine with ENGINE_UNAVAILABLE', async () => {
    const manifest = `kind: Shell
metadata: {name: cli}
spec: {shellType: ClaudeCode, engine: claude-cli}
---
kind: Bot
metadata: {name: cli-bot}
spec: {ghostRef: {name: coder}, shellRef: {name: cli}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: cli-team}
spec: {members: [{botRef: {name: cli-bot}}]}
`;
    expect((await server.request('POST', '/api/v1/apply', { token: alice.token, raw: manifest, headers: { 'content-type': 'application/yaml' } })).status).toBe(200);
    const socket = await connected(server, alice.token);
    const seen = seenBy(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'cli-1', team: 'cli-team', message: 'Fix it' });
    const err = await until(() => seen.find(([n, p]) => n === 'chat:error' && p.subtaskId === ack.subtaskId));
    expect(err[1]).toMatchObject({ code: 'ENGINE_UNAVAILABLE', message: "Shell 'cli' (namespace default) asks for the claude-cli engine, but the Claude Code CLI is not available on this server." });
  });
});

describe.each(['bwrap', 'docker'] as const)('the Code shell in a %s sandbox, end to end', (driver) => {
  let server: TestServer;
  let fake: FakeModelServer;
  let carol: { id: string; token: string };
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'wegent-sbx-e2e-'));
    chmodSync(root, 0o711); // the run folder below is reached by the unprivileged sandbox host user
    const gitUrl = bareRepository(root);
    fake = await startFakeModelServer();
    server = await startTestServer(
      { privateHostsAllow: ['127.0.0.1'] },
      // One slot, so that a second task's turn has to wait for it; a tool-output cap above exec's own 64 KiB view.
      { WEGENT_TOOL_OUTPUT_MAX_TOKENS: '100000', WEGENT_SANDBOX_DRIVER: driver, WEGENT_GIT_ALLOW_LOCAL: 'true', WEGENT_SANDBOX_WARM_POOL: '0', WEGENT_SANDBOX_REAP_UNLABELLED: 'false', WEGENT_SANDBOX_MAX_RUNNING: '1', WEGENT_SANDBOX_RUN_DIR: path.join(root, 'run') },
    );
    carol = await server.createUser('carol');
    const res = await server.request('POST', '/api/v1/apply', { token: carol.token, raw: codeTeamManifest(fake.openaiBaseUrl, { shell: 'Code', gitUrl }), headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(200);
    // A Chat bot whose Ghost lists the sandbox tools.
    const chat = `kind: Ghost
metadata: {name: chatty}
spec: {systemPrompt: You chat., tools: [calculator, sandbox]}
---
kind: Bot
metadata: {name: chatty}
spec: {ghostRef: {name: chatty}, shellRef: {name: Chat}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: chatters}
spec: {members: [{botRef: {name: chatty}}]}
`;
    const res2 = await server.request('POST', '/api/v1/apply', { token: carol.token, raw: chat, headers: { 'content-type': 'application/yaml' } });
    expect(res2.status, res2.text).toBe(200);
  }, 180_000);
  afterAll(async () => {
    await server?.stop();
    await fake?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('clones the workspace, runs the model’s tool calls in the sandbox and keeps files for the next turn', async () => {
    expect((await server.request('GET', '/readyz')).body.checks.sandbox, server.ctx.sandboxes!.unavailableReason).toBe('ok');
    const socket = await connected(server, carol.token);
    const seen = seenBy(socket);
    fake.script([
      { steps: [{ toolCall: { id: 'c1', name: 'exec', arguments: { command: 'cat README.md && git log --format=%s' } } }] },
      { steps: [{ toolCall: { id: 'c2', name: 'read_file', arguments: { path: 'README.md' } } }] },
      { steps: [{ toolCall: { id: 'c3', name: 'write_file', arguments: { path: 'notes/todo.txt', content: 'remember me\n' } } }] },
      { steps: [{ text: 'Done.' }] },
    ]);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'code-1', team: 'coders', message: 'Look at the repo', workspaceRef: { name: 'repo' } });
    expect(ack.ok, JSON.stringify(ack)).toBe(true);
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === ack.subtaskId), 120_000, "the first turn to end");
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    expect(done[1].result.value).toBe('Done.');

    // The model saw the cloned file through exec and read_file.
    const toolResults = fake.requests.slice(1, 4).map((r) => r.body.messages.at(-1));
    expect(toolResults[0].role).toBe('tool');
    const execResult = JSON.parse(toolResults[0].content);
    expect(execResult).toMatchObject({ exitCode: 0, timedOut: false, oomKilled: false, stdout: 'hello from the repository\nfirst\n', truncated: false });
    expect(JSON.parse(toolResults[1].content)).toMatchObject({ content: expect.stringContaining('hello from the repository'), totalLines: 1, truncated: false });
    expect(JSON.parse(toolResults[2].content)).toMatchObject({ bytesWritten: 12 });
    // The coding agent's note is in the system prompt.
    expect(JSON.stringify(fake.requests[0]!.body.messages[0])).toContain('You work in a Linux sandbox. The project is in /workspace');

    // The client saw the sandbox start and the tool blocks, exec output streamed into its block.
    const states = seen.filter(([n, p]) => n === 'sandbox:status' && p.taskId === ack.taskId).map(([, p]) => p.state);
    expect(states.slice(0, 2)).toEqual(['Created', 'Running']);
    const created = seen.filter(([n, p]) => n === 'chat:block_created' && p.subtaskId === ack.subtaskId).map(([, p]) => p.block);
    expect(created.map((b: any) => [b.toolName, b.toolSource])).toEqual([['exec', 'sandbox'], ['read_file', 'sandbox'], ['write_file', 'sandbox']]);
    const streamed = seen.filter(([n, p]) => n === 'chat:block_updated' && p.outputDelta !== undefined).map(([, p]) => p.outputDelta).join('');
    expect(streamed).toContain('hello from the repository');

    const metrics = (await server.request('GET', '/metrics')).text;
    expect(metrics).toContain(`wegent_sandboxes{state="Running",driver="${driver}"} 1`);
    expect(metrics).toContain(`wegent_sandbox_start_seconds_count{driver="${driver}",pool="cold"} 1`);

    const list = await server.request('GET', '/api/v1/sandboxes', { token: carol.token });
    expect(list.body.items).toHaveLength(1);
    expect(list.body.items[0]).toMatchObject({ taskId: ack.taskId, driver, state: 'Running' });
    // The task's sandbox, for its owner only.
    const ofTask = await server.request('GET', `/api/v1/tasks/${ack.taskId}/sandbox`, { token: carol.token });
    expect(ofTask.status).toBe(200);
    expect(ofTask.body).toEqual(list.body.items[0]);
    const stranger = await server.createUser(`stranger-${driver}`);
    expect((await server.request('GET', `/api/v1/tasks/${ack.taskId}/sandbox`, { token: stranger.token })).status).toBe(404);

    // The next turn of the task works in the same sandbox: the written file is there.
    fake.script([
      { steps: [{ toolCall: { id: 'c4', name: 'exec', arguments: { command: 'cat notes/todo.txt; ls' } } }] },
      { steps: [{ text: 'Still there.' }] },
    ]);
    const before = fake.requests.length;
    const ack2 = await send(socket, 'chat:send', { clientMessageId: 'code-2', taskId: ack.taskId, message: 'Is the note there?' });
    expect(ack2.ok, JSON.stringify(ack2)).toBe(true);
    const done2 = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === ack2.subtaskId), 60_000, "the second turn to end");
    expect(done2[0], JSON.stringify(done2[1])).toBe('chat:done');
    const second = JSON.parse(fake.requests[before + 1]!.body.messages.at(-1).content);
    expect(second.stdout).toBe('remember me\nREADME.md\nnotes\n');
    const after = await server.request('GET', '/api/v1/sandboxes', { token: carol.token });
    expect(after.body.items.map((s: any) => s.id)).toEqual([list.body.items[0].id]);

    // Deleting the task ends its sandbox (TASK_DELETED).
    expect((await server.request('DELETE', `/api/v1/tasks/${ack.taskId}`, { token: carol.token })).status).toBe(204);
    const ended = await until(async () => {
      const r = await server.request('GET', `/api/v1/sandboxes/${list.body.items[0].id}`, { token: carol.token });
      return r.body.state === 'Deleted' ? r.body : undefined;
    }, 20_000, "the sandbox to be deleted");
    expect(ended).toMatchObject({ state: 'Deleted', stateReason: 'TASK_DELETED' });
    expect((await server.request('GET', `/api/v1/tasks/${ack.taskId}/sandbox`, { token: carol.token })).status).toBe(404);
    const stored = await server.ctx.sandboxes!.store.get(ended.id);
    await until(() => !existsSync(stored!.workspaceDir), 10_000, 'the workspace of the deleted task to be removed');
  }, 240_000);

  it('shows a turn waiting for a slot as Queued with its position; stopping a busy sandbox cancels its run and frees the slot', async () => {
    const socket = await connected(server, carol.token);
    const seen = seenBy(socket);
    fake.script([
      { match: { lastUserText: 'keep busy' }, steps: [{ toolCall: { id: 'q1', name: 'exec', arguments: { command: 'echo started; sleep 60' } } }] },
      { match: { lastUserText: 'second task' }, steps: [{ text: 'Second done.' }] },
    ]);
    const first = await send(socket, 'chat:send', { clientMessageId: 'busy-1', team: 'coders', message: 'keep busy' });
    expect(first.ok, JSON.stringify(first)).toBe(true);
    await until(() => seen.find(([n, p]) => n === 'chat:block_updated' && p.subtaskId === first.subtaskId && String(p.outputDelta ?? '').includes('started')), 60_000, 'the busy command to start');
    const second = await send(socket, 'chat:send', { clientMessageId: 'busy-2', team: 'coders', message: 'second task' });
    expect(second.ok, JSON.stringify(second)).toBe(true);
    const queued = await until(() => seen.find(([n, p]) => n === 'sandbox:status' && p.taskId === second.taskId && p.state === 'Queued'), 20_000, 'a Queued status');
    expect(queued[1]).toEqual({ taskId: second.taskId, sandboxId: null, state: 'Queued', queue: { position: 1 } });

    const busy = (await server.request('GET', '/api/v1/sandboxes?state=Running', { token: carol.token })).body.items.find((s: any) => s.taskId === first.taskId);
    const stop = await server.request('DELETE', `/api/v1/sandboxes/${busy.id}`, { token: carol.token });
    expect(stop.status).toBe(202);
    const cancelled = await until(() => seen.find(([n, p]) => n === 'chat:cancelled' && p.subtaskId === first.subtaskId), 20_000, 'the busy turn to be cancelled');
    expect(cancelled[1].reason).toBe('SANDBOX_STOPPED');
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === second.subtaskId), 60_000, 'the queued turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    const secondStates = seen.filter(([n, p]) => n === 'sandbox:status' && p.taskId === second.taskId).map(([, p]) => p.state);
    expect(secondStates.slice(0, 3)).toEqual(['Queued', 'Created', 'Running']);
    const stopped = await until(async () => {
      const r = await server.request('GET', `/api/v1/sandboxes/${busy.id}`, { token: carol.token });
      return r.body.state === 'Deleted' ? r.body : undefined;
    }, 20_000, 'the stopped sandbox to be deleted');
    expect(stopped.stateReason).toBe('USER_STOPPED');
  }, 180_000);

  it('fails the turn with SANDBOX_FAILED and the reason when its sandbox dies under it', async () => {
    const socket = await connected(server, carol.token);
    const seen = seenBy(socket);
    fake.script([{ match: { lastUserText: 'crash' }, steps: [{ toolCall: { id: 'k1', name: 'exec', arguments: { command: 'echo running; sleep 60' } } }] }]);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'crash-1', team: 'coders', message: 'crash please' });
    expect(ack.ok, JSON.stringify(ack)).toBe(true);
    await until(() => seen.find(([n, p]) => n === 'chat:block_updated' && p.subtaskId === ack.subtaskId && String(p.outputDelta ?? '').includes('running')), 60_000, 'the command to start');
    const sandbox = (await server.request('GET', '/api/v1/sandboxes?state=Running', { token: carol.token })).body.items.find((s: any) => s.taskId === ack.taskId);
    // Kill every process of the sandbox from the host, as a crash would.
    for (const pid of await server.ctx.sandboxes!.pool!.hostPids(sandbox.id)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    const err = await until(() => seen.find(([n, p]) => (n === 'chat:error' || n === 'chat:done') && p.subtaskId === ack.subtaskId), 30_000, 'the turn to end');
    expect(err[0]).toBe('chat:error');
    const record = (await server.request('GET', `/api/v1/sandboxes/${sandbox.id}`, { token: carol.token })).body;
    expect(record.stateReason).toBe('CRASHED');
    expect(err[1]).toMatchObject({ code: 'SANDBOX_FAILED', message: record.message });
    const statuses = seen.filter(([n, p]) => n === 'sandbox:status' && p.sandboxId === sandbox.id).map(([, p]) => p.state);
    expect(statuses).toEqual(expect.arrayContaining(['Failed', 'Cleanup']));
  }, 120_000);

  it('keeps the model’s view of output to 64 KiB, stops commands at their timeout and refuses paths outside the workspace and binary reads', async () => {
    const socket = await connected(server, carol.token);
    const seen = seenBy(socket);
    fake.script([
      {
        match: { lastUserText: 'edge cases' },
        steps: [
          { toolCall: { id: 'e1', name: 'exec', arguments: { command: "head -c 100000 /dev/zero | tr '\\0' a; printf '\\000\\001' > bin.dat" } } },
          { toolCall: { id: 'e2', name: 'exec', arguments: { command: 'sleep 5', timeoutSeconds: 1 } } },
          { toolCall: { id: 'e3', name: 'read_file', arguments: { path: '/etc/passwd' } } },
          { toolCall: { id: 'e4', name: 'read_file', arguments: { path: 'bin.dat' } } },
          { toolCall: { id: 'e5', name: 'list_files', arguments: { recursive: true } } },
        ],
      },
      { match: { lastUserText: 'edge cases' }, steps: [{ text: 'Checked.' }] },
    ]);
    const before = fake.requests.length;
    const ack = await send(socket, 'chat:send', { clientMessageId: 'edge-1', team: 'coders', message: 'edge cases', workspaceRef: { name: 'repo' } });
    expect(ack.ok, JSON.stringify(ack)).toBe(true);
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === ack.subtaskId), 90_000, 'the turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    const results = new Map<string, string>(fake.requests[before + 1]!.body.messages.filter((m: any) => m.role === 'tool').map((m: any) => [m.tool_call_id, m.content]));
    const big = JSON.parse(results.get('e1')!);
    expect(big.truncated).toBe(true);
    expect(big.stdout).toBe(`${'a'.repeat(16 * 1024)}\n[… ${100_000 - 64 * 1024} bytes omitted …]\n${'a'.repeat(48 * 1024)}`);
    expect(JSON.parse(results.get('e2')!)).toMatchObject({ timedOut: true });
    expect(JSON.parse(results.get('e3')!)).toEqual({ error: 'path outside the workspace' });
    expect(JSON.parse(results.get('e4')!)).toEqual({ error: 'binary file (2 bytes); use exec to inspect it' });
    const listed = JSON.parse(results.get('e5')!).entries.map((e: any) => e.path);
    expect(listed).toEqual(expect.arrayContaining(['README.md', 'bin.dat']));
    expect(listed.filter((p: string) => p.includes('.git/'))).toEqual([]);
    const failedBlocks = seen.filter(([n, p]) => n === 'chat:block_updated' && p.subtaskId === ack.subtaskId && p.status === 'failed');
    expect(failedBlocks.length).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('gives a Chat bot whose Ghost lists sandbox the tools, and acquires the sandbox only at its first sandbox call', async () => {
    const socket = await connected(server, carol.token);
    const seen = seenBy(socket);
    fake.script([
      { match: { lastUserText: 'just talk' }, steps: [{ text: 'Talking.' }] },
      { match: { lastUserText: 'run pwd' }, steps: [{ toolCall: { id: 'p1', name: 'exec', arguments: { command: 'pwd; id -u' } } }] },
      { match: { lastUserText: 'run pwd' }, steps: [{ text: 'Ran.' }] },
    ]);
    const before = fake.requests.length;
    const talk = await send(socket, 'chat:send', { clientMessageId: 'chat-1', team: 'chatters', message: 'just talk' });
    await until(() => seen.find(([n, p]) => n === 'chat:done' && p.subtaskId === talk.subtaskId), 30_000, 'the chat turn to end');
    expect(seen.filter(([n, p]) => n === 'sandbox:status' && p.taskId === talk.taskId)).toEqual([]);
    const request = fake.requests[before]!.body;
    expect(request.tools.map((t: any) => t.function.name)).toEqual(['calculator', 'exec', 'read_file', 'write_file', 'list_files']);
    expect(request.messages[0].content).toContain('You can run commands in a Linux sandbox with the exec, read_file, write_file and list_files tools. Your working folder is /workspace; files you create there stay for this conversation. The sandbox has no network access.');

    const run = await send(socket, 'chat:send', { clientMessageId: 'chat-2', taskId: talk.taskId, message: 'run pwd' });
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === run.subtaskId), 60_000, 'the sandboxed chat turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    const result = JSON.parse(fake.requests.at(-1)!.body.messages.at(-1).content);
    expect(result.stdout).toMatch(/^\/workspace\n[1-9][0-9]*\n$/);
    const order = seen.filter(([n, p]) => p?.taskId === talk.taskId && ((n === 'chat:start' && p.subtaskId === run.subtaskId) || n === 'sandbox:status')).map(([n, p]) => (n === 'chat:start' ? n : p.state));
    // With one slot the turn may first wait (Queued) while the previous test's idle sandbox is evicted.
    expect(order.filter((x) => x !== 'Queued').slice(0, 3)).toEqual(['chat:start', 'Created', 'Running']);
  }, 120_000);

  it('reports a command killed by the out-of-memory killer in its result and its block', async () => {
    const manifest = `kind: Shell
metadata: {name: tight}
spec: {shellType: Code, sandbox: {memoryMB: 64}}
---
kind: Bot
metadata: {name: tight}
spec: {ghostRef: {name: coder}, shellRef: {name: tight}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: tight}
spec: {members: [{botRef: {name: tight}}]}
`;
    expect((await server.request('POST', '/api/v1/apply', { token: carol.token, raw: manifest, headers: { 'content-type': 'application/yaml' } })).status).toBe(200);
    const socket = await connected(server, carol.token);
    const seen = seenBy(socket);
    fake.script([
      { match: { lastUserText: 'eat memory' }, steps: [{ toolCall: { id: 'm1', name: 'exec', arguments: { command: 'tail /dev/zero', timeoutSeconds: 60 } } }] },
      { match: { lastUserText: 'eat memory' }, steps: [{ text: 'It died.' }] },
    ]);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'oom-1', team: 'tight', message: 'eat memory' });
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === ack.subtaskId), 90_000, 'the turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    const result = JSON.parse(fake.requests.at(-1)!.body.messages.at(-1).content);
    expect(result).toMatchObject({ oomKilled: true, timedOut: false });
    const streamed = seen.filter(([n, p]) => n === 'chat:block_updated' && p.subtaskId === ack.subtaskId && p.outputDelta !== undefined).map(([, p]) => p.outputDelta).join('');
    expect(streamed).toContain('The command was killed because the sandbox ran out of memory (limit 64 MiB).');
  }, 120_000);

  it('lets a program in the sandbox reach the turn’s Model through the gateway, with the key added outside', async () => {
    const socket = await connected(server, carol.token);
    const seen = seenBy(socket);
    const script = "fetch('http://127.0.0.1:4000/v1/chat/completions',{method:'POST',headers:{'content-type':'application/json',authorization:'Bearer wegent-sandbox'},body:JSON.stringify({model:'anything',messages:[{role:'user',content:'ping from the sandbox'}]})}).then(r=>r.json()).then(j=>console.log(j.choices[0].message.content))";
    fake.script([
      { match: { lastUserText: 'use the gateway' }, steps: [{ toolCall: { id: 'g1', name: 'exec', arguments: { command: `node -e "${script.replace(/"/g, '\\"')}"` } } }] },
      { match: { lastUserText: 'ping from the sandbox' }, steps: [{ text: 'pong' }] },
      { match: { lastUserText: 'use the gateway' }, steps: [{ text: 'Reached it.' }] },
    ]);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'gw-1', team: 'coders', message: 'use the gateway' });
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === ack.subtaskId), 90_000, 'the turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    const result = JSON.parse(fake.requests.at(-1)!.body.messages.at(-1).content);
    expect(result.stdout, result.stderr).toBe('pong\n');
    const viaGateway = fake.requests.find((r) => JSON.stringify(r.body.messages ?? []).includes('ping from the sandbox'))!;
    expect(viaGateway.body.model).toBe('fake-model');
    expect(viaGateway.headers.authorization).toBe('Bearer sk-test-0123456789');
  }, 120_000);
});

describe('sandboxes across a server restart (bwrap)', () => {
  it('ends live sandboxes with SHUTDOWN when the server stops and reaps records a crashed process left at the next start', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'wegent-sbx-restart-'));
    chmodSync(root, 0o711);
    const dataDir = path.join(root, 'data');
    const db = await createTestDatabase('sqlite');
    const fake = await startFakeModelServer();
    const env = { WEGENT_SANDBOX_DRIVER: 'bwrap', WEGENT_SANDBOX_WARM_POOL: '0', WEGENT_SANDBOX_REAP_UNLABELLED: 'false', WEGENT_SANDBOX_RUN_DIR: path.join(root, 'run') };
    let second: RunningServer | undefined;
    try {
      const first = await startTestServer({ dataDir, databaseUrl: db.url, privateHostsAllow: ['127.0.0.1'] }, env);
      const dave = await first.createUser('dave');
      expect((await first.request('POST', '/api/v1/apply', { token: dave.token, raw: codeTeamManifest(fake.openaiBaseUrl, { shell: 'Code' }), headers: { 'content-type': 'application/yaml' } })).status).toBe(200);
      fake.script([{ steps: [{ toolCall: { id: 'r1', name: 'exec', arguments: { command: 'echo hi' } } }] }, { steps: [{ text: 'ok' }] }]);
      const socket = await connected(first, dave.token);
      const seen = seenBy(socket);
      const ack = await send(socket, 'chat:send', { clientMessageId: 'restart-1', team: 'coders', message: 'hello' });
      await until(() => seen.find(([n, p]) => n === 'chat:done' && p.subtaskId === ack.subtaskId), 60_000, 'the turn to end');
      const [live] = (await first.request('GET', '/api/v1/sandboxes', { token: dave.token })).body.items;
      expect(live.state).toBe('Running');
      const hostId = readFileSync(path.join(dataDir, 'host-id'), 'utf8').trim();
      socket.disconnect();
      await first.stop();

      const storage = await openStorage(db.url);
      const store = new SandboxStore(storage.db);
      expect(await store.get(live.id)).toMatchObject({ state: 'Deleted', stateReason: 'SHUTDOWN' });
      // What a process that died without stopping would leave: a record still Running on this host.
      const stale = record({ hostId, ownerId: dave.id, state: 'Running' });
      await store.insert(stale);
      await storage.close();

      second = await startServer({ port: 0, host: '127.0.0.1', dataDir, databaseUrl: db.url }, { ...env, WEGENT_SANDBOX_DRIVER: 'bwrap' }, createLogger('silent'));
      const reaped = await second.ctx.sandboxes!.store.get(stale.id);
      expect(reaped).toMatchObject({ state: 'Deleted', stateReason: 'CRASHED', message: 'The sandbox was lost when its server stopped.' });
    } finally {
      await second?.close();
      await fake.close();
      await db.drop();
      rmSync(root, { recursive: true, force: true });
    }
  }, 180_000);
});
