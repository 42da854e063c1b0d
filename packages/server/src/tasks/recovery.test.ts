import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { until } from '../testing/wait.js';
import { freePort } from '../testing/ports.js';
import { fakeTeamManifest } from '../testing/fake-team.js';
import { openStorage } from '../storage/database.js';
import { StorageJobQueue } from '../infra/storage-job-queue.js';

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
  await api('POST', '/api/v1/apply', PIPELINE, 'application/yaml');
}, 60_000);

/** Two stages; the first waits for confirmation, so the second runs as a step (job) of its own. */
const PIPELINE = `kind: Bot
metadata: {name: b2}
spec: {ghostRef: {name: g}, shellRef: {name: Chat}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: two-steps}
spec:
  collaborationModel: pipeline
  members:
    - {role: leader, botRef: {name: b}, requireConfirmation: true}
    - {botRef: {name: b2}}
`;

async function crashAndRestart(): Promise<void> {
  child!.kill('SIGKILL');
  await new Promise((r) => child!.once('exit', r));
  await startChild();
}

/** A pipeline task paused after its first stage ('Spec'), then confirmed: its second step is running. */
async function confirmedPipeline(message: string): Promise<{ id: string; firstTurn: string; secondTurn: string }> {
  const created = await api('POST', '/api/v1/tasks', { team: 'two-steps', message });
  const id = created.task.metadata.uid;
  await until(async () => (await api('GET', `/api/v1/tasks/${id}`)).status.status === 'PENDING_CONFIRMATION');
  const confirm = await api('POST', `/api/v1/tasks/${id}/messages`, { action: 'pipeline:confirm' });
  expect(confirm).toMatchObject({ taskId: id, runSeq: 1, subtaskId: expect.any(String) });
  return { id, firstTurn: created.subtaskId, secondTurn: confirm.subtaskId };
}

/** Nothing is left waiting for a worker that is gone. */
async function expectNothingLeftRunning(): Promise<void> {
  expect((await api('GET', '/api/v1/tasks?status=RUNNING,CANCELLING,PENDING')).items).toEqual([]);
}

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

  it('re-queues a pipeline step lost after a confirmation before it showed anything, as its own step, keeping the earlier stage', async () => {
    fake.reset();
    fake.script(['Spec', { steps: [{ delayHeadersMs: 60_000 }, { text: 'never' }] }, { steps: [{ text: 'Code from the spec.' }] }]);
    const { id, firstTurn, secondTurn } = await confirmedPipeline('plan and build');
    await until(async () => (await api('GET', `/api/v1/tasks/${id}`)).status.status === 'RUNNING' && fake.requests.length === 2);
    await crashAndRestart();
    const done = await until(async () => {
      const t = await api('GET', `/api/v1/tasks/${id}`);
      return ['COMPLETED', 'FAILED'].includes(t.status.status) ? t : undefined;
    }, 15_000);
    expect(done.status).toMatchObject({ status: 'COMPLETED', runSeq: 1 });
    expect(await api('GET', `/api/v1/tasks/${id}/messages/${firstTurn}`)).toMatchObject({ status: 'COMPLETED', content: 'Spec' });
    expect(await api('GET', `/api/v1/tasks/${id}/messages/${secondTurn}`)).toMatchObject({ status: 'COMPLETED', content: 'Code from the spec.' });
    // The step ran again from the second stage: the first stage's model was not asked again.
    expect(fake.requests).toHaveLength(3);
    expect(JSON.stringify(fake.requests[2]!.body.messages)).toContain('Spec');
    const subtasks = await api('GET', `/api/v1/tasks/${id}/subtasks`);
    expect(subtasks.items.map((t: { id: string; status: string; attempt: number }) => [t.id, t.status, t.attempt])).toEqual([
      [firstTurn, 'COMPLETED', 1],
      [secondTurn, 'COMPLETED', 2],
    ]);
    await expectNothingLeftRunning();
  });

  it('fails a pipeline step lost after a confirmation once it streamed text, keeping that text and the earlier stage', async () => {
    fake.reset();
    fake.script(['Spec', { steps: [{ text: 'Half of the ', delayMs: 10 }, { text: 'code', delayMs: 10 }, { hang: true }] }]);
    const { id, firstTurn, secondTurn } = await confirmedPipeline('plan and build again');
    await until(async () => (await api('GET', `/api/v1/tasks/${id}/runtime`)).activeStreams?.[0]?.offset >= 'Half of the code'.length);
    // Let a checkpoint reach storage (at most about a second behind).
    await new Promise((r) => setTimeout(r, 1300));
    await crashAndRestart();
    const task = await api('GET', `/api/v1/tasks/${id}`);
    expect(task.status).toMatchObject({ status: 'FAILED', statusReason: 'WORKER_LOST', runSeq: 1 });
    expect(await api('GET', `/api/v1/tasks/${id}/messages/${firstTurn}`)).toMatchObject({ status: 'COMPLETED', content: 'Spec' });
    const turn = await api('GET', `/api/v1/tasks/${id}/messages/${secondTurn}`);
    expect(turn).toMatchObject({ status: 'FAILED', statusReason: 'WORKER_LOST', content: 'Half of the code' });
    expect(turn.error.message).toBe('The server stopped while this answer was being written. The text so far is kept; use Retry to run it again.');
    await expectNothingLeftRunning();
  });

  it('drops a step job the lost process still held after its run paused, and the confirmed step then runs', async () => {
    fake.reset();
    fake.script(['Spec', 'Code.']);
    const created = await api('POST', '/api/v1/tasks', { team: 'two-steps', message: 'plan, then wait' });
    const id = created.task.metadata.uid;
    await until(async () => (await api('GET', `/api/v1/tasks/${id}`)).status.status === 'PENDING_CONFIRMATION');
    child!.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    // What a crash between pausing the run and dropping its job leaves: step 0's job still claimed.
    const jobId = `${created.runId}-0`;
    const storage = await openStorage(`sqlite:${path.join(dataDir, 'wegent.db')}`);
    const queue = new StorageJobQueue(storage);
    const userId = (await storage.db.selectFrom('task_state').select('owner_id').where('task_id', '=', id).executeTakeFirstOrThrow()).owner_id;
    await queue.enqueue({ id: jobId, userId, taskId: id, runId: created.runId, runSeq: 1, step: 0, payload: { subtaskId: created.subtaskId } });
    expect(await queue.claim('gone-worker', { maxRunningPerUser: 100, capacity: 100 })).toMatchObject({ id: jobId, state: 'claimed' });
    await queue.close();
    await storage.close();

    await startChild();
    const after = await openStorage(`sqlite:${path.join(dataDir, 'wegent.db')}`);
    try {
      expect(await new StorageJobQueue(after).get(jobId)).toBeNull();
    } finally {
      await after.close();
    }
    expect((await api('GET', `/api/v1/tasks/${id}`)).status.status).toBe('PENDING_CONFIRMATION');
    await api('POST', `/api/v1/tasks/${id}/messages`, { action: 'pipeline:confirm' });
    const done = await until(async () => {
      const t = await api('GET', `/api/v1/tasks/${id}`);
      return ['COMPLETED', 'FAILED'].includes(t.status.status) ? t : undefined;
    }, 15_000);
    expect(done.status.status).toBe('COMPLETED');
    expect(fake.requests).toHaveLength(2);
    await expectNothingLeftRunning();
  });
});
