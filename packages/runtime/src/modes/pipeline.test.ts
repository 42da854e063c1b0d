import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { executeRun } from '../run/execute-run.js';
import { RecordingHost } from '../run/test-fixtures.js';
import type { ResolvedMember, RunRequest } from '../run/types.js';
import { startFakeModelServer, type FakeModelServer } from '../testing/index.js';
import { DATE_LINE, teamMember, teamRequest, typesByTurn, type MemberOptions } from './test-support.js';

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
  { role: 'assistant', text: 'Earlier answer', botUid: 'uid-bot-writer', memberIndex: 4, memberName: 'Writer', purpose: 'answer' },
];

function stages(list: Array<Omit<MemberOptions, 'name'> & { name: string }>): ResolvedMember[] {
  return list.map((o, i) => teamMember(fake, i, { displayName: o.name[0]!.toUpperCase() + o.name.slice(1), ...o }));
}

async function run(request: RunRequest) {
  const host = new RecordingHost();
  const outcome = await executeRun(request, host, new AbortController().signal);
  return { host, outcome };
}

const note = (k: number, names: string) => `You are step ${k} of ${names.split(' → ').length} in a pipeline: ${names}.`;

describe('pipeline stages and context passing', () => {
  it('gives every stage exactly what its contextPassing says', async () => {
    const names = 'Analyst → Developer → Reviewer → Checker → Writer';
    fake.script(['  Spec: two fields.\n', 'Code v1', { steps: [] }, 'OK', 'Final write-up.']);
    const { host, outcome } = await run(
      teamRequest(
        'pipeline',
        stages([
          { name: 'analyst' },
          { name: 'developer', contextPassing: 'original_and_previous' },
          { name: 'reviewer', contextPassing: 'previous_bot' },
          { name: 'checker', contextPassing: 'original_user', prompt: 'Check twice.' },
          { name: 'writer', contextPassing: 'none' },
        ]),
        { history: HISTORY },
      ),
    );

    expect(outcome).toEqual({ status: 'completed' });
    expect(fake.requests.map((r) => r.body.messages)).toEqual([
      [
        { role: 'system', content: `You are analyst.\n\n${note(1, names)}\n\n${DATE_LINE}` },
        { role: 'user', content: 'Earlier question' },
        { role: 'assistant', content: '[Writer] Earlier answer' },
        { role: 'user', content: 'Build a login page.' },
      ],
      [
        { role: 'system', content: `You are developer.\n\n${note(2, names)}\n\n${DATE_LINE}` },
        { role: 'user', content: 'Original request:\nBuild a login page.\n\nOutput of the previous step (Analyst):\nSpec: two fields.' },
      ],
      [
        { role: 'system', content: `You are reviewer.\n\n${note(3, names)}\n\n${DATE_LINE}` },
        { role: 'user', content: 'Code v1' },
      ],
      [
        { role: 'system', content: `You are checker.\n\nCheck twice.\n\n${note(4, names)}\n\n${DATE_LINE}` },
        { role: 'user', content: 'Build a login page.' },
      ],
      [
        { role: 'system', content: `You are writer.\n\n${note(5, names)}\n\n${DATE_LINE}` },
        { role: 'user', content: 'Earlier question' },
        { role: 'assistant', content: 'Earlier answer' },
        { role: 'user', content: 'Build a login page.' },
        {
          role: 'user',
          content:
            'Outputs of the earlier steps:\n\n### Step 1: Analyst\nSpec: two fields.\n\n### Step 2: Developer\nCode v1\n\n### Step 3: Reviewer\n(empty)\n\n### Step 4: Checker\nOK\n\nIt is your turn now: step 5 of 5 (Writer).',
        },
      ],
    ]);
    // Each stage is its own visible answer turn that names its member, one after another.
    expect(host.turns.map((t) => [t.memberIndex, t.memberName, t.purpose, t.visible])).toEqual([
      [0, 'Analyst', 'answer', true],
      [1, 'Developer', 'answer', true],
      [2, 'Reviewer', 'answer', true],
      [3, 'Checker', 'answer', true],
      [4, 'Writer', 'answer', true],
    ]);
    expect(host.of('member.started').map((e) => e.memberName)).toEqual(['Analyst', 'Developer', 'Reviewer', 'Checker', 'Writer']);
    const turnTypes = host.types().filter((t) => t === 'member.started' || t === 'member.finished');
    expect(turnTypes).toEqual(Array.from({ length: 5 }, () => ['member.started', 'member.finished']).flat());
    expect(host.types().at(-1)).toBe('run.done');
  });

  it('gives the first stage the request when previous_bot has no previous output', async () => {
    fake.script(['a', 'b']);
    await run(teamRequest('pipeline', stages([{ name: 'first', contextPassing: 'previous_bot' }, { name: 'second', contextPassing: 'original_and_previous' }]), { history: HISTORY }));
    expect(fake.requests[0]!.body.messages.slice(1)).toEqual([{ role: 'user', content: 'Build a login page.' }]);
    expect(fake.requests[1]!.body.messages.slice(1)).toEqual([{ role: 'user', content: 'Original request:\nBuild a login page.\n\nOutput of the previous step (First):\na' }]);
  });

  it('stops at a failed stage: the run fails with its code and later stages never start', async () => {
    fake.script([{ steps: [{ error: { status: 401 } }] }, 'never']);
    const { host, outcome } = await run(teamRequest('pipeline', stages([{ name: 'first' }, { name: 'second' }])));
    expect(outcome).toMatchObject({ status: 'failed', error: { code: 'MODEL_AUTH_FAILED' } });
    expect(fake.requests).toHaveLength(1);
    expect(host.turns).toHaveLength(1);
  });
});

describe('pipeline confirmation', () => {
  const team = () => stages([{ name: 'analyst', requireConfirmation: true }, { name: 'developer', contextPassing: 'original_and_previous' }, { name: 'reviewer', requireConfirmation: true }]);

  it('pauses after a stage that requires confirmation and reports where', async () => {
    fake.script(['Spec v1', 'never']);
    const { host, outcome } = await run(teamRequest('pipeline', team()));
    expect(outcome).toEqual({ status: 'paused', pausedAt: { stage: 0, turnId: 'turn-1' } });
    expect(fake.requests).toHaveLength(1);
    expect(host.types().slice(-3)).toEqual(['turn.done', 'member.finished', 'run.paused']);
    expect(host.of('run.paused')[0]).toMatchObject({ stage: 0, turnId: 'turn-1' });
    expect(typesByTurn(host)['turn-1']![0]).toBe('member.started');
  });

  it('continues from the next stage with the edited text in place of the paused output', async () => {
    fake.script(['Code', 'Looks good.']);
    const { host, outcome } = await run(
      teamRequest('pipeline', team(), {
        input: { userMessage: 'Build a login page.', pipeline: { startStage: 1, earlierStages: [{ stage: 0, output: 'Spec v1' }], editedText: 'Spec v2 (edited)' } },
      }),
    );
    // The last stage's requireConfirmation has no effect.
    expect(outcome).toEqual({ status: 'completed' });
    const names = 'Analyst → Developer → Reviewer';
    expect(fake.requests.map((r) => r.body.messages)).toEqual([
      [
        { role: 'system', content: `You are developer.\n\n${note(2, names)}\n\n${DATE_LINE}` },
        { role: 'user', content: 'Original request:\nBuild a login page.\n\nOutput of the previous step (Analyst):\nSpec v2 (edited)' },
      ],
      [
        { role: 'system', content: `You are reviewer.\n\n${note(3, names)}\n\n${DATE_LINE}` },
        { role: 'user', content: 'Build a login page.' },
        { role: 'user', content: 'Outputs of the earlier steps:\n\n### Step 1: Analyst\nSpec v2 (edited)\n\n### Step 2: Developer\nCode\n\nIt is your turn now: step 3 of 3 (Reviewer).' },
      ],
    ]);
    expect(host.turns.map((t) => t.memberName)).toEqual(['Developer', 'Reviewer']);
  });

  it('re-runs the paused stage for a revision, with its previous answer and the revision', async () => {
    fake.script(['Code v2']);
    const members = stages([{ name: 'analyst' }, { name: 'developer', contextPassing: 'original_and_previous', requireConfirmation: true }, { name: 'reviewer' }]);
    const { outcome } = await run(
      teamRequest('pipeline', members, {
        input: { userMessage: 'Use OAuth instead.', pipeline: { startStage: 1, revision: { request: 'Build a login page.', ownOutput: ' Code v1 ', previousOutput: 'Spec v1' } } },
      }),
    );
    expect(outcome).toEqual({ status: 'paused', pausedAt: { stage: 1, turnId: 'turn-1' } });
    expect(fake.requests[0]!.body.messages.slice(1)).toEqual([
      {
        role: 'user',
        content: 'Original request:\nBuild a login page.\n\nOutput of the previous step (Analyst):\nSpec v1\n\nYour previous answer:\nCode v1\n\nThe user asks for this revision:\nUse OAuth instead.',
      },
    ]);
  });

  it('keeps the paused run\'s request when a revision run continues after its confirmation', async () => {
    fake.script(['Code v2']);
    const members = stages([{ name: 'analyst', requireConfirmation: true }, { name: 'developer', contextPassing: 'original_user' }]);
    await run(
      teamRequest('pipeline', members, {
        input: { userMessage: 'Use OAuth instead.', pipeline: { startStage: 1, request: 'Build a login page.', earlierStages: [{ stage: 0, output: 'Spec v2' }] } },
      }),
    );
    expect(fake.requests[0]!.body.messages.slice(1)).toEqual([{ role: 'user', content: 'Build a login page.' }]);
  });

  it('gives a none stage under revision the history and the revision as its user message', async () => {
    fake.script(['Spec v2']);
    const revisionHistory: RunRequest['history'] = [
      { role: 'user', text: 'Build a login page.' },
      { role: 'assistant', text: 'Spec v1', botUid: 'uid-bot-analyst', memberIndex: 0, memberName: 'Analyst', purpose: 'answer' },
    ];
    await run(
      teamRequest('pipeline', team(), {
        history: revisionHistory,
        input: { userMessage: 'Add a remember-me box.', pipeline: { startStage: 0, revision: { request: 'Build a login page.', ownOutput: 'Spec v1' } } },
      }),
    );
    expect(fake.requests[0]!.body.messages.slice(1)).toEqual([
      { role: 'user', content: 'Build a login page.' },
      { role: 'assistant', content: 'Spec v1' },
      { role: 'user', content: 'Add a remember-me box.' },
    ]);
  });
});
