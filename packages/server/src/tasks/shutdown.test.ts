import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { openStorage } from '../storage/database.js';
import { fakeTeamManifest } from '../testing/fake-team.js';
import { startTestServer } from '../testing/server.js';
import { until } from '../testing/wait.js';

let fake: FakeModelServer;
beforeAll(async () => {
  fake = await startFakeModelServer();
});
afterAll(async () => fake?.close());

describe('graceful shutdown', () => {
  it('lets a short turn finish within the grace period and fails a hanging one with WORKER_LOST', async () => {
    const server = await startTestServer({ privateHostsAllow: ['127.0.0.1'], shutdownGraceSeconds: 1 });
    await server.request('POST', '/api/v1/apply', { token: server.adminToken, raw: fakeTeamManifest(fake.openaiBaseUrl), headers: { 'content-type': 'application/yaml' } });
    fake.script([
      { match: { lastUserText: 'quick' }, steps: [{ text: 'almost', delayMs: 20 }, { text: ' done', delayMs: 400 }] },
      { match: { lastUserText: 'slow' }, steps: [{ text: 'Still writ', delayMs: 10 }, { hang: true }] },
    ]);
    const quick = (await server.request('POST', '/api/v1/tasks', { token: server.adminToken, body: { team: 't', message: 'quick' } })).body;
    const slow = (await server.request('POST', '/api/v1/tasks', { token: server.adminToken, body: { team: 't', message: 'slow' } })).body;
    await until(async () => (await server.request('GET', `/api/v1/tasks/${slow.task.metadata.uid}/runtime`, { token: server.adminToken })).body.activeStreams[0]?.offset > 0);
    await server.close();
    const storage = await openStorage(`sqlite:${server.dataDir}/wegent.db`);
    try {
      const rows = await storage.db.selectFrom('task_state').select(['task_id', 'status', 'status_reason']).execute();
      const byId = new Map(rows.map((r) => [r.task_id, r]));
      expect(byId.get(quick.task.metadata.uid)).toMatchObject({ status: 'COMPLETED' });
      expect(byId.get(slow.task.metadata.uid)).toMatchObject({ status: 'FAILED', status_reason: 'WORKER_LOST' });
      const turn = await storage.db.selectFrom('messages').select(['status', 'status_reason', 'content']).where('id', '=', slow.subtaskId).executeTakeFirstOrThrow();
      expect(turn).toEqual({ status: 'FAILED', status_reason: 'WORKER_LOST', content: 'Still writ' });
    } finally {
      await storage.close();
      rmSync(server.dataDir, { recursive: true, force: true });
    }
  });
});
