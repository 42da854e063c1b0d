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
metadata: {name: lead}
spec: {systemPrompt: You lead., tools: []}
---
kind: Ghost
metadata: {name: writer}
spec: {systemPrompt: You write., description: Writes prose., tools: []}
---
kind: Bot
metadata: {name: lead, displayName: Lead}
spec: {ghostRef: {name: lead}, shellRef: {name: Chat}, modelRef: {name: fake}}
---
kind: Bot
metadata: {name: writer, displayName: Writer}
spec: {ghostRef: {name: writer}, shellRef: {name: Chat}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: router, displayName: Router Team}
spec:
  collaborationModel: route
  members:
    - {role: leader, botRef: {name: lead}}
    - {botRef: {name: writer}}
---
kind: Team
metadata: {name: coordinator}
spec:
  collaborationModel: coordinate
  members:
    - {role: leader, botRef: {name: lead}}
    - {botRef: {name: writer}}
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

describe('collaboration modes through the server', () => {
  it('stores the route decision as a hidden turn with its block and the routed answer under the member’s name', async () => {
    fake.reset();
    fake.script(['The writer, surely.', '{"member":"Writer","reason":"prose"}', 'A poem.']);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'route-1', team: 'router', message: 'Write a poem.' });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED'));

    expect(fake.requests[0]!.body.messages[0].content).toContain('You route requests for the team "Router Team".');
    expect(fake.requests[0]!.body.response_format).toBeUndefined();
    const starts = seen.filter(([n]) => n === 'chat:start').map(([, p]) => [p.subtaskId === ack.subtaskId, p.memberName, p.purpose, p.visible]);
    expect(starts).toEqual([
      [true, 'Lead', 'route', false],
      [false, 'Writer', 'answer', true],
    ]);
    expect(seen.find(([n]) => n === 'chat:block_created')![1].block).toMatchObject({ type: 'route', route: { chosenMemberIndex: 1, chosenBot: { name: 'writer' }, reason: 'prose', fallback: false } });

    const visible = await send(socket, 'history:sync', { taskId: ack.taskId });
    expect(visible.messages.map((m: any) => [m.role, m.content, m.sender.memberName ?? null])).toEqual([
      ['user', 'Write a poem.', null],
      ['assistant', 'A poem.', 'Writer'],
    ]);
    const all = await send(socket, 'history:sync', { taskId: ack.taskId, includeHidden: true });
    const route = all.messages.find((m: any) => m.purpose === 'route');
    expect(route).toMatchObject({ id: ack.subtaskId, visible: false, content: '', status: 'COMPLETED', sender: { memberName: 'Lead' } });
    expect(route.blocks).toEqual([expect.objectContaining({ type: 'route', route: expect.objectContaining({ chosenMemberIndex: 1 }) })]);
  });

  it('runs a coordinate plan, the member’s sub-request and the leader’s aggregate as separate messages', async () => {
    fake.reset();
    fake.script([
      { match: { lastUserText: 'Draft it.' }, steps: [{ text: 'Invalid, not JSON' }] },
      { match: { lastUserText: 'Your previous answer' }, steps: [{ text: '{"subRequests":[{"member":"Writer","request":"Draft the text."}]}' }] },
      { match: { lastUserText: 'Your task:' }, steps: [{ text: 'Draft text.' }] },
      { match: { lastUserText: 'Results from your team:' }, steps: [{ text: 'Final text.' }] },
    ]);
    const socket = await connected(alice.token);
    const seen = record(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId: 'coord-1', team: 'coordinator', message: 'Draft it.' });
    await until(() => seen.find(([n, p]) => n === 'task:status' && p.status === 'COMPLETED'));

    const all = await send(socket, 'history:sync', { taskId: ack.taskId, includeHidden: true });
    expect(all.messages.map((m: any) => [m.role, m.purpose, m.visible, m.content, m.sender.memberName ?? null])).toEqual([
      ['user', null, true, 'Draft it.', null],
      ['assistant', 'plan', false, '', 'Lead'],
      ['assistant', 'subrequest', true, 'Draft text.', 'Writer'],
      ['assistant', 'aggregate', true, 'Final text.', 'Lead'],
    ]);
    expect(all.messages[1].blocks[0]).toMatchObject({ type: 'plan', plan: { subRequests: [{ memberIndex: 1, bot: { name: 'writer' }, request: 'Draft the text.' }], fallback: false } });
    expect(fake.requests.at(-1)!.body.messages.at(-1)).toEqual({ role: 'user', content: 'Results from your team:\n\n### Writer — Draft the text.\nDraft text.' });
  });
});
