import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startFakeModelServer, type FakeModelServer, type FakeRecordedRequest } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../testing/server.js';
import { fakeTeamManifest } from '../testing/fake-team.js';
import { until } from '../testing/wait.js';

let server: TestServer;
let fake: FakeModelServer;
let alice: { id: string; token: string };
let bob: { id: string; token: string };
let aliceKey: string;
let client: OpenAI;
let bobClient: OpenAI;

const sdk = (apiKey: string) => new OpenAI({ baseURL: `${server.url}/api/v1`, apiKey, maxRetries: 0, timeout: 20_000 });

/** The conversation a model request carried, as [role, text] pairs (system prompt left out). */
function conversation(request: FakeRecordedRequest): Array<[string, string]> {
  const messages = (request.body as { messages: Array<{ role: string; content: string | Array<{ text?: string }> }> }).messages;
  return messages.filter((m) => m.role !== 'system').map((m) => [m.role, typeof m.content === 'string' ? m.content : m.content.map((p) => p.text ?? '').join('')]);
}

async function taskCount(userId: string): Promise<number> {
  const row = await server.ctx.storage.db.selectFrom('task_state').select((eb) => eb.fn.countAll<number>().as('n')).where('owner_id', '=', userId).executeTakeFirstOrThrow();
  return Number(row.n);
}

beforeAll(async () => {
  fake = await startFakeModelServer();
  server = await startTestServer({ privateHostsAllow: ['127.0.0.1'] });
  alice = await server.createUser('alice');
  bob = await server.createUser('bob');
  const applied = await server.request('POST', '/api/v1/apply', { token: alice.token, raw: fakeTeamManifest(fake.openaiBaseUrl), headers: { 'content-type': 'application/yaml' } });
  expect(applied.status, applied.text).toBe(200);
  const key = await server.request('POST', '/api/v1/auth/api-keys', { token: alice.token, body: { name: 'sdk' } });
  expect(key.status, key.text).toBe(201);
  aliceKey = key.body.key;
  expect(aliceKey.startsWith('wgt_')).toBe(true);
  const bobKey = await server.request('POST', '/api/v1/auth/api-keys', { token: bob.token, body: { name: 'sdk' } });
  client = sdk(aliceKey);
  bobClient = sdk(bobKey.body.key);
});
afterAll(async () => {
  await server?.stop();
  await fake?.close();
});

describe('Responses API', () => {
  it('streams a response in the exact event order the SDK accumulator accepts, with the fake model’s text and usage', async () => {
    fake.script([{ match: { lastUserText: 'stream me' }, steps: [{ text: 'Hel' }, { text: 'lo, ' }, { text: 'world' }, { usage: { inputTokens: 11, outputTokens: 3 } }] }]);
    const stream = client.responses.stream({ model: 'default#t', input: 'stream me' });
    const events: Array<{ type: string; sequence_number: number } & Record<string, unknown>> = [];
    for await (const event of stream) events.push(event as never);
    const final = await stream.finalResponse();

    const types = events.map((e) => e.type);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta as string);
    expect(deltas.length).toBeGreaterThan(1);
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...deltas.map(() => 'response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(deltas.join('')).toBe('Hello, world');
    const created = events[0]!.response as Record<string, unknown>;
    expect(created).toMatchObject({ object: 'response', status: 'queued', output: [], model: 'default#t' });
    const itemId = (events[2]!.item as { id: string }).id;
    expect(itemId).toMatch(/^msg_[0-9a-f-]{36}$/);
    for (const e of events.slice(2, -1)) {
      expect(e.output_index).toBe(0);
      if ('item_id' in e) expect(e.item_id).toBe(itemId);
    }
    expect(events.find((e) => e.type === 'response.output_text.done')!.text).toBe('Hello, world');
    expect(final.id).toMatch(/^resp_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(final.status).toBe('completed');
    expect(final.output_text).toBe('Hello, world');
    expect((events[events.length - 1]!.response as { output: unknown }).output).toEqual([{ type: 'message', id: itemId, status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hello, world', annotations: [] }] }]);
    expect(final.usage).toEqual({ input_tokens: 11, output_tokens: 3, total_tokens: 14, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } });
    expect((final as unknown as { wegent: unknown }).wegent).toMatchObject({ runSeq: 1, taskStatus: 'COMPLETED' });
  });

  it('answers without streaming and continues the same task with previous_response_id, the first exchange as history', async () => {
    fake.script([
      { match: { lastUserText: 'first question' }, steps: [{ text: 'first answer' }, { usage: { inputTokens: 5, outputTokens: 2 } }] },
      { match: { lastUserText: 'second question' }, steps: [{ text: 'second answer' }] },
    ]);
    const first = await client.responses.create({ model: 't', input: 'first question', metadata: { ticket: 'T-1' } });
    expect(first).toMatchObject({ object: 'response', status: 'completed', model: 'default#t', previous_response_id: null, metadata: { ticket: 'T-1' }, error: null, incomplete_details: null });
    expect(first.output_text).toBe('first answer');
    const second = await client.responses.create({ model: 'default#t', input: [{ role: 'user', content: 'second question' }], previous_response_id: first.id });
    expect(second.output_text).toBe('second answer');
    expect(second.previous_response_id).toBe(first.id);
    const w1 = (first as unknown as { wegent: { taskId: string } }).wegent;
    expect((second as unknown as { wegent: unknown }).wegent).toEqual({ taskId: w1.taskId, runSeq: 2, taskStatus: 'COMPLETED' });
    const request = fake.requests.find((r) => r.lastUserText === 'second question')!;
    expect(conversation(request)).toEqual([
      ['user', 'first question'],
      ['assistant', 'first answer'],
      ['user', 'second question'],
    ]);
    // The first response still reads as it was.
    const again = await client.responses.retrieve(first.id);
    expect(again).toMatchObject({ id: first.id, status: 'completed', output: first.output, usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 } });
  });

  it('stores earlier input items as imported history and system items as run instructions, and passes sampling parameters', async () => {
    fake.script([{ match: { lastUserText: 'and now?' }, steps: [{ text: 'ok' }] }]);
    const res = await client.responses.create({
      model: 'default#t',
      instructions: 'Be brief.',
      temperature: 0.25,
      max_output_tokens: 77,
      input: [
        { role: 'developer', content: 'Answer in French.' },
        { role: 'user', content: 'earlier question' },
        // Assistant output as clients send it back (the SDK's types want the full output item here).
        { role: 'assistant', content: [{ type: 'output_text', text: 'earlier answer', annotations: [] }] } as never,
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'and now?' }] },
      ],
    });
    expect(res.status).toBe('completed');
    expect(res.instructions).toBe('Be brief.');
    expect(res).toMatchObject({ temperature: 0.25, max_output_tokens: 77 });
    const request = fake.requests.find((r) => r.lastUserText === 'and now?')!;
    expect(conversation(request)).toEqual([
      ['user', 'earlier question'],
      ['assistant', 'earlier answer'],
      ['user', 'and now?'],
    ]);
    expect(request.systemText).toContain('Be brief.\n\nAnswer in French.');
    expect(request.body).toMatchObject({ temperature: 0.25, max_tokens: 77 });
    const taskId = (res as unknown as { wegent: { taskId: string } }).wegent.taskId;
    const task = await server.request('GET', `/api/v1/tasks/${taskId}`, { token: alice.token });
    expect(task.body.spec.source).toBe('api');
    expect(task.body.spec.title).toBe('and now?');
    const messages = await server.request('GET', `/api/v1/tasks/${taskId}/messages`, { token: alice.token });
    expect(messages.body.items.map((m: { role: string; content: string; sender: { type: string } }) => [m.role, m.content, m.sender.type])).toEqual([
      ['user', 'earlier question', 'user'],
      ['assistant', 'earlier answer', 'imported'],
      ['user', 'and now?', 'user'],
      ['assistant', 'ok', 'bot'],
    ]);
    const subtasks = await server.request('GET', `/api/v1/tasks/${taskId}/subtasks`, { token: alice.token });
    expect(subtasks.body.items.map((t: { runSeq: number; status: string }) => [t.runSeq, t.status])).toEqual([[1, 'COMPLETED']]);
    // A retry of that answer runs with the same instructions and sampling parameters.
    fake.script([{ match: { lastUserText: 'and now?' }, steps: [{ text: 'ok again' }] }]);
    const answer = messages.body.items.at(-1) as { id: string };
    const retry = await server.request('POST', `/api/v1/tasks/${taskId}/retry`, { token: alice.token, body: { subtaskId: answer.id } });
    expect(retry.status, retry.text).toBe(202);
    await until(async () => (await server.request('GET', `/api/v1/tasks/${taskId}`, { token: alice.token })).body.status.status === 'COMPLETED' || undefined, 15_000, 'the retry');
    const retried = fake.requests.filter((r) => r.lastUserText === 'and now?').at(-1)!;
    expect(retried).not.toBe(request);
    expect(retried.systemText).toContain('Be brief.\n\nAnswer in French.');
    expect(retried.body).toMatchObject({ temperature: 0.25, max_tokens: 77 });
    // Read as a response, the retried run shows the request it repeats.
    const again = await client.responses.retrieve(`resp_${retry.body.runId}`);
    expect(again).toMatchObject({ status: 'completed', instructions: 'Be brief.', temperature: 0.25, max_output_tokens: 77, model: 'default#t', output_text: 'ok again' });
  });

  it('cancels a streaming response: the stream ends incomplete with the text so far and the model call is closed', async () => {
    fake.script([{ match: { lastUserText: 'long story' }, steps: [{ text: 'Once upon' }, { hang: true }] }]);
    const stream = client.responses.stream({ model: 'default#t', input: 'long story' });
    const events: Array<Record<string, unknown>> = [];
    let cancelled: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      events.push(event as never);
      if (event.type === 'response.output_text.delta' && !cancelled) {
        const id = (events[0]!.response as { id: string }).id;
        cancelled = await client.responses.cancel(id);
      }
    }
    expect(cancelled!.status).toBe('cancelled');
    const last = events[events.length - 1]!;
    expect(last.type).toBe('response.incomplete');
    const response = last.response as OpenAI.Responses.Response;
    expect(response.status).toBe('cancelled');
    expect(response.output).toEqual([expect.objectContaining({ status: 'incomplete', content: [{ type: 'output_text', text: 'Once upon', annotations: [] }] })]);
    expect(events.filter((e) => e.type === 'response.output_item.done')).toHaveLength(1);
    const closed = await fake.waitForClose((r) => r.lastUserText === 'long story');
    expect(closed.closedEarly).toBe(true);
    // Cancelling again is not an error: it answers the final status.
    expect((await client.responses.cancel(response.id)).status).toBe('cancelled');
  });

  it('answers background requests at once and reports a failed run with the runtime error code', async () => {
    fake.script([{ match: { lastUserText: 'fail please' }, steps: [{ error: { status: 401 } }] }]);
    const queued = await client.responses.create({ model: 'default#t', input: 'fail please', background: true });
    expect(['queued', 'in_progress']).toContain(queued.status);
    let current = queued;
    for (let i = 0; i < 200 && (current.status === 'queued' || current.status === 'in_progress'); i++) {
      await new Promise((r) => setTimeout(r, 25));
      current = await client.responses.retrieve(queued.id);
    }
    expect(current.status).toBe('failed');
    expect(current.error).toMatchObject({ code: 'model_auth_failed' });
    expect(current.background).toBe(true);
  });

  it('gives each visible answer turn of a pipeline its own output item, in order, and joins them for chat completions', async () => {
    const team = 'kind: Team\nmetadata: {name: pipe}\nspec: {collaborationModel: pipeline, members: [{botRef: {name: b}, role: leader}, {botRef: {name: b}}]}\n';
    const applied = await server.request('POST', '/api/v1/apply', { token: alice.token, raw: team, headers: { 'content-type': 'application/yaml' } });
    expect(applied.status, applied.text).toBe(200);
    fake.script([{ steps: [{ text: 'stage ' }, { text: 'one' }] }, { steps: [{ text: 'stage two' }] }]);
    const stream = client.responses.stream({ model: 'default#pipe', input: 'pipeline input' });
    const events: Array<Record<string, unknown>> = [];
    for await (const event of stream) events.push(event as never);
    const added = events.filter((e) => e.type === 'response.output_item.added');
    expect(added.map((e) => e.output_index)).toEqual([0, 1]);
    const doneIndex = events.findIndex((e) => e.type === 'response.output_item.done');
    expect(doneIndex).toBeLessThan(events.indexOf(added[1]!));
    const final = (events[events.length - 1]!.response as OpenAI.Responses.Response);
    expect(events[events.length - 1]!.type).toBe('response.completed');
    expect(final.output.map((o) => (o as OpenAI.Responses.ResponseOutputMessage).content[0])).toEqual([
      { type: 'output_text', text: 'stage one', annotations: [] },
      { type: 'output_text', text: 'stage two', annotations: [] },
    ]);
    expect(final.output.map((o) => (o as { id: string }).id)).toEqual(added.map((e) => (e.item as { id: string }).id));

    fake.script([{ steps: [{ text: 'first part' }] }, { steps: [{ text: 'second part' }] }]);
    const chat = await client.chat.completions.create({ model: 'default#pipe', messages: [{ role: 'user', content: 'pipeline chat' }] });
    expect(chat.choices[0]!.message.content).toBe('first part\n\nsecond part');
  });

  it('keeps the run going when a streaming client goes away', async () => {
    fake.script([{ match: { lastUserText: 'walk away' }, steps: [{ text: 'still ' }, { delayMs: 300 }, { text: 'here' }] }]);
    const stream = client.responses.stream({ model: 'default#t', input: 'walk away' });
    let id = '';
    for await (const event of stream) {
      if (event.type === 'response.created') id = event.response.id;
      if (event.type === 'response.output_text.delta') break;
    }
    let current = await client.responses.retrieve(id);
    for (let i = 0; i < 200 && current.status !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 25));
      current = await client.responses.retrieve(id);
    }
    expect(current.status).toBe('completed');
    expect(current.output_text).toBe('still here');
  });

  it('returns the original response for a repeated Idempotency-Key without running again', async () => {
    fake.script([{ match: { lastUserText: 'only once' }, steps: [{ text: 'done once' }] }]);
    const first = await client.responses.create({ model: 'default#t', input: 'only once' }, { headers: { 'Idempotency-Key': 'resp-key-1' } });
    const again = await client.responses.create({ model: 'default#t', input: 'only once' }, { headers: { 'Idempotency-Key': 'resp-key-1' } });
    expect(again.id).toBe(first.id);
    expect(again.output_text).toBe('done once');
    expect(fake.requests.filter((r) => r.lastUserText === 'only once')).toHaveLength(1);
    const other = (await client.responses.create({ model: 'default#t', input: 'something else' }, { headers: { 'Idempotency-Key': 'resp-key-1' } }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(other.status).toBe(409);
  });

  it('deletes the task a response belongs to', async () => {
    fake.script([{ match: { lastUserText: 'delete me' }, steps: [{ text: 'bye' }] }]);
    const res = await client.responses.create({ model: 'default#t', input: 'delete me' });
    const deleted = await server.request('DELETE', `/api/v1/responses/${res.id}`, { headers: { authorization: `Bearer ${aliceKey}` } });
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ id: res.id, object: 'response.deleted', deleted: true });
    const taskId = (res as unknown as { wegent: { taskId: string } }).wegent.taskId;
    expect((await server.request('GET', `/api/v1/tasks/${taskId}`, { token: alice.token })).status).toBe(404);
    await expect(client.responses.retrieve(res.id)).rejects.toMatchObject({ status: 404 });
  });
});

describe('errors on the OpenAI-compatible routes', () => {
  it('answers an unknown team with 404 model_not_found in both the Status and the OpenAI form, and writes nothing', async () => {
    const before = await taskCount(alice.id);
    const err = await client.responses.create({ model: 'default#nope', input: 'hi' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    const e = err as InstanceType<typeof OpenAI.NotFoundError>;
    expect(e.status).toBe(404);
    expect(e.error).toEqual({ message: "team 'default#nope' not found", type: 'not_found_error', code: 'model_not_found', param: 'model' });
    const raw = await server.request('POST', '/api/v1/chat/completions', { headers: { authorization: `Bearer ${aliceKey}` }, body: { model: 'a#b#c#d', messages: [{ role: 'user', content: 'x' }] } });
    expect(raw.status).toBe(404);
    expect(raw.body).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 404, reason: 'NotFound', error: { type: 'not_found_error', code: 'model_not_found', param: 'model' } });
    expect(await taskCount(alice.id)).toBe(before);
  });

  it('answers missing input, client tools, conversation and non-text items with 400 invalid_request_error naming the parameter', async () => {
    const before = await taskCount(alice.id);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ model: 'default#t' }, 'input'],
      [{ model: 'default#t', input: 'x', tools: [{ type: 'function', name: 'f', parameters: {} }] }, 'tools[0]'],
      [{ model: 'default#t', input: 'x', conversation: 'conv_1' }, 'conversation'],
      [{ model: 'default#t', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x/y.png' }] }] }, 'input[0].content[0].type'],
      [{ model: 'default#t', input: [{ type: 'function_call_output', call_id: 'c', output: 'o' }] }, 'input[0].type'],
      [{ model: 'default#t', input: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }, 'input[1].role'],
      [{ model: 'default#t', input: '   ' }, 'input'],
      [{ model: 'default#t', input: 'x', temperature: 'hot' }, 'temperature'],
      [{ model: 'default#t', input: 'x', metadata: { k: 1 } }, 'metadata.k'],
    ];
    for (const [body, param] of cases) {
      const res = await server.request('POST', '/api/v1/responses', { headers: { authorization: `Bearer ${aliceKey}` }, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body).toMatchObject({ kind: 'Status', code: 400, reason: 'BadRequest', error: { type: 'invalid_request_error', param } });
    }
    expect(await taskCount(alice.id)).toBe(before);
  });

  it("answers another user's response id with 404 in the OpenAI form, for reading, cancelling and continuing", async () => {
    fake.script([{ match: { lastUserText: 'private' }, steps: [{ text: 'secret' }] }]);
    const mine = await client.responses.create({ model: 'default#t', input: 'private' });
    for (const attempt of [() => bobClient.responses.retrieve(mine.id), () => bobClient.responses.cancel(mine.id), () => bobClient.responses.create({ model: 'default#wegent-chat', input: 'x', previous_response_id: mine.id })]) {
      const err = (await attempt().catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err.status).toBe(404);
      expect((err.error as { type: string }).type).toBe('not_found_error');
      expect(JSON.stringify(err.error)).not.toContain('secret');
    }
    expect((await client.responses.retrieve(mine.id)).output_text).toBe('secret');
  });

  it('answers a missing or wrong API key with 401 authentication_error', async () => {
    const err = (await sdk('wgt_not-a-real-key').models.list().catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(401);
    expect(err.error).toMatchObject({ type: 'authentication_error' });
    const raw = await server.request('GET', '/api/v1/models');
    expect(raw.status).toBe(401);
    expect(raw.body).toMatchObject({ kind: 'Status', code: 401, error: { type: 'authentication_error' } });
  });

  it('refuses to continue a task whose run is still active with 409 conflict_error', async () => {
    fake.script([{ match: { lastUserText: 'busy one' }, steps: [{ text: 'working' }, { hang: true }] }]);
    const started = await client.responses.create({ model: 'default#t', input: 'busy one', background: true });
    await fake.waitForRequest((r) => r.lastUserText === 'busy one');
    const err = (await client.responses.create({ model: 'default#t', input: 'next', previous_response_id: started.id }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(409);
    expect(err.error).toMatchObject({ type: 'conflict_error' });
    expect((await client.responses.cancel(started.id)).status).toBe('cancelled');
  });
});

describe('chat completions', () => {
  it('answers a completion with the fake model’s text, imported history, instructions and usage', async () => {
    fake.script([{ match: { lastUserText: 'what now' }, steps: [{ text: 'Hi ' }, { text: 'there' }, { usage: { inputTokens: 9, outputTokens: 2 } }] }]);
    const res = await client.chat.completions.create({
      model: 'default#t',
      messages: [
        { role: 'system', content: 'Stay calm.' },
        { role: 'user', content: 'before' },
        { role: 'assistant', content: 'reply before' },
        { role: 'user', content: [{ type: 'text', text: 'what now' }] },
      ],
    });
    expect(res.id).toMatch(/^chatcmpl-[0-9a-f-]{36}$/);
    expect(res).toMatchObject({ object: 'chat.completion', model: 'default#t', usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 } });
    expect(res.choices).toEqual([{ index: 0, message: { role: 'assistant', content: 'Hi there' }, finish_reason: 'stop', logprobs: null }]);
    const request = fake.requests.find((r) => r.lastUserText === 'what now')!;
    expect(conversation(request)).toEqual([
      ['user', 'before'],
      ['assistant', 'reply before'],
      ['user', 'what now'],
    ]);
    expect(request.systemText).toContain('Stay calm.');
    const tasks = await server.request('GET', '/api/v1/tasks?source=chat-completions', { token: alice.token });
    expect(tasks.body.items.some((t: { metadata: { labels: Record<string, string> } }) => t.metadata.labels['wegent.io/source'] === 'chat-completions')).toBe(true);
  });

  it('streams a completion in chunks, with a usage chunk when asked, and ends with [DONE]', async () => {
    fake.script([{ match: { lastUserText: 'stream chat' }, steps: [{ text: 'One ' }, { text: 'two ' }, { text: 'three' }, { usage: { inputTokens: 4, outputTokens: 3 } }] }]);
    const stream = await client.chat.completions.create({ model: 'default#t', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'stream chat' }] });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('One two three');
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(1);
    const finish = chunks.find((c) => c.choices[0]?.finish_reason);
    expect(finish!.choices[0]).toEqual({ index: 0, delta: {}, finish_reason: 'stop', logprobs: null });
    const last = chunks[chunks.length - 1]!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);

    fake.script([{ match: { lastUserText: 'raw stream' }, steps: [{ text: 'x' }] }]);
    const res = await fetch(`${server.url}/api/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${aliceKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default#t', stream: true, messages: [{ role: 'user', content: 'raw stream' }] }) });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const body = await res.text();
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(body).not.toContain('"usage"');
  });

  it('answers a failed run with 502 and the runtime error code', async () => {
    fake.script([{ match: { lastUserText: 'broken' }, steps: [{ error: { status: 401 } }] }]);
    const err = (await client.chat.completions.create({ model: 'default#t', messages: [{ role: 'user', content: 'broken' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(502);
    expect(err.error).toMatchObject({ type: 'server_error', code: 'model_auth_failed' });
  });

  it('refuses n > 1 and client tools with 400', async () => {
    for (const [extra, param] of [
      [{ n: 2 }, 'n'],
      [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
    ] as const) {
      const res = await server.request('POST', '/api/v1/chat/completions', { headers: { authorization: `Bearer ${aliceKey}` }, body: { model: 'default#t', messages: [{ role: 'user', content: 'x' }], ...extra } });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
  });
});

describe('models', () => {
  it("lists the caller's own Teams and the public ones as namespace#team, sorted, and reads one", async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toEqual([...ids].sort());
    expect(list.data.find((m) => m.id === 'default#t')).toMatchObject({ object: 'model', owned_by: 'user' });
    expect(list.data.find((m) => m.id === 'default#wegent-chat')).toMatchObject({ object: 'model', owned_by: 'system' });
    expect(typeof list.data[0]!.created).toBe('number');
    const bobs = (await bobClient.models.list()).data.map((m) => m.id);
    expect(bobs).not.toContain('default#t');
    expect(bobs).toContain('default#wegent-chat');
    expect(await client.models.retrieve('default#t')).toMatchObject({ id: 'default#t', object: 'model', owned_by: 'user' });
    const err = (await bobClient.models.retrieve('default#t').catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(404);
    expect(err.error).toMatchObject({ code: 'model_not_found' });
  });
});

describe('waiting limits', () => {
  let small: TestServer;
  let smallClient: OpenAI;
  let carol: { id: string; token: string };
  beforeAll(async () => {
    small = await startTestServer({ privateHostsAllow: ['127.0.0.1'], responsesSyncTimeoutSeconds: 1, maxRunningPerUser: 1, rate: { login: 0, default: 0, send: 0, aiCreate: 5 } });
    carol = await small.createUser('carol');
    const applied = await small.request('POST', '/api/v1/apply', { token: carol.token, raw: fakeTeamManifest(fake.openaiBaseUrl), headers: { 'content-type': 'application/yaml' } });
    expect(applied.status, applied.text).toBe(200);
    const key = await small.request('POST', '/api/v1/auth/api-keys', { token: carol.token, body: { name: 'sdk' } });
    smallClient = new OpenAI({ baseURL: `${small.url}/api/v1`, apiKey: key.body.key, maxRetries: 0, timeout: 20_000 });
  });
  afterAll(async () => small?.stop());

  it('cancels a response whose run never started: the stream ends incomplete with no items', async () => {
    fake.script([{ match: { lastUserText: 'blocker' }, steps: [{ text: 'busy' }, { hang: true }] }]);
    const blocker = await smallClient.responses.create({ model: 'default#t', input: 'blocker', background: true });
    await fake.waitForRequest((r) => r.lastUserText === 'blocker', 10_000);
    const stream = smallClient.responses.stream({ model: 'default#t', input: 'never runs' });
    const events: Array<Record<string, unknown>> = [];
    let cancelled: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      events.push(event as never);
      if (event.type === 'response.queued') cancelled = await smallClient.responses.cancel(event.response.id);
    }
    expect(cancelled!.status).toBe('cancelled');
    expect(events.map((e) => e.type)).toEqual(['response.created', 'response.queued', 'response.incomplete']);
    expect(events[2]!.response).toMatchObject({ status: 'cancelled', output: [] });
    expect(fake.requests.some((r) => r.lastUserText === 'never runs')).toBe(false);
    expect((await smallClient.responses.cancel(blocker.id)).status).toBe('cancelled');
  });

  it('answers in_progress after the sync timeout, 504 for chat completions, streams response.queued for a run held by the per-user cap, and rate-limits creates', async () => {
    fake.script([
      { match: { lastUserText: 'slow one' }, steps: [{ text: 'thinking' }, { hang: true }] },
      { match: { lastUserText: 'slow chat' }, steps: [{ hang: true }] },
      { match: { lastUserText: 'waiting one' }, steps: [{ text: 'my turn' }] },
    ]);
    const slow = await smallClient.responses.create({ model: 'default#t', input: 'slow one' });
    // The wait ended before the run did: the answer is the current snapshot, and GET shows the text so far.
    expect(['queued', 'in_progress']).toContain(slow.status);
    let current = slow;
    for (let i = 0; i < 200 && current.output_text !== 'thinking'; i++) {
      await new Promise((r) => setTimeout(r, 25));
      current = await smallClient.responses.retrieve(slow.id);
    }
    expect(current.status).toBe('in_progress');
    expect(current.output).toEqual([expect.objectContaining({ status: 'in_progress', content: [expect.objectContaining({ text: 'thinking' })] })]);
    await smallClient.responses.cancel(slow.id);

    const timedOut = (await smallClient.chat.completions.create({ model: 'default#t', messages: [{ role: 'user', content: 'slow chat' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(timedOut.status).toBe(504);
    expect(timedOut.error).toMatchObject({ type: 'server_error' });
    const stream = smallClient.responses.stream({ model: 'default#t', input: 'waiting one' });
    const types: string[] = [];
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.queued') {
        // Free the one slot: cancel whatever else of carol's is still active (the timed-out chat's run).
        const ours = (event.response as unknown as { wegent: { taskId: string } }).wegent.taskId;
        const others = await small.ctx.storage.db.selectFrom('task_state').select('task_id').where('owner_id', '=', carol.id).where('task_id', '!=', ours).where('status', 'in', ['PENDING', 'RUNNING', 'CANCELLING']).execute();
        expect(others.length).toBeGreaterThan(0);
        for (const o of others) await small.ctx.tasks.cancel(carol.id, o.task_id);
      }
    }
    expect(types.slice(0, 3)).toEqual(['response.created', 'response.queued', 'response.in_progress']);
    expect(types[types.length - 1]).toBe('response.completed');
    expect((await stream.finalResponse()).output_text).toBe('my turn');

    // Five creates this minute in this describe so far: the sixth is refused (WEGENT_RATE_AI_CREATE = 5 here).
    const limited = (await smallClient.responses.create({ model: 'default#t', input: 'one more' }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(limited.status).toBe(429);
    expect(limited.error).toMatchObject({ type: 'rate_limit_error' });
    expect(Number(limited.headers?.get('retry-after'))).toBeGreaterThan(0);
  });
});
