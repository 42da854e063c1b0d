/**
 * A turn waiting for a sandbox slot, as its task shows it (chat-protocol.md §6.1, §10, §11; sandbox.md
 * §7.1), and `runtime.sandbox` (api.md §5.1) — end to end through the real server and bwrap sandboxes,
 * with one slot so that a second task's Code turn has to wait.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../testing/server.js';
import { until } from '../testing/wait.js';
import { connected, disconnectAll, seenBy, send } from './e2e-support.js';

/** Holds the sandbox (and so the only slot) until the test drops `/workspace/go` in from the host. */
const GATE = 'echo holding; while [ ! -f /workspace/go ]; do sleep 0.1; done; echo released';

const manifest = (baseUrl: string) => `kind: Model
metadata: {name: fake}
spec: {protocol: openai-compatible, modelId: fake-model, baseUrl: "${baseUrl}", apiKey: sk-test-0123456789}
---
kind: Ghost
metadata: {name: coder}
spec: {systemPrompt: You write code., tools: []}
---
kind: Bot
metadata: {name: coder}
spec: {ghostRef: {name: coder}, shellRef: {name: Code}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: coders}
spec: {members: [{botRef: {name: coder}, role: leader}]}
`;

describe('a Code turn waiting for a sandbox slot (bwrap, WEGENT_SANDBOX_MAX_RUNNING=1)', () => {
  let server: TestServer;
  let fake: FakeModelServer;
  let dana: { id: string; token: string };
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'wegent-sbx-queue-'));
    chmodSync(root, 0o711); // the run folder below is reached by the unprivileged sandbox host user
    fake = await startFakeModelServer();
    server = await startTestServer(
      { privateHostsAllow: ['127.0.0.1'] },
      { WEGENT_SANDBOX_DRIVER: 'bwrap', WEGENT_SANDBOX_WARM_POOL: '0', WEGENT_SANDBOX_REAP_UNLABELLED: 'false', WEGENT_SANDBOX_MAX_RUNNING: '1', WEGENT_SANDBOX_RUN_DIR: path.join(root, 'run') },
    );
    dana = await server.createUser('dana');
    const res = await server.request('POST', '/api/v1/apply', { token: dana.token, raw: manifest(fake.openaiBaseUrl), headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(200);
    expect((await server.request('GET', '/readyz')).body.checks.sandbox, server.ctx.sandboxes!.unavailableReason).toBe('ok');
  }, 180_000);
  afterAll(async () => {
    disconnectAll();
    await server?.stop();
    await fake?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const runtimeOf = async (taskId: string) => {
    const r = await server.request('GET', `/api/v1/tasks/${taskId}/runtime`, { token: dana.token });
    expect(r.status, r.text).toBe(200);
    return r.body;
  };
  /** The live sandbox record of a task. */
  const liveSandbox = (taskId: string) => until(async () => (await server.ctx.sandboxes!.store.list({ taskId, states: ['Running'] }))[0], 60_000, 'the task’s sandbox to run');
  /** Starts a task whose turn holds the only slot until `release` is called. */
  async function holdTheSlot(socket: Awaited<ReturnType<typeof connected>>, seen: ReturnType<typeof seenBy>, clientMessageId: string, message: string) {
    const ack = await send(socket, 'chat:send', { clientMessageId, team: 'coders', message });
    expect(ack.ok, JSON.stringify(ack)).toBe(true);
    await until(() => seen.find(([n, p]) => n === 'chat:block_updated' && p.subtaskId === ack.subtaskId && String(p.outputDelta ?? '').includes('holding')), 60_000, 'the holding command to start');
    const sandbox = await liveSandbox(ack.taskId);
    return { ack, sandbox, release: () => writeFileSync(path.join(sandbox.workspaceDir, 'go'), '') };
  }

  it('keeps the waiting task PENDING with queue {reason: "sandbox", position: 1}, then runs it once the slot frees; runtime.sandbox names the task’s sandbox', async () => {
    const socket = await connected(server, dana.token);
    const seen = seenBy(socket);
    fake.script([
      { match: { lastUserText: 'hold the slot' }, steps: [{ toolCall: { id: 'g1', name: 'exec', arguments: { command: GATE } } }] },
      { match: { lastUserText: 'hold the slot' }, steps: [{ text: 'Held.' }] },
      { match: { lastUserText: 'wait your turn' }, steps: [{ text: 'My turn.' }] },
    ]);
    const holder = await holdTheSlot(socket, seen, 'hold-1', 'hold the slot');

    // The running task's runtime names its sandbox, over REST and in the task:join ack alike.
    const holding = await runtimeOf(holder.ack.taskId);
    expect(holding).toMatchObject({ status: 'RUNNING', queue: null, sandbox: { id: holder.sandbox.id, state: 'Running' } });
    const joinHolder = await send(socket, 'task:join', { taskId: holder.ack.taskId });
    expect(joinHolder.runtime.sandbox).toEqual({ id: holder.sandbox.id, state: 'Running' });

    const waiting = await send(socket, 'chat:send', { clientMessageId: 'wait-1', team: 'coders', message: 'wait your turn' });
    expect(waiting.ok, JSON.stringify(waiting)).toBe(true);
    const queued = await until(() => seen.find(([n, p]) => n === 'task:status' && p.taskId === waiting.taskId && p.queue), 20_000, 'a queued task:status');
    expect(queued[1]).toEqual({ taskId: waiting.taskId, runId: waiting.runId, runSeq: 1, status: 'PENDING', previousStatus: 'PENDING', statusVersion: 2, updatedAt: expect.any(String), queue: { position: 1, reason: 'sandbox' } });
    expect(seen.find(([n, p]) => n === 'sandbox:status' && p.taskId === waiting.taskId)![1]).toEqual({ taskId: waiting.taskId, sandboxId: null, state: 'Queued', queue: { position: 1 } });

    // It stays so while the first task holds the slot: REST runtime, the task document and task:join agree.
    await new Promise((r) => setTimeout(r, 1500));
    const runtime = await runtimeOf(waiting.taskId);
    expect(runtime).toMatchObject({ taskId: waiting.taskId, status: 'PENDING', runId: waiting.runId, runSeq: 1, statusVersion: 2, queue: { position: 1, reason: 'sandbox' }, sandbox: null });
    expect(runtime.activeStreams).toEqual([expect.objectContaining({ subtaskId: waiting.subtaskId, status: 'PENDING' })]);
    expect((await server.request('GET', `/api/v1/tasks/${waiting.taskId}`, { token: dana.token })).body.status.status).toBe('PENDING');
    const join = await send(socket, 'task:join', { taskId: waiting.taskId });
    expect(join.runtime).toMatchObject({ status: 'PENDING', queue: { position: 1, reason: 'sandbox' }, sandbox: null });
    expect(seen.some(([n, p]) => n === 'task:status' && p.taskId === waiting.taskId && p.status === 'RUNNING')).toBe(false);
    expect(fake.requests.some((r) => r.lastUserText === 'wait your turn')).toBe(false);

    holder.release();
    const heldDone = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === holder.ack.subtaskId), 60_000, 'the holding turn to end');
    expect(heldDone[0], JSON.stringify(heldDone[1])).toBe('chat:done');
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === waiting.subtaskId), 60_000, 'the waiting turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    expect(done[1].result.value).toBe('My turn.');
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.taskId === waiting.taskId && p.status === 'COMPLETED'), 10_000, 'the waiting task to complete');

    // PENDING (queued) → RUNNING only once its sandbox runs → COMPLETED, each status change a higher version.
    const events = seen.filter(([n, p]) => p?.taskId === waiting.taskId && (n === 'task:status' || n === 'sandbox:status'));
    const statuses = events.filter(([n]) => n === 'task:status').map(([, p]) => p);
    expect(statuses.map((p) => p.status).filter((s, i, all) => s !== all[i - 1])).toEqual(['PENDING', 'RUNNING', 'COMPLETED']);
    const versions = statuses.map((p) => p.statusVersion);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    expect(new Set(versions).size).toBe(versions.length);
    const running = statuses.find((p) => p.status === 'RUNNING');
    expect(running).toMatchObject({ previousStatus: 'PENDING' });
    expect(running.queue).toBeUndefined();
    const order = events.map(([n, p]) => (n === 'sandbox:status' ? `sandbox ${p.state}` : `task ${p.status}`));
    expect(order.indexOf('sandbox Running')).toBeGreaterThan(-1);
    expect(order.indexOf('sandbox Running')).toBeLessThan(order.indexOf('task RUNNING'));

    // Finished, it shows no queue and the sandbox it used (still Running, idle); the holder's was evicted for it.
    const own = (await server.ctx.sandboxes!.store.list({ taskId: waiting.taskId }))[0]!;
    expect(await runtimeOf(waiting.taskId)).toMatchObject({ status: 'COMPLETED', queue: null, sandbox: { id: own.id, state: 'Running' } });
    const evicted = await until(async () => {
      const r = await runtimeOf(holder.ack.taskId);
      return r.sandbox?.state === 'Deleted' ? r : undefined;
    }, 30_000, 'the holder’s sandbox to be evicted');
    expect(evicted.sandbox).toEqual({ id: holder.sandbox.id, state: 'Deleted' });
    expect((await server.request('GET', `/api/v1/sandboxes/${holder.sandbox.id}`, { token: dana.token })).body.state).toBe('Deleted');
  }, 240_000);

  it('cancels a task whose turn waits for a slot at once: its request leaves the queue and it never runs', async () => {
    const socket = await connected(server, dana.token);
    const seen = seenBy(socket);
    fake.script([
      { match: { lastUserText: 'hold it again' }, steps: [{ toolCall: { id: 'g2', name: 'exec', arguments: { command: GATE } } }] },
      { match: { lastUserText: 'hold it again' }, steps: [{ text: 'Held again.' }] },
      { match: { lastUserText: 'cancel me while I wait' }, steps: [{ text: 'I should never run.' }] },
    ]);
    const holder = await holdTheSlot(socket, seen, 'hold-2', 'hold it again');
    const waiting = await send(socket, 'chat:send', { clientMessageId: 'wait-2', team: 'coders', message: 'cancel me while I wait' });
    expect(waiting.ok, JSON.stringify(waiting)).toBe(true);
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.taskId === waiting.taskId && p.queue?.reason === 'sandbox'), 20_000, 'a queued task:status');
    expect(server.ctx.sandboxes!.pool!.scheduler.queued()).toHaveLength(1);

    const asked = Date.now();
    const res = await server.request('POST', `/api/v1/tasks/${waiting.taskId}/cancel`, { token: dana.token, body: {} });
    expect(res.status, res.text).toBe(202);
    expect(res.body).toEqual({ taskId: waiting.taskId, status: 'CANCELLED', changed: true });
    const cancelled = await until(() => seen.find(([n, p]) => n === 'task:status' && p.taskId === waiting.taskId && p.status === 'CANCELLED'), 1000, 'task:status CANCELLED');
    expect(cancelled[1]).toMatchObject({ previousStatus: 'PENDING', statusReason: 'USER_CANCELLED' });
    await until(() => server.ctx.sandboxes!.pool!.scheduler.queued().length === 0, 1000, 'the queued request to be dropped');
    expect(Date.now() - asked).toBeLessThan(1000);
    expect(await runtimeOf(waiting.taskId)).toMatchObject({ status: 'CANCELLED', queue: null, activeStreams: [], sandbox: null });

    holder.release();
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === holder.ack.subtaskId), 60_000, 'the holding turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    // Given time to misbehave, the cancelled task never got a sandbox, a model call or a second terminal event.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await server.ctx.sandboxes!.store.list({ taskId: waiting.taskId })).toEqual([]);
    expect(fake.requests.some((r) => r.lastUserText === 'cancel me while I wait')).toBe(false);
    expect(seen.filter(([n, p]) => n === 'chat:cancelled' && p.subtaskId === waiting.subtaskId)).toHaveLength(1);
    expect(seen.filter(([n, p]) => n === 'task:status' && p.taskId === waiting.taskId).map(([, p]) => p.status).at(-1)).toBe('CANCELLED');
    const turn = await server.request('GET', `/api/v1/tasks/${waiting.taskId}/messages/${waiting.subtaskId}`, { token: dana.token });
    expect(turn.body).toMatchObject({ status: 'CANCELLED', statusReason: 'USER_CANCELLED' });
  }, 240_000);
  it('moves a waiting task up when the one ahead leaves the queue, re-sending its position at most once a second', async () => {
    const socket = await connected(server, dana.token);
    const seen = seenBy(socket);
    const statuses: Array<{ at: number; p: any }> = [];
    socket.on('task:status', (p) => statuses.push({ at: Date.now(), p }));
    fake.script([
      { match: { lastUserText: 'hold once more' }, steps: [{ toolCall: { id: 'g3', name: 'exec', arguments: { command: GATE } } }] },
      { match: { lastUserText: 'hold once more' }, steps: [{ text: 'Held once more.' }] },
      { match: { lastUserText: 'third in line' }, steps: [{ text: 'Third.' }] },
    ]);
    const holder = await holdTheSlot(socket, seen, 'hold-3', 'hold once more');
    const second = await send(socket, 'chat:send', { clientMessageId: 'line-2', team: 'coders', message: 'second in line' });
    await until(() => statuses.find(({ p }) => p.taskId === second.taskId && p.queue?.position === 1), 20_000, 'the second task to queue');
    const third = await send(socket, 'chat:send', { clientMessageId: 'line-3', team: 'coders', message: 'third in line' });
    const atTwo = await until(() => statuses.find(({ p }) => p.taskId === third.taskId && p.queue?.position === 2), 20_000, 'the third task to queue at 2');
    expect((await runtimeOf(third.taskId)).queue).toEqual({ position: 2, reason: 'sandbox' });

    expect((await server.request('POST', `/api/v1/tasks/${second.taskId}/cancel`, { token: dana.token, body: {} })).body.status).toBe('CANCELLED');
    const atOne = await until(() => statuses.find(({ p }) => p.taskId === third.taskId && p.queue?.position === 1), 5000, 'the third task to move up');
    expect(atOne.p).toMatchObject({ status: 'PENDING', previousStatus: 'PENDING', statusVersion: atTwo.p.statusVersion + 1 });
    // The move happened at once (the sandbox side says so), but the task re-sends its position a second after the last.
    expect(seen.filter(([n, p]) => n === 'sandbox:status' && p.taskId === third.taskId).map(([, p]) => p.queue?.position)).toEqual([2, 1]);
    expect(atOne.at - atTwo.at).toBeGreaterThanOrEqual(900);
    expect((await runtimeOf(third.taskId)).queue).toEqual({ position: 1, reason: 'sandbox' });

    holder.release();
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === third.subtaskId), 60_000, 'the third turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    expect(await runtimeOf(third.taskId)).toMatchObject({ status: 'COMPLETED', queue: null });
  }, 240_000);
});
