import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as connect } from 'socket.io-client';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../testing/server.js';
import { until } from '../testing/wait.js';
import { fakeTeamManifest } from '../testing/fake-team.js';

let server: TestServer;
let fake: FakeModelServer;
let alice: { id: string; token: string };
let bob: { id: string; token: string };


beforeAll(async () => {
  fake = await startFakeModelServer();
  server = await startTestServer({ privateHostsAllow: ['127.0.0.1'], maxRunningPerUser: 2 });
  alice = await server.createUser('alice');
  bob = await server.createUser('bob');
  const manifest = fakeTeamManifest(fake.openaiBaseUrl);
  for (const u of [alice, bob]) await server.request('POST', '/api/v1/apply', { token: u.token, raw: manifest, headers: { 'content-type': 'application/yaml' } });
});
afterAll(async () => {
  await server?.stop();
  await fake?.close();
});

describe('limits', () => {
  it('runs at most the per-user cap at once and shows the rest as queued, in order', async () => {
    fake.script([{ match: { lastUserText: 'alice' }, steps: [{ text: 'working', delayMs: 5 }, { hang: true }], times: Infinity }]);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await server.request('POST', '/api/v1/tasks', { token: alice.token, body: { team: 't', message: `alice ${i}` } });
      ids.push(res.body.task.metadata.uid);
    }
    const statuses = async () => Promise.all(ids.map(async (id) => (await server.request('GET', `/api/v1/tasks/${id}/runtime`, { token: alice.token })).body));
    const settled = await until(async () => {
      const s = await statuses();
      return s.filter((r) => r.status === 'RUNNING').length === 2 ? s : undefined;
    });
    expect(settled.map((r) => r.status)).toEqual(['RUNNING', 'RUNNING', 'PENDING', 'PENDING']);
    expect(settled[2].queue).toEqual({ position: 1, reason: 'user_limit' });
    expect(settled[3].queue).toEqual({ position: 2, reason: 'user_limit' });
    // Another user is not held back by Alice's queue.
    fake.script([{ match: { lastUserText: 'bob' }, steps: [{ text: 'bob is served' }] }]);
    const b = await server.request('POST', '/api/v1/tasks', { token: bob.token, body: { team: 't', message: 'bob 0' } });
    await until(async () => (await server.request('GET', `/api/v1/tasks/${b.body.task.metadata.uid}`, { token: bob.token })).body.status.status === 'COMPLETED');
    // Freeing a slot admits the oldest waiting run.
    await server.request('POST', `/api/v1/tasks/${ids[0]}/cancel`, { token: alice.token });
    await until(async () => (await statuses())[2].status === 'RUNNING');
    expect((await statuses())[3]).toMatchObject({ status: 'PENDING', queue: { position: 1, reason: 'user_limit' } });
    for (const id of ids) await server.request('POST', `/api/v1/tasks/${id}/cancel`, { token: alice.token });
  });

  it('closes a socket that sends a packet over the 1 MiB payload limit', async () => {
    const socket = connect(`${server.url}/chat`, { path: '/socket.io', transports: ['websocket'], auth: { token: alice.token }, reconnection: false, forceNew: true });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const closed = new Promise<string>((resolve) => socket.once('disconnect', (reason) => resolve(reason)));
    socket.emit('chat:send', { clientMessageId: 'big', team: 't', message: 'x'.repeat(1024 * 1024 + 100) }, () => undefined);
    expect(await closed).toBe('transport close');
  });
});
