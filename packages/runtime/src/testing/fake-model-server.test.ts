import { createAnthropic } from '@ai-sdk/anthropic';
import { createGoogleGenerativeAI } from '@ai-sdk/google';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError, generateText, jsonSchema, Output, streamText, tool, type LanguageModel } from 'ai';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer, type FakeProtocol } from './index.js';

let fake: FakeModelServer;

beforeAll(async () => {
  fake = await startFakeModelServer();
});

afterEach(() => {
  fake.reset();
});

afterAll(async () => {
  await fake.close();
});

const API_KEY = 'sk-test-key';

function openaiClient(options: { maxRetries?: number } = {}): OpenAI {
  return new OpenAI({ apiKey: API_KEY, baseURL: fake.openaiBaseUrl, maxRetries: options.maxRetries ?? 0 });
}

/** The AI SDK model for each protocol, built the way runtime.md §3.1 builds it. */
function aiModel(protocol: FakeProtocol | 'openai-compatible', modelId?: string): LanguageModel {
  switch (protocol) {
    case 'openai-chat':
      return createOpenAI({ apiKey: API_KEY, baseURL: fake.openaiBaseUrl }).chat(modelId ?? 'gpt-4o-mini');
    case 'openai-responses':
      return createOpenAI({ apiKey: API_KEY, baseURL: fake.openaiBaseUrl }).responses(modelId ?? 'o4-mini');
    case 'openai-compatible':
      return createOpenAICompatible({ name: 'wegent', apiKey: API_KEY, baseURL: fake.openaiBaseUrl, includeUsage: true }).chatModel(modelId ?? 'deepseek-reasoner');
    case 'anthropic':
      return createAnthropic({ apiKey: API_KEY, baseURL: fake.anthropicBaseUrl })(modelId ?? 'claude-sonnet-4-5');
    case 'google':
      return createGoogleGenerativeAI({ apiKey: API_KEY, baseURL: fake.googleBaseUrl })(modelId ?? 'gemini-2.5-flash');
  }
}

const weatherTool = tool({
  description: 'Current weather of a city',
  inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
});

/** Runs streamText (no retries unless asked, errors not logged) and gathers what it produced. */
function streamed(options: Parameters<typeof streamText>[0]) {
  return collect(streamText({ maxRetries: 0, onError: () => {}, ...options }));
}

/** Everything a streamText call produced, gathered from its full stream (errors sent or thrown). */
async function collect(result: ReturnType<typeof streamText>) {
  let text = '';
  let reasoning = '';
  const toolCalls: Array<{ toolCallId: string; toolName: string; input: unknown }> = [];
  const errors: unknown[] = [];
  let finishReason: string | undefined;
  try {
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta') text += part.text;
      else if (part.type === 'reasoning-delta') reasoning += part.text;
      else if (part.type === 'tool-call') toolCalls.push({ toolCallId: part.toolCallId, toolName: part.toolName, input: part.input });
      else if (part.type === 'error') errors.push(part.error);
      else if (part.type === 'finish') finishReason = part.finishReason;
    }
  } catch (error) {
    errors.push(error); // a broken connection is thrown from the stream rather than sent as an error part
  }
  const usage = errors.length === 0 ? await result.usage : undefined;
  return { text, reasoning, toolCalls, errors, finishReason, usage };
}

/** Reads a response body chunk by chunk as the client's socket delivered it. */
async function readChunks(response: Response): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const reader = response.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push(value);
  }
}

describe('OpenAI chat completions', () => {
  it('streams text deltas, tool-call fragments and usage to the OpenAI SDK', async () => {
    fake.script([
      {
        steps: [
          { text: 'Let me ' },
          { text: 'check.' },
          { toolCall: { id: 'call_1', name: 'get_weather', arguments: { city: 'Zürich' } } },
          { usage: { inputTokens: 42, outputTokens: 17, cachedInputTokens: 10 } },
        ],
      },
    ]);
    const stream = await openaiClient().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Weather in Zürich?' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(content).toBe('Let me check.');
    const toolDeltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(toolDeltas[0]).toMatchObject({ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather' } });
    expect(toolDeltas.length).toBeGreaterThan(2);
    expect(JSON.parse(toolDeltas.map((d) => d.function?.arguments ?? '').join(''))).toEqual({ city: 'Zürich' });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('tool_calls');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: 42, completion_tokens: 17, total_tokens: 59, prompt_tokens_details: { cached_tokens: 10 } });
  });

  it('assembles a streamed completion with the OpenAI SDK stream helper', async () => {
    fake.script([{ steps: [{ text: 'Hello' }, { text: ', world' }, { usage: { inputTokens: 5, outputTokens: 3 } }] }]);
    const completion = await openaiClient()
      .chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream_options: { include_usage: true } })
      .finalChatCompletion();
    expect(completion.choices[0]!.message.content).toBe('Hello, world');
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(completion.usage?.total_tokens).toBe(8);
  });

  it('ends the stream with data: [DONE] and sends no usage chunk unless asked', async () => {
    fake.script([{ steps: [{ text: 'ok' }, { usage: { inputTokens: 1, outputTokens: 1 } }] }]);
    const response = await fetch(`${fake.openaiBaseUrl}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const body = await response.text();
    const events = body.split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(body).not.toContain('"usage"');
  });

  it('answers a non-streaming completion with text, tool calls and usage', async () => {
    fake.script([
      {
        steps: [
          { text: 'Checking.' },
          { toolCall: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
          { usage: { inputTokens: 9, outputTokens: 4, reasoningTokens: 2 } },
        ],
      },
    ]);
    const completion = await openaiClient().chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Oslo?' }] });
    const choice = completion.choices[0]!;
    expect(choice.message.content).toBe('Checking.');
    expect(choice.message.tool_calls?.[0]).toMatchObject({ type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } });
    expect(choice.message.tool_calls?.[0]?.id).toMatch(/^call_/);
    expect(choice.finish_reason).toBe('tool_calls');
    expect(completion.usage).toMatchObject({ prompt_tokens: 9, completion_tokens: 4, completion_tokens_details: { reasoning_tokens: 2 } });
  });

  it('records each request with its exact JSON body, headers, model and prompt texts', async () => {
    fake.script(['done']);
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'First question' },
      { role: 'assistant' as const, content: 'First answer' },
      { role: 'user' as const, content: 'Second question 😀' },
    ];
    await openaiClient().chat.completions.create({ model: 'gpt-4o-mini', messages, temperature: 0 });

    const [request] = fake.requests;
    expect(request).toMatchObject({
      index: 0,
      method: 'POST',
      path: '/v1/chat/completions',
      protocol: 'openai-chat',
      model: 'gpt-4o-mini',
      stream: false,
      lastUserText: 'Second question 😀',
      systemText: 'You are terse.',
      closedEarly: false,
      finished: true,
    });
    expect(request!.body).toEqual({ model: 'gpt-4o-mini', messages, temperature: 0 });
    expect(JSON.parse(request!.rawBody)).toEqual(request!.body);
    expect(request!.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(request!.reply).toEqual({ steps: [{ text: 'done' }] });
    expect(fake.unusedReplies).toEqual([]);
  });

  it('lists models on GET /v1/models', async () => {
    const models = [];
    for await (const model of openaiClient().models.list()) models.push(model.id);
    expect(models).toContain('gpt-4o-mini');
    expect(fake.requests[0]).toMatchObject({ method: 'GET', path: '/v1/models', protocol: 'models' });
  });

  it.each([
    [401, OpenAI.AuthenticationError, 'invalid_api_key'],
    [429, OpenAI.RateLimitError, 'rate_limit_exceeded'],
    [500, OpenAI.InternalServerError, null],
  ] as const)('turns a scripted %i into the matching OpenAI SDK error', async (status, ErrorClass, code) => {
    fake.script([{ steps: [{ error: { status } }] }]);
    const failure = await openaiClient()
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ErrorClass);
    expect(failure).toMatchObject({ status, code });
  });

  it("words a context-length error as OpenAI does", async () => {
    fake.script([{ steps: [{ error: { status: 400, code: 'context_length_exceeded' } }] }]);
    const failure = await openaiClient()
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long' }] })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OpenAI.BadRequestError);
    expect(failure).toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'messages' });
    expect((failure as Error).message).toContain('maximum context length');
  });

  it('lets the SDK retry a 429 quickly and then answers', async () => {
    fake.script([{ steps: [{ error: { status: 429 } }] }, 'after retry']);
    const started = Date.now();
    const completion = await openaiClient({ maxRetries: 2 }).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(completion.choices[0]!.message.content).toBe('after retry');
    expect(fake.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('answers a clear 500 in the provider format when no reply is scripted', async () => {
    const failure = await openaiClient({ maxRetries: 2 })
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'anyone?' }] })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OpenAI.InternalServerError);
    expect((failure as Error).message).toContain('fake model server: no scripted reply');
    expect((failure as Error).message).toContain('no replies are queued');
    expect(fake.requests).toHaveLength(1); // x-should-retry: false stops the SDK retrying
  });
});

describe('OpenAI Responses API', () => {
  it('streams reasoning, text, a function call and usage to the OpenAI SDK', async () => {
    fake.script([
      {
        steps: [
          { reasoning: 'The user wants ' },
          { reasoning: 'the weather.' },
          { text: 'Looking ' },
          { text: 'it up.' },
          { toolCall: { id: 'call_w', name: 'get_weather', arguments: { city: 'Rome' } } },
          { usage: { inputTokens: 30, outputTokens: 20, reasoningTokens: 8, cachedInputTokens: 4 } },
        ],
      },
    ]);
    const stream = openaiClient().responses.stream({ model: 'o4-mini', input: 'Weather in Rome?' });
    const types: string[] = [];
    stream.on('event', (event) => types.push(event.type));
    const response = await stream.finalResponse();

    expect(types.slice(0, 2)).toEqual(['response.created', 'response.in_progress']);
    expect(types).toContain('response.reasoning_summary_text.delta');
    expect(types).toContain('response.content_part.added');
    expect(types).toContain('response.function_call_arguments.delta');
    expect(types.at(-1)).toBe('response.completed');
    expect(response.output_text).toBe('Looking it up.');
    expect(response.output.map((item) => item.type)).toEqual(['reasoning', 'message', 'function_call']);
    expect(response.output[0]).toMatchObject({ summary: [{ type: 'summary_text', text: 'The user wants the weather.' }] });
    expect(response.output[2]).toMatchObject({ call_id: 'call_w', name: 'get_weather', arguments: '{"city":"Rome"}', status: 'completed' });
    expect(response.usage).toMatchObject({
      input_tokens: 30,
      output_tokens: 20,
      input_tokens_details: { cached_tokens: 4 },
      output_tokens_details: { reasoning_tokens: 8 },
    });
  });

  it('answers a non-streaming response', async () => {
    fake.script([{ steps: [{ text: 'Plain ' }, { text: 'answer' }] }]);
    const response = await openaiClient().responses.create({ model: 'gpt-4.1', input: [{ role: 'user', content: 'Say it' }], instructions: 'Be plain.' });
    expect(response.output_text).toBe('Plain answer');
    expect(response.status).toBe('completed');
    expect(fake.requests[0]).toMatchObject({ protocol: 'openai-responses', lastUserText: 'Say it', systemText: 'Be plain.' });
  });
});

describe('Vercel AI SDK providers', () => {
  it('streams text, a tool call and usage through @ai-sdk/openai chat', async () => {
    fake.script([
      {
        steps: [{ text: 'Sure, ' }, { toolCall: { name: 'weather', arguments: { city: 'Paris' } } }, { usage: { inputTokens: 12, outputTokens: 6 } }],
      },
    ]);
    const result = await streamed({ model: aiModel('openai-chat'), prompt: 'Paris?', tools: { weather: weatherTool } });
    expect(result.errors).toEqual([]);
    expect(result.text).toBe('Sure, ');
    expect(result.toolCalls).toEqual([{ toolCallId: expect.stringMatching(/^call_/), toolName: 'weather', input: { city: 'Paris' } }]);
    expect(result.finishReason).toBe('tool-calls');
    expect(result.usage).toMatchObject({ inputTokens: 12, outputTokens: 6, totalTokens: 18 });
    expect(fake.requests[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it('streams reasoning summaries, text and usage through @ai-sdk/openai responses', async () => {
    fake.script([
      { steps: [{ reasoning: 'Thinking…' }, { text: 'Answer.' }, { usage: { inputTokens: 7, outputTokens: 5, reasoningTokens: 3 } }] },
    ]);
    const result = await streamed({ model: aiModel('openai-responses'), prompt: 'Q' });
    expect(result.errors).toEqual([]);
    expect(result.reasoning).toBe('Thinking…');
    expect(result.text).toBe('Answer.');
    expect(result.finishReason).toBe('stop');
    expect(result.usage).toMatchObject({ inputTokens: 7, outputTokens: 5, reasoningTokens: 3 });
  });

  it('streams a Responses function call through @ai-sdk/openai responses', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'call_r', name: 'weather', arguments: { city: 'Lima' } } }] }]);
    const result = await streamed({ model: aiModel('openai-responses'), prompt: 'Lima?', tools: { weather: weatherTool } });
    expect(result.errors).toEqual([]);
    expect(result.toolCalls).toEqual([{ toolCallId: 'call_r', toolName: 'weather', input: { city: 'Lima' } }]);
    expect(result.finishReason).toBe('tool-calls');
  });

  it('streams reasoning_content, text and usage through @ai-sdk/openai-compatible', async () => {
    fake.script([{ steps: [{ reasoning: 'Hmm.' }, { text: 'Yes.' }, { usage: { inputTokens: 3, outputTokens: 2 } }] }]);
    const result = await streamed({ model: aiModel('openai-compatible'), prompt: 'Q' });
    expect(result.errors).toEqual([]);
    expect(result.reasoning).toBe('Hmm.');
    expect(result.text).toBe('Yes.');
    expect(result.usage).toMatchObject({ inputTokens: 3, outputTokens: 2 });
  });

  it('streams thinking, text, a tool call and usage through @ai-sdk/anthropic', async () => {
    fake.script([
      {
        steps: [
          { reasoning: 'Let me think' },
          { reasoning: ' about it.' },
          { text: 'Checking the weather.' },
          { toolCall: { id: 'toolu_1', name: 'weather', arguments: { city: 'Kyoto' } } },
          { usage: { inputTokens: 100, outputTokens: 40, cachedInputTokens: 60 } },
        ],
      },
    ]);
    const result = await streamed({ model: aiModel('anthropic'), system: 'Be brief.', prompt: 'Kyoto?', tools: { weather: weatherTool } });
    expect(result.errors).toEqual([]);
    expect(result.reasoning).toBe('Let me think about it.');
    expect(result.text).toBe('Checking the weather.');
    expect(result.toolCalls).toEqual([{ toolCallId: 'toolu_1', toolName: 'weather', input: { city: 'Kyoto' } }]);
    expect(result.finishReason).toBe('tool-calls');
    expect(result.usage).toMatchObject({ inputTokens: 100, outputTokens: 40, cachedInputTokens: 60 });
    expect(fake.requests[0]).toMatchObject({ protocol: 'anthropic', path: '/v1/messages', systemText: 'Be brief.', lastUserText: 'Kyoto?' });
    expect(fake.requests[0]!.headers['x-api-key']).toBe(API_KEY);
  });

  it('streams thoughts, text, a function call and usage through @ai-sdk/google', async () => {
    fake.script([
      {
        steps: [
          { reasoning: 'Pondering.' },
          { text: 'Here: ' },
          { toolCall: { name: 'weather', arguments: { city: 'Nairobi' } } },
          { usage: { inputTokens: 20, outputTokens: 11, reasoningTokens: 5 } },
        ],
      },
    ]);
    const result = await streamed({ model: aiModel('google'), prompt: 'Nairobi?', tools: { weather: weatherTool } });
    expect(result.errors).toEqual([]);
    expect(result.reasoning).toBe('Pondering.');
    expect(result.text).toBe('Here: ');
    expect(result.toolCalls).toMatchObject([{ toolName: 'weather', input: { city: 'Nairobi' } }]);
    expect(result.finishReason).toBe('tool-calls');
    expect(result.usage).toMatchObject({ inputTokens: 20, outputTokens: 11, reasoningTokens: 5 });
    expect(fake.requests[0]).toMatchObject({
      protocol: 'google',
      path: '/v1beta/models/gemini-2.5-flash:streamGenerateContent',
      query: { alt: 'sse' },
      model: 'gemini-2.5-flash',
      lastUserText: 'Nairobi?',
    });
  });

  it.each(['openai-chat', 'openai-responses', 'openai-compatible', 'anthropic', 'google'] as const)(
    'answers generateText (non-streaming) through %s',
    async (protocol) => {
      fake.script([{ steps: [{ text: 'Non-' }, { text: 'streamed' }, { usage: { inputTokens: 4, outputTokens: 2 } }] }]);
      const result = await generateText({ model: aiModel(protocol), prompt: 'hi', maxRetries: 0 });
      expect(result.text).toBe('Non-streamed');
      expect(result.finishReason).toBe('stop');
      expect(result.usage).toMatchObject({ inputTokens: 4, outputTokens: 2 });
      expect(fake.requests[0]!.stream).toBe(false);
    },
  );

  it.each([
    ['openai-chat', undefined],
    ['anthropic', 'claude-sonnet-4-5'],
    ['anthropic', 'claude-3-haiku-20240307'], // structured output through the forced `json` tool
    ['google', undefined],
  ] as const)('returns structured output from a json step through %s %s', async (protocol, modelId) => {
    fake.script([{ steps: [{ json: { member: 'alice', reason: 'knows it' } }] }]);
    const schema = jsonSchema<{ member: string; reason: string }>({
      type: 'object',
      properties: { member: { type: 'string' }, reason: { type: 'string' } },
      required: ['member', 'reason'],
      additionalProperties: false,
    });
    const result = await generateText({ model: aiModel(protocol, modelId), output: Output.object({ schema }), prompt: 'Route this', maxRetries: 0 });
    expect(result.output).toEqual({ member: 'alice', reason: 'knows it' });
  });

  it('reports a length finish reason when the script overrides it', async () => {
    fake.script([{ steps: [{ text: 'Cut sho' }], finishReason: 'length' }]);
    const result = await streamed({ model: aiModel('anthropic'), prompt: 'Long story' });
    expect(result.text).toBe('Cut sho');
    expect(result.finishReason).toBe('length');
  });
});

describe('errors and broken streams', () => {
  it.each(['openai-chat', 'openai-responses', 'anthropic', 'google'] as const)(
    'surfaces 401, 429 and 500 as AI SDK API call errors through %s',
    async (protocol) => {
      for (const status of [401, 429, 500]) {
        fake.script([{ steps: [{ error: { status, message: `scripted ${status}` } }] }]);
        const result = await streamed({ model: aiModel(protocol), prompt: 'hi' });
        expect(result.errors).toHaveLength(1);
        const error = result.errors[0];
        expect(APICallError.isInstance(error)).toBe(true);
        expect(error).toMatchObject({ statusCode: status, message: `scripted ${status}`, isRetryable: status !== 401 });
      }
    },
  );

  it('uses each provider error format', async () => {
    const bodies: Record<string, unknown> = {};
    for (const [protocol, url] of [
      ['openai', `${fake.openaiBaseUrl}/chat/completions`],
      ['anthropic', `${fake.anthropicBaseUrl}/messages`],
      ['google', `${fake.googleBaseUrl}/models/gemini-2.5-pro:generateContent`],
    ] as const) {
      fake.script([{ steps: [{ error: { status: 429 } }] }]);
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"m"}' });
      expect(response.status).toBe(429);
      expect(response.headers.get('retry-after-ms')).toBe('10');
      bodies[protocol] = await response.json();
    }
    expect(bodies.openai).toEqual({ error: { message: expect.any(String), type: 'requests', param: null, code: 'rate_limit_exceeded' } });
    expect(bodies.anthropic).toMatchObject({ type: 'error', error: { type: 'rate_limit_error', message: expect.any(String) } });
    expect(bodies.google).toEqual({ error: { code: 429, message: expect.any(String), status: 'RESOURCE_EXHAUSTED' } });
  });

  it('lets the AI SDK retry 429 and 500 before any output, then streams', async () => {
    fake.script([{ steps: [{ error: { status: 429 } }] }, { steps: [{ error: { status: 500 } }] }, 'third time lucky']);
    const result = await streamed({ model: aiModel('anthropic'), prompt: 'hi', maxRetries: 2 });
    expect(result.errors).toEqual([]);
    expect(result.text).toBe('third time lucky');
    expect(fake.requests).toHaveLength(3);
  });

  it.each(['openai-chat', 'openai-responses', 'anthropic', 'google'] as const)(
    'sends an in-stream error event once output has started through %s',
    async (protocol) => {
      fake.script([{ steps: [{ text: 'Partial' }, { error: { status: 529, message: 'Overloaded' } }] }]);
      const result = await streamed({ model: aiModel(protocol), prompt: 'hi' });
      expect(result.text).toBe('Partial');
      expect(result.errors).toHaveLength(1);
      expect(JSON.stringify(result.errors[0]) + String(result.errors[0])).toContain('Overloaded');
      expect(fake.requests[0]!.finished).toBe(true);
    },
  );

  it('words a streamed Anthropic error as Anthropic does', async () => {
    fake.script([{ steps: [{ text: 'Partial' }, { error: { status: 529 } }] }]);
    const result = await streamed({ model: aiModel('anthropic'), prompt: 'hi' });
    expect(result.errors[0]).toEqual({ type: 'overloaded_error', message: 'Overloaded' });
  });

  it.each(['openai-chat', 'openai-responses', 'anthropic', 'google'] as const)('surfaces a cut stream as an error through %s', async (protocol) => {
    fake.script([{ steps: [{ text: 'Half an ans' }, { cut: true, delayMs: 20 }] }]);
    const result = await streamed({ model: aiModel(protocol), prompt: 'hi' });
    expect(result.text).toBe('Half an ans');
    expect(result.errors).toHaveLength(1);
    const request = await fake.waitForClose();
    expect(request).toMatchObject({ closedEarly: false, finished: false });
  });

  it('cuts the connection before any answer when the cut comes first', async () => {
    fake.script([{ steps: [{ cut: true }] }]);
    const result = await streamed({ model: aiModel('openai-chat'), prompt: 'hi' });
    expect(result.errors).toHaveLength(1);
    expect(APICallError.isInstance(result.errors[0])).toBe(true);
  });

  it('sends half of a non-streaming body before a cut', async () => {
    fake.script([{ steps: [{ text: 'a complete answer' }, { cut: true }] }]);
    await expect(generateText({ model: aiModel('openai-chat'), prompt: 'hi', maxRetries: 0 })).rejects.toThrow();
  });

  it('refuses Google streaming without alt=sse', async () => {
    fake.script(['never used']);
    const response = await fetch(`${fake.googleBaseUrl}/models/gemini-2.5-flash:streamGenerateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"contents":[]}',
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { status: 'INVALID_ARGUMENT', message: expect.stringContaining('alt=sse') } });
    expect(fake.unusedReplies).toHaveLength(1);
  });

  it('answers an unknown endpoint with a 404 naming it', async () => {
    const response = await fetch(`${fake.url}/v2/nothing`, { method: 'POST', body: '{}' });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { message: 'fake model server: no endpoint for POST /v2/nothing' } });
    expect(fake.requests[0]!.protocol).toBe('unknown');
  });
});

describe('cancellation and timing', () => {
  it.each(['openai-chat', 'anthropic', 'google'] as const)('marks closedEarly when the client aborts mid-stream through %s', async (protocol) => {
    fake.script([{ steps: [{ text: 'Hel' }, { hang: true }] }]);
    const controller = new AbortController();
    const result = streamText({ model: aiModel(protocol), prompt: 'hi', abortSignal: controller.signal, maxRetries: 0, onError: () => {} });
    let abortedAt = 0;
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta') {
        abortedAt = Date.now();
        controller.abort();
      }
    }
    const request = await fake.waitForClose();
    expect(request).toMatchObject({ closedEarly: true, finished: false });
    expect(request.endedAt! - abortedAt).toBeLessThan(1_000);
  });

  it('hangs before the headers until the client gives up', async () => {
    fake.script([{ steps: [{ hang: true }] }]);
    const failure = await fetch(`${fake.openaiBaseUrl}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true }),
      signal: AbortSignal.timeout(100),
    }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ name: 'TimeoutError' });
    const request = await fake.waitForClose();
    expect(request).toMatchObject({ closedEarly: true, finished: false });
  });

  it('keeps closedEarly false when the reply finishes', async () => {
    fake.script(['complete']);
    await generateText({ model: aiModel('openai-chat'), prompt: 'hi', maxRetries: 0 });
    const request = await fake.waitForClose();
    expect(request).toMatchObject({ closedEarly: false, finished: true });
  });

  it('delays the response headers by delayHeadersMs', async () => {
    fake.script([{ steps: [{ delayHeadersMs: 150 }, { text: 'late' }] }]);
    const started = Date.now();
    const response = await fetch(`${fake.openaiBaseUrl}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true }),
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(await response.text()).toContain('late');
  });

  it('sends headers at once and then waits before a delayed step', async () => {
    fake.script([{ steps: [{ text: 'late', delayMs: 300 }] }]);
    const started = Date.now();
    const response = await fetch(`${fake.anthropicBaseUrl}/messages`, {
      method: 'POST',
      body: JSON.stringify({ model: 'claude-sonnet-4-5', messages: [], stream: true }),
    });
    expect(Date.now() - started).toBeLessThan(200);
    await response.text();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });
});

describe('multi-byte text', () => {
  it('splits an emoji across TCP writes and the AI SDK still receives it intact', async () => {
    fake.script([{ steps: [{ text: 'A😀B' }, { text: '你好', splitBytes: true }] }]);
    const result = await streamed({ model: aiModel('openai-chat'), prompt: 'hi' });
    expect(result.text).toBe('A😀B你好');
  });

  it('delivers bytes of one character in separate reads when splitBytes is set', async () => {
    fake.script([{ steps: [{ text: '😀 ok 😀 ok 😀', splitBytes: true }] }]);
    const response = await fetch(`${fake.anthropicBaseUrl}/messages`, {
      method: 'POST',
      body: JSON.stringify({ model: 'claude-sonnet-4-5', messages: [], stream: true }),
    });
    const chunks = await readChunks(response);
    const strict = new TextDecoder('utf-8', { fatal: true });
    const brokenChunks = chunks.filter((chunk) => {
      try {
        strict.decode(chunk);
        return false;
      } catch {
        return true;
      }
    });
    expect(brokenChunks.length).toBeGreaterThan(0);
    expect(Buffer.concat(chunks).toString('utf8')).toContain('"text_delta","text":"😀 ok 😀 ok 😀"');
  });

  it('carries a surrogate pair split across two deltas', async () => {
    fake.script([{ steps: [{ text: 'x\uD83D' }, { text: '\uDE00y' }] }]);
    const deltas: string[] = [];
    const result = streamText({ model: aiModel('anthropic'), prompt: 'hi', maxRetries: 0 });
    for await (const delta of result.textStream) deltas.push(delta);
    expect(deltas).toEqual(['x\uD83D', '\uDE00y']);
    expect(deltas.join('')).toBe('x😀y');
  });

  it('writes a whole reply in pieces of chunkBytes and SDKs reassemble it', async () => {
    fake.script([{ steps: [{ text: 'Grüße ' }, { text: '🌍🚀' }, { usage: { inputTokens: 2, outputTokens: 2 } }], chunkBytes: 7 }]);
    const completion = await openaiClient()
      .chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream_options: { include_usage: true } })
      .finalChatCompletion();
    expect(completion.choices[0]!.message.content).toBe('Grüße 🌍🚀');
    expect(completion.usage?.total_tokens).toBe(4);
  });
});

describe('scripting', () => {
  it('answers each request with the first queued reply that matches it', async () => {
    fake.script([
      { match: { model: 'gpt-4o' }, steps: [{ text: 'for gpt-4o', delayMs: 30 }] },
      { match: { lastUserText: /alice/i }, steps: [{ text: 'for Alice' }] },
      { match: { protocol: 'anthropic' }, steps: [{ text: 'for anthropic' }] },
    ]);
    const [alice, claude, gpt] = await Promise.all([
      generateText({ model: aiModel('openai-chat', 'gpt-4o-mini'), prompt: 'I am Alice', maxRetries: 0 }),
      generateText({ model: aiModel('anthropic'), prompt: 'hello', maxRetries: 0 }),
      generateText({ model: aiModel('openai-chat', 'gpt-4o'), prompt: 'anything', maxRetries: 0 }),
    ]);
    expect([alice.text, claude.text, gpt.text]).toEqual(['for Alice', 'for anthropic', 'for gpt-4o']);
    expect(fake.unusedReplies).toEqual([]);
  });

  it('uses a reply as many times as it says', async () => {
    fake.script([{ steps: [{ text: 'again' }], times: 2 }, 'last']);
    const texts = [];
    for (let i = 0; i < 3; i++) texts.push((await generateText({ model: aiModel('google'), prompt: 'hi', maxRetries: 0 })).text);
    expect(texts).toEqual(['again', 'again', 'last']);
  });

  it('explains which queued replies did not match', async () => {
    fake.script([{ match: { model: 'other-model' }, steps: [{ text: 'x' }] }]);
    const result = await streamed({ model: aiModel('anthropic'), prompt: 'hi' });
    expect((result.errors[0] as Error).message).toMatch(/no scripted reply .*queued but not matching: a reply for model other-model/);
  });

  it('waits for past and future requests, and times out with what it saw', async () => {
    fake.script(['one', 'two']);
    await generateText({ model: aiModel('openai-chat'), prompt: 'first', maxRetries: 0 });
    await expect(fake.waitForRequest()).resolves.toMatchObject({ lastUserText: 'first' });
    const second = fake.waitForRequest((r) => r.lastUserText === 'second');
    await generateText({ model: aiModel('openai-chat'), prompt: 'second', maxRetries: 0 });
    await expect(second).resolves.toMatchObject({ index: 1 });
    await expect(fake.waitForRequest((r) => r.index === 5, 50)).rejects.toThrow('fake model server: no matching request within 50 ms (requests so far: POST /v1/chat/completions, POST /v1/chat/completions)');
  });

  it('answers under any path prefix in front of the endpoint', async () => {
    fake.script(['via a prefix']);
    const model = createOpenAICompatible({ name: 'wegent', baseURL: `${fake.url}/openrouter/api/v1`, includeUsage: true }).chatModel('any/model');
    const result = await generateText({ model, prompt: 'hi', maxRetries: 0 });
    expect(result.text).toBe('via a prefix');
    expect(fake.requests[0]).toMatchObject({ path: '/openrouter/api/v1/chat/completions', model: 'any/model' });
  });

  it('rejects a malformed step when it is scripted', () => {
    expect(() => fake.script([{ steps: [{ nonsense: 1 } as never] }])).toThrow(/unknown step/);
  });
});
