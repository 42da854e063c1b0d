import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { until } from '../testing/wait.js';
import { freePort } from '../testing/ports.js';
import { fakeTeamManifest } from '../testing/fake-team.js';

/** A real server process that the test can SIGKILL mid-stream and start again on the same data. */
const ROOT = path.resolve(import.meta.dirname, '../../../..');
const PASSWORD = 'Recovery-test-pass-42';
let fake: FakeModelServer;
let dataDir: string;
let port: number;
let child: ChildProcess | undefined;
let token: string;


async function startChild(): Promise<void> {
  child = spawn(process.execPath, ['--import', 'tsx', 'packages/server/src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', WEGENT_DATA_DIR: dataDir, WEGENT_ADMIN_PASSWORD: PASSWORD, WEGENT_PRIVATE_HOSTS_ALLOW: '127.0.0.1', WEGENT_LOG_LEVEL: 'warn', WEGENT_RATE_LOGIN: '0', WEGENT_RATE_DEFAULT: '0', WEGENT_RATE_SEND: '0', WEGENT_SANDBOX_DRIVER: 'none' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the server did not become ready');
}

async function api(method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) }, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  return text ? JSON.parse(text) : undefined;
}


beforeAll(async () => {
  fake = await startFakeModelServer();
  dataDir = mkdtempSync(path.join(tmpdir(), 'wegent-recovery-'));
  port = await freePort();
  await startChild();
  const login = await fetch(`http://127.0.0.1:${port}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: PASSWORD }) }).then((r) => r.json() as Promise<{ accessToken: string }>);
  token = login.accessToken;
  await api('POST', '/api/v1/apply', fakeTeamManifest(fake.openaiBaseUrl), 'application/yaml');
}, 60_000);

afterAll(async () => {
  child?.kill('SIGKILL');
  await fake?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('crash recovery', () => {
  it('after a SIGKILL mid-stream, leaves no task RUNNING: the streamed turn fails with WORKER_LOST and keeps its text', async () => {
    fake.script([{ steps: [{ text: 'Partial ', delayMs: 10 }, { text: 'answer', delayMs: 10 }, { hang: true }] }]);
    const created = await api('POST', '/api/v1/tasks', { team: 't', message: 'go' });
    const id = created.task.metadata.uid;
    await until(async () => (await api('GET', `/api/v1/tasks/${id}/runtime`)).activeStreams[0]?.offset >= 'Partial answer'.length);
    // Let a checkpoint reach storage (at most about a second behind).
    await new Promise((r) => setTimeout(r, 1300));
    child!.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    await startChild();
    const task = await api('GET', `/api/v1/tasks/${id}`);
    expect(task.status).toMatchObject({ status: 'FAILED', statusReason: 'WORKER_LOST' });
    const turn = await api('GET', `/api/v1/tasks/${id}/messages/${created.subtaskId}`);
    expect(turn).toMatchObject({ status: 'FAILED', statusReason: 'WORKER_LOST', content: 'Partial answer' });
    expect(turn.error.message).toContain('The server stopped while this answer was being written');
    const all = await api('GET', '/api/v1/tasks?status=RUNNING,CANCELLING');
    expect(all.items).toEqual([]);
  });

  it('re-queues a run that produced nothing observable and completes it after the restart', async () => {
    fake.reset();
    fake.script([{ steps: [{ delayHeadersMs: 60_000 }, { text: 'never' }] }, { steps: [{ text: 'second attempt' }] }]);
    const created = await api('POST', '/api/v1/tasks', { team: 't', message: 'again' });
    const id = created.task.metadata.uid;
    await until(async () => (await api('GET', `/api/v1/tasks/${id}`)).status.status === 'RUNNING' && fake.requests.length > 0);
    child!.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    await startChild();
    const done = await until(async () => {
      const t = await api('GET', `/api/v1/tasks/${id}`);
      return ['COMPLETED', 'FAILED'].includes(t.status.status) ? t : undefined;
    }, 15_000);
    expect(done.status.status).toBe('COMPLETED');
    const turn = await api('GET', `/api/v1/tasks/${id}/messages/${created.subtaskId}`);
    expect(turn).toMatchObject({ status: 'COMPLETED', content: 'second attempt' });
    const subtasks = await api('GET', `/api/v1/tasks/${id}/subtasks`);
    expect(subtasks.items[0].attempt).toBe(2);
  });
});
