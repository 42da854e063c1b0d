import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModelGateway, type GatewayModel, type GatewayUsageRecord } from './model-gateway.js';

interface Answer { status: number; headers: IncomingHttpHeaders; body: string }

/** One HTTP request over the gateway's Unix socket, as a program inside the sandbox would send it. */
function call(socketPath: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = request({ socketPath, method, path, signal, agent: false, headers: { 'content-type': 'application/json', ...(data ? { 'content-length': data.length } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

const KEY = `sk-real-${randomUUID()}`;

describe('the model gateway (host side)', () => {
  let fake: FakeModelServer;
  let dir: string;
  let gateway: ModelGateway;
  let socket: string;
  const usage: GatewayUsageRecord[] = [];
  let openai: GatewayModel;
  let anthropic: GatewayModel;

  beforeAll(async () => {
    fake = await startFakeModelServer();
    dir = join(tmpdir(), `wegent-gw-${randomUUID().slice(0, 8)}`);
    await mkdir(dir, { recursive: true });
    openai = { protocol: 'openai', modelId: 'gpt-4o-mini', baseUrl: fake.openaiBaseUrl, apiKey: KEY };
    anthropic = { protocol: 'anthropic', modelId: 'claude-sonnet-4-5', smallModelId: 'claude-haiku-4-5', baseUrl: fake.anthropicBaseUrl, apiKey: KEY };
  });
  afterEach(async () => { await gateway?.close(); fake.reset(); usage.length = 0; });
  afterAll(async () => { await fake.close(); await rm(dir, { recursive: true, force: true }); });

  async function start(over: Partial<ConstructorParameters<typeof ModelGateway>[0]> = {}): Promise<void> {
    socket = join(dir, `${randomUUID().slice(0, 8)}.sock`);
    gateway = new ModelGateway({ sandboxId: 'sbx-1', socketPath: socket, allowPrivateTargets: true, onUsage: (u) => usage.push(u), ...over });
    await gateway.start();
  }

  it('refuses every request while no model is granted, and after the grant is revoked', async () => {
    await start();
    const r = await call(socket, 'POST', '/v1/chat/completions', { messages: [] });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toEqual({ type: 'error', error: { type: 'permission_error', message: 'no model is available to this sandbox right now' } });
    const grant = gateway.grant('turn-1', openai);
    grant.revoke();
    expect((await call(socket, 'GET', '/v1/models')).status).toBe(403);
    expect(fake.requests).toHaveLength(0);
  });

  it("checks that the route fits the granted Model's protocol", async () => {
    await start();
    gateway.grant('turn-1', anthropic);
    const wrong = await call(socket, 'POST', '/v1/chat/completions', { messages: [] });
    expect(wrong.status).toBe(400);
    expect(JSON.parse(wrong.body).error.message).toBe("this sandbox's model speaks anthropic; use POST /v1/messages");
    gateway.revokeTurn('turn-1');
    gateway.grant('turn-2', { ...openai, apiFormat: 'responses' });
    const wrong2 = await call(socket, 'POST', '/v1/messages', { messages: [] });
    expect(JSON.parse(wrong2.body).error.message).toBe("this sandbox's model speaks openai; use POST /v1/responses");
    expect((await call(socket, 'POST', '/v1/files', {})).status).toBe(404);
    expect(fake.requests).toHaveLength(0);
  });

  it('lists only the granted model ids', async () => {
    await start();
    gateway.grant('turn-1', anthropic);
    const r = await call(socket, 'GET', '/v1/models');
    expect(JSON.parse(r.body).data.map((m: { id: string }) => m.id)).toEqual(['claude-sonnet-4-5', 'claude-haiku-4-5']);
  });

  it('replaces the credentials and the model, keeps the small model, streams the answer and reads its usage', async () => {
    await start();
    gateway.grant('turn-1', anthropic);
    fake.script([
      { steps: [{ text: 'Hel' }, { text: 'lo' }, { usage: { inputTokens: 11, outputTokens: 4, cachedInputTokens: 3 } }] },
      { steps: [{ text: 'small' }, { usage: { inputTokens: 2, outputTokens: 1 } }] },
    ]);
    const r = await call(socket, 'POST', '/v1/messages?beta=true', { model: 'something-else', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'hi' }] },
      { 'x-api-key': 'wegent-sandbox', authorization: 'Bearer wegent-sandbox', cookie: 'a=b', 'anthropic-version': '2023-06-01' });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/event-stream/);
    expect(r.body).toContain('"text":"Hel"');
    const seen = fake.requests[0]!;
    expect(seen.path).toBe('/v1/messages');
    expect(seen.query).toEqual({ beta: 'true' });
    expect(seen.headers['x-api-key']).toBe(KEY);
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers.cookie).toBeUndefined();
    expect(seen.model).toBe('claude-sonnet-4-5');
    const small = await call(socket, 'POST', '/v1/messages', { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] });
    expect(JSON.parse(small.body).content[0].text).toBe('small');
    expect(fake.requests[1]!.model).toBe('claude-haiku-4-5');
    expect(usage).toEqual([
      expect.objectContaining({ sandboxId: 'sbx-1', turnId: 'turn-1', model: 'claude-sonnet-4-5', protocol: 'anthropic', inputTokens: 8, outputTokens: 4, cachedInputTokens: 3 }),
      expect.objectContaining({ model: 'claude-haiku-4-5', inputTokens: 2, outputTokens: 1 }),
    ]);
  });

  it('reads OpenAI usage, sends the key as a bearer token, and drops Set-Cookie from answers', async () => {
    await start();
    gateway.grant('turn-1', openai);
    fake.script([
      { steps: [{ text: 'ok' }, { usage: { inputTokens: 7, outputTokens: 5, reasoningTokens: 2 } }] },
      { steps: [{ error: { status: 429, message: 'slow down', headers: { 'set-cookie': 'tracking=1', 'x-provider': 'kept' } } }] },
    ]);
    const r = await call(socket, 'POST', '/v1/chat/completions', { model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] });
    expect(r.status).toBe(200);
    expect(fake.requests[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(usage[0]).toMatchObject({ model: 'gpt-4o-mini', inputTokens: 7, outputTokens: 5, reasoningTokens: 2 });
    const limited = await call(socket, 'POST', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'again' }] });
    expect(limited.status).toBe(429);
    expect(limited.headers['set-cookie']).toBeUndefined();
    expect(limited.headers['x-provider']).toBe('kept');
    expect(JSON.parse(limited.body).error.message).toBe('slow down');
  });

  it('refuses a body over 10 MiB without calling the provider', async () => {
    await start();
    gateway.grant('turn-1', openai);
    const r = await call(socket, 'POST', '/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(10 * 1024 * 1024) }] }));
    expect(r.status).toBe(413);
    expect(fake.requests).toHaveLength(0);
  });

  it('runs at most 4 requests at once per turn, and cuts the running ones when the turn ends', async () => {
    await start();
    const grant = gateway.grant('turn-1', openai);
    fake.script([{ steps: [{ text: 'start' }, { hang: true }], times: 4 }]);
    const hanging = Array.from({ length: 4 }, () => call(socket, 'POST', '/v1/chat/completions', { stream: true, messages: [{ role: 'user', content: 'wait' }] }).catch((e: unknown) => e));
    await fake.waitForRequest((r) => r.index === 3);
    const fifth = await call(socket, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'one more' }] });
    expect(fifth.status).toBe(429);
    expect(JSON.parse(fifth.body).error.message).toBe('at most 4 model requests may run at once in this sandbox');
    grant.revoke();
    const settled = await Promise.all(hanging);
    // Each client saw its stream cut (an error, or an answer that ended without finishing).
    for (const s of settled) expect(s instanceof Error || !(s as Answer).body.includes('[DONE]')).toBe(true);
    for (let i = 0; i < 4; i++) expect((await fake.waitForClose((r) => r.index === i)).closedEarly).toBe(true);
  });

  it('stops a turn at 500 requests', async () => {
    await start();
    gateway.grant('turn-1', openai);
    fake.script([{ steps: [{ text: 'x' }], times: Infinity }]);
    for (let i = 0; i < 500; i += 25) {
      const batch = await Promise.all(Array.from({ length: 25 }, (_, j) => call(socket, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: `n${i + j}` }] }).catch(() => ({ status: 0 }))));
      // At most 4 at once: extra ones in a batch are refused and not counted.
      expect(batch.every((b) => b.status === 200 || b.status === 429)).toBe(true);
    }
    // Fill up to exactly 500, sequentially.
    while (fake.requests.length < 500) expect((await call(socket, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'more' }] })).status).toBe(200);
    const over = await call(socket, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'too many' }] });
    expect(over.status).toBe(429);
    expect(JSON.parse(over.body).error.message).toBe('this turn has used its 500 model requests');
    expect(fake.requests).toHaveLength(500);
  }, 60_000);

  it('applies the address rules: private hosts only when allowed, metadata addresses never', async () => {
    await start({ allowPrivateTargets: false });
    gateway.grant('turn-1', openai);
    const r = await call(socket, 'POST', '/v1/chat/completions', { messages: [] });
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body).error.message).toBe('private address not allowed for this Model; ask an admin to allow the host');
    gateway.revokeTurn('turn-1');
    gateway.grant('turn-2', { ...openai, baseUrl: 'http://localhost:1/v1' });
    expect(JSON.parse((await call(socket, 'POST', '/v1/chat/completions', { messages: [] })).body).error.message).toBe('private address not allowed for this Model; ask an admin to allow the host');
    gateway.revokeTurn('turn-2');
    gateway.grant('turn-3', { ...openai, allowPrivate: true, baseUrl: 'http://169.254.169.254/v1' });
    expect(JSON.parse((await call(socket, 'POST', '/v1/chat/completions', { messages: [] })).body).error.message).toBe('this address is not allowed');
    gateway.revokeTurn('turn-3');
    gateway.grant('turn-4', { ...openai, allowPrivate: true });
    fake.script(['fine']);
    expect((await call(socket, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] })).status).toBe(200);
    expect(fake.requests).toHaveLength(1);
  });
});
