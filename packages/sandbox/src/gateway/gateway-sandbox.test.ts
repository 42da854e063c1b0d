import { randomUUID } from 'node:crypto';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySandboxRecordStore } from '../pool/records.js';
import { SandboxPool, type SandboxAgentHandle } from '../pool/sandbox-pool.js';
import { SandboxFolders } from '../testing/sandbox-fixture.js';
import { DRIVER_NAMES, setupPoolDriver, type PoolDriverSetup } from '../testing/pool-drivers.js';
import type { GatewayUsageRecord } from './model-gateway.js';

/** A model call from inside the sandbox, through the agent's forwarder on 127.0.0.1:4000. */
const CLIENT = `
const [path, text] = process.argv.slice(1);
fetch('http://127.0.0.1:4000' + path, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: 'Bearer wegent-sandbox' },
  body: JSON.stringify({ model: 'whatever', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: text }] }),
}).then(async (r) => { console.log('status', r.status); console.log(await r.text()); }, (e) => { console.log('failed', e.message); process.exit(1); });
`;

describe.each(DRIVER_NAMES)('the model gateway seen from inside a sandbox (%s driver)', (name) => {
  const folders = new SandboxFolders();
  let env: PoolDriverSetup;
  let fake: FakeModelServer;
  let pool: SandboxPool;
  let sbx: SandboxAgentHandle;
  let sandboxId = '';
  const usage: GatewayUsageRecord[] = [];
  const key = `sk-live-${randomUUID()}`;

  beforeAll(async () => {
    await folders.init();
    env = await setupPoolDriver(name, folders);
    fake = await startFakeModelServer();
    // The fake model server is on loopback: this pool lets Models reach private addresses (test only).
    pool = new SandboxPool({
      driver: env.driver, image: env.image, records: new InMemorySandboxRecordStore(), hostId: env.hostId, instanceId: 'i-gw',
      dataDir: folders.dataDir, runDir: folders.runBase, gateway: { allowPrivateTargets: true, onUsage: (u) => usage.push(u) },
    });
    const rec = await pool.acquire({ taskId: 'task-gw', turnId: 'turn-1', ownerId: 'alice', signal: new AbortController().signal });
    sandboxId = rec.id;
    sbx = pool.handle(rec.id);
  }, 180_000);

  afterAll(async () => {
    await pool?.close();
    await fake?.close();
    expect(await env.leftovers([sandboxId])).toEqual([]);
    expect(await folders.leftoverRunDirs()).toEqual([]);
    await folders.dispose();
  });

  it('a sandboxed program reaches the model with the real key added, and the key is nowhere in the sandbox', async () => {
    sbx.grantModel('turn-1', { protocol: 'openai', modelId: 'gpt-4o-mini', baseUrl: fake.openaiBaseUrl, apiKey: key });
    fake.script([{ steps: [{ text: 'Hello ' }, { text: 'sandbox' }, { usage: { inputTokens: 9, outputTokens: 2 } }] }]);
    const r = await sbx.exec({ command: ['/opt/wegent/bin/node', '-e', CLIENT, '/v1/chat/completions', 'hello from the sandbox'] }, {});
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^status 200\n/);
    expect(r.stdout).toContain('"content":"Hello "');
    expect(r.stdout).toContain('"content":"sandbox"');
    const seen = fake.requests[0]!;
    expect(seen.lastUserText).toBe('hello from the sandbox');
    expect(seen.headers.authorization).toBe(`Bearer ${key}`);
    expect(seen.model).toBe('gpt-4o-mini');
    expect(usage).toEqual([expect.objectContaining({ sandboxId, turnId: 'turn-1', model: 'gpt-4o-mini', inputTokens: 9, outputTokens: 2 })]);

    // The battery's search (§6 #3), with the key assembled from halves so no command line holds it,
    // and a planted control value that the same search must find.
    const half = Math.floor(key.length / 2);
    const search = await sbx.exec({ command: [
      `k1='${key.slice(0, half)}'; k2='${key.slice(half)}'`,
      'echo "$k1-control" > /workspace/control.txt',
      'grep -rlF --devices=skip "$k1$k2" /proc/[0-9]*/environ /workspace /tmp /run/wegent /opt/wegent/agent 2>/dev/null | sed "s/^/FOUND /"',
      'env | grep -cF "$k1$k2"',
      'grep -rlF --devices=skip "$k1-control" /workspace /tmp 2>/dev/null | sed "s/^/CONTROL /"',
    ].join('; ') }, {});
    expect(search.stdout).toBe('0\nCONTROL /workspace/control.txt\n');
  });

  it('answers 403 once the turn has released the sandbox', async () => {
    await pool.acquire({ taskId: 'task-gw', turnId: 'turn-2', ownerId: 'alice', signal: new AbortController().signal });
    pool.release('task-gw', 'turn-1');
    const r = await sbx.exec({ command: ['/opt/wegent/bin/node', '-e', CLIENT, '/v1/chat/completions', 'after the turn'] }, {});
    expect(r.stdout).toMatch(/^status 403\n.*no model is available to this sandbox right now/s);
    expect(fake.requests).toHaveLength(1);
  });
});
