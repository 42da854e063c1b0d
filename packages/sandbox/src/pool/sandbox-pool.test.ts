import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../drivers/bwrap.js';
import { InMemoryPortClaimStore, PortAllocator } from '../ports/port-allocator.js';
import { SandboxFolders, sh, testRootfs } from '../testing/sandbox-fixture.js';
import { InMemorySandboxRecordStore } from './records.js';
import { SandboxPool, type SandboxPoolOptions } from './sandbox-pool.js';

/** A process exists and is not a zombie (a killed launcher stays a zombie until Node reaps it). */
function isAlive(pid: number): boolean {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

describe('SandboxPool (bwrap driver)', () => {
  const folders = new SandboxFolders();
  let rootfsDir: string;
  const pools: SandboxPool[] = [];

  beforeAll(async () => {
    await folders.init();
    rootfsDir = (await testRootfs()).dir;
    const probe = await new BwrapDriver({ stateDir: folders.stateDir, rootfsDir }).probe();
    if (!probe.available) throw new Error(`the bwrap driver is not available on this machine: ${probe.reason}`);
  }, 180_000);
  afterEach(async () => { await Promise.all(pools.splice(0).map((p) => p.close())); });
  afterAll(async () => { await folders.dispose(); });

  function makePool(over: Partial<SandboxPoolOptions> = {}): SandboxPool {
    const pool = new SandboxPool({
      driver: new BwrapDriver({ stateDir: folders.stateDir, rootfsDir }),
      records: new InMemorySandboxRecordStore(),
      hostId: 'test-host', instanceId: 'i-1', dataDir: folders.dataDir, runDir: folders.runBase,
      ...over,
    });
    pools.push(pool);
    return pool;
  }
  const sleeper = sh('sleep 60');
  const req = (taskId: string, ownerId = 'alice', signal = new AbortController().signal) => ({ taskId, turnId: `${taskId}-t1`, ownerId, command: sleeper, signal });

  it('gives a task one sandbox and reuses it while it is alive; its labels name owner and task', async () => {
    const pool = makePool();
    const a = await pool.acquire(req('task-1'));
    const b = await pool.acquire({ ...req('task-1'), turnId: 'task-1-t2' });
    expect(b.id).toBe(a.id);
    expect(b.inUseBy).toEqual(['task-1-t1', 'task-1-t2']);
    expect(a.state).toBe('Running');
    const owned = await new BwrapDriver({ stateDir: folders.stateDir, rootfsDir }).listOwned();
    expect(owned.find((h) => h.sandboxId === a.id)?.labels).toMatchObject({ taskId: 'task-1', ownerId: 'alice', hostId: 'test-host' });
  });

  it('records the lifecycle Created → Running → Completed → Cleanup → Deleted and ends an idle sandbox', async () => {
    const pool = makePool({ idleTimeoutMs: 200 });
    const states: string[] = [];
    void (async () => { for await (const r of pool.statusChanges()) states.push(`${r.state}${r.stateReason ? `:${r.stateReason}` : ''}`); })();
    const rec = await pool.acquire(req('task-idle'));
    pool.release('task-idle', 'task-idle-t1');
    for (let i = 0; i < 100 && !states.includes('Deleted:IDLE_TIMEOUT'); i++) await sleep(50);
    expect(states).toEqual(['Created', 'Running', 'Completed:IDLE_TIMEOUT', 'Cleanup:IDLE_TIMEOUT', 'Deleted:IDLE_TIMEOUT']);
    expect(existsSync(`${folders.runBase}/${rec.id}`)).toBe(false);
    expect(existsSync(rec.workspaceDir)).toBe(true); // the workspace is retained
  });

  it('requests of a task that arrive while its sandbox is ending all get the one next sandbox, with the workspace', async () => {
    const pool = makePool();
    const first = await pool.acquire(req('task-ending'));
    writeFileSync(`${first.workspaceDir}/kept.txt`, 'kept\n');
    const ending = pool.stop(first.id, 'USER_STOPPED');
    const next = await Promise.all([1, 2, 3].map((i) => pool.acquire({ ...req('task-ending'), turnId: `task-ending-t${i + 1}` })));
    await ending;
    expect(new Set(next.map((r) => r.id)).size).toBe(1);
    expect(next[0]!.id).not.toBe(first.id);
    expect(readFileSync(`${next[0]!.workspaceDir}/kept.txt`, 'utf8')).toBe('kept\n');
    expect((await pool.list({ taskId: 'task-ending', states: ['Running'] })).map((r) => r.inUseBy.sort())).toEqual([['task-ending-t2', 'task-ending-t3', 'task-ending-t4']]);
  });

  it('ends an idle sandbox after the idle timeout its Shell asked for, not the pool default', async () => {
    const pool = makePool({ idleTimeoutMs: 600_000 });
    const rec = await pool.acquire({ ...req('task-shell-idle'), idleTimeoutMs: 300 });
    pool.release('task-shell-idle', 'task-shell-idle-t1');
    let ended: string | undefined;
    for (let i = 0; i < 60 && !ended; i++) {
      await sleep(50);
      const r = (await pool.list({ taskId: 'task-shell-idle' }))[0];
      if (r?.state === 'Deleted') ended = `${r.state}:${r.stateReason}`;
    }
    expect(ended).toBe('Deleted:IDLE_TIMEOUT');
    expect(rec.state).toBe('Running');
  });

  it('queues beyond the global cap, reports the position, and grants the slot when one frees', async () => {
    const pool = makePool({ scheduler: { maxRunning: 1 } });
    const first = await pool.acquire(req('task-a', 'alice'));
    const positions: number[] = [];
    const second = pool.acquire({ ...req('task-b', 'bob'), onQueued: (p) => positions.push(p) });
    await sleep(50);
    expect(pool.scheduler.queued()).toEqual([{ ownerId: 'bob', label: 'task-b', position: 1 }]);
    expect(positions).toEqual([1]);
    await pool.stop(first.id, 'USER_STOPPED');
    expect((await second).state).toBe('Running');
  });

  it('cancelling a queued request removes it at once and creates no record', async () => {
    const pool = makePool({ scheduler: { maxRunning: 1 } });
    await pool.acquire(req('task-a'));
    const ac = new AbortController();
    const queued = pool.acquire(req('task-b', 'bob', ac.signal));
    await sleep(20);
    ac.abort();
    await expect(queued).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(await pool.list({ taskId: 'task-b' })).toEqual([]);
  });

  it('cancelling running work kills its whole process group within 2 s, even processes that ignore SIGTERM', async () => {
    const pool = makePool();
    const ac = new AbortController();
    const rec = await pool.acquire({ ...req('task-c', 'alice', ac.signal), command: sh('trap "" TERM; sleep 100 & sleep 100 & (trap "" TERM; sleep 100) & wait') });
    let pids: number[] = [];
    for (let i = 0; i < 40 && pids.length < 5; i++) { pids = await pool.hostPids(rec.id); await sleep(25); }
    expect(pids.length).toBeGreaterThanOrEqual(5);
    const t0 = Date.now();
    ac.abort();
    while (pids.some((p) => isAlive(p)) && Date.now() - t0 < 3000) await sleep(20);
    expect(pids.filter((p) => isAlive(p))).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(2000);
    for (let i = 0; i < 40 && (await pool.list({ taskId: 'task-c' }))[0]?.state !== 'Deleted'; i++) await sleep(25);
    expect((await pool.list({ taskId: 'task-c' }))[0]).toMatchObject({ state: 'Deleted', stateReason: 'USER_STOPPED' });
  });

  it('a sandbox that runs out of memory as a whole fails with OOM and says so', async () => {
    const pool = makePool();
    const rec = await pool.acquire({ ...req('task-oom'), command: sh('tail /dev/zero'), limits: { memoryMB: 64, tmpMB: 16 } });
    let r = rec;
    for (let i = 0; i < 200 && r.state !== 'Deleted'; i++) { await sleep(25); r = (await pool.list({ taskId: 'task-oom' }))[0] ?? r; }
    expect(r).toMatchObject({ state: 'Deleted', stateReason: 'OOM', oomKilled: true, message: 'The sandbox ran out of memory (limit 64 MiB) and was stopped.' });
  });

  it('allocates host ports only for sandboxes that publish one, and releases them on clean-up', async () => {
    const ports = new PortAllocator(new InMemoryPortClaimStore(), { hostId: 'test-host' });
    const pool = makePool({ ports });
    const plain = await pool.acquire(req('task-p1'));
    const publishing = await pool.acquire({ ...req('task-p2'), publishPorts: [3000] });
    expect(plain.ports).toEqual([]);
    expect(publishing.ports).toEqual([{ container: 3000, host: 10001, url: 'http://127.0.0.1:10001' }]);
    await pool.stop(publishing.id, 'USER_STOPPED');
    expect(await ports.allocate('someone-else')).toEqual([10001]);
    // A claim whose sandbox is not live here (a crash before its clean-up) is reclaimed; live ones stay.
    const again = await pool.acquire({ ...req('task-p3'), publishPorts: [3000] });
    expect(await pool.reclaimPorts()).toEqual([10001]);
    expect(again.ports[0]!.host).toBe(10002);
    expect(await ports.allocate('next')).toEqual([10001]);
  });

  it('at start-up, reaps the sandboxes and records a previous run left behind', async () => {
    const records = new InMemorySandboxRecordStore();
    const crashed = makePool({ records, instanceId: 'old' });
    const rec = await crashed.acquire(req('task-r'));
    const pids = await crashed.hostPids(rec.id);
    expect(pids.length).toBeGreaterThan(0);
    // A new instance with the same storage and state folder, as after a restart.
    // Other test files run bwrap sandboxes on this host meanwhile: only labelled ones are reaped here.
    const fresh = makePool({ records, instanceId: 'new', reapUnlabelled: false });
    const reaped = await fresh.reapOrphans();
    expect(reaped.removed).toContain(rec.id);
    expect(reaped.records).toContain(rec.id);
    expect(pids.filter((p) => isAlive(p))).toEqual([]);
    expect(await records.get(rec.id)).toMatchObject({ state: 'Deleted', stateReason: 'CRASHED' });
  });
});
