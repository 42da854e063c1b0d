import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../testing/server.js';
import { connected as connectTo, disconnectAll, send, seenBy as record } from '../testing/chat-client.js';
import { until } from '../testing/wait.js';

let server: TestServer;
let fake: FakeModelServer;
let alice: { id: string; token: string };
const connected = (token: string) => connectTo(server, token);

const manifest = (baseUrl: string) => `kind: Model
metadata: {name: fake}
spec: {protocol: openai-compatible, modelId: fake-model, baseUrl: "${baseUrl}", apiKey: sk-test-0123456789}
---
kind: Ghost
metadata: {name: analyst}
spec: {systemPrompt: You write specs., tools: []}
---
kind: Ghost
metadata: {name: developer}
spec: {systemPrompt: You write code., tools: []}
---
kind: Bot
metadata: {name: analyst, displayName: Analyst}
spec: {ghostRef: {name: analyst}, shellRef: {name: Chat}, modelRef: {name: fake}}
---
kind: Bot
metadata: {name: developer, displayName: Developer}
spec: {ghostRef: {name: developer}, shellRef: {name: Chat}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: spec-dev}
spec:
  collaborationModel: pipeline
  members:
    - {role: leader, botRef: {name: analyst}, requireConfirmation: true}
    - {botRef: {name: developer}, contextPassing: original_and_previous}
`;

beforeAll(async () => {
  fake = await startFakeModelServer();
  server = await startTestServer({ privateHostsAllow: ['127.0.0.1'] });
  alice = await server.createUser('alice');
  const res = await server.request('POST', '/api/v1/apply', { token: alice.token, raw: manifest(fake.openaiBaseUrl), headers: { 'content-type': 'application/yaml' } });
  expect(res.status, res.text).toBe(200);
});
afterAll(async () => {
  disconnectAll();
  await server?.stop();
  await fake?.close();
});

const statusOf = (seen: Array<[string, { status?: string }]>) => seen.filter(([n]) => n === 'task:status').map(([, p]) => p.status);

describe('pipeline confirmation over /chat', () => {
  it('pauses after a stage that requires confirmation, then continues the same run with the edited text', async () => {
    fake.reset();
    fake.script(['Spec v1', 'Code for the edited spec.']);
    const socket = await connected(alice.token);
    const seen = record(socket);

    const first = await send(socket, 'chat:send', { clientMessageId: 'p-1', team: 'spec-dev', message: 'Design a login.' });
    expect(first).toMatchObject({ ok: true, runSeq: 1, status: 'PENDING' });
    const paused = await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'PENDING_CONFIRMATION'));
    expect(paused[1]).toMatchObject({ runSeq: 1, currentStage: 0, pendingConfirmation: { stage: 0, subtaskId: first.subtaskId, memberName: 'Analyst' } });
    expect(seen.find(([n]) => n === 'chat:start')![1]).toMatchObject({ subtaskId: first.subtaskId, memberIndex: 0, memberName: 'Analyst', bot: { name: 'analyst' } });
    expect(seen.find(([n]) => n === 'chat:done')![1]).toMatchObject({ subtaskId: first.subtaskId, result: { value: 'Spec v1' } });
    expect(fake.requests).toHaveLength(1);
    const runtime = await server.request('GET', `/api/v1/tasks/${first.taskId}/runtime`, { token: alice.token });
    expect(runtime.body).toMatchObject({ status: 'PENDING_CONFIRMATION', pendingConfirmation: { stage: 0, subtaskId: first.subtaskId, memberName: 'Analyst' } });

    const confirm = await send(socket, 'chat:send', { clientMessageId: 'p-2', taskId: first.taskId, action: 'pipeline:confirm', message: 'Spec v2 (edited)' });
    expect(confirm).toMatchObject({ ok: true, taskId: first.taskId, runId: first.runId, runSeq: 1, status: 'PENDING', created: false, duplicate: false });
    expect(confirm.messageId).toEqual(expect.any(String));
    expect(confirm.subtaskId).not.toBe(first.subtaskId);
    // A replay of the same confirmation changes nothing.
    expect(await send(socket, 'chat:send', { clientMessageId: 'p-2', taskId: first.taskId, action: 'pipeline:confirm', message: 'Spec v2 (edited)' })).toMatchObject({ ok: true, duplicate: true, subtaskId: confirm.subtaskId });

    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED'));
    // Each stage start is a status change of its own (currentStage, progress).
    expect(statusOf(seen)).toEqual(['PENDING', 'RUNNING', 'RUNNING', 'PENDING_CONFIRMATION', 'PENDING', 'RUNNING', 'RUNNING', 'COMPLETED']);
    const starts = seen.filter(([n]) => n === 'chat:start').map(([, p]) => [p.subtaskId, p.memberIndex, p.memberName, p.purpose]);
    expect(starts).toEqual([
      [first.subtaskId, 0, 'Analyst', 'answer'],
      [confirm.subtaskId, 1, 'Developer', 'answer'],
    ]);
    expect(seen.find(([n, p]) => n === 'chat:message' && p.message.id === confirm.messageId)![1].message).toMatchObject({ role: 'user', content: 'Spec v2 (edited)' });
    // The next stage received the edited text in place of the paused stage's output.
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1]!.body.messages).toEqual([
      { role: 'system', content: expect.stringMatching(/^You write code\.\n\nYou are step 2 of 2 in a pipeline: Analyst → Developer\.\n\nCurrent date: \d{4}-\d\d-\d\d \(UTC\)\.$/) },
      { role: 'user', content: 'Original request:\nDesign a login.\n\nOutput of the previous step (Analyst):\nSpec v2 (edited)' },
    ]);

    // Every member turn is its own stored message naming its member.
    const history = await send(socket, 'history:sync', { taskId: first.taskId });
    expect(history.messages.map((m: { role: string; content: string; sender: { memberName?: string }; purpose: string | null }) => [m.role, m.content, m.sender.memberName ?? null, m.purpose])).toEqual([
      ['user', 'Design a login.', null, null],
      ['assistant', 'Spec v1', 'Analyst', 'answer'],
      ['user', 'Spec v2 (edited)', null, null],
      ['assistant', 'Code for the edited spec.', 'Developer', 'answer'],
    ]);

    // Nothing waits for confirmation any more.
    expect(await send(socket, 'chat:send', { clientMessageId: 'p-3', taskId: first.taskId, action: 'pipeline:confirm' })).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });

    // A follow-up message after the completed pipeline runs only the last stage (followUp: last_stage).
    fake.script(['Added a remember-me box.']);
    const follow = await send(socket, 'chat:send', { clientMessageId: 'p-4', taskId: first.taskId, message: 'Add a remember-me box.' });
    expect(follow).toMatchObject({ ok: true, runSeq: 2 });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.runSeq === 2 && p.status === 'COMPLETED'));
    expect(seen.filter(([n, p]) => n === 'chat:start' && p.runSeq === 2).map(([, p]) => p.memberName)).toEqual(['Developer']);
    expect(fake.requests[2]!.body.messages.slice(1)).toEqual([{ role: 'user', content: 'Add a remember-me box.' }]);
  });

  it('confirms over REST: POST /tasks/{id}/confirm passes the edited text on; 409 when nothing waits, 404 for another user', async () => {
    fake.reset();
    fake.script(['Spec v1', 'Code for the REST-edited spec.']);
    const created = await server.request('POST', '/api/v1/tasks', { token: alice.token, body: { team: 'spec-dev', message: 'Build a todo app' } });
    expect(created.status, created.text).toBe(201);
    const id = created.body.task.metadata.uid;
    await until(async () => (await server.request('GET', `/api/v1/tasks/${id}`, { token: alice.token })).body.status.status === 'PENDING_CONFIRMATION', 15_000, 'the pause');
    const bob = await server.createUser('bob-confirm');
    expect((await server.request('POST', `/api/v1/tasks/${id}/confirm`, { token: bob.token, body: {} })).status).toBe(404);
    const confirm = await server.request('POST', `/api/v1/tasks/${id}/confirm`, { token: alice.token, body: { message: 'Spec v2 (edited over REST)' } });
    expect(confirm.status, confirm.text).toBe(202);
    expect(confirm.body).toMatchObject({ taskId: id, runSeq: 1, subtaskId: expect.any(String) });
    await until(async () => (await server.request('GET', `/api/v1/tasks/${id}`, { token: alice.token })).body.status.status === 'COMPLETED', 15_000, 'the second stage');
    // The developer stage received the edited text as the previous stage's answer.
    expect(JSON.stringify(fake.requests[1]!.body.messages)).toContain('Spec v2 (edited over REST)');
    const again = await server.request('POST', `/api/v1/tasks/${id}/confirm`, { token: alice.token });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ kind: 'Status', reason: 'Conflict', code: 409 });
  });

  it('revises the paused stage in a new run when a message arrives while paused', async () => {
    fake.reset();
    fake.script(['Spec v1', 'Spec v2 with OAuth.', 'OAuth code.']);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const first = await send(socket, 'chat:send', { clientMessageId: 'r-1', team: 'spec-dev', message: 'Design a login.' });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'PENDING_CONFIRMATION' && p.runSeq === 1));

    const revision = await send(socket, 'chat:send', { clientMessageId: 'r-2', taskId: first.taskId, message: 'Use OAuth.' });
    expect(revision).toMatchObject({ ok: true, runSeq: 2, status: 'PENDING' });
    const pausedAgain = await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'PENDING_CONFIRMATION' && p.runSeq === 2));
    expect(pausedAgain[1].pendingConfirmation).toEqual({ stage: 0, subtaskId: revision.subtaskId, memberName: 'Analyst' });
    // Stage 0 (contextPassing none) gets the history, which holds the paused run, and the revision.
    expect(fake.requests[1]!.body.messages.slice(1)).toEqual([
      { role: 'user', content: 'Design a login.' },
      { role: 'assistant', content: 'Spec v1' },
      { role: 'user', content: 'Use OAuth.' },
    ]);

    const confirm = await send(socket, 'chat:send', { clientMessageId: 'r-3', taskId: first.taskId, action: 'pipeline:confirm' });
    expect(confirm).toMatchObject({ ok: true, runSeq: 2 });
    expect(confirm.messageId).toBeUndefined();
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED' && p.runSeq === 2));
    // The Developer works from the revision run's request (the paused run's) and the revised spec.
    expect(fake.requests[2]!.body.messages.slice(1)).toEqual([{ role: 'user', content: 'Original request:\nDesign a login.\n\nOutput of the previous step (Analyst):\nSpec v2 with OAuth.' }]);
  });

  it('retries a stage with the input it had, starting the new run at that stage', async () => {
    fake.reset();
    fake.script(['Spec v1', 'Code, first try.', 'Code, second try.']);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const first = await send(socket, 'chat:send', { clientMessageId: 't-1', team: 'spec-dev', message: 'Design a login.' });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'PENDING_CONFIRMATION'));
    const confirm = await send(socket, 'chat:send', { clientMessageId: 't-2', taskId: first.taskId, action: 'pipeline:confirm', message: 'Spec v2 (edited)' });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED' && p.runSeq === 1));

    const retry = await send(socket, 'chat:retry', { clientMessageId: 't-3', taskId: first.taskId, subtaskId: confirm.subtaskId });
    expect(retry).toMatchObject({ ok: true, runSeq: 2 });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED' && p.runSeq === 2));
    expect(seen.filter(([n, p]) => n === 'chat:start' && p.runSeq === 2).map(([, p]) => p.memberName)).toEqual(['Developer']);
    expect(fake.requests).toHaveLength(3);
    expect(fake.requests[2]!.body.messages).toEqual(fake.requests[1]!.body.messages);
    expect(fake.requests[2]!.body.messages.at(-1)).toEqual({ role: 'user', content: 'Original request:\nDesign a login.\n\nOutput of the previous step (Analyst):\nSpec v2 (edited)' });
  });
});

const threeStages = `kind: Ghost
metadata: {name: tester}
spec: {systemPrompt: You test code., tools: []}
---
kind: Bot
metadata: {name: tester, displayName: Tester}
spec: {ghostRef: {name: tester}, shellRef: {name: Chat}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: spec-dev-test}
spec:
  collaborationModel: pipeline
  members:
    - {role: leader, botRef: {name: analyst}}
    - {botRef: {name: developer}, requireConfirmation: true}
    - {botRef: {name: tester}}
`;

describe('pipeline stage and progress in the task status', () => {
  beforeAll(async () => {
    const res = await server.request('POST', '/api/v1/apply', { token: alice.token, raw: threeStages, headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(200);
  });

  const taskStatus = async (taskId: string) => (await server.request('GET', `/api/v1/tasks/${taskId}`, { token: alice.token })).body.status;
  /** A stage whose model answers only after a while, so the task can be read while the stage runs. */
  const slow = (text: string) => ({ steps: [{ delayHeadersMs: 800 }, { text }] });

  it('follows the stages of a 3-stage pipeline: currentStage is the running stage, progress the finished stages ÷ 3', async () => {
    fake.reset();
    fake.script([slow('Spec'), slow('Code'), slow('Tests pass.'), slow('Tests pass again.')]);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const first = await send(socket, 'chat:send', { clientMessageId: 'g-1', team: 'spec-dev-test', message: 'Build a login.' });
    const taskId = first.taskId;
    const startOf = (memberIndex: number, runSeq = 1) => until(() => seen.find(([n, p]) => n === 'chat:start' && p.memberIndex === memberIndex && p.runSeq === runSeq));

    await startOf(0);
    expect(await taskStatus(taskId)).toMatchObject({ status: 'RUNNING', currentStage: 0, progress: 0 });
    await startOf(1);
    expect(await taskStatus(taskId)).toMatchObject({ status: 'RUNNING', currentStage: 1, progress: 33 });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'PENDING_CONFIRMATION'));
    expect(await taskStatus(taskId)).toMatchObject({ status: 'PENDING_CONFIRMATION', currentStage: 1, progress: 66, pendingConfirmation: { stage: 1, memberName: 'Developer' } });

    await send(socket, 'chat:send', { clientMessageId: 'g-2', taskId, action: 'pipeline:confirm' });
    await startOf(2);
    expect(await taskStatus(taskId)).toMatchObject({ status: 'RUNNING', currentStage: 2, progress: 66 });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED'));
    expect(await taskStatus(taskId)).toMatchObject({ status: 'COMPLETED', currentStage: 2, progress: 100 });

    const events = seen.filter(([n]) => n === 'task:status').map(([, p]) => p);
    expect(events.map((p) => [p.status, p.currentStage ?? null])).toEqual([
      ['PENDING', null],
      ['RUNNING', null],
      ['RUNNING', 0],
      ['RUNNING', 1],
      ['PENDING_CONFIRMATION', 1],
      ['PENDING', 1],
      ['RUNNING', null],
      ['RUNNING', 2],
      ['COMPLETED', 2],
    ]);
    // A stage start is a status change like any other: the version goes up by one each time.
    expect(events.map((p) => p.statusVersion)).toEqual(events.map((_, i) => events[0].statusVersion + i));
    for (const p of events.filter((p) => p.currentStage !== undefined && p.status === 'RUNNING')) expect(p).toMatchObject({ taskId, runId: first.runId, runSeq: 1, previousStatus: 'RUNNING', updatedAt: expect.any(String) });
    // Each stage start comes before the stage's own chat:start.
    const order = seen.filter(([n, p]) => (n === 'task:status' && p.currentStage !== undefined && p.status === 'RUNNING') || n === 'chat:start').map(([n, p]) => `${n}:${p.currentStage ?? p.memberIndex}`);
    expect(order).toEqual(['task:status:0', 'chat:start:0', 'task:status:1', 'chat:start:1', 'task:status:2', 'chat:start:2']);

    // A follow-up runs the last stage only: the stages before it count as finished.
    const follow = await send(socket, 'chat:send', { clientMessageId: 'g-3', taskId, message: 'Test the logout too.' });
    expect(follow).toMatchObject({ ok: true, runSeq: 2 });
    await startOf(2, 2);
    expect(await taskStatus(taskId)).toMatchObject({ status: 'RUNNING', runSeq: 2, currentStage: 2, progress: 66 });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED' && p.runSeq === 2));
    expect(await taskStatus(taskId)).toMatchObject({ status: 'COMPLETED', currentStage: 2, progress: 100 });
  });

  it('keeps the failed stage and the stages finished before it when a stage fails', async () => {
    fake.reset();
    fake.script(['Spec', { steps: [{ error: { status: 401 } }] }]);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const first = await send(socket, 'chat:send', { clientMessageId: 'g-4', team: 'spec-dev-test', message: 'Build a signup.' });
    const failed = await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'FAILED'));
    expect(failed[1]).toMatchObject({ currentStage: 1, statusReason: 'MODEL_AUTH_FAILED' });
    expect(await taskStatus(first.taskId)).toMatchObject({ status: 'FAILED', currentStage: 1, progress: 33 });
    expect(seen.filter(([n]) => n === 'chat:start')).toHaveLength(2);
  });
});
