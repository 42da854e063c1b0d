import { describe, expect, it } from 'vitest';
import { historyMessages } from './history.js';
import { leaderIndex, memberNames } from './member-names.js';
import { discussionMessage, memberLine, resultsMessage } from './mode-prompts.js';
import { assembleSystemPrompt } from './system-prompt.js';
import { cutChars, oneLine } from './text-forms.js';

const now = new Date('2026-03-04T23:59:59Z');

describe('system prompt assembly (runtime.md §4.1)', () => {
  it('joins the parts in order with one blank line, trimming trailing whitespace and dropping empty parts', () => {
    expect(
      assembleSystemPrompt({
        ghostSystemPrompt: '  You are X.\n\n',
        memberPrompt: '   \n',
        modeNote: 'You are step 2 of 3 in a pipeline: A → B → C.',
        instructions: 'Answer in French.\t',
        now,
      }),
    ).toBe('  You are X.\n\nYou are step 2 of 3 in a pipeline: A → B → C.\n\nAnswer in French.\n\nCurrent date: 2026-03-04 (UTC).');
  });

  it('keeps the Ghost prompt otherwise exactly as stored', () => {
    expect(assembleSystemPrompt({ ghostSystemPrompt: 'Line 1\n\n\n  indented\r\nend', now })).toBe('Line 1\n\n\n  indented\r\nend\n\nCurrent date: 2026-03-04 (UTC).');
  });
});

describe('member names (runtime.md §4.2)', () => {
  it('uses the one-line display name, else the Bot name, and numbers duplicates ignoring case', () => {
    const names = memberNames([
      { bot: { name: 'analyst', displayName: ' The\n Analyst ' } },
      { bot: { name: 'dev' } },
      { bot: { name: 'dev' } },
      { bot: { name: 'x', displayName: 'the analyst' } },
      { bot: { name: 'blank', displayName: '  ' } },
    ]);
    expect(names).toEqual(['The Analyst (member 1)', 'dev (member 2)', 'dev (member 3)', 'the analyst (member 4)', 'blank']);
  });

  it('picks the first leader, else member 0', () => {
    expect(leaderIndex([{ role: 'worker' }, { role: 'LEADER' }, { role: 'leader' }])).toBe(1);
    expect(leaderIndex([{}, { role: 'helper' }])).toBe(0);
  });
});

describe('history (runtime.md §4.3)', () => {
  it('puts the checkpoint summary first, labels other members and drops non-answers and empty texts', () => {
    const messages = historyMessages(
      [
        { role: 'user', text: 'Q1' },
        { role: 'assistant', text: 'Mine', botUid: 'b1', memberIndex: 0, memberName: 'Me', purpose: 'answer' },
        { role: 'assistant', text: 'Same bot, other member', botUid: 'b1', memberIndex: 2, memberName: 'Me (member 3)', purpose: 'contribution' },
        { role: 'assistant', text: '{"member":"x"}', botUid: 'b1', memberIndex: 0, memberName: 'Me', purpose: 'route' },
        { role: 'assistant', text: 'plan', botUid: 'b1', memberIndex: 0, memberName: 'Me', purpose: 'plan' },
        { role: 'assistant', text: 'sub', botUid: 'b2', memberIndex: 1, memberName: 'Other', purpose: 'subrequest' },
        { role: 'assistant', text: 'Aggregate', botUid: 'b2', memberIndex: 1, memberName: 'Other', purpose: 'aggregate' },
        { role: 'user', text: '' },
        { role: 'summary', text: 'Earlier stuff' },
      ],
      { botUid: 'b1', memberIndex: 0 },
    );
    expect(messages).toEqual([
      { role: 'user', content: 'Summary of the earlier conversation:\nEarlier stuff' },
      { role: 'user', content: 'Q1' },
      { role: 'assistant', content: 'Mine' },
      { role: 'assistant', content: '[Me (member 3)] Same bot, other member' },
      { role: 'assistant', content: '[Other] Aggregate' },
    ]);
  });
});

describe('text forms (runtime.md §4.4)', () => {
  it('cuts to n code points without splitting a pair', () => {
    expect(cutChars('a😀b', 2)).toBe('a😀');
    expect(cutChars('😀😀', 1)).toBe('😀');
    expect(cutChars('abc', 10)).toBe('abc');
  });

  it('makes the one-line form', () => {
    expect(oneLine('  a \n\t b  ')).toBe('a b');
  });
});

describe('mode texts (runtime.md §9)', () => {
  it('writes a member line with the one-line role, else member, and the description, else the first 300 characters of the prompt', () => {
    expect(memberLine({ name: 'A', role: ' senior\n dev ', ghostDescription: ' Knows\tTS. ' })).toBe('- A — role: senior dev; Knows TS.');
    expect(memberLine({ name: 'B', prompt: `${'😀'.repeat(299)}xyz` })).toBe(`- B — role: member; ${'😀'.repeat(299)}x`);
    expect(memberLine({ name: 'C', role: '  ', prompt: ' \n ' })).toBe('- C — role: member');
  });

  it('shows an empty inserted text as (empty) and trims the others', () => {
    expect(resultsMessage([{ member: 'W', request: 'a\nb', text: ' \n ' }, { member: 'X', request: 'c', code: 'USER_CANCELLED' }])).toBe('Results from your team:\n\n### W — a b\n(empty)\n\n### X — c\n(no result: USER_CANCELLED)');
    expect(discussionMessage([{ name: 'A', text: '\n hi \n' }, { name: 'B', code: 'MODEL_TIMEOUT' }])).toBe('Discussion so far:\n\n**A:** hi\n\n**B:** (no contribution: MODEL_TIMEOUT)');
  });
});
