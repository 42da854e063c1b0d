import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

let server: TestServer;
let alice: { id: string; token: string };
let bob: { id: string; token: string };

beforeAll(async () => {
  server = await startTestServer();
  alice = await server.createUser('alice');
  bob = await server.createUser('bob');
  // No worker runs in this file: runs stay PENDING, which is what these tests look at.
  server.ctx.tasks.scheduler = undefined;
});
afterAll(async () => server?.stop());

const create = (body: Record<string, unknown>, token = alice.token) => server.request('POST', '/api/v1/tasks', { token, body });

describe('task API', () => {
  it('creates a task with its first message, queued as PENDING with a pending turn', async () => {
    const res = await create({ team: 'wegent-chat', message: 'Hello there\nsecond line', clientMessageId: 'c-1' });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ runSeq: 1, task: { kind: 'Task', spec: { title: 'Hello there', prompt: 'Hello there\nsecond line', teamRef: { name: 'wegent-chat', namespace: 'default' } }, status: { status: 'PENDING', runSeq: 1, statusVersion: 1, messageCount: 1 } } });
    expect(res.body.task.metadata.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(res.body.task.metadata.labels['wegent.io/source']).toBe('api');
    const id = res.body.task.metadata.uid;
    const messages = await server.request('GET', `/api/v1/tasks/${id}/messages`, { token: alice.token });
    expect(messages.body.items.map((m: any) => [m.seq, m.role, m.status, m.content])).toEqual([
      [1, 'user', null, 'Hello there\nsecond line'],
      [2, 'assistant', 'PENDING', ''],
    ]);
    expect(messages.body.items[1].id).toBe(res.body.subtaskId);
    const runtime = await server.request('GET', `/api/v1/tasks/${id}/runtime`, { token: alice.token });
    expect(runtime.body).toMatchObject({ taskId: id, status: 'PENDING', runSeq: 1, statusVersion: 1, activeStreams: [{ subtaskId: res.body.subtaskId, status: 'PENDING', offset: 0 }] });
    expect(JSON.stringify(runtime.body)).not.toContain('Hello there');
  });

  it('replays an identical request with the same client message id and refuses a different one', async () => {
    const first = await create({ team: 'wegent-chat', message: 'once', clientMessageId: 'c-2' });
    const again = await create({ team: 'wegent-chat', message: 'once', clientMessageId: 'c-2' });
    expect(again.status).toBe(200);
    expect(again.body.task.metadata.uid).toBe(first.body.task.metadata.uid);
    expect(again.body.subtaskId).toBe(first.body.subtaskId);
    const other = await create({ team: 'wegent-chat', message: 'twice', clientMessageId: 'c-2' });
    expect(other.status).toBe(409);
    expect(other.body.message).toBe('idempotency key reused with a different request');
  });

  it('refuses a message while the run is active, then cancels it and starts a new run', async () => {
    const res = await create({ team: 'wegent-chat', message: 'first', clientMessageId: 'c-3' });
    const id = res.body.task.metadata.uid;
    const busy = await server.request('POST', `/api/v1/tasks/${id}/messages`, { token: alice.token, body: { message: 'second', clientMessageId: 'c-4' } });
    expect(busy.status).toBe(409);
    expect(busy.body.message).toBe('task is PENDING; cancel it or wait');
    const cancel = await server.request('POST', `/api/v1/tasks/${id}/cancel`, { token: alice.token });
    expect(cancel.status).toBe(202);
    expect(cancel.body).toEqual({ taskId: id, status: 'CANCELLED', changed: true });
    const again = await server.request('POST', `/api/v1/tasks/${id}/cancel`, { token: alice.token });
    expect(again.body).toEqual({ taskId: id, status: 'CANCELLED', changed: false });
    const turn = await server.request('GET', `/api/v1/tasks/${id}/messages/${res.body.subtaskId}`, { token: alice.token });
    expect(turn.body).toMatchObject({ status: 'CANCELLED', statusReason: 'USER_CANCELLED', error: { code: 'USER_CANCELLED' } });
    const next = await server.request('POST', `/api/v1/tasks/${id}/messages`, { token: alice.token, body: { message: 'second', clientMessageId: 'c-5' } });
    expect(next.status, next.text).toBe(202);
    expect(next.body).toMatchObject({ taskId: id, runSeq: 2, status: 'PENDING' });
    const task = await server.request('GET', `/api/v1/tasks/${id}`, { token: alice.token });
    expect(task.body.status).toMatchObject({ status: 'PENDING', runSeq: 2, statusVersion: 3, messageCount: 2 });
    expect(task.body.status.completedAt).toBeUndefined();
    const subtasks = await server.request('GET', `/api/v1/tasks/${id}/subtasks`, { token: alice.token });
    expect(subtasks.body.items.map((s: any) => [s.runSeq, s.status])).toEqual([
      [1, 'CANCELLED'],
      [2, 'PENDING'],
    ]);
  });

  it('names the field when the team, workspace or model does not resolve, and limits the message', async () => {
    const team = await create({ team: 'default#nope', message: 'x' });
    expect(team.status).toBe(422);
    expect(team.body.details.causes[0]).toMatchObject({ field: 'team', reason: 'FieldValueNotFound' });
    const model = await create({ team: 'wegent-chat', message: 'x', modelOverride: { name: 'missing' } });
    expect(model.body.details.causes[0]).toMatchObject({ field: 'modelOverride', reason: 'FieldValueNotFound' });
    const empty = await create({ team: 'wegent-chat', message: '   ' });
    expect(empty.status).toBe(422);
    const long = await create({ team: 'wegent-chat', message: 'x'.repeat(100_001) });
    expect(long.status).toBe(422);
    expect(long.body.details.causes[0]).toMatchObject({ field: 'message', reason: 'FieldValueTooLong' });
    const both = await create({ team: 'wegent-chat', teamRef: { name: 'wegent-chat' }, message: 'x' });
    expect(both.status).toBe(400);
  });

  it('renames a task and changes its labels with a merge patch, refusing immutable fields', async () => {
    const res = await create({ team: 'wegent-chat', message: 'rename me', clientMessageId: 'c-patch' });
    const id = res.body.task.metadata.uid;
    const patched = await server.request('PATCH', `/api/v1/tasks/${id}`, { token: alice.token, body: { spec: { title: 'Renamed' }, metadata: { labels: { topic: 'demo' } } }, headers: { 'content-type': 'application/merge-patch+json' } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.spec.title).toBe('Renamed');
    expect(patched.body.metadata.labels).toMatchObject({ topic: 'demo', 'wegent.io/source': 'api' });
    const immutable = await server.request('PATCH', `/api/v1/tasks/${id}`, { token: alice.token, body: { spec: { prompt: 'changed' } }, headers: { 'content-type': 'application/merge-patch+json' } });
    expect(immutable.status).toBe(422);
  });

  it('hides one user’s tasks from another', async () => {
    const res = await create({ team: 'wegent-chat', message: 'private', clientMessageId: 'c-6' });
    const id = res.body.task.metadata.uid;
    for (const [method, path] of [
      ['GET', `/api/v1/tasks/${id}`],
      ['GET', `/api/v1/tasks/${id}/messages`],
      ['GET', `/api/v1/tasks/${id}/runtime`],
      ['POST', `/api/v1/tasks/${id}/cancel`],
      ['DELETE', `/api/v1/tasks/${id}`],
    ] as const) {
      const r = await server.request(method, path, { token: bob.token });
      expect(r.status, `${method} ${path}`).toBe(404);
    }
    const list = await server.request('GET', '/api/v1/tasks', { token: bob.token });
    expect(list.body.items).toEqual([]);
  });

  it('lists own tasks newest first with status filters and continue tokens', async () => {
    const all: string[] = [];
    let next = '';
    do {
      const res = await server.request('GET', `/api/v1/tasks?limit=2${next ? `&continue=${next}` : ''}`, { token: alice.token });
      expect(res.status).toBe(200);
      all.push(...res.body.items.map((t: any) => t.metadata.uid));
      next = res.body.metadata.continue ?? '';
    } while (next);
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBeGreaterThanOrEqual(4);
    const pending = await server.request('GET', '/api/v1/tasks?status=PENDING', { token: alice.token });
    expect(pending.body.items.every((t: any) => t.status.status === 'PENDING')).toBe(true);
  });

  it('creates and queues a task applied as a manifest, and shows its live status', async () => {
    const res = await server.request('POST', '/api/v1/apply', { token: alice.token, raw: 'kind: Task\nmetadata: {name: applied}\nspec: {prompt: From a file, teamRef: {name: wegent-chat}}\n', headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(200);
    const uid = res.body.results[0].uid;
    const messages = await server.request('GET', `/api/v1/tasks/${uid}/messages`, { token: alice.token });
    expect(messages.body.items.map((m: any) => m.content)).toEqual(['From a file', '']);
    await server.request('POST', `/api/v1/tasks/${uid}/cancel`, { token: alice.token });
    const doc = await server.request('GET', '/api/v1/namespaces/default/tasks/applied', { token: alice.token });
    expect(doc.body.status).toMatchObject({ status: 'CANCELLED', statusReason: 'USER_CANCELLED', statusVersion: 2 });
  });

  it('deletes a task: its run is cancelled, it disappears, and its team can be deleted', async () => {
    await server.request('POST', '/api/v1/apply', { token: alice.token, raw: 'kind: Team\nmetadata: {name: short}\nspec: {members: [{botRef: {name: wegent-assistant}}]}\n', headers: { 'content-type': 'application/yaml' } });
    const res = await create({ team: 'short', message: 'x', clientMessageId: 'c-7' });
    const id = res.body.task.metadata.uid;
    expect((await server.request('DELETE', '/api/v1/namespaces/default/teams/short', { token: alice.token })).status).toBe(409);
    expect((await server.request('DELETE', `/api/v1/tasks/${id}`, { token: alice.token })).status).toBe(204);
    expect((await server.request('GET', `/api/v1/tasks/${id}`, { token: alice.token })).status).toBe(404);
    expect((await server.request('DELETE', '/api/v1/namespaces/default/teams/short', { token: alice.token })).status).toBe(204);
  });
});
