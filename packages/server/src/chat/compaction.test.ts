import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer, type FakeRecordedRequest } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../testing/server.js';
import { connected as connectTo, disconnectAll, send } from '../testing/chat-client.js';
import { until } from '../testing/wait.js';

let server: TestServer;
let fake: FakeModelServer;
let alice: { id: string; token: string };
const connected = (token: string) => connectTo(server, token);

// The spec's template (runtime.md §10.4), written out so that the test pins it.
const SUMMARY_SYSTEM =
  "Summarise the conversation so far for your own later use. Keep facts, decisions, open questions, the user's preferences, names of files and the results of tool calls. Be brief.";
const isSummaryCall = (r: FakeRecordedRequest) => r.systemText === SUMMARY_SYSTEM;
const question = (i: number) => `Question ${i}: ${'q'.repeat(290)}`;
const ANSWER = `Answer: ${'a'.repeat(292)}`;

// contextWindow 2,000 → budget 1,000 tokens, compaction past 900 (runtime.md §10.3, §10.4); no tools.
const manifest = (baseUrl: string) => `kind: Model
metadata: {name: small}
spec: {protocol: openai-compatible, modelId: small-model, baseUrl: "${baseUrl}", apiKey: sk-test-0123456789, contextWindow: 2000}
---
kind: Ghost
metadata: {name: plain}
spec: {systemPrompt: You answer., tools: []}
---
kind: Bot
metadata: {name: plain}
spec: {ghostRef: {name: plain}, shellRef: {name: Chat}, modelRef: {name: small}}
---
kind: Team
metadata: {name: solo-small}
spec:
  collaborationModel: solo
  members:
    - {role: leader, botRef: {name: plain}}
`;

beforeAll(async () => {
  fake = await startFakeModelServer();
});
afterAll(async () => {
  await fake?.close();
});

/** Checkpoints travel from a run thread to the recorder (run-threads.ts) or straight to it (no threads). */
const setups = [
  { how: 'with the runtime in a run thread', runtimeThreads: 1 },
  { how: 'with the runtime on the main thread', runtimeThreads: 0 },
];

describe.each(setups)('context governance through the server $how (runtime.md §10.4, chat-protocol.md chat:context)', ({ runtimeThreads }) => {
  beforeAll(async () => {
    server = await startTestServer({ privateHostsAllow: ['127.0.0.1'], runtimeThreads });
    alice = await server.createUser('alice');
    const res = await server.request('POST', '/api/v1/apply', { token: alice.token, raw: manifest(fake.openaiBaseUrl), headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(200);
  });
  afterAll(async () => {
    disconnectAll();
    await server?.stop();
  });

  it('stores the compaction checkpoint, streams the compacted context figure and reloads later history from the checkpoint', async () => {
    fake.reset();
    fake.script([
      { match: { when: isSummaryCall }, steps: [{ text: 'Questions 1 and 2 were answered.' }] },
      { match: { when: (r: FakeRecordedRequest) => !isSummaryCall(r) }, steps: [{ text: ANSWER }], times: Infinity },
    ]);
    const socket = await connected(alice.token);
    const seen: Array<[string, any]> = [];
    socket.onAny((name, payload) => seen.push([name, payload]));
    let taskId: string | undefined;
    const completed = () => seen.filter(([n, p]) => n === 'task:status' && p.status === 'COMPLETED' && p.taskId === taskId).length;

    // Send questions until a run compacts (the prompt grows by about 208 estimated tokens per exchange).
    let compactedAt = 0;
    for (let i = 1; i <= 8 && compactedAt === 0; i++) {
      const ack = await send(socket, 'chat:send', { clientMessageId: `cmp-${i}`, ...(taskId ? { taskId } : { team: 'solo-small' }), message: question(i) });
      expect(ack.ok, JSON.stringify(ack)).not.toBe(false);
      taskId ??= ack.taskId;
      await until(() => completed() === i, 10_000, `run ${i}`);
      if (fake.requests.some(isSummaryCall)) compactedAt = i;
    }
    expect(compactedAt).toBeGreaterThan(2);

    // The context figure of the compacting run: compacted, with the ratio usedTokens ÷ budgetTokens.
    const context = seen.filter(([n, p]) => n === 'chat:context' && p.compacted === true).map(([, p]) => p);
    expect(context).toHaveLength(1);
    expect(context[0]).toMatchObject({ taskId, budgetTokens: 1000, contextWindow: 2000, compacted: true });
    expect(context[0].ratio).toBeCloseTo(context[0].usedTokens / 1000, 10);
    const block = seen.find(([n, p]) => n === 'chat:block_created' && p.block.type === 'compaction')![1].block;
    expect(block).toMatchObject({ type: 'compaction', status: 'completed', compaction: { summarizedMessages: expect.any(Number) } });

    // The checkpoint: a hidden system message with purpose compaction, shown only with includeHidden.
    const visible = await send(socket, 'history:sync', { taskId });
    expect(visible.messages.some((m: any) => m.purpose === 'compaction')).toBe(false);
    const all = await send(socket, 'history:sync', { taskId, includeHidden: true, limit: 200 });
    const checkpoints = all.messages.filter((m: any) => m.purpose === 'compaction');
    expect(checkpoints).toHaveLength(1);
    expect(checkpoints[0]).toMatchObject({ role: 'system', visible: false, content: 'Questions 1 and 2 were answered.' });

    // The summarised messages are the oldest ones; the rest after them is the kept tail.
    const summaryInput: string = fake.requests.find(isSummaryCall)!.body.messages[1].content;
    const summarisedCount = block.compaction.summarizedMessages as number;
    const conversation = all.messages.filter((m: any) => m.purpose !== 'compaction');
    expect(summaryInput).toBe(conversation.slice(0, summarisedCount).map((m: any) => `${m.role === 'user' ? 'User' : 'Assistant'}: ${m.content}`).join('\n\n'));

    // The next turn's history reload starts from the checkpoint: summary, then the messages after it.
    const before = fake.requests.length;
    const ack = await send(socket, 'chat:send', { clientMessageId: 'cmp-next', taskId, message: 'And now?' });
    expect(ack.ok, JSON.stringify(ack)).not.toBe(false);
    await until(() => completed() === compactedAt + 1, 10_000, 'the run after compaction');
    const next = fake.requests.slice(before);
    expect(next).toHaveLength(1);
    expect(next[0]!.body.messages.slice(1)).toEqual([
      { role: 'user', content: 'Summary of the earlier conversation:\nQuestions 1 and 2 were answered.' },
      ...conversation.slice(summarisedCount).map((m: any) => ({ role: m.role, content: m.content })),
      { role: 'user', content: 'And now?' },
    ]);
  });
});
