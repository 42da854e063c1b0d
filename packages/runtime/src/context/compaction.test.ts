import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ModelMessage } from 'ai';
import type { TurnEventInput } from '../run/event-sink.js';
import { executeRun } from '../run/execute-run.js';
import { member, modelConnection, RecordingHost, soloRequest } from '../run/test-fixtures.js';
import type { HistoryMessage, ModelConnection, RunRequest } from '../run/types.js';
import { startFakeModelServer, type FakeModelServer, type FakeRecordedRequest } from '../testing/index.js';
import { ContextGuard } from './compaction.js';
import { TokenEstimator } from './token-budget.js';
import { capToolOutput } from './tool-output-cap.js';

let fake: FakeModelServer;
beforeAll(async () => {
  fake = await startFakeModelServer();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());

// The spec's template, written out here so that a change in the runtime cannot pass unnoticed (runtime.md §10.4).
const SUMMARY_SYSTEM =
  "Summarise the conversation so far for your own later use. Keep facts, decisions, open questions, the user's preferences, names of files and the results of tool calls. Be brief.";
const isSummaryCall = (r: FakeRecordedRequest) => r.systemText === SUMMARY_SYSTEM;

/** window 2,000 → reserved min(max(16,000, 200), 1,000) = 1,000 → budget 1,000; trigger at 900 estimated tokens. */
function smallModel(overrides: Partial<ModelConnection> = {}): ModelConnection {
  return modelConnection({ protocol: 'openai', modelId: 'gpt-4o-mini', baseUrl: fake.openaiBaseUrl, contextWindow: 2000, ...overrides });
}

/** A member without tools, so that the prompt is the conversation and a short system prompt. */
const plainMember = (model: ModelConnection) =>
  member({ model, ghost: { uid: 'uid-helper-ghost', generation: 1, name: 'helper-ghost', namespace: 'default', scope: 'user', systemPrompt: 'You are a helpful assistant.', tools: [] } });

const question = (i: number) => `Question ${i}: ${'q'.repeat(290)}`;
const ANSWER = `Answer: ${'a'.repeat(292)}`; // 300 bytes = 100 tokens + 4

/**
 * A host that keeps checkpoints and a history selection like the server's (runtime.md §4.3): user
 * messages and answers with their seqs, reloaded from the latest checkpoint.
 */
class Conversation {
  stored: Array<{ seq: number; role: 'user' | 'assistant'; text: string }> = [];
  checkpoints: Array<{ summary: string; coversUpToSeq: number; turnId: string }> = [];
  seq = 0;

  history(): HistoryMessage[] {
    const latest = this.checkpoints.at(-1);
    const after = this.stored.filter((m) => !latest || m.seq > latest.coversUpToSeq);
    const messages: HistoryMessage[] = after.map((m) =>
      m.role === 'user' ? { role: 'user', text: m.text, seq: m.seq } : { role: 'assistant', text: m.text, seq: m.seq, purpose: 'answer', botUid: 'uid-helper-bot', memberIndex: 0 },
    );
    return latest ? [{ role: 'summary', text: latest.summary, coversUpToSeq: latest.coversUpToSeq }, ...messages] : messages;
  }

  async send(i: number, model: ModelConnection, overrides: Partial<RunRequest> = {}) {
    const host = new RecordingHost();
    const checkpoints = this.checkpoints;
    Object.assign(host, { saveCompaction: (summary: string, coversUpToSeq: number, turnId: string) => void checkpoints.push({ summary, coversUpToSeq, turnId }) });
    const from = fake.requests.length;
    const userSeq = ++this.seq;
    const outcome = await executeRun(soloRequest({ runSeq: i, members: [plainMember(model)], history: this.history(), input: { userMessage: question(i) }, ...overrides }), host, new AbortController().signal);
    this.stored.push({ seq: userSeq, role: 'user', text: question(i) });
    const done = host.of('turn.done')[0];
    if (done) this.stored.push({ seq: ++this.seq, role: 'assistant', text: done.text });
    return { host, outcome, requests: fake.requests.slice(from) };
  }
}

function scriptConversation(summaries: string[]) {
  fake.script([
    ...summaries.map((text) => ({ match: { when: isSummaryCall }, steps: [{ text }, { usage: { inputTokens: 700, outputTokens: 12 } }] })),
    { match: { when: (r: FakeRecordedRequest) => !isSummaryCall(r) }, steps: [{ text: ANSWER }], times: Infinity },
  ]);
}

describe('compaction of a long conversation (runtime.md §10.4)', () => {
  it('summarises the older part with the spec template once the prompt passes 90 % of the budget, then continues from the summary', async () => {
    scriptConversation(['The user asked numbered questions 1 to 3.', 'The user asked questions 1 to 6.']);
    const conversation = new Conversation();
    const model = smallModel();

    // Runs 1–4 fit: 4 earlier exchanges are 8 × 104 tokens.
    for (let i = 1; i <= 4; i++) {
      const { requests, host } = await conversation.send(i, model);
      expect(requests.filter(isSummaryCall)).toEqual([]);
      expect(host.of('context.updated').map((e) => e.compacted)).toEqual([false]);
    }

    // Run 5: about 990 estimated tokens > 900 → one summary call, then the answer call from the summary.
    const { host, outcome, requests } = await conversation.send(5, model);
    expect(outcome).toEqual({ status: 'completed' });
    expect(requests).toHaveLength(2);
    const [summaryCall, answerCall] = requests as [FakeRecordedRequest, FakeRecordedRequest];
    expect(isSummaryCall(summaryCall)).toBe(true);
    // The tail is the 2 latest earlier messages (208 ≤ 25 % of 1,000); the 6 before it are summarised.
    const summarised = [1, 2, 3].flatMap((i) => [`User: ${question(i)}`, `Assistant: ${ANSWER}`]).join('\n\n');
    expect(summaryCall.body.messages).toEqual([
      { role: 'system', content: SUMMARY_SYSTEM },
      { role: 'user', content: summarised },
    ]);
    expect(summaryCall.body.tools).toBeUndefined();
    expect(summaryCall.body.max_tokens).toBe(2000);
    expect(answerCall.body.messages.slice(1)).toEqual([
      { role: 'user', content: 'Summary of the earlier conversation:\nThe user asked numbered questions 1 to 3.' },
      { role: 'user', content: question(4) },
      { role: 'assistant', content: ANSWER },
      { role: 'user', content: question(5) },
    ]);

    const compaction = host.of('block.added').map((e) => e.block).find((b) => b.type === 'compaction');
    expect(compaction).toMatchObject({ type: 'compaction', status: 'completed', compaction: { summarizedMessages: 6 } });
    const { beforeTokens, afterTokens } = (compaction as { compaction: { beforeTokens: number; afterTokens: number } }).compaction;
    expect(beforeTokens).toBeGreaterThan(900);
    expect(afterTokens).toBeLessThanOrEqual(700);
    const meters = host.of('context.updated');
    expect(meters).toHaveLength(1);
    expect(meters[0]).toMatchObject({ compacted: true, usedTokens: afterTokens, budgetTokens: 1000, contextWindow: 2000 });
    expect(host.types().indexOf('block.added')).toBeLessThan(host.types().indexOf('context.updated'));
    // The checkpoint covers the stored messages up to the answer of run 3 (seq 6).
    expect(conversation.checkpoints).toEqual([{ summary: 'The user asked numbered questions 1 to 3.', coversUpToSeq: 6, turnId: 'turn-1' }]);
    // The summary call's usage counts on the turn (runtime.md §14).
    expect(host.of('usage').map((u) => u.inputTokens)).toContain(700);

    // Runs 6 and 7 reload history from the checkpoint and need no new summary.
    for (let i = 6; i <= 7; i++) {
      const next = await conversation.send(i, model);
      expect(next.requests).toHaveLength(1);
      expect(next.requests[0]!.body.messages[1]).toEqual({ role: 'user', content: 'Summary of the earlier conversation:\nThe user asked numbered questions 1 to 3.' });
      expect(next.requests[0]!.body.messages[2]).toEqual({ role: 'user', content: question(4) });
    }

    // Run 8 passes the trigger again: the previous checkpoint's summary leads the new summary's input.
    const again = await conversation.send(8, model);
    const secondSummary = again.requests.find(isSummaryCall)!;
    expect(secondSummary.body.messages[1].content).toBe(
      ['Summary of the earlier conversation:\nThe user asked numbered questions 1 to 3.', ...[4, 5, 6].flatMap((i) => [`User: ${question(i)}`, `Assistant: ${ANSWER}`])].join('\n\n'),
    );
    expect(conversation.checkpoints.at(-1)).toMatchObject({ summary: 'The user asked questions 1 to 6.', coversUpToSeq: 12 });
    expect(again.requests.at(-1)!.body.messages[1]).toEqual({ role: 'user', content: 'Summary of the earlier conversation:\nThe user asked questions 1 to 6.' });
  });

  it('falls back to leaving out the oldest messages, with a warning, when the summary call fails', async () => {
    fake.script([
      { match: { when: isSummaryCall }, steps: [{ error: { status: 400, message: 'bad request' } }] },
      { match: { when: (r: FakeRecordedRequest) => !isSummaryCall(r) }, steps: [{ text: 'ok' }], times: Infinity },
    ]);
    // 10 earlier messages (1,040 tokens) are over the whole budget: truncation has to drop the oldest.
    const history: HistoryMessage[] = Array.from({ length: 10 }, (_, k) => (k % 2 === 0 ? { role: 'user', text: question(k), seq: k + 1 } : { role: 'assistant', text: ANSWER, seq: k + 1, purpose: 'answer' }));
    const host = new RecordingHost();
    const outcome = await executeRun(soloRequest({ members: [plainMember(smallModel())], history, input: { userMessage: 'short question' } }), host, new AbortController().signal);
    expect(outcome).toEqual({ status: 'completed' });
    const warnings = host.of('block.added').map((e) => e.block).filter((b) => b.type === 'warning');
    expect(warnings.map((w) => (w as { message: string }).message)).toEqual([
      'The earlier conversation could not be summarised (MODEL_BAD_REQUEST); older messages may be left out.',
      "Part of the input was left out or shortened to fit the context of Model 'test-model'.",
    ]);
    const answer = fake.requests.find((r) => !isSummaryCall(r))!;
    expect(answer.body.messages.at(-1)).toEqual({ role: 'user', content: 'short question' });
    expect(answer.body.messages[1]).not.toEqual({ role: 'user', content: question(0) }); // the oldest left out
    expect(host.of('context.updated')[0]!.usedTokens).toBeLessThanOrEqual(1000);
    expect(host.of('context.updated')[0]!.compacted).toBe(false);
  });

  it('fails the turn with CONTEXT_TOO_LONG when the run’s own input does not fit', async () => {
    fake.script(['never asked']);
    const huge = 'z'.repeat(3300); // 1,100 tokens on its own
    const host = new RecordingHost();
    const outcome = await executeRun(soloRequest({ members: [plainMember(smallModel())], input: { userMessage: huge } }), host, new AbortController().signal);
    expect(outcome.status).toBe('failed');
    const failed = host.of('turn.failed')[0]!;
    expect(failed.code).toBe('CONTEXT_TOO_LONG');
    expect(failed.message).toMatch(/^the input is too long for Model 'test-model': about (\d+) tokens \(system prompt and tools (\d+), user message 1104, other input 0\), the limit is 1000$/);
    const [, n, s] = /about (\d+) tokens \(system prompt and tools (\d+)/.exec(failed.message)!;
    expect(Number(n)).toBe(Number(s) + 1104);
    expect(fake.requests).toHaveLength(0);
  });
});

describe('the context guard before each call (runtime.md §10.4 steps 2 and 7, §10.6)', () => {
  const events: TurnEventInput[] = [];
  const guard = (options: Partial<ConstructorParameters<typeof ContextGuard>[0]> = {}) =>
    new ContextGuard({
      system: 'sys',
      budget: 1000,
      window: 2000,
      estimator: new TokenEstimator(),
      modelName: 'm',
      summarise: async () => ({ ok: true, text: 'short summary' }),
      emit: async (e) => void events.push(e),
      now: () => new Date('2026-01-01T00:00:00Z'),
      ...options,
    });
  const round = (id: string, result: string): ModelMessage[] => [
    { role: 'assistant', content: [{ type: 'tool-call', toolCallId: id, toolName: 'calc', input: {} }] },
    { role: 'tool', content: [{ type: 'tool-result', toolCallId: id, toolName: 'calc', output: { type: 'text', value: result } }] },
  ];
  const resultOf = (m: ModelMessage) => ((m.content as Array<{ output: { value: string } }>)[0]!.output.value);
  beforeEach(() => void (events.length = 0));

  it('cuts this turn’s oldest tool results to 3,000 bytes first when they are what overflows, and keeps them cut', async () => {
    // 3,600 bytes of result (1,200 tokens) pass 90 % of a budget of 1,200 on their own; cut, they fit.
    const huge = 'h'.repeat(3600);
    const long: ModelMessage[] = [{ role: 'user', content: 'go' }, ...round('1', huge), ...round('2', 'small')];
    const g = guard({ budget: 1200 });
    const result = await g.beforeCall(long, [], [long]);
    expect(result.ok).toBe(true);
    expect(Buffer.byteLength(resultOf(long[2]!))).toBeLessThan(3100);
    expect(resultOf(long[2]!)).toBe(capToolOutput(huge, 3000));
    expect(result.ok && result.messages[2]).toBe(long[2]);
    expect(resultOf(long[4]!)).toBe('small');
    expect(events.filter((e) => e.type === 'block.added')).toEqual([]); // nothing summarised, nothing left out
  });

  it('drops this turn’s older tool rounds, never the latest, then cuts the latest round’s results, with one warning', async () => {
    const messages: ModelMessage[] = [{ role: 'user', content: 'go' }, ...round('1', 'a'.repeat(2400)), ...round('2', 'b'.repeat(2400)), ...round('3', 'c'.repeat(9000))];
    const result = await guard().beforeCall(messages, [], [messages]);
    if (!result.ok) throw new Error(result.error.message);
    expect(result.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    // Step 2 cut it to 3,000 bytes first (the older results are shorter than that); 7(c) then to 2,000.
    expect(resultOf(result.messages[2]!)).toBe(capToolOutput(capToolOutput('c'.repeat(9000), 3000), 2000));
    expect(result.usedTokens).toBeLessThanOrEqual(1000);
    const warnings = events.filter((e) => e.type === 'block.added').map((e) => (e as { block: { message: string } }).block.message);
    expect(warnings).toEqual(["Part of the input was left out or shortened to fit the context of Model 'm'."]);
  });

  it('after a provider overflow compacts again towards 50 % of the budget', async () => {
    const history: ModelMessage[] = Array.from({ length: 6 }, (_, k) => ({ role: k % 2 ? 'assistant' : 'user', content: 'x'.repeat(300) }) as ModelMessage);
    const messages: ModelMessage[] = [...history, { role: 'user', content: 'now' }];
    const summarised: string[] = [];
    const g = guard({ earlier: { count: 6, seqs: [1, 2, 3, 4, 5, 6] }, summarise: async (input) => (summarised.push(input), { ok: true, text: 'S' }) });
    const normal = await g.beforeCall([...messages], [], []);
    expect(normal.ok && normal.messages).toHaveLength(7); // 650 tokens: under the trigger
    const retried = await g.beforeCall(messages, [], [messages], { overflow: true });
    if (!retried.ok) throw new Error(retried.error.message);
    expect(summarised).toHaveLength(1);
    expect(retried.messages[0]).toEqual({ role: 'user', content: 'Summary of the earlier conversation:\nS' });
    expect(retried.usedTokens).toBeLessThanOrEqual(500);
    expect(events.at(-1)).toMatchObject({ type: 'context.updated', compacted: true });
  });
});

describe('a provider’s context overflow (runtime.md §10.6)', () => {
  it('retries the call once after compacting; a second overflow fails the turn with CONTEXT_TOO_LONG', async () => {
    const overflow = { steps: [{ error: { status: 400, code: 'context_length_exceeded' } }] };
    // 416 tokens of history, under the trigger; after the overflow the tail may take 25 % × 0.5 / 0.7 of the budget (178): one message.
    const history: HistoryMessage[] = [
      { role: 'user', text: question(1), seq: 1 },
      { role: 'assistant', text: ANSWER, seq: 2, purpose: 'answer' },
      { role: 'user', text: question(2), seq: 3 },
      { role: 'assistant', text: ANSWER, seq: 4, purpose: 'answer' },
    ];
    const saved: number[] = [];
    const host = Object.assign(new RecordingHost(), { saveCompaction: (_s: string, covers: number) => void saved.push(covers) });
    fake.script([overflow, { match: { when: isSummaryCall }, steps: [{ text: 'S' }] }, 'fine']);
    const outcome = await executeRun(soloRequest({ members: [plainMember(smallModel())], history, input: { userMessage: 'q' } }), host, new AbortController().signal);
    expect(outcome).toEqual({ status: 'completed' });
    expect(fake.requests.map((r) => (isSummaryCall(r) ? 'summary' : 'answer'))).toEqual(['answer', 'summary', 'answer']);
    expect(fake.requests[2]!.body.messages.slice(1)).toEqual([
      { role: 'user', content: 'Summary of the earlier conversation:\nS' },
      { role: 'assistant', content: ANSWER },
      { role: 'user', content: 'q' },
    ]);
    expect(saved).toEqual([3]);

    fake.reset();
    fake.script([{ ...overflow, times: 2 }]);
    const second = new RecordingHost();
    await executeRun(soloRequest({ members: [plainMember(smallModel())], input: { userMessage: 'q' } }), second, new AbortController().signal);
    expect(second.of('turn.failed')[0]).toMatchObject({ code: 'CONTEXT_TOO_LONG' });
    expect(fake.requests).toHaveLength(2);
  });
});
