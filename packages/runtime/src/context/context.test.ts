import { describe, expect, it } from 'vitest';
import { capToolOutput, cutToBytes, toolResultText } from './tool-output-cap.js';
import { contextBudget, estimatePrompt, estimateTokens, TokenEstimator } from './token-budget.js';

describe('tool output cap (runtime.md §10.1)', () => {
  it('leaves texts within the limit alone', () => {
    expect(capToolOutput('x'.repeat(100), 100)).toBe('x'.repeat(100));
  });

  it('keeps the first 30% and the last 70% of the limit around a marker with the omitted byte count', () => {
    const text = 'a'.repeat(50) + 'b'.repeat(100) + 'c'.repeat(50);
    const capped = capToolOutput(text, 100);
    expect(capped).toBe(`${'a'.repeat(30)}\n[… 100 bytes omitted …]\n${'b'.repeat(20)}${'c'.repeat(50)}`);
  });

  it('never splits a character: the split character is omitted', () => {
    // 'é' is 2 bytes; with L = 10 the head is 3 bytes ("aé" = 3) and the tail 7 bytes.
    const text = 'aé' + 'x'.repeat(20) + '€€€';
    const capped = capToolOutput(text, 10);
    const [head, tail] = capped.split(/\n\[… \d+ bytes omitted …\]\n/);
    expect(head).toBe('aé');
    expect(Buffer.byteLength(tail!)).toBeLessThanOrEqual(7);
    expect(tail).toBe('€€');
    const omitted = Number(/\[… (\d+) bytes/.exec(capped)![1]);
    expect(Buffer.byteLength(head!) + omitted + Buffer.byteLength(tail!)).toBe(Buffer.byteLength(text));
  });

  it('moves a head cut that falls inside a character back before it', () => {
    const text = '€'.repeat(20); // 60 bytes
    const capped = capToolOutput(text, 20); // head 6 bytes = 2 chars, tail 14 bytes -> 4 chars (12 bytes)
    expect(capped).toBe(`€€\n[… 42 bytes omitted …]\n€€€€`);
  });

  it('counts a lone surrogate as three bytes', () => {
    expect(capToolOutput('\ud83d', 3)).toBe('\ud83d');
  });

  it('renders results as text the model receives', () => {
    expect(toolResultText({ ok: true, value: 'plain' })).toBe('plain');
    expect(toolResultText({ ok: true, value: { result: '4' } })).toBe('{"result":"4"}');
    expect(toolResultText({ ok: false, error: 'boom "quoted"' })).toBe('{"error":"boom \\"quoted\\""}');
  });

  it('cuts display copies at a character boundary', () => {
    expect(cutToBytes('ab€', 4)).toBe('ab');
  });
});

describe('token estimates and budget (runtime.md §10.2, §10.3)', () => {
  it('estimates ceil(utf8 bytes / 3)', () => {
    expect(estimateTokens('')).toBe(0);
    expect(estimateTokens('abcd')).toBe(2);
    expect(estimateTokens('日本')).toBe(2);
  });

  it('sums messages with 4 tokens each, tool calls as name + JSON, plus the tools offered', () => {
    const total = estimatePrompt(
      'abc',
      [
        { role: 'user', content: 'abcdef' },
        { role: 'assistant', content: [{ type: 'tool-call', toolCallId: '1', toolName: 'calc', input: { a: 1 } }] },
        { role: 'tool', content: [{ type: 'tool-result', toolCallId: '1', toolName: 'calc', output: { type: 'text', value: '123' } }] },
      ],
      [{ name: 't', description: 'd', parameters: {} }],
    );
    const tools = estimateTokens(JSON.stringify([{ name: 't', description: 'd', parameters: {} }]));
    expect(total).toBe(1 + 4 + (2 + 4) + (estimateTokens('calc{"a":1}') + 4) + (1 + 4) + tools);
  });

  it('reserves output room by the window size', () => {
    expect(contextBudget(128_000)).toBe(128_000 - 16_000);
    expect(contextBudget(1_000_000)).toBe(1_000_000 - 48_000);
    expect(contextBudget(200_000)).toBe(200_000 - 20_000);
    expect(contextBudget(128_000, 4_000)).toBe(124_000);
    expect(contextBudget(8_000)).toBe(4_000);
  });

  it('recalibrates from reported input tokens within 0.5–2', () => {
    const estimator = new TokenEstimator();
    estimator.calibrate(100, 150);
    expect(estimator.scale(10)).toBe(15);
    estimator.calibrate(100, 1000);
    expect(estimator.factor).toBe(2);
    estimator.calibrate(100, 10);
    expect(estimator.factor).toBe(0.5);
  });
});
