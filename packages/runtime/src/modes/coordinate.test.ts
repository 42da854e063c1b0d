import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { executeRun } from '../run/execute-run.js';
import { modelConnection, RecordingHost } from '../run/test-fixtures.js';
import type { RunRequest } from '../run/types.js';
import { startFakeModelServer, type FakeModelServer, type FakeReply } from '../testing/index.js';
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
  'You lead the team "dev-team". Split the user\'s request into sub-requests for your members; each member works alone and reports back to you.',
  '',
  'Members:',
  '- Analyst — role: analyst; Reads requirements closely.',
  '- Writer — role: member; Write clear prose. Keep it short.',
  '',
  'Answer with only a JSON object, with no other text, in this form:',
  '{"subRequests": [{"member": "MEMBER NAME", "request": "WHAT THIS MEMBER SHOULD DO (at most 4000 characters)"}]}',
  'Give 1 to 3 sub-requests. "member" must be one of: "Analyst", "Writer".',
].join('\n');
const PLAN_SYSTEM = `You coordinate.\n\nAnswer in English.\n\n${DECISION}`;
const WORK_NOTE = 'You are helping the team leader. Do only the task below; your answer goes to the leader, not to the user.';
const HISTORY: RunRequest['history'] = [
  { role: 'user', text: 'Hi' },
  { role: 'assistant', text: 'Hello, I lead.', botUid: 'uid-bot-lead', memberIndex: 0, memberName: 'Lead', purpose: 'aggregate' },
];
const VALID_PLAN = JSON.stringify({
  subRequests: [
    { member: 'writer', request: ' Draft the\npage copy. ' },
    { member: 'Analyst', request: 'List the fields.' },
    { member: 'Writer', request: 'Write the error texts.' },
    { member: 'Writer', request: 'Dropped: beyond maxSubRequests.' },
  ],
});

function coordinateTeam(overrides: Partial<RunRequest> = {}): RunRequest {
  return teamRequest(
    'coordinate',
    [
      teamMember(fake, 0, { name: 'lead', displayName: 'Lead', role: 'Leader', systemPrompt: 'You coordinate.' }),
      teamMember(fake, 1, { name: 'analyst', displayName: 'Analyst', role: 'analyst', systemPrompt: 'You analyse.', description: 'Reads requirements closely.' }),
      teamMember(fake, 2, { name: 'writer', displayName: 'Writer', prompt: 'Write clear prose.\nKeep it short.' }),
    ],
    { history: HISTORY, modeOptions: { maxSubRequests: 3, maxParallel: 2 }, overrides: { instructions: 'Answer in English.' }, ...overrides },
  );
}

const work = (task: string, steps: FakeReply['steps']): FakeReply => ({ match: { lastUserText: `Your task:\n${task}` }, steps });
const plan = (text: string): FakeReply => ({ match: { lastUserText: /^(Build a login page\.|Your previous answer)/ }, steps: [{ text }] });

async function run(request: RunRequest, signal = new AbortController().signal) {
  const host = new RecordingHost();
  const outcome = await executeRun(request, host, signal);
  return { host, outcome };
}

describe('coordinate against a server that ignores response_format', () => {
  it('repairs the plan, runs the sub-requests in parallel within maxParallel and aggregates every result', async () => {
    fake.script([
      plan('{"subRequests":[{"member":"Writer","request":"Draft."},{"member":"Lead","request":"Decide."}]}'),
      plan(VALID_PLAN),
      work('Draft the\npage copy.', [{ delayMs: 200 }, { text: '  Copy: Welcome back.  ' }]),
      work('List the fields.', [{ delayMs: 200 }, { error: { status: 400, message: 'bad field list' } }]),
      work('Write the error texts.', [{ text: 'Errors: wrong password.' }]),
      { match: { lastUserText: 'Results from your team:' }, steps: [{ text: 'Here is your login page.' }] },
    ]);
    const { host, outcome } = await run(coordinateTeam({ members: coordinateTeam().members.map((m) => ({ ...m, model: modelConnection({ protocol: 'openai', modelId: 'gpt-4o-mini', baseUrl: fake.openaiBaseUrl }) })) }));

    expect(outcome).toEqual({ status: 'completed' });
    const [planRequest, repairRequest, ...rest] = fake.requests;
    expect(planRequest!.body.messages).toEqual([
      { role: 'system', content: PLAN_SYSTEM },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello, I lead.' },
      { role: 'user', content: 'Build a login page.' },
    ]);
    expect(planRequest!.body.response_format).toMatchObject({ type: 'json_schema' });
    expect(repairRequest!.body.messages.slice(-2)).toEqual([
      { role: 'assistant', content: '{"subRequests":[{"member":"Writer","request":"Draft."},{"member":"Lead","request":"Decide."}]}' },
      { role: 'user', content: 'Your previous answer was not valid: sub-request 2: "member" must be one of: "Analyst", "Writer". Answer again with only the JSON object.' },
    ]);

    // Each member receives only its task, no history.
    const workRequests = rest.filter((r) => r.lastUserText?.startsWith('Request from the user:'));
    const byTask = (task: string) => workRequests.find((r) => r.lastUserText!.endsWith(task))!;
    expect(byTask('Draft the\npage copy.').body.messages).toEqual([
      { role: 'system', content: `You are writer.\n\nWrite clear prose.\nKeep it short.\n\n${WORK_NOTE}\n\nAnswer in English.\n\n${DATE_LINE}` },
      { role: 'user', content: 'Request from the user:\nBuild a login page.\n\nYour task:\nDraft the\npage copy.' },
    ]);
    expect(byTask('List the fields.').body.messages).toEqual([
      { role: 'system', content: `You analyse.\n\n${WORK_NOTE}\n\nAnswer in English.\n\n${DATE_LINE}` },
      { role: 'user', content: 'Request from the user:\nBuild a login page.\n\nYour task:\nList the fields.' },
    ]);
    // maxParallel 2: the third sub-request starts only when one of the first two has ended.
    const third = byTask('Write the error texts.');
    const firstTwo = [byTask('Draft the\npage copy.'), byTask('List the fields.')];
    expect(third.at).toBeGreaterThanOrEqual(Math.min(...firstTwo.map((r) => r.endedAt!)));
    expect(Math.abs(firstTwo[0]!.at - firstTwo[1]!.at)).toBeLessThan(150);

    const aggregateRequest = fake.requests.at(-1)!;
    expect(aggregateRequest.body.messages).toEqual([
      { role: 'system', content: `You coordinate.\n\nCombine your team's results into one answer for the user.\n\nAnswer in English.\n\n${DATE_LINE}` },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello, I lead.' },
      { role: 'user', content: 'Build a login page.' },
      {
        role: 'user',
        content:
          'Results from your team:\n\n### Writer — Draft the page copy.\nCopy: Welcome back.\n\n### Analyst — List the fields.\n(no result: MODEL_BAD_REQUEST)\n\n### Writer — Write the error texts.\nErrors: wrong password.',
      },
    ]);

    expect(host.turns.map((t) => [t.memberName, t.purpose, t.visible])).toEqual([
      ['Lead', 'plan', false],
      ['Writer', 'subrequest', true],
      ['Analyst', 'subrequest', true],
      ['Writer', 'subrequest', true],
      ['Lead', 'aggregate', true],
    ]);
    const planTurn = host.turns[0]!.turnId;
    expect(host.of('block.added').find((e) => e.turnId === planTurn)!.block).toEqual({
      id: 'plan-1',
      type: 'plan',
      status: 'completed',
      createdAt: '2026-01-15T10:20:30.000Z',
      plan: {
        subRequests: [
          { memberIndex: 2, bot: { name: 'writer', namespace: 'default' }, request: 'Draft the\npage copy.' },
          { memberIndex: 1, bot: { name: 'analyst', namespace: 'default' }, request: 'List the fields.' },
          { memberIndex: 2, bot: { name: 'writer', namespace: 'default' }, request: 'Write the error texts.' },
        ],
        fallback: false,
      },
    });
    expect(streamedTextOf(host, planTurn)).toBe('');
    expect(host.of('turn.failed').map((e) => [e.turnId, e.code])).toEqual([[host.turns[2]!.turnId, 'MODEL_BAD_REQUEST']]);
    expect(host.of('member.finished').map((e) => e.status).sort()).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED', 'FAILED']);
    expect(streamedTextOf(host, host.turns[4]!.turnId)).toBe('Here is your login page.');
    // Every member turn opens with member.started and closes with member.finished.
    for (const types of Object.values(typesByTurn(host))) {
      expect(types[0]).toBe('member.started');
      expect(types.at(-1)).toBe('member.finished');
    }
  });

  it('falls back to the leader answering alone after two invalid plans, recorded in the plan block', async () => {
    fake.script([plan('I will ask the Writer.'), plan('{"subRequests":[]}'), { steps: [{ text: 'I answer myself.' }] }]);
    const { host, outcome } = await run(coordinateTeam());

    expect(outcome).toEqual({ status: 'completed' });
    expect(fake.requests[0]!.body.response_format).toBeUndefined();
    expect(fake.requests[1]!.body.messages.slice(-2)).toEqual([
      { role: 'assistant', content: 'I will ask the Writer.' },
      { role: 'user', content: 'Your previous answer was not valid: the answer is not a JSON object. Answer again with only the JSON object.' },
    ]);
    expect(host.of('block.added')[0]!.block).toMatchObject({ type: 'plan', plan: { subRequests: [], fallback: true, reason: '"subRequests" must be a list of 1 to 3 items' } });
    expect(host.turns.map((t) => [t.memberName, t.purpose])).toEqual([
      ['Lead', 'plan'],
      ['Lead', 'answer'],
    ]);
    expect(fake.requests[2]!.body.messages).toEqual([
      { role: 'system', content: `You coordinate.\n\nAnswer in English.\n\n${DATE_LINE}` },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello, I lead.' },
      { role: 'user', content: 'Build a login page.' },
    ]);
  });

  it('fails with ALL_MEMBERS_FAILED and no aggregate when every sub-request fails', async () => {
    fake.script([
      plan('{"subRequests":[{"member":"Analyst","request":"A."},{"member":"Writer","request":"B."}]}'),
      work('A.', [{ error: { status: 400 } }]),
      work('B.', [{ error: { status: 401 } }]),
    ]);
    const { host, outcome } = await run(coordinateTeam());
    expect(outcome.status).toBe('failed');
    expect(outcome.error?.code).toBe('ALL_MEMBERS_FAILED');
    expect(host.turns.map((t) => t.purpose)).toEqual(['plan', 'subrequest', 'subrequest']);
    expect(host.of('run.failed')[0]).toMatchObject({ code: 'ALL_MEMBERS_FAILED' });
  });

  it('cancels every running sub-request when the run is cancelled', async () => {
    fake.script([plan('{"subRequests":[{"member":"Analyst","request":"A."},{"member":"Writer","request":"B."}]}'), work('A.', [{ text: 'partial' }, { hang: true }]), work('B.', [{ hang: true }])]);
    const controller = new AbortController();
    const host = new RecordingHost();
    const started = Date.now();
    const pending = executeRun(coordinateTeam(), host, controller.signal);
    await host.waitFor((e) => e.type === 'text.delta');
    controller.abort();
    const outcome = await pending;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(outcome).toEqual({ status: 'cancelled' });
    expect(host.of('turn.cancelled').map((e) => e.text).sort()).toEqual(['', 'partial']);
    expect(host.turns.map((t) => t.purpose)).toEqual(['plan', 'subrequest', 'subrequest']);
    expect(host.types().at(-1)).toBe('run.cancelled');
  });

  it('behaves as solo when the leader is the only member', async () => {
    fake.script(['Alone.']);
    const { host } = await run(teamRequest('coordinate', [teamMember(fake, 0, { name: 'lead', role: 'leader' })]));
    expect(host.turns.map((t) => t.purpose)).toEqual(['answer']);
  });
});

describe('coordinate with the offline demo model', () => {
  it('plans one sub-request per member, works and aggregates', async () => {
    const demo = modelConnection({ protocol: 'demo', modelId: '', baseUrl: undefined });
    const request = coordinateTeam();
    const { host, outcome } = await run({ ...request, members: request.members.map((m) => ({ ...m, model: demo })) });
    expect(outcome).toEqual({ status: 'completed' });
    expect(host.turns.map((t) => [t.memberName, t.purpose])).toEqual([
      ['Lead', 'plan'],
      ['Analyst', 'subrequest'],
      ['Writer', 'subrequest'],
      ['Lead', 'aggregate'],
    ]);
  });
});
