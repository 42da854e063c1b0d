import { streamText } from 'ai';
import { describe, expect, it } from 'vitest';
import { DemoLanguageModel, demoReply, findArithmetic } from './demo-model.js';
import type { LanguageModelV3Prompt } from './language-model-types.js';

const user = (text: string) => ({ role: 'user' as const, content: [{ type: 'text' as const, text }] });
const system = (content: string) => ({ role: 'system' as const, content });
const calculator = [{ type: 'function' as const, name: 'calculator', inputSchema: {} }];

describe('demo model replies (runtime.md §3.6)', () => {
  it('echoes the first 200 characters of the latest user message with the demo notice', () => {
    const reply = demoReply({ prompt: [system('x'), user('old'), user('x'.repeat(250))] });
    expect(reply).toEqual({ kind: 'text', text: expect.stringContaining(`You wrote: "${'x'.repeat(200)}".`) });
    expect((reply as { text: string }).text.startsWith('[Offline demo model — not a real AI] ')).toBe(true);
  });

  it('calls the calculator for arithmetic only when it is offered', () => {
    expect(demoReply({ prompt: [user('What is 12 * (3 + 4)?')], tools: calculator })).toEqual({ kind: 'tool-call', expression: '12 * (3 + 4)' });
    expect(demoReply({ prompt: [user('What is 12 * (3 + 4)?')] }).kind).toBe('text');
    expect(demoReply({ prompt: [user('I have 3 apples')], tools: calculator }).kind).toBe('text');
  });

  it('answers with the calculator result after the tool round', () => {
    const prompt: LanguageModelV3Prompt = [
      user('2+2?'),
      { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'c', toolName: 'calculator', input: { expression: '2+2' } }] },
      { role: 'tool', content: [{ type: 'tool-result', toolCallId: 'c', toolName: 'calculator', output: { type: 'text', value: '{"result":"4"}' } }] },
    ];
    expect(demoReply({ prompt, tools: calculator })).toEqual({ kind: 'text', text: expect.stringMatching(/^The result is 4\. \[Offline demo model/) });
  });

  it('routes to the second allowed member and plans one sub-request per member up to n', () => {
    const route = demoReply({ prompt: [system('Pick one.\n"member" must be one of: "Analyst", "Reviewer".'), user('hi')] });
    expect(JSON.parse((route as { text: string }).text)).toEqual({ member: 'Reviewer', reason: 'demo routing' });
    const single = demoReply({ prompt: [system('"member" must be one of: "Solo".'), user('hi')] });
    expect(JSON.parse((single as { text: string }).text)).toEqual({ member: 'Solo', reason: 'demo routing' });
    const plan = demoReply({ prompt: [system('Plan.\nGive 1 to 2 sub-requests; "member" must be one of: "A", "B", "C".'), user('Build it')] });
    expect(JSON.parse((plan as { text: string }).text)).toEqual({
      subRequests: [
        { member: 'A', request: 'Please help with: Build it' },
        { member: 'B', request: 'Please help with: Build it' },
      ],
    });
  });

  it('ends a later collaborate contribution with [DONE]', () => {
    const sys = system('You are Ann in a discussion with Bob.');
    expect((demoReply({ prompt: [sys, user('Topic')] }) as { text: string }).text.endsWith('[DONE]')).toBe(false);
    expect((demoReply({ prompt: [sys, user('Topic\n\n**Ann:** first thoughts')] }) as { text: string }).text.endsWith('\n[DONE]')).toBe(true);
  });

  it('summarises for compaction', () => {
    const reply = demoReply({ prompt: [system('Summarise the conversation so far for your own later use. Keep facts.'), user('User: hello')] });
    expect(reply).toEqual({ kind: 'text', text: 'Summary (demo): User: hello' });
  });

  it('finds arithmetic in prose', () => {
    expect(findArithmetic('compute 2^10 please.')).toBe('2^10');
    expect(findArithmetic('what about 1.5 * 4?')).toBe('1.5 * 4');
    expect(findArithmetic('no numbers here')).toBeNull();
    expect(findArithmetic('version 2.0')).toBeNull();
  });
});

describe('DemoLanguageModel through the AI SDK', () => {
  it('streams about three words per piece and marks its usage estimated', async () => {
    const result = streamText({ model: new DemoLanguageModel(), prompt: 'one two three four five six seven' });
    const pieces: string[] = [];
    for await (const delta of result.textStream) pieces.push(delta);
    expect(pieces[0]).toBe('[Offline demo model');
    expect(pieces.join('')).toContain('You wrote: "one two three four five six seven".');
    const metadata = await result.providerMetadata;
    expect(metadata).toEqual({ wegent: { estimated: true } });
    expect((await result.usage).outputTokens).toBeGreaterThan(0);
  });
});
