import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer } from '../testing/index.js';
import { executeRun } from './execute-run.js';
import { member, modelConnection, RecordingHost, soloRequest } from './test-fixtures.js';
import type { ModelConnection, RunRequest } from './types.js';

let fake: FakeModelServer;

beforeAll(async () => {
  fake = await startFakeModelServer();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.reset();
});

const never = () => new AbortController().signal;

function openaiModel(overrides: Partial<ModelConnection> = {}): ModelConnection {
  return modelConnection({ protocol: 'openai', modelId: 'gpt-4o-mini', baseUrl: fake.openaiBaseUrl, ...overrides });
}

function requestWith(model: ModelConnection, overrides: Partial<RunRequest> = {}): RunRequest {
  return soloRequest({ members: [member({ model })], ...overrides });
}

async function run(request: RunRequest, signal = never()) {
  const host = new RecordingHost();
  const outcome = await executeRun(request, host, signal);
  return { host, outcome };
}

/** Every event of a turn: exactly one terminal event, and after it only member.finished. */
function expectOneTerminalEvent(host: RecordingHost) {
  const types = host.types();
  const terminals = types.filter((t) => t === 'turn.done' || t === 'turn.failed' || t === 'turn.cancelled');
  expect(terminals).toHaveLength(1);
  const after = types.slice(types.indexOf(terminals[0]!) + 1);
  expect(after.filter((t) => !t.startsWith('run.') && t !== 'member.finished')).toEqual([]);
}

describe('streaming an answer on every protocol', () => {
  const cases: Array<{ name: string; model: () => ModelConnection; protocol: string }> = [
    { name: 'OpenAI chat completions', model: () => openaiModel(), protocol: 'openai-chat' },
    { name: 'OpenAI Responses', model: () => openaiModel({ apiFormat: 'responses' }), protocol: 'openai-responses' },
    { name: 'an OpenAI-compatible endpoint', model: () => openaiModel({ protocol: 'openai-compatible', modelId: 'deepseek-chat' }), protocol: 'openai-chat' },
    {
      name: 'an OpenAI-compatible Responses endpoint',
      model: () => openaiModel({ protocol: 'openai-compatible', apiFormat: 'responses', modelId: 'local-model' }),
      protocol: 'openai-responses',
    },
    { name: 'Anthropic', model: () => modelConnection({ protocol: 'anthropic', modelId: 'claude-sonnet-4-5', baseUrl: fake.anthropicBaseUrl }), protocol: 'anthropic' },
    { name: 'Google', model: () => modelConnection({ protocol: 'google', modelId: 'gemini-2.5-flash', baseUrl: fake.googleBaseUrl }), protocol: 'google' },
  ];

  it.each(cases)('streams text deltas and reports usage with $name', async ({ model, protocol }) => {
    fake.script([{ steps: [{ text: 'Hel' }, { text: 'lo, ' }, { text: 'world!' }, { usage: { inputTokens: 21, outputTokens: 4, cachedInputTokens: 5 } }] }]);
    const { host, outcome } = await run(requestWith(model()));

    expect(outcome).toEqual({ status: 'completed' });
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]!.protocol).toBe(protocol);
    expect(host.types()).toEqual(['run.started', 'member.started', 'context.updated', 'text.delta', 'text.delta', 'text.delta', 'usage', 'turn.done', 'member.finished', 'run.done']);
    expect(host.streamedText()).toBe('Hello, world!');
    expect(host.of('turn.done')[0]).toMatchObject({ turnId: 'turn-1', text: 'Hello, world!', reasoning: '', finishReason: 'stop' });
    const m = model();
    expect(host.of('usage')[0]).toMatchObject({
      turnId: 'turn-1',
      model: { uid: m.resource.uid, name: m.resource.name, namespace: 'default', protocol: m.protocol, modelId: m.modelId },
      inputTokens: 21,
      outputTokens: 4,
      cachedInputTokens: 5,
      estimated: false,
    });
    for (const event of host.events) expect(event).toMatchObject({ taskId: 'task-1', runId: 'run-1', runSeq: 1, at: '2026-01-15T10:20:30.000Z' });
  });

  it('asks an OpenAI-compatible endpoint to include usage in the stream', async () => {
    fake.script(['ok']);
    await run(requestWith(openaiModel({ protocol: 'openai-compatible' })));
    expect(fake.requests[0]!.body.stream_options).toEqual({ include_usage: true });
  });

  it('streams reasoning as its own kind and keeps it off the answer text', async () => {
    fake.script([{ steps: [{ reasoning: 'Thinking it ' }, { reasoning: 'over.' }, { text: 'Answer.' }] }]);
    const { host } = await run(requestWith(modelConnection({ protocol: 'anthropic', modelId: 'claude-sonnet-4-5', baseUrl: fake.anthropicBaseUrl })));
    expect(host.of('reasoning.delta').map((e) => e.delta).join('')).toBe('Thinking it over.');
    expect(host.of('turn.done')[0]).toMatchObject({ text: 'Answer.', reasoning: 'Thinking it over.' });
  });

  it('estimates usage when the provider reports none', async () => {
    fake.script([{ steps: [{ text: 'Twelve chars' }, { usage: 'none' }] }]);
    const { host } = await run(requestWith(openaiModel({ protocol: 'openai-compatible' })));
    const usage = host.of('usage')[0]!;
    expect(usage.estimated).toBe(true);
    expect(usage.outputTokens).toBe(4); // ceil(12 bytes / 3)
    expect(usage.inputTokens).toBeGreaterThan(0);
  });

  it('records the turn with what it used and reports the member', async () => {
    fake.script(['ok']);
    const { host } = await run(requestWith(openaiModel()));
    expect(host.turns[0]).toMatchObject({ memberIndex: 0, memberName: 'helper-bot', purpose: 'answer', visible: true, attempt: 1 });
    expect(host.turns[0]!.resolved.model).toMatchObject({ name: 'test-model', protocol: 'openai', modelId: 'gpt-4o-mini' });
    expect(host.of('member.started')[0]).toMatchObject({
      memberIndex: 0,
      memberName: 'helper-bot',
      bot: { name: 'helper-bot', namespace: 'default' },
      purpose: 'answer',
      visible: true,
      model: { name: 'test-model', namespace: 'default', protocol: 'openai', modelId: 'gpt-4o-mini' },
      attempt: 1,
    });
    expect(host.of('member.finished')[0]).toMatchObject({ status: 'COMPLETED' });
  });
});

describe('the prompt of a solo turn', () => {
  const history: RunRequest['history'] = [
    { role: 'summary', text: 'The user likes tea.' },
    { role: 'user', text: 'What is 2+2?' },
    { role: 'assistant', text: 'It is 4.', botUid: 'uid-helper-bot', memberIndex: 0, memberName: 'Helper', purpose: 'answer' },
    { role: 'assistant', text: 'I agree.', botUid: 'uid-other-bot', memberIndex: 1, memberName: 'Reviewer', purpose: 'answer' },
    { role: 'assistant', text: 'Route to Helper', botUid: 'uid-helper-bot', memberIndex: 0, memberName: 'Helper', purpose: 'route' },
    { role: 'assistant', text: '', botUid: 'uid-helper-bot', memberIndex: 0, memberName: 'Helper', purpose: 'answer' },
    { role: 'assistant', text: 'Imported answer', imported: true },
  ];
  const soloMember = () =>
    member({
      model: openaiModel({ temperature: 0.7, maxOutputTokens: 500 }),
      prompt: 'Answer briefly.  \n',
      ghost: { uid: 'g', generation: 1, name: 'g', namespace: 'default', scope: 'user', systemPrompt: 'You are Helper.\n\n', temperature: 0, tools: [] },
    });

  it('sends system prompt, labelled history and the user message byte for byte (OpenAI chat)', async () => {
    fake.script(['ok']);
    await run(soloRequest({ members: [soloMember()], history, input: { userMessage: 'And 3+3?' }, overrides: { instructions: 'Answer in French.' } }));
    expect(fake.requests[0]!.body).toEqual({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'You are Helper.\n\nAnswer briefly.\n\nAnswer in French.\n\nCurrent date: 2026-01-15 (UTC).' },
        { role: 'user', content: 'Summary of the earlier conversation:\nThe user likes tea.' },
        { role: 'user', content: 'What is 2+2?' },
        { role: 'assistant', content: 'It is 4.' },
        { role: 'assistant', content: '[Reviewer] I agree.' },
        { role: 'assistant', content: 'Imported answer' },
        { role: 'user', content: 'And 3+3?' },
      ],
      max_tokens: 500,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('sends the same prompt to Anthropic, ending with the user message', async () => {
    fake.script(['ok']);
    const m = soloMember();
    m.model = modelConnection({ protocol: 'anthropic', modelId: 'claude-sonnet-4-5', baseUrl: fake.anthropicBaseUrl });
    await run(soloRequest({ members: [m], history, input: { userMessage: 'And 3+3?' } }));
    const body = fake.requests[0]!.body;
    expect(body.system).toEqual([{ type: 'text', text: 'You are Helper.\n\nAnswer briefly.\n\nCurrent date: 2026-01-15 (UTC).' }]);
    expect(body.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'text', text: 'And 3+3?' }] });
    expect(body.temperature).toBe(0);
  });

  it('lets a run override win over Ghost and Model settings', async () => {
    fake.script(['ok']);
    await run(soloRequest({ members: [soloMember()], input: { userMessage: 'Hi' }, overrides: { temperature: 1.2, topP: 0.5, maxOutputTokens: 42 } }));
    expect(fake.requests[0]!.body).toMatchObject({ temperature: 1.2, top_p: 0.5, max_tokens: 42 });
  });

  it('sends the API key and Model headers to the provider', async () => {
    fake.script(['ok']);
    await run(requestWith(openaiModel({ headers: { 'X-Org': 'acme' } })));
    expect(fake.requests[0]!.headers).toMatchObject({ authorization: 'Bearer sk-test-secret-key', 'x-org': 'acme' });
  });
});

describe('the tool loop', () => {
  it('runs calculator calls and gives the results back to the model', async () => {
    fake.script([
      { steps: [{ text: 'Let me compute.' }, { toolCall: { id: 'call_1', name: 'calculator', arguments: { expression: '6 * 7' } } }] },
      { steps: [{ text: 'It is 42.' }] },
    ]);
    const { host, outcome } = await run(requestWith(openaiModel()));

    expect(outcome.status).toBe('completed');
    expect(host.of('tool.started')).toEqual([expect.objectContaining({ blockId: 'tool-1', toolCallId: 'call_1', toolName: 'calculator', toolSource: 'builtin', input: { expression: '6 * 7' } })]);
    expect(host.of('tool.finished')).toEqual([expect.objectContaining({ blockId: 'tool-1', output: '{"result":"42"}', isError: false, status: 'completed' })]);
    expect(host.of('context.updated')).toHaveLength(2);
    const second = fake.requests[1]!.body;
    expect(second.messages.slice(-2)).toEqual([
      { role: 'assistant', content: 'Let me compute.', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'calculator', arguments: '{"expression":"6 * 7"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"result":"42"}' },
    ]);
    expect(host.of('turn.done')[0]).toMatchObject({ text: 'Let me compute.\n\nIt is 42.', finishReason: 'stop' });
    expect(host.streamedText()).toBe('Let me compute.\n\nIt is 42.');
    expect(host.of('usage')).toHaveLength(2); // one per model call
  });

  it('runs several calls of one round and returns results in the model order', async () => {
    fake.script([
      {
        steps: [
          { toolCall: { id: 'a', name: 'calculator', arguments: { expression: '1+1' } } },
          { toolCall: { id: 'b', name: 'calculator', arguments: { expression: '2+2' } } },
          { toolCall: { id: 'c', name: 'calculator', arguments: { expression: '3+3' } } },
        ],
      },
      'done',
    ]);
    const { host } = await run(requestWith(openaiModel()));
    expect(fake.requests[1]!.body.messages.filter((m: { role: string }) => m.role === 'tool')).toEqual([
      { role: 'tool', tool_call_id: 'a', content: '{"result":"2"}' },
      { role: 'tool', tool_call_id: 'b', content: '{"result":"4"}' },
      { role: 'tool', tool_call_id: 'c', content: '{"result":"6"}' },
    ]);
    expect(host.of('tool.finished').map((e) => e.blockId).sort()).toEqual(['tool-1', 'tool-2', 'tool-3']);
  });

  it('turns tool failures into error results for the model, not turn errors', async () => {
    fake.script([
      {
        steps: [
          { toolCall: { id: 'a', name: 'calculator', arguments: { expression: '1/0' } } },
          { toolCall: { id: 'b', name: 'teleport', arguments: {} } },
          { toolCall: { id: 'c', name: 'calculator', arguments: { expression: 5 } } },
          { toolCall: { id: 'd', name: 'calculator', arguments: '[1,2' } },
        ],
      },
      'Sorry, I could not compute that.',
    ]);
    const { host, outcome } = await run(requestWith(openaiModel()));
    expect(outcome.status).toBe('completed');
    const tools = fake.requests[1]!.body.messages.filter((m: { role: string }) => m.role === 'tool');
    expect(tools.map((m: { content: string }) => m.content)).toEqual([
      '{"error":"division by zero"}',
      '{"error":"unknown tool teleport"}',
      '{"error":"invalid arguments: expression: Invalid input: expected string, received number"}',
      '{"error":"invalid arguments: not a JSON object"}',
    ]);
    expect(host.of('tool.finished').every((e) => e.isError && e.status === 'failed')).toBe(true);
  });

  it('stops offering tools after 30 rounds and makes one final call with the rounds as text', async () => {
    fake.script([
      { match: { when: (r) => Array.isArray(r.body.tools) }, steps: [{ toolCall: { name: 'calculator', arguments: { expression: '1+1' } } }], times: 30 },
      { match: { when: (r) => r.body.tools === undefined }, steps: [{ text: 'Final answer.' }] },
    ]);
    const { host, outcome } = await run(requestWith(openaiModel(), { input: { userMessage: 'Loop forever' } }));
    expect(outcome.status).toBe('completed');
    expect(fake.requests).toHaveLength(31);
    const last = fake.requests[30]!.body;
    expect(last.tools).toBeUndefined();
    const entry = '\n\n### calculator\nArguments: {"expression":"1+1"}\nResult: {"result":"2"}';
    expect(last.messages).toEqual([
      { role: 'system', content: 'You are a helpful assistant.\n\nCurrent date: 2026-01-15 (UTC).' },
      { role: 'user', content: 'Loop forever' },
      {
        role: 'user',
        content: `Your tool calls in this turn and their results:${entry.repeat(30)}\n\nYou have used all 30 tool rounds. Answer now with what you have; do not call tools.`,
      },
    ]);
    expect(host.of('tool.started')).toHaveLength(30);
    expect(host.of('turn.done')[0]).toMatchObject({ text: 'Final answer.', finishReason: 'stop' });
  });

  it('ignores tool calls of the final call and finishes with tool_rounds_exhausted', async () => {
    fake.script([{ steps: [{ toolCall: { name: 'calculator', arguments: { expression: '2*2' } } }], times: 3 }]);
    const m = member({ model: openaiModel() });
    m.bot.maxToolRounds = 2;
    const { host, outcome } = await run(soloRequest({ members: [m] }));
    expect(outcome.status).toBe('completed');
    expect(fake.requests).toHaveLength(3);
    expect(fake.requests[2]!.body.messages.at(-1).content).toContain('You have used all 2 tool rounds.');
    expect(host.of('tool.started')).toHaveLength(2);
    expect(host.of('turn.done')[0]).toMatchObject({ finishReason: 'tool_rounds_exhausted' });
  });

  it('repeats a call whose tool call was cut off by the output limit once, with a note', async () => {
    fake.script([
      { steps: [{ toolCall: { name: 'calculator', arguments: '{"expression": "1+' } }], finishReason: 'length' },
      { steps: [{ toolCall: { name: 'calculator', arguments: { expression: '1+1' } } }] },
      'Two.',
    ]);
    const { host, outcome } = await run(requestWith(openaiModel()));
    expect(outcome.status).toBe('completed');
    expect(fake.requests[1]!.body.messages.at(-1)).toEqual({ role: 'user', content: 'Your previous tool call was cut off by the output limit; send a smaller one.' });
    expect(fake.requests[2]!.body.messages.some((m: { content?: string }) => m.content?.includes?.('cut off'))).toBe(false);
    expect(host.of('tool.started')).toHaveLength(1);
  });

  it('fails with MODEL_OUTPUT_TRUNCATED when tool calls are cut off twice', async () => {
    fake.script([{ steps: [{ toolCall: { name: 'calculator', arguments: '{"expr' } }], finishReason: 'length', times: 2 }]);
    const { host } = await run(requestWith(openaiModel()));
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_OUTPUT_TRUNCATED', retryable: true });
  });

  it('completes a text answer cut by the output limit or a content filter with that finish reason', async () => {
    fake.script([{ steps: [{ text: 'Long…' }], finishReason: 'length' }, { steps: [{ text: 'Filtered' }], finishReason: 'content_filter' }]);
    const first = await run(requestWith(openaiModel()));
    const second = await run(requestWith(openaiModel()));
    expect(first.host.of('turn.done')[0]).toMatchObject({ finishReason: 'length', text: 'Long…' });
    expect(second.host.of('turn.done')[0]).toMatchObject({ finishReason: 'content_filter' });
  });

  it('offers no tools to a Model without tool support or a Ghost with an empty list', async () => {
    fake.script(['a', 'b']);
    await run(requestWith(openaiModel({ capabilities: { tools: false } })));
    const m = member({ model: openaiModel() });
    m.ghost.tools = [];
    await run(soloRequest({ members: [m] }));
    expect(fake.requests.map((r) => r.body.tools)).toEqual([undefined, undefined]);
  });

  it('caps a long tool output for the model but keeps it for display', async () => {
    fake.script([{ steps: [{ toolCall: { name: 'calculator', arguments: { expression: '1+'.repeat(400) + '1' } } }] }, 'ok']);
    // A 5-token cap (L = 15 bytes) makes the calculator's 16-byte output too long: 4 bytes, the marker, the last 10.
    const { host } = await run(requestWith(openaiModel(), { config: { network: { privateHostsAllow: ['127.0.0.1'] }, toolOutputMaxTokens: 5 } }));
    expect(fake.requests[1]!.body.messages.at(-1).content).toBe('{"re\n[… 2 bytes omitted …]\nlt":"401"}');
    expect(host.of('tool.finished')[0]!.output).toBe('{"result":"401"}');
  });
});

describe('model errors', () => {
  it('maps 401 to MODEL_AUTH_FAILED without retrying', async () => {
    fake.script([{ steps: [{ error: { status: 401 } }] }]);
    const { host, outcome } = await run(requestWith(openaiModel()));
    expect(outcome).toEqual({ status: 'failed', error: { code: 'MODEL_AUTH_FAILED', message: "The provider rejected the API key of Model 'test-model' (namespace default). Update the key on the Model." } });
    expect(fake.requests).toHaveLength(1);
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_AUTH_FAILED', retryable: false, text: '' });
    expect(host.of('run.failed')[0]).toMatchObject({ code: 'MODEL_AUTH_FAILED' });
    expectOneTerminalEvent(host);
  });

  it('retries 429 before the first token, then reports MODEL_RATE_LIMITED', async () => {
    fake.script([{ steps: [{ error: { status: 429 } }], times: 3 }]);
    const { host } = await run(requestWith(openaiModel({ maxRetries: 2 })));
    expect(fake.requests).toHaveLength(3);
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_RATE_LIMITED', retryable: true });
  });

  it('retries a 500 and streams the answer of the retry', async () => {
    fake.script([{ steps: [{ error: { status: 500 } }] }, 'Recovered.']);
    const { host, outcome } = await run(requestWith(openaiModel()));
    expect(outcome.status).toBe('completed');
    expect(fake.requests).toHaveLength(2);
    expect(host.streamedText()).toBe('Recovered.');
  });

  it('maps 5xx after retries to MODEL_UNAVAILABLE', async () => {
    fake.script([{ steps: [{ error: { status: 503 } }], times: 2 }]);
    const { host } = await run(requestWith(openaiModel({ maxRetries: 1 })));
    expect(fake.requests).toHaveLength(2);
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_UNAVAILABLE', retryable: true });
  });

  it('maps 404, context length and other 4xx answers, quoting the provider without secrets', async () => {
    fake.script([
      { steps: [{ error: { status: 404 } }] },
      // A context overflow is retried once after compaction (runtime.md §10.6): the second one fails the turn.
      { steps: [{ error: { status: 400, code: 'context_length_exceeded' } }], times: 2 },
      { steps: [{ error: { status: 400, message: 'Bad header sk-test-secret-key for acme-org' } }] },
    ]);
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await run(requestWith(openaiModel({ headers: { 'X-Org': 'acme-org' } })))).host.of('turn.failed')[0]);
    expect(codes.map((e) => e!.code)).toEqual(['MODEL_NOT_FOUND', 'CONTEXT_TOO_LONG', 'MODEL_BAD_REQUEST']);
    expect(codes[2]!.message).toBe("The provider refused the request for Model 'test-model' (namespace default): Bad header *** for ***");
  });

  it('maps Anthropic errors the same way', async () => {
    fake.script([{ steps: [{ error: { status: 401 } }] }]);
    const { host } = await run(requestWith(modelConnection({ protocol: 'anthropic', modelId: 'claude-sonnet-4-5', baseUrl: fake.anthropicBaseUrl })));
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_AUTH_FAILED' });
  });

  it('keeps the partial text when the stream is cut, with MODEL_STREAM_INTERRUPTED and no retry', async () => {
    fake.script([{ steps: [{ text: 'Half an ' }, { text: 'answer' }, { cut: true, delayMs: 20 }] }, 'must not be used']);
    const { host, outcome } = await run(requestWith(openaiModel()));
    expect(outcome.error?.code).toBe('MODEL_STREAM_INTERRUPTED');
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_STREAM_INTERRUPTED', retryable: true, text: 'Half an answer' });
    expect(fake.requests).toHaveLength(1);
    expect(host.of('usage')).toEqual([expect.objectContaining({ estimated: true })]);
    expectOneTerminalEvent(host);
  });

  it('reports MODEL_UNREACHABLE when nothing listens at the base URL', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const { host } = await run(requestWith(openaiModel({ baseUrl: `http://127.0.0.1:${port}/v1`, maxRetries: 0 })));
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_UNREACHABLE', retryable: true });
    expect(host.of('turn.failed')[0]!.message).toContain('ECONNREFUSED');
  });

  it("refuses an ordinary user's Model on a private address before connecting", async () => {
    const { host } = await run(requestWith(openaiModel(), { config: {} }));
    expect(host.of('turn.failed')[0]).toMatchObject({
      code: 'MODEL_UNREACHABLE',
      message: "Model 'test-model' (namespace default) cannot be reached: private address not allowed for this Model; ask an admin to allow the host.",
    });
    expect(fake.requests).toHaveLength(0);
  });

  it('lets trusted Models reach local servers without an allow-list', async () => {
    fake.script(['local']);
    const { outcome } = await run(requestWith(openaiModel({ trustedOwner: true }), { config: {} }));
    expect(outcome.status).toBe('completed');
  });

  it('fails with MODEL_TIMEOUT when the stream goes idle, keeping the text so far', async () => {
    fake.script([{ steps: [{ text: 'Start' }, { hang: true }] }]);
    const { host } = await run(requestWith(openaiModel(), { config: { network: { privateHostsAllow: ['127.0.0.1'] }, modelIdleTimeoutSeconds: 0.3 } }));
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_TIMEOUT', text: 'Start' });
    const closed = await fake.waitForClose();
    expect(closed.closedEarly).toBe(true);
  });

  it('fails with MODEL_TIMEOUT when the whole call takes longer than the Model allows', async () => {
    fake.script([{ steps: [{ text: 'a' }, { text: 'b', delayMs: 400 }, { text: 'c', delayMs: 400 }, { text: 'd', delayMs: 400 }] }]);
    const { host } = await run(requestWith(openaiModel({ timeoutSeconds: 1 })));
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'MODEL_TIMEOUT', text: 'abc' });
  });

  it('fails with TURN_TIMEOUT when the turn runs too long', async () => {
    fake.script([{ steps: [{ text: 'slow' }, { hang: true }] }]);
    const { host } = await run(requestWith(openaiModel(), { config: { network: { privateHostsAllow: ['127.0.0.1'] }, turnTimeoutSeconds: 0.3 } }));
    expect(host.of('turn.failed')[0]).toMatchObject({ code: 'TURN_TIMEOUT', text: 'slow', retryable: true });
  });
});

describe('cancellation', () => {
  it('cancels mid-stream: turn.cancelled with the text so far, outcome within 1 s, provider connection closed', async () => {
    fake.script([{ steps: [{ text: 'Partial ' }, { text: 'answer' }, { hang: true }] }]);
    const controller = new AbortController();
    const host = new RecordingHost();
    const pending = executeRun(requestWith(openaiModel()), host, controller.signal);
    await host.waitFor((e) => e.type === 'text.delta' && host.streamedText() === 'Partial answer');
    const abortedAt = Date.now();
    controller.abort('USER_CANCELLED');
    const outcome = await pending;
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(outcome).toEqual({ status: 'cancelled' });
    expect(host.of('turn.cancelled')).toEqual([expect.objectContaining({ reason: 'USER_CANCELLED', text: 'Partial answer' })]);
    expect(host.of('member.finished')[0]).toMatchObject({ status: 'CANCELLED' });
    expect(host.of('run.cancelled')[0]).toMatchObject({ reason: 'USER_CANCELLED' });
    expectOneTerminalEvent(host);
    const closed = await fake.waitForClose(undefined, 1000);
    expect(closed.closedEarly).toBe(true);
    expect(closed.endedAt! - abortedAt).toBeLessThan(1000);
  });

  it('cancels before the response headers arrive', async () => {
    fake.script([{ steps: [{ delayHeadersMs: 5000 }, { text: 'late' }] }]);
    const controller = new AbortController();
    const host = new RecordingHost();
    const pending = executeRun(requestWith(openaiModel()), host, controller.signal);
    await fake.waitForRequest();
    const abortedAt = Date.now();
    controller.abort();
    await expect(pending).resolves.toEqual({ status: 'cancelled' });
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(host.of('turn.cancelled')[0]).toMatchObject({ reason: 'USER_CANCELLED', text: '' });
    expect((await fake.waitForClose(undefined, 1000)).closedEarly).toBe(true);
  });

  it('uses the cancel reason the server gives', async () => {
    const controller = new AbortController();
    controller.abort('TASK_DELETED');
    const host = new RecordingHost();
    await expect(executeRun(requestWith(openaiModel()), host, controller.signal)).resolves.toEqual({ status: 'cancelled' });
    expect(host.types()).toEqual(['run.started', 'turn.cancelled', 'member.finished', 'run.cancelled']);
    expect(host.of('turn.cancelled')[0]).toMatchObject({ reason: 'TASK_DELETED', text: '' });
    expect(fake.requests).toHaveLength(0);
  });

  it('cancels a running web_fetch and closes its block', async () => {
    const hanging = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('...');
    });
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`;
    fake.script([{ steps: [{ text: 'Fetching.' }, { toolCall: { name: 'web_fetch', arguments: { url } } }] }]);
    const controller = new AbortController();
    const host = new RecordingHost();
    const pending = executeRun(requestWith(openaiModel()), host, controller.signal);
    await host.waitFor((e) => e.type === 'tool.started');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const abortedAt = Date.now();
    controller.abort();
    await expect(pending).resolves.toEqual({ status: 'cancelled' });
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(host.of('tool.finished')[0]).toMatchObject({ status: 'cancelled', isError: true });
    expect(host.of('turn.cancelled')[0]).toMatchObject({ text: 'Fetching.' });
    expect(host.types().indexOf('tool.finished')).toBeLessThan(host.types().indexOf('turn.cancelled'));
    hanging.closeAllConnections();
    await new Promise((resolve) => hanging.close(resolve));
  });
});

describe('text offsets', () => {
  it('never emits a delta that ends inside a surrogate pair', async () => {
    fake.script([{ steps: [{ text: 'Smile \ud83d' }, { text: '\ude00 and ' }, { text: '\ud83c\udf89', splitBytes: true }, { text: ' done' }] }]);
    const { host } = await run(requestWith(openaiModel()));
    const deltas = host.of('text.delta').map((e) => e.delta);
    for (const delta of deltas) {
      const last = delta.charCodeAt(delta.length - 1);
      expect(last >= 0xd800 && last <= 0xdbff, JSON.stringify(delta)).toBe(false);
    }
    expect(deltas.join('')).toBe('Smile 😀 and 🎉 done');
    expect(host.of('turn.done')[0]!.text).toBe('Smile 😀 and 🎉 done');
  });

  it('decodes multi-byte characters split across network writes', async () => {
    fake.script([{ steps: [{ text: 'héllo wörld ✓ 日本語 👍' }], chunkBytes: 1 }]);
    const { host } = await run(requestWith(openaiModel()));
    expect(host.of('turn.done')[0]!.text).toBe('héllo wörld ✓ 日本語 👍');
    expect(host.streamedText()).not.toContain('\ufffd');
  });
});

describe('the offline demo model', () => {
  const demo = () => modelConnection({ protocol: 'demo', modelId: '', apiKey: undefined, resource: { uid: 'demo', generation: 1, name: 'demo-offline', namespace: 'default', scope: 'public' } });

  it('answers offline, clearly marked, with estimated usage', async () => {
    const { host, outcome } = await run(requestWith(demo(), { input: { userMessage: 'Tell me a story' }, config: {} }));
    expect(outcome.status).toBe('completed');
    const text = host.of('turn.done')[0]!.text;
    expect(text).toBe(
      '[Offline demo model — not a real AI] You wrote: "Tell me a story". This demo only shows how Wegent works. To get real answers, add a Model (OpenAI, Anthropic, Google or any OpenAI-compatible endpoint) and choose it for your Bot, or ask an administrator to set it as the default.',
    );
    expect(host.of('text.delta').length).toBeGreaterThan(5);
    expect(host.of('usage')).toEqual([expect.objectContaining({ estimated: true })]);
    expect(fake.requests).toHaveLength(0);
  });

  it('uses the calculator for arithmetic and reports the result', async () => {
    const { host } = await run(requestWith(demo(), { input: { userMessage: 'What is (3 + 4) * 6?' }, config: {} }));
    expect(host.of('tool.finished')[0]).toMatchObject({ output: '{"result":"42"}', isError: false });
    expect(host.of('turn.done')[0]!.text).toMatch(/^The result is 42\. \[Offline demo model — not a real AI\]/);
    expect(host.of('usage')).toEqual([expect.objectContaining({ estimated: true }), expect.objectContaining({ estimated: true })]);
  });

  it('stops at once when cancelled', async () => {
    const controller = new AbortController();
    const host = new RecordingHost();
    const pending = executeRun(requestWith(demo(), { config: {} }), host, controller.signal);
    await host.waitFor((e) => e.type === 'text.delta');
    const abortedAt = Date.now();
    controller.abort();
    await expect(pending).resolves.toEqual({ status: 'cancelled' });
    expect(Date.now() - abortedAt).toBeLessThan(200);
    expect(host.of('turn.cancelled')[0]!.text).toBe(host.streamedText());
  });
});

describe('run shape', () => {
  it('uses only the leader of a several-member solo team', async () => {
    fake.script(['from the leader']);
    const first = member({ model: openaiModel() });
    const leader = member({ index: 1, role: 'Leader', model: openaiModel(), bot: { uid: 'uid-lead', generation: 1, name: 'lead-bot', namespace: 'default', scope: 'user', displayName: 'The  Lead' } });
    const { host } = await run(soloRequest({ members: [first, leader] }));
    expect(host.of('member.started')[0]).toMatchObject({ memberIndex: 1, memberName: 'The Lead', memberRole: 'Leader' });
    expect(host.of('run.started')[0]).toMatchObject({ mode: 'solo', memberCount: 2 });
  });

  it('fails a member whose Model cannot back a chat turn before any call', async () => {
    const { host, outcome } = await run(requestWith(openaiModel({ protocol: 'dify' })));
    expect(outcome.error?.code).toBe('MODEL_PROTOCOL_UNSUPPORTED');
    expect(host.types()).toEqual(['run.started', 'turn.failed', 'member.finished', 'run.failed']);
  });
});
