import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { until } from '../testing/wait.js';

let server: TestServer;
let user: { id: string; token: string };
const REMOTE = { 'x-forwarded-for': '203.0.113.9' };

beforeAll(async () => {
  server = await startTestServer();
  user = await server.createUser('metrics-user');
});
afterAll(async () => server?.stop());

describe('/metrics', () => {
  it('counts requests by route pattern and runs by outcome, without ids in any label', async () => {
    const created = await server.request('POST', '/api/v1/tasks', { token: user.token, body: { team: 'wegent-chat', message: 'count me' } });
    const taskId = created.body.task.metadata.uid;
    await until(async () => (await server.request('GET', `/api/v1/tasks/${taskId}`, { token: user.token })).body.status.status === 'COMPLETED');
    const res = await server.request('GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(res.text).toMatch(/http_requests_total\{method="GET",route="\/api\/v1\/tasks\/:id",status="200"\} \d+/);
    expect(res.text).toMatch(/wegent_runs_total\{status="COMPLETED",mode="solo"\} 1/);
    expect(res.text).toMatch(/wegent_turns_total\{status="COMPLETED",shell_type="Chat"\} 1/);
    expect(res.text).toMatch(/wegent_tokens_total\{protocol="demo",model_id="demo",direction="output"\} \d+/);
    expect(res.text).toContain('process_cpu_user_seconds_total');
    expect(res.text).not.toContain(taskId);
    expect(res.text).not.toContain(user.id);
  });

  it('refuses callers that are neither local nor admins, and lets admins read from anywhere', async () => {
    expect((await server.request('GET', '/metrics', { headers: REMOTE })).status).toBe(403);
    expect((await server.request('GET', '/metrics', { token: user.token, headers: REMOTE })).status).toBe(403);
    expect((await server.request('GET', '/metrics', { token: server.adminToken, headers: REMOTE })).status).toBe(200);
  });

  it('requires the metrics token when one is configured', async () => {
    const guarded = await startTestServer({ metricsToken: 'metrics-token-0123456789' });
    try {
      expect((await guarded.request('GET', '/metrics')).status).toBe(403);
      expect((await guarded.request('GET', '/metrics', { token: 'metrics-token-0123456789', headers: REMOTE })).status).toBe(200);
    } finally {
      await guarded.stop();
    }
  });
});
