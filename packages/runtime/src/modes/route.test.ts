import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { executeRun } from '../run/execute-run.js';
import { modelConnection, RecordingHost } from '../run/test-fixtures.js';
import type { ModelConnection, RunRequest } from '../run/types.js';
import { startFakeModelServer, type FakeModelServer } from '../testing/index.js';
import { DATE_LINE, streamedTextOf, teamMember, teamRequest, typesByTurn } from './test-support.js';

let fake: FakeModelServer;
beforeAll(async () => {
  fake = await startFakeModelServer();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());

const DECISION = [
  'You route requests for the team "Dev Team". Choose exactly one member to answer the user\'s latest message.',
  '',
  'Members:',
  '- Lead — role: leader; Be fair.',
  '- Analyst — role: analyst; Reads requirements closely.',
  '- Writer — role: member; Write clear prose. Keep it short.',
  '',
  'Answer with only a JSON object, with no other text, in this form:',
  '{"member": "MEMBER NAME", "reason": "WHY THIS MEMBER (at most 500 characters)"}',
  '"member" must be one of: "Lead", "Analyst", "Writer".',
].join('\n');
const ROUTE_SYSTEM = `You coordinate.\n\nBe fair.\n\n${DECISION}`;
const HISTORY: RunRequest['history'] = [
  { role: 'user', text: 'Hi' },
  { role: 'assistant', text: 'Hello!', botUid: 'uid-bot-analyst', memberIndex: 1, memberName: 'Analyst', purpose: 'answer' },
];
const HISTORY_MESSAGES = [
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: '[Analyst] Hello!' },
];
const REPAIR_NOT_OBJECT = 'Your previous answer was not valid: the answer is not a JSON object. Answer again with only the JSON object.';

function routeTeam(model?: (i: number) => ModelConnection): RunRequest {
  const m = (i: number) => (model ? { model: model(i) } : {});
  return teamRequest(
    'route',
    [
      teamMember(fake, 0, { name: 'lead', displayName: 'Lead', role: 'leader', systemPrompt: 'You coordinate.', prompt: 'Be fair.', ...m(0) }),
      teamMember(fake, 1, { name: 'analyst', displayName: 'Analyst', role: 'analyst', systemPrompt: 'You analyse.', description: 'Reads\nrequirements  closely.', prompt: 'ignored when there is a description', ...m(1) }),
      teamMember(fake, 2, { name: 'writer', displayName: 'Writer', prompt: 'Write clear prose.\nKeep it short.', ...m(2) }),
    ],
    { team: { uid: 'uid-team', generation: 1, name: 'dev-team', namespace: 'default', scope: 'user', displayName: 'Dev Team' }, history: HISTORY },
  );
}

async function run(request: RunRequest) {
  const host = new RecordingHost();
  const outcome = await executeRun(request, host, new AbortController().signal);
  return { host, outcome };
}

describe('route against a plain OpenAI-compatible server (no response_format)', () => {
  it('repairs an invalid first decision, then the chosen member answers with the solo prompt', async () => {
    fake.script([
      'Sure! I would pick the Writer for this.',
      '```json\n{"member": " writer ", "reason": "  Best at prose.  ", "extra": 1}\n```',
      { steps: [{ text: 'Here is ' }, { text: 'the page.' }] },
    ]);
    const { host, outcome } = await run(routeTeam());

    expect(outcome).toEqual({ status: 'completed' });
    expect(fake.requests).toHaveLength(3);
    const decide = fake.requests[0]!.body;
    expect(decide.messages).toEqual([{ role: 'system', content: ROUTE_SYSTEM }, ...HISTORY_MESSAGES, { role: 'user', content: 'Build a login page.' }]);
    expect(decide.response_format).toBeUndefined();
    expect(decide.tools).toBeUndefined();
    expect(fake.requests[1]!.body.messages).toEqual([
      { role: 'system', content: ROUTE_SYSTEM },
      ...HISTORY_MESSAGES,
      { role: 'user', content: 'Build a login page.' },
      { role: 'assistant', content: 'Sure! I would pick the Writer for this.' },
      { role: 'user', content: REPAIR_NOT_OBJECT },
    ]);
    expect(fake.requests[2]!.body.messages).toEqual([
      { role: 'system', content: `You are writer.\n\nWrite clear prose.\nKeep it short.\n\n${DATE_LINE}` },
      ...HISTORY_MESSAGES,
      { role: 'user', content: 'Build a login page.' },
    ]);

    // What the user sees: a hidden route turn of the leader with its block, then the Writer's answer.
    expect(host.turns.map((t) => [t.memberIndex, t.memberName, t.purpose, t.visible])).toEqual([
      [0, 'Lead', 'route', false],
      [2, 'Writer', 'answer', true],
    ]);
    const [routeTurn, answerTurn] = host.turns.map((t) => t.turnId) as [string, string];
    expect(typesByTurn(host)).toEqual({
      [routeTurn]: ['member.started', 'context.updated', 'usage', 'context.updated', 'usage', 'block.added', 'turn.done', 'member.finished'],
      [answerTurn]: ['member.started', 'context.updated', 'text.delta', 'text.delta', 'usage', 'turn.done', 'member.finished'],
    });
    expect(host.of('block.added')[0]!.block).toEqual({
      id: 'route-1',
      type: 'route',
      status: 'completed',
      createdAt: '2026-01-15T10:20:30.000Z',
      route: { chosenMemberIndex: 2, chosenBot: { name: 'writer', namespace: 'default' }, reason: 'Best at prose.', fallback: false },
    });
    expect(host.of('turn.done').map((e) => [e.turnId, e.text])).toEqual([
      [routeTurn, ''],
      [answerTurn, 'Here is the page.'],
    ]);
    expect(streamedTextOf(host, routeTurn)).toBe('');
    expect(host.of('member.started').map((e) => [e.memberName, e.bot.name, e.purpose, e.visible])).toEqual([
      ['Lead', 'lead', 'route', false],
      ['Writer', 'writer', 'answer', true],
    ]);
    expect(host.types().at(-1)).toBe('run.done');
  });

  it('falls back to the leader after two invalid answers and records why in the route block', async () => {
    fake.script(['{"member": "Designer", "reason": "looks"}', '["Analyst"]', 'The leader answers.']);
    const { host, outcome } = await run(routeTeam());

    expect(outcome).toEqual({ status: 'completed' });
    const memberError = '"member" must be one of: "Lead", "Analyst", "Writer"';
    expect(fake.requests[1]!.body.messages.slice(-2)).toEqual([
      { role: 'assistant', content: '{"member": "Designer", "reason": "looks"}' },
      { role: 'user', content: `Your previous answer was not valid: ${memberError}. Answer again with only the JSON object.` },
    ]);
    expect(host.of('block.added')[0]!.block).toMatchObject({
      type: 'route',
      route: { chosenMemberIndex: 0, chosenBot: { name: 'lead', namespace: 'default' }, reason: 'the answer is not a JSON object', fallback: true },
    });
    expect(host.turns.map((t) => [t.memberName, t.purpose])).toEqual([
      ['Lead', 'route'],
      ['Lead', 'answer'],
    ]);
    expect(fake.requests[2]!.body.messages).toEqual([
      { role: 'system', content: `You coordinate.\n\nBe fair.\n\n${DATE_LINE}` },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: '[Analyst] Hello!' },
      { role: 'user', content: 'Build a login page.' },
    ]);
    expect(host.of('turn.done').at(-1)!.text).toBe('The leader answers.');
  });

  it('leaves an empty invalid answer out of the repair request', async () => {
    fake.script([{ steps: [] }, '{"member":"Analyst"}', 'Analysis.']);
    const { host } = await run(routeTeam());
    expect(fake.requests[1]!.body.messages.slice(-2)).toEqual([
      { role: 'user', content: 'Build a login page.' },
      { role: 'user', content: REPAIR_NOT_OBJECT },
    ]);
    // A missing reason counts as empty.
    expect(host.of('block.added')[0]!.block).toMatchObject({ route: { chosenMemberIndex: 1, reason: '', fallback: false } });
  });

  it('fails the run with the model error of the decision call, and no member answers', async () => {
    fake.script([{ steps: [{ error: { status: 401 } }] }]);
    const { host, outcome } = await run(routeTeam());
    expect(outcome.status).toBe('failed');
    expect(outcome.error?.code).toBe('MODEL_AUTH_FAILED');
    expect(host.turns).toHaveLength(1);
    expect(host.types()).toEqual(['run.started', 'member.started', 'context.updated', 'turn.failed', 'member.finished', 'run.failed']);
  });
});

describe('route with a native schema', () => {
  it('asks an OpenAI Model for the json_schema, and still repairs when the server ignores it', async () => {
    const openai = () => modelConnection({ protocol: 'openai', modelId: 'gpt-4o-mini', baseUrl: fake.openaiBaseUrl });
    fake.script(['I think Analyst.', '{"member":"ANALYST","reason":"Requirements first."}', 'Analysis.']);
    const { host } = await run(routeTeam(openai));

    const format = fake.requests[0]!.body.response_format;
    expect(format).toMatchObject({
      type: 'json_schema',
      json_schema: {
        schema: {
          type: 'object',
          properties: { member: { type: 'string', enum: ['Lead', 'Analyst', 'Writer'] }, reason: { type: 'string' } },
          required: ['member', 'reason'],
          additionalProperties: false,
        },
      },
    });
    expect(fake.requests[1]!.body.response_format).toEqual(format);
    expect(fake.requests[2]!.body.response_format).toBeUndefined();
    expect(host.of('block.added')[0]!.block).toMatchObject({ route: { chosenMemberIndex: 1, chosenBot: { name: 'analyst' }, reason: 'Requirements first.', fallback: false } });
    expect(host.turns[1]).toMatchObject({ memberName: 'Analyst', purpose: 'answer' });
  });

  it('asks an Anthropic Model through a forced json tool, without thinking', async () => {
    const anthropic = () => modelConnection({ protocol: 'anthropic', modelId: 'claude-sonnet-4-5', baseUrl: fake.anthropicBaseUrl, capabilities: { reasoning: true } });
    fake.script([{ steps: [{ json: { member: 'Writer', reason: 'prose' } }] }, 'Prose.']);
    const { host } = await run(routeTeam(anthropic));

    const body = fake.requests[0]!.body;
    expect(body.tools).toEqual([expect.objectContaining({ name: 'json', input_schema: expect.objectContaining({ required: ['member', 'reason'] }) })]);
    expect(body.tool_choice).toMatchObject({ type: 'any' });
    expect(body.thinking).toBeUndefined();
    expect(body.system).toEqual([{ type: 'text', text: ROUTE_SYSTEM }]);
    expect(host.of('block.added')[0]!.block).toMatchObject({ route: { chosenMemberIndex: 2, reason: 'prose', fallback: false } });
    expect(streamedTextOf(host, host.turns[0]!.turnId)).toBe('');
  });
});

describe('route with the offline demo model', () => {
  it('routes to the second member, as the demo model documents', async () => {
    const demo = () => modelConnection({ protocol: 'demo', modelId: '', baseUrl: undefined });
    const { host, outcome } = await run(routeTeam(demo));
    expect(outcome).toEqual({ status: 'completed' });
    expect(host.of('block.added')[0]!.block).toMatchObject({ route: { chosenMemberIndex: 1, reason: 'demo routing', fallback: false } });
    expect(host.turns[1]).toMatchObject({ memberName: 'Analyst', purpose: 'answer' });
  });
});

describe('route with one member', () => {
  it('behaves as solo', async () => {
    fake.script(['Alone.']);
    const { host } = await run(teamRequest('route', [teamMember(fake, 0, { name: 'solo' })]));
    expect(host.turns.map((t) => t.purpose)).toEqual(['answer']);
    expect(fake.requests).toHaveLength(1);
  });
});
