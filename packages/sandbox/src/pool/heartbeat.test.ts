import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySandboxRecordStore } from './records.js';
import { SandboxPool, type AcquireRequest, type SandboxPoolOptions } from './sandbox-pool.js';
import type { SandboxRecord } from './records.js';
import { SandboxFolders, sh } from '../testing/sandbox-fixture.js';
import { DRIVER_NAMES, agentPid, isAlive, setupPoolDriver, until, type PoolDriverSetup } from '../testing/pool-drivers.js';

describe.each(DRIVER_NAMES)('heartbeats, crashes, OOM and the lifetime limit (%s driver)', (name) => {
  const folders = new SandboxFolders();
  let env: PoolDriverSetup;
  const pools: SandboxPool[] = [];
  const ids: string[] = [];

  beforeAll(async () => { await folders.init(); env = await setupPoolDriver(name, folders); }, 180_000);
  afterEach(async () => { await Promise.all(pools.splice(0).map((p) => p.close())); });
  afterAll(async () => {
    expect(await env.leftovers(ids)).toEqual([]);
    expect(await folders.leftoverRunDirs()).toEqual([]);
    await folders.dispose();
  });

  function makePool(over: Partial<SandboxPoolOptions> = {}): SandboxPool {
    const pool = new SandboxPool({
      driver: env.driver, image: env.image, records: new InMemorySandboxRecordStore(), hostId: env.hostId, instanceId: 'i-hb',
      dataDir: folders.dataDir, runDir: folders.runBase, heartbeatIntervalMs: 200, ...over,
    });
    pools.push(pool);
    return pool;
  }
  async function acquire(pool: SandboxPool, over: Partial<AcquireRequest> = {}): Promise<SandboxRecord> {
    const rec = await pool.acquire({ taskId: `task-${ids.length}`, turnId: 't1', ownerId: 'alice', signal: new AbortController().signal, ...over });
    ids.push(rec.id);
    return rec;
  }
  const finalRecord = (pool: SandboxPool, id: string, timeoutMs = 15_000) =>
    until(async () => (await pool.list()).find((r) => r.id === id && r.state === 'Deleted'), timeoutMs);

  it('an agent that stops answering fails the sandbox with AGENT_UNRESPONSIVE after 3 missed heartbeats, and it is stopped', async () => {
    const pool = makePool();
    const rec = await acquire(pool);
    const pids = await pool.hostPids(rec.id);
    const agent = agentPid(pids);
    expect(agent).toBeDefined();
    const t0 = Date.now();
    process.kill(agent as number, 'SIGSTOP');
    const end = await finalRecord(pool, rec.id);
    expect(end).toMatchObject({ stateReason: 'AGENT_UNRESPONSIVE', oomKilled: false });
    expect(end.message).toMatch(/did not answer 3 health checks/);
    expect((end.endedAt as Date).getTime() - t0).toBeGreaterThanOrEqual(3 * 200);
    expect(pids.filter(isAlive)).toEqual([]);
  });

  it('an agent that dies fails the sandbox with CRASHED and its exit code, without waiting for heartbeats', async () => {
    const pool = makePool({ heartbeatIntervalMs: 60_000 });
    const rec = await acquire(pool);
    const agent = agentPid(await pool.hostPids(rec.id));
    process.kill(agent as number, 'SIGKILL');
    const end = await finalRecord(pool, rec.id);
    expect(end).toMatchObject({ stateReason: 'CRASHED', oomKilled: false, exitCode: 137 });
    expect(end.message).toContain('137');
  });

  it('a command killed by the OOM killer reports oomKilled while the sandbox keeps running', async () => {
    const pool = makePool();
    const rec = await acquire(pool, { limits: { memoryMB: 160, tmpMB: 16 } });
    const sbx = pool.handle(rec.id);
    const ok = await sbx.exec({ command: 'echo fine' }, {});
    expect(ok).toMatchObject({ exitCode: 0, oomKilled: false });
    const r = await sbx.exec({ command: 'tail /dev/zero', timeoutSeconds: 30 }, {});
    expect(r.oomKilled).toBe(true);
    expect(r.timedOut).toBe(false);
    expect(r.signal === 'SIGKILL' || r.exitCode === 137).toBe(true);
    // The sandbox survived: it still answers, and later commands are not blamed.
    expect(await sbx.exec({ command: 'echo still here' }, {})).toMatchObject({ stdout: 'still here\n', oomKilled: false });
    expect((await pool.list({ taskId: rec.taskId }))[0]?.state).toBe('Running');
  });

  it('a sandbox that runs out of memory as a whole fails with OOM and says so', async () => {
    const pool = makePool();
    const rec = await acquire(pool, { command: sh('tail /dev/zero'), limits: { memoryMB: 64, tmpMB: 16 } });
    const end = await finalRecord(pool, rec.id, 20_000);
    expect(end).toMatchObject({ state: 'Deleted', stateReason: 'OOM', oomKilled: true, message: 'The sandbox ran out of memory (limit 64 MiB) and was stopped.' });
  });

  it('the lifetime limit ends the sandbox (Completed, LIFETIME_LIMIT) once the command in progress has finished', async () => {
    const pool = makePool({ lifetimeMs: 1000 });
    const states: string[] = [];
    void (async () => { for await (const r of pool.statusChanges()) states.push(`${r.state}${r.stateReason ? `:${r.stateReason}` : ''}`); })();
    const rec = await acquire(pool);
    const r = await pool.handle(rec.id).exec({ command: 'sleep 2; echo done' }, {});
    const finished = Date.now();
    expect(r).toMatchObject({ exitCode: 0, stdout: 'done\n' });
    const end = await finalRecord(pool, rec.id);
    expect(end.stateReason).toBe('LIFETIME_LIMIT');
    expect((end.endedAt as Date).getTime()).toBeGreaterThanOrEqual(finished - 50);
    expect(states).toEqual(['Created', 'Running', 'Completed:LIFETIME_LIMIT', 'Cleanup:LIFETIME_LIMIT', 'Deleted:LIFETIME_LIMIT']);
  });
});
