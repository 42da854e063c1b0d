import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../testing/server.js';
import { connected as connectTo, disconnectAll, openChat, send, seenBy as record } from '../testing/chat-client.js';
import { until } from '../testing/wait.js';
import { fakeTeamManifest } from '../testing/fake-team.js';

let server: TestServer;
let fake: FakeModelServer;
let alice: { id: string; token: string };
let bob: { id: string; token: string };
const open = (token: string | undefined, extra: Record<string, unknown> = {}) => openChat(server, token, extra);
const connected = (token: string) => connectTo(server, token);


beforeAll(async () => {
  fake = await startFakeModelServer();
  server = await startTestServer({ privateHostsAllow: ['127.0.0.1'] });
  alice = await server.createUser('alice');
  bob = await server.createUser('bob');
  const manifest = fakeTeamManifest(fake.openaiBaseUrl);
  const res = await server.request('POST', '/api/v1/apply', { token: alice.token, raw: manifest, headers: { 'content-type': 'application/yaml' } });
  expect(res.status, res.text).toBe(200);
});
afterAll(async () => {
  disconnectAll();
  await server?.stop();
  await fake?.close();
});

describe('Socket.IO /chat', () => {
  it('refuses a connection without a credential, with a bad one, and with a token in the query string', async () => {
    for (const [opts, code] of [
      [{ token: undefined }, 'MISSING_TOKEN'],
      [{ token: 'garbage' }, 'INVALID_TOKEN'],
      [{ token: undefined, query: { token: alice.token } }, 'INVALID_TOKEN'],
    ] as const) {
      const socket = open(opts.token, 'query' in opts ? { query: opts.query } : {});
      const err = await new Promise<any>((resolve) => socket.once('connect_error', resolve));
      expect(err.message).toBe('unauthorized');
      expect(err.data.code).toBe(code);
    }
  });

  it('refuses a connection over the per-user limit with TOO_MANY_CONNECTIONS', async () => {
    const small = await startTestServer({ socketMaxPerUser: 1 });
    try {
      const u = await small.createUser('dora');
      const first = openChat(small, u.token);
      await new Promise<void>((resolve) => first.once('connect', () => resolve()));
      const second = openChat(small, u.token);
      const err = await new Promise<any>((resolve) => second.once('connect_error', resolve));
      expect(err.data.code).toBe('TOO_MANY_CONNECTIONS');
      first.disconnect();
      second.disconnect();
    } finally {
      await small.stop();
    }
  });

  it('streams a turn as chat:start, contiguous chunks and chat:done carrying the full text', async () => {
    fake.script([{ steps: [{ text: 'Hel' }, { text: 'lo, ' }, { text: 'wörld 😀' }, { usage: { inputTokens: 10, outputTokens: 4 } }] }]);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'm1', team: 't', message: 'Hi' });
    expect(ack).toMatchObject({ ok: true, runSeq: 1, status: 'PENDING', created: true, duplicate: false });
    const done = await until(() => seen.find(([n, p]) => n === 'chat:done' && p.subtaskId === ack.subtaskId));
    expect(done[1].result.value).toBe('Hello, wörld 😀');
    const turnEvents = seen.filter(([, p]) => p.subtaskId === ack.subtaskId);
    expect(turnEvents[0]![0]).toBe('chat:start');
    expect(turnEvents.map(([, p]) => p.seq)).toEqual(turnEvents.map((_, i) => i + 1));
    let offset = 0;
    for (const [name, p] of turnEvents) {
      if (name !== 'chat:chunk') continue;
      expect(p.offset).toBe(offset);
      offset += p.text.length;
    }
    expect(offset).toBe('Hello, wörld 😀'.length);
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED'));
    expect(seen.filter(([n]) => n === 'task:status').map(([, p]) => p.status)).toEqual(['PENDING', 'RUNNING', 'COMPLETED']);
    expect(fake.requests.at(-1)!.body.messages.at(-1)).toMatchObject({ role: 'user' });
  });

  it('shows tool calls as blocks and stores the usage of the turn per model', async () => {
    fake.script([
      { steps: [{ toolCall: { id: 'call_1', name: 'calculator', arguments: { expression: '6*7' } } }, { usage: { inputTokens: 20, outputTokens: 5 } }] },
      { steps: [{ text: 'It is 42.' }, { usage: { inputTokens: 30, outputTokens: 4 } }] },
    ]);
    await server.request('POST', '/api/v1/apply', { token: alice.token, raw: `kind: Ghost\nmetadata: {name: calc}\nspec: {systemPrompt: Use tools., tools: [calculator]}\n---\nkind: Bot\nmetadata: {name: calc}\nspec: {ghostRef: {name: calc}, shellRef: {name: Chat}, modelRef: {name: fake}}\n---\nkind: Team\nmetadata: {name: calc}\nspec: {members: [{botRef: {name: calc}}]}\n`, headers: { 'content-type': 'application/yaml' } });
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'tool-1', team: 'calc', message: 'what is 6*7?' });
    const done = await until(() => seen.find(([n, p]) => n === 'chat:done' && p.subtaskId === ack.subtaskId));
    const created = seen.find(([n]) => n === 'chat:block_created')!;
    expect(created[1].block).toMatchObject({ type: 'tool_call', toolName: 'calculator', toolSource: 'builtin', status: 'running', toolCallId: 'call_1', toolInput: { expression: '6*7' } });
    const updated = seen.find(([n, p]) => n === 'chat:block_updated' && p.status !== undefined)!;
    expect(updated[1]).toMatchObject({ blockId: created[1].block.id, status: 'completed', isError: false });
    expect(updated[1].toolOutput).toContain('42');
    expect(done[1].result.value).toBe('It is 42.');
    const stored = await server.request('GET', `/api/v1/tasks/${ack.taskId}/messages/${ack.subtaskId}`, { token: alice.token });
    expect(stored.body.blocks[0]).toMatchObject({ type: 'tool_call', status: 'completed' });
    expect(stored.body.usage).toEqual([expect.objectContaining({ model: expect.objectContaining({ name: 'fake', protocol: 'openai-compatible', modelId: 'fake-model' }), inputTokens: 50, outputTokens: 9, calls: 2 })]);
    const task = await server.request('GET', `/api/v1/tasks/${ack.taskId}`, { token: alice.token });
    expect(task.body.status.usage).toMatchObject({ inputTokens: 50, outputTokens: 9, totalTokens: 59 });
  });

  it('answers a repeated chat:send with the first ack and creates nothing new', async () => {
    fake.script([{ steps: [{ text: 'once' }] }]);
    const socket = await connected(alice.token);
    const first = await send(socket, 'chat:send', { clientMessageId: 'idem-1', team: 't', message: 'x' });
    const again = await send(socket, 'chat:send', { clientMessageId: 'idem-1', team: 't', message: 'x' });
    expect(again).toMatchObject({ ok: true, taskId: first.taskId, subtaskId: first.subtaskId, duplicate: true });
    const conflict = await send(socket, 'chat:send', { clientMessageId: 'idem-1', team: 't', message: 'other' });
    expect(conflict).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });
  });

  it('never lets a user join another user’s task room or receive its events', async () => {
    fake.script([{ steps: [{ text: 'secret answer', delayMs: 50 }] }]);
    const a = await connected(alice.token);
    const b = await connected(bob.token);
    const bobSeen = record(b);
    const ack = await send(a, 'chat:send', { clientMessageId: 'priv-1', team: 't', message: 'private question' });
    expect(await send(b, 'task:join', { taskId: ack.taskId })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(await send(b, 'chat:resume', { taskId: ack.taskId, subtaskId: ack.subtaskId, offset: 0 })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(await send(b, 'history:sync', { taskId: ack.taskId })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(await send(b, 'chat:cancel', { taskId: ack.taskId })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    // Wait for the run to finish, then check that nothing of it reached Bob.
    for (let i = 0; i < 200; i++) {
      const t = await server.request('GET', `/api/v1/tasks/${ack.taskId}`, { token: alice.token });
      if (t.body.status.status === 'COMPLETED') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(JSON.stringify(bobSeen)).not.toContain(ack.taskId);
    expect(JSON.stringify(bobSeen)).not.toContain('secret answer');
  });

  it('answers an unknown event with UNKNOWN_EVENT and a bad payload with VALIDATION_FAILED', async () => {
    const socket = await connected(alice.token);
    expect(await send(socket, 'chat:frobnicate', {})).toMatchObject({ ok: false, error: { code: 'UNKNOWN_EVENT' } });
    expect(await send(socket, 'chat:send', { message: 'no id' })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
    expect(await send(socket, 'chat:send', { clientMessageId: 'long-1', team: 't', message: 'x'.repeat(100_001) })).toMatchObject({ ok: false, error: { code: 'PAYLOAD_TOO_LARGE' } });
    expect(await send(socket, 'chat:send', { clientMessageId: 'nf-1', team: 'nope', message: 'x' })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED', details: { causes: [{ field: 'team', reason: 'FieldValueNotFound' }] } } });
  });

  it('resumes exactly after a disconnect at a random point: the final text matches byte for byte', async () => {
    const pieces = Array.from({ length: 60 }, (_, i) => ['α', 'β', '漢字', '😀', 'ok ', 'é', '🚀x'][i % 7]! + String(i));
    const expected = pieces.join('');
    fake.script([{ steps: pieces.map((text) => ({ text, delayMs: 15 })) }]);
    let socket = await connected(alice.token);
    let seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'resume-1', team: 't', message: 'stream please' });
    const cutAfter = 3 + Math.floor(Math.random() * 40);
    let buffer = '';
    const apply = (p: { offset: number; text: string }) => {
      if (p.offset > buffer.length) return false;
      if (p.offset + p.text.length <= buffer.length) return true;
      buffer += p.text.slice(buffer.length - p.offset);
      return true;
    };
    await until(() => seen.filter(([n]) => n === 'chat:chunk').length >= cutAfter);
    for (const [n, p] of seen) if (n === 'chat:chunk' && p.kind === 'text') expect(apply(p)).toBe(true);
    socket.disconnect();
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    socket = await connected(alice.token);
    seen = record(socket);
    const join = await send(socket, 'task:join', { taskId: ack.taskId });
    expect(join.ok).toBe(true);
    const resume = await send(socket, 'chat:resume', { taskId: ack.taskId, subtaskId: ack.subtaskId, offset: buffer.length });
    expect(resume.ok).toBe(true);
    if (resume.reset) buffer = '';
    buffer += resume.text;
    let final: string | undefined = resume.terminal?.result?.value;
    if (!final) {
      const done = await until(() => seen.find(([n, p]) => n === 'chat:done' && p.subtaskId === ack.subtaskId));
      // §7.3: chunks held while the resume was pending are applied after its ack, by offset.
      for (const [n, p] of seen) if (n === 'chat:chunk' && p.kind === 'text' && p.subtaskId === ack.subtaskId) expect(apply(p), `chunk at ${p.offset} with ${buffer.length} held`).toBe(true);
      final = done[1].result.value;
    }
    expect(buffer).toBe(expected);
    expect(Buffer.from(buffer, 'utf8').equals(Buffer.from(final!, 'utf8'))).toBe(true);
  });

  it('keeps running when every client has left', async () => {
    fake.script([{ steps: [{ text: 'still ', delayMs: 100 }, { text: 'here', delayMs: 100 }] }]);
    const socket = await connected(alice.token);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'leave-1', team: 't', message: 'go on' });
    socket.disconnect();
    for (let i = 0; i < 100; i++) {
      const t = await server.request('GET', `/api/v1/tasks/${ack.taskId}`, { token: alice.token });
      if (t.body.status.status === 'COMPLETED') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const m = await server.request('GET', `/api/v1/tasks/${ack.taskId}/messages/${ack.subtaskId}`, { token: alice.token });
    expect(m.body).toMatchObject({ status: 'COMPLETED', content: 'still here' });
  });

  it('cancels a running turn: the model connection closes within a second and the partial text is kept', async () => {
    fake.script([{ steps: [{ text: 'Once upon a ti', delayMs: 10 }, { hang: true }] }]);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'cancel-1', team: 't', message: 'tell a story' });
    await until(() => seen.find(([n]) => n === 'chat:chunk'));
    const started = Date.now();
    const cancel = await send(socket, 'chat:cancel', { taskId: ack.taskId });
    expect(cancel).toMatchObject({ ok: true, status: 'CANCELLING', changed: true });
    const cancelled = await until(() => seen.find(([n, p]) => n === 'chat:cancelled' && p.subtaskId === ack.subtaskId));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(cancelled[1]).toMatchObject({ status: 'CANCELLED', reason: 'USER_CANCELLED', partialText: 'Once upon a ti' });
    await until(() => fake.requests.at(-1)!.closedEarly);
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'CANCELLED'));
    const m = await server.request('GET', `/api/v1/tasks/${ack.taskId}/messages/${ack.subtaskId}`, { token: alice.token });
    expect(m.body).toMatchObject({ status: 'CANCELLED', content: 'Once upon a ti', statusReason: 'USER_CANCELLED' });
  });

  it('retries the latest answer as a new run with the same input and supersedes the old one', async () => {
    fake.script([{ steps: [{ text: 'first try' }] }, { steps: [{ text: 'second try' }] }, { steps: [{ text: 'follow-up answer' }] }]);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'retry-1', team: 't', message: 'original question' });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.runSeq === 1 && p.status === 'COMPLETED'));
    const retry = await send(socket, 'chat:retry', { taskId: ack.taskId, subtaskId: ack.subtaskId, clientMessageId: 'retry-2' });
    expect(retry).toMatchObject({ ok: true, runSeq: 2, status: 'PENDING' });
    expect(retry.messageId).toBeUndefined();
    const done = await until(() => seen.find(([n, p]) => n === 'chat:done' && p.subtaskId === retry.subtaskId));
    expect(done[1].result.value).toBe('second try');
    const retried = fake.requests.at(-1)!.body.messages;
    expect(retried.at(-1)).toEqual({ role: 'user', content: 'original question' });
    expect(JSON.stringify(retried)).not.toContain('first try');
    expect(retried.filter((m: any) => m.content === 'original question')).toHaveLength(1);
    expect(await send(socket, 'chat:retry', { taskId: ack.taskId, subtaskId: ack.subtaskId, clientMessageId: 'retry-3' })).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });
    const history = await server.request('GET', `/api/v1/tasks/${ack.taskId}/messages`, { token: alice.token });
    expect(history.body.items.map((m: any) => [m.runSeq, m.role, m.content, m.supersededByRunSeq])).toEqual([
      [1, 'user', 'original question', null],
      [1, 'assistant', 'first try', 2],
      [2, 'assistant', 'second try', null],
    ]);
    // A later message sees the retried run's input and answer, not the superseded one.
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.runSeq === 2 && p.status === 'COMPLETED'));
    await send(socket, 'chat:send', { clientMessageId: 'retry-4', taskId: ack.taskId, message: 'and then?' });
    await until(() => fake.requests.length && fake.requests.at(-1)!.lastUserText === 'and then?');
    const followUp = JSON.stringify(fake.requests.at(-1)!.body.messages);
    expect(followUp).toContain('original question');
    expect(followUp).toContain('second try');
    expect(followUp).not.toContain('first try');
  });

  it('tells a socket whose token expired, and keeps it after auth:refresh with a new token of the same user', async () => {
    const short = await startTestServer({ jwtExpiresInSeconds: 2 });
    try {
      const u = await short.createUser('carol');
      const socket = openChat(short, u.token);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      const expired = await new Promise<any>((resolve) => socket.once('auth:error', resolve));
      expect(expired.code).toBe('TOKEN_EXPIRED');
      const fresh = await short.login('carol', u.password);
      const other = short.adminToken;
      expect(await send(socket, 'auth:refresh', { token: other })).toMatchObject({ ok: false, error: { code: 'UNAUTHENTICATED' } });
      expect(await send(socket, 'auth:refresh', { token: fresh })).toMatchObject({ ok: true });
      expect(socket.connected).toBe(true);
      expect(await send(socket, 'history:sync', { taskId: '01a22bae-0000-7000-8000-000000000000' })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    } finally {
      await short.stop();
    }
  });

  it('fails a run that cannot start (an unsupported shell) with a terminal event for its turn', async () => {
    await server.request('POST', '/api/v1/apply', { token: alice.token, raw: 'kind: Shell\nmetadata: {name: agno}\nspec: {runtime: Agno}\n---\nkind: Bot\nmetadata: {name: agno-bot}\nspec: {ghostRef: {name: g}, shellRef: {name: agno}}\n---\nkind: Team\nmetadata: {name: agno-team}\nspec: {members: [{botRef: {name: agno-bot}}]}\n', headers: { 'content-type': 'application/yaml' } });
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'agno-1', team: 'agno-team', message: 'x' });
    const error = await until(() => seen.find(([n, p]) => n === 'chat:error' && p.subtaskId === ack.subtaskId));
    expect(error[1]).toMatchObject({ status: 'FAILED', code: 'SHELL_NOT_SUPPORTED', retryable: false, seq: 1 });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'FAILED' && p.statusReason === 'SHELL_NOT_SUPPORTED'));
    const turn = await server.request('GET', `/api/v1/tasks/${ack.taskId}/messages/${ack.subtaskId}`, { token: alice.token });
    expect(turn.body).toMatchObject({ status: 'FAILED', statusReason: 'SHELL_NOT_SUPPORTED' });
  });

  it('cancels a running turn through POST /tasks/{id}/cancel as well', async () => {
    fake.script([{ steps: [{ text: 'Half an ans', delayMs: 10 }, { hang: true }] }]);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'rest-cancel-1', team: 't', message: 'long one' });
    await until(() => seen.find(([n, p]) => n === 'chat:chunk' && p.subtaskId === ack.subtaskId));
    const started = Date.now();
    const res = await server.request('POST', `/api/v1/tasks/${ack.taskId}/cancel`, { token: alice.token });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ taskId: ack.taskId, status: 'CANCELLING', changed: true });
    const closed = await fake.waitForClose((r) => r.lastUserText === 'long one');
    expect(closed.closedEarly).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
    const cancelled = await until(() => seen.find(([n, p]) => n === 'chat:cancelled' && p.subtaskId === ack.subtaskId));
    expect(cancelled[1].partialText).toBe('Half an ans');
  });

  it('turns a provider error into a clear chat:error, never a hang', async () => {
    fake.script([{ steps: [{ error: { status: 401, message: 'bad key' } }] }]);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'err-1', team: 't', message: 'x' });
    const error = await until(() => seen.find(([n, p]) => n === 'chat:error' && p.subtaskId === ack.subtaskId));
    expect(error[1]).toMatchObject({ status: 'FAILED', code: 'MODEL_AUTH_FAILED' });
    const status = await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'FAILED'));
    expect(status[1].statusReason).toBe('MODEL_AUTH_FAILED');
  });
});
