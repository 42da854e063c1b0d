import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { executeRun } from '../run/execute-run.js';
import { modelConnection, RecordingHost } from '../run/test-fixtures.js';
import type { RunRequest } from '../run/types.js';
import { startFakeModelServer, type FakeModelServer } from '../testing/index.js';
import { compatibleModel, DATE_LINE, streamedTextOf, teamMember, teamRequest } from './test-support.js';

let fake: FakeModelServer;
beforeAll(async () => {
  fake = await startFakeModelServer();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());

const HISTORY: RunRequest['history'] = [
  { role: 'user', text: 'Earlier question' },
  { role: 'assistant', text: 'Earlier point', botUid: 'uid-bot-critic', memberIndex: 1, memberName: 'Critic', purpose: 'contribution' },
];
const noteFor = (name: string, others: string, tools = true) =>
  `You are ${name} in a discussion with ${others} to answer the user's request. Build on what has been said; do not repeat it. When the request is fully answered and nothing important is left to add, ${tools ? 'call the collaboration_done tool, or ' : ''}end your message with a line containing only [DONE].`;

function discussionTeam(overrides: Partial<RunRequest> = {}, tools = true): RunRequest {
  const model = compatibleModel(fake, tools ? {} : { capabilities: { tools: false } });
  return teamRequest(
    'collaborate',
    [
      teamMember(fake, 0, { name: 'lead', displayName: 'Lead', role: 'leader', model }),
      teamMember(fake, 1, { name: 'critic', displayName: 'Critic', model }),
      teamMember(fake, 2, { name: 'tester', displayName: 'Tester', model }),
    ],
    { history: HISTORY, ...overrides },
  );
}

async function run(request: RunRequest) {
  const host = new RecordingHost();
  const outcome = await executeRun(request, host, new AbortController().signal);
  return { host, outcome };
}

describe('collaborate on a shared transcript', () => {
  it('passes the discussion on, stops after a [DONE] line and lets the leader summarise', async () => {
    fake.script([
      'Idea A.',
      'Critique B.',
      '  ',
      { steps: [{ text: 'Refined.\n' }, { text: '[DO' }, { text: 'NE]  ' }] },
      'Summary for you.',
    ]);
    const { host, outcome } = await run(discussionTeam({ modeOptions: { maxRounds: 3, finalSummary: true } }));

    expect(outcome).toEqual({ status: 'completed' });
    const user = { role: 'user', content: 'Build a login page.' };
    const leadHistory = [
      { role: 'user', content: 'Earlier question' },
      { role: 'assistant', content: '[Critic] Earlier point' },
    ];
    expect(fake.requests.map((r) => r.body.messages)).toEqual([
      [{ role: 'system', content: `You are lead.\n\n${noteFor('Lead', 'Critic, Tester')}\n\n${DATE_LINE}` }, ...leadHistory, user],
      [
        { role: 'system', content: `You are critic.\n\n${noteFor('Critic', 'Lead, Tester')}\n\n${DATE_LINE}` },
        { role: 'user', content: 'Earlier question' },
        { role: 'assistant', content: 'Earlier point' },
        user,
        { role: 'user', content: 'Discussion so far:\n\n**Lead:** Idea A.' },
      ],
      [
        { role: 'system', content: `You are tester.\n\n${noteFor('Tester', 'Lead, Critic')}\n\n${DATE_LINE}` },
        ...leadHistory,
        user,
        { role: 'user', content: 'Discussion so far:\n\n**Lead:** Idea A.\n\n**Critic:** Critique B.' },
      ],
      [
        { role: 'system', content: `You are lead.\n\n${noteFor('Lead', 'Critic, Tester')}\n\n${DATE_LINE}` },
        ...leadHistory,
        user,
        { role: 'user', content: 'Discussion so far:\n\n**Lead:** Idea A.\n\n**Critic:** Critique B.\n\n**Tester:** (empty)' },
      ],
      [
        { role: 'system', content: `You are lead.\n\nWrite the final answer for the user based on the discussion.\n\n${DATE_LINE}` },
        ...leadHistory,
        user,
        { role: 'user', content: 'Discussion so far:\n\n**Lead:** Idea A.\n\n**Critic:** Critique B.\n\n**Tester:** (empty)\n\n**Lead:** Refined.' },
      ],
    ]);
    expect(fake.requests[0]!.body.tools.map((t: { function: { name: string } }) => t.function.name)).toEqual(['collaboration_done']);
    expect(fake.requests[4]!.body.tools).toBeUndefined();

    expect(host.turns.map((t) => [t.memberName, t.purpose, t.visible])).toEqual([
      ['Lead', 'contribution', true],
      ['Critic', 'contribution', true],
      ['Tester', 'contribution', true],
      ['Lead', 'contribution', true],
      ['Lead', 'summary', true],
    ]);
    // The marker never reaches the user: not streamed, not in the final text.
    const refined = host.turns[3]!.turnId;
    expect(streamedTextOf(host, refined)).toBe('Refined.');
    expect(host.of('text.delta').filter((e) => e.turnId === refined).map((e) => e.delta)).toEqual(['Refined.']);
    expect(host.of('turn.done').find((e) => e.turnId === refined)!.text).toBe('Refined.');
    expect(host.of('member.started').map((e) => e.memberName)).toEqual(['Lead', 'Critic', 'Tester', 'Lead', 'Lead']);
  });

  it('streams a held-back part once it can no longer become the marker', async () => {
    fake.script([{ steps: [{ text: 'See\n' }, { text: '[DO' }, { text: 'CS] here' }] }, 'ok', 'ok']);
    const { host } = await run(discussionTeam({ modeOptions: { maxRounds: 1 } }));
    const first = host.turns[0]!.turnId;
    expect(host.of('text.delta').filter((e) => e.turnId === first).map((e) => e.delta)).toEqual(['See', '\n[DOCS] here']);
    expect(host.of('turn.done').find((e) => e.turnId === first)!.text).toBe('See\n[DOCS] here');
    // Without a marker every member speaks once per round, maxRounds bounds the discussion.
    expect(host.turns.map((t) => t.memberName)).toEqual(['Lead', 'Critic', 'Tester']);
  });

  it('ends the discussion after the message of a member that called collaboration_done', async () => {
    fake.script([
      { steps: [{ text: 'We are done.' }, { toolCall: { id: 'call_1', name: 'collaboration_done', arguments: { summary: 'all set' } } }] },
      'Thanks, everyone.',
    ]);
    const { host, outcome } = await run(discussionTeam());
    expect(outcome).toEqual({ status: 'completed' });
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1]!.body.messages.slice(-2)).toEqual([
      { role: 'assistant', content: 'We are done.', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'collaboration_done', arguments: '{"summary":"all set"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"ok":true}' },
    ]);
    expect(host.turns.map((t) => t.purpose)).toEqual(['contribution']);
    expect(host.of('turn.done')[0]!.text).toBe('We are done.\n\nThanks, everyone.');
  });

  it('leaves the tool clause out of the note when the turn offers no tools', async () => {
    fake.script(['[DONE]']);
    const { host } = await run(discussionTeam({}, false));
    expect(fake.requests[0]!.body.messages[0]).toEqual({ role: 'system', content: `You are lead.\n\n${noteFor('Lead', 'Critic, Tester', false)}\n\n${DATE_LINE}` });
    expect(fake.requests[0]!.body.tools).toBeUndefined();
    // A message that is only the marker ends the discussion with an empty contribution.
    expect(host.of('turn.done')[0]!.text).toBe('');
    expect(host.of('text.delta')).toEqual([]);
    expect(host.turns).toHaveLength(1);
  });

  it('notes a failed contribution in the transcript and goes on', async () => {
    fake.script([{ steps: [{ error: { status: 400 } }] }, 'Point.\n[DONE]']);
    const { host, outcome } = await run(discussionTeam());
    expect(outcome).toEqual({ status: 'completed' });
    expect(fake.requests[1]!.body.messages.at(-1)).toEqual({ role: 'user', content: 'Discussion so far:\n\n**Lead:** (no contribution: MODEL_BAD_REQUEST)' });
    expect(host.of('member.finished').map((e) => e.status)).toEqual(['FAILED', 'COMPLETED']);
  });

  it('fails with ALL_MEMBERS_FAILED when every member of a round fails', async () => {
    fake.script([{ steps: [{ error: { status: 400 } }], times: 3 }]);
    const { host, outcome } = await run(discussionTeam());
    expect(outcome).toMatchObject({ status: 'failed', error: { code: 'ALL_MEMBERS_FAILED' } });
    expect(host.turns).toHaveLength(3);
    expect(host.of('run.failed')[0]).toMatchObject({ code: 'ALL_MEMBERS_FAILED' });
  });
});

describe('collaborate with the offline demo model', () => {
  it('ends the discussion when a member speaks for the second time', async () => {
    const demo = modelConnection({ protocol: 'demo', modelId: '', baseUrl: undefined });
    const request = discussionTeam();
    const { host, outcome } = await run({ ...request, members: request.members.map((m) => ({ ...m, model: demo })) });
    expect(outcome).toEqual({ status: 'completed' });
    expect(host.turns.map((t) => t.memberName)).toEqual(['Lead', 'Critic', 'Tester', 'Lead']);
    expect(host.of('turn.done').at(-1)!.text.endsWith('[DONE]')).toBe(false);
  });
});
