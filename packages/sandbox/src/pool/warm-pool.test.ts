import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySandboxRecordStore } from './records.js';
import { SandboxPool, type SandboxPoolOptions } from './sandbox-pool.js';
import { SandboxFolders, sh } from '../testing/sandbox-fixture.js';
import { DRIVER_NAMES, agentPid, isAlive, setupPoolDriver, until, type PoolDriverSetup } from '../testing/pool-drivers.js';

describe.each(DRIVER_NAMES)('the warm pool (%s driver)', (name) => {
  const folders = new SandboxFolders();
  let env: PoolDriverSetup;
  const pools: SandboxPool[] = [];
  const ids = new Set<string>();

  beforeAll(async () => { await folders.init(); env = await setupPoolDriver(name, folders); }, 180_000);
  afterEach(async () => {
    for (const p of pools) for (const id of p.warmIds()) ids.add(id);
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });
  afterAll(async () => {
    expect(ids.size).toBeGreaterThan(3);
    expect(await env.leftovers([...ids])).toEqual([]);
    expect(await folders.leftoverRunDirs()).toEqual([]);
    await folders.dispose();
  });

  function makePool(over: Partial<SandboxPoolOptions> = {}): SandboxPool {
    const pool = new SandboxPool({
      driver: env.driver, image: env.image, records: new InMemorySandboxRecordStore(), hostId: env.hostId, instanceId: 'i-warm',
      dataDir: folders.dataDir, runDir: folders.runBase, warmPool: 1, git: { allowLocal: true }, ...over,
    });
    pools.push(pool);
    return pool;
  }
  const req = (taskId: string) => ({ taskId, turnId: `${taskId}-t1`, ownerId: 'alice', signal: new AbortController().signal });

  it('pre-starts sandboxes outside the cap; a default request takes one at once and a replacement starts', async () => {
    const pool = makePool({ warmPool: 2 });
    await pool.whenWarm();
    const warm = pool.warmIds();
    warm.forEach((id) => ids.add(id));
    expect(warm).toHaveLength(2);
    expect(pool.scheduler.usage().total).toBe(0);
    expect(await pool.list()).toEqual([]); // no record until taken
    const states: string[] = [];
    void (async () => { for await (const r of pool.statusChanges()) states.push(r.state); })();
    const t0 = performance.now();
    const rec = await pool.acquire(req('task-w1'));
    const ms = performance.now() - t0;
    expect(warm).toContain(rec.id);
    expect(rec).toMatchObject({ state: 'Running', taskId: 'task-w1', ownerId: 'alice' });
    expect(ms).toBeLessThan(50);
    expect(pool.scheduler.usage().total).toBe(1);
    await until(() => states.length >= 2, 1000);
    expect(states).toEqual(['Created', 'Running']);
    expect((await pool.handle(rec.id).exec({ command: 'echo warm; pwd' }, {})).stdout).toBe('warm\n/workspace\n');
    await pool.whenWarm();
    const refilled = pool.warmIds();
    refilled.forEach((id) => ids.add(id));
    expect(refilled).toHaveLength(2);
    expect(refilled).not.toContain(rec.id);
  });

  it('a request that is not default starts cold and leaves the warm sandbox in place', async () => {
    const pool = makePool();
    await pool.whenWarm();
    const [warmId] = pool.warmIds();
    const rec = await pool.acquire({ ...req('task-cold'), limits: { memoryMB: 512 } });
    ids.add(rec.id);
    expect(rec.id).not.toBe(warmId);
    expect(rec.limits.memoryMB).toBe(512);
    expect(pool.warmIds()).toEqual([warmId]);
    const custom = await pool.acquire({ ...req('task-cmd'), command: sh('sleep 30') });
    ids.add(custom.id);
    expect(pool.warmIds()).toEqual([warmId]);
  });

  it('a warm sandbox taken for a task with a repository gets the clone before it is handed out', async () => {
    const repo = join(folders.root, 'warm-repo.git');
    const work = join(folders.root, 'warm-work');
    const gitEnv = { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' };
    execFileSync('sh', ['-c', `git init -q --bare -b main ${repo} && git init -q -b main ${work} && cd ${work} && echo cloned > file.txt && git add . && git commit -qm c && git push -q ${repo} main`], { env: gitEnv });
    const pool = makePool();
    await pool.whenWarm();
    const [warmId] = pool.warmIds();
    const rec = await pool.acquire({ ...req('task-clone'), workspace: { gitUrl: `file://${repo}` } });
    expect(rec.id).toBe(warmId);
    expect((await pool.handle(rec.id).exec({ command: 'cat file.txt; git log --format=%s' }, {})).stdout).toBe('cloned\nc\n');
  });

  it('recycles warm sandboxes unused for the idle hour (shortened here), removing everything of them', async () => {
    const pool = makePool({ warmMaxIdleMs: 400 });
    await pool.whenWarm();
    const [first] = pool.warmIds() as [string];
    ids.add(first);
    const pids = await pool.hostPids(first);
    expect(pids.length).toBeGreaterThan(0);
    await until(() => pool.warmIds().length === 1 && pool.warmIds()[0] !== first, 20_000);
    pool.warmIds().forEach((id) => ids.add(id));
    await until(() => pids.every((p) => !isAlive(p)), 5000);
    expect(existsSync(join(folders.dataDir, 'sandboxes', first))).toBe(false);
    expect(existsSync(join(folders.runBase, first))).toBe(false);
  });

  it('replaces a warm sandbox whose agent stopped answering its heartbeats, so no task is handed it', async () => {
    const pool = makePool({ heartbeatIntervalMs: 200 });
    await pool.whenWarm();
    const [first] = pool.warmIds() as [string];
    ids.add(first);
    const pids = await pool.hostPids(first);
    const agent = agentPid(pids);
    expect(agent).toBeDefined();
    process.kill(agent as number, 'SIGSTOP');
    await until(() => pool.warmIds().length === 1 && pool.warmIds()[0] !== first, 20_000);
    pool.warmIds().forEach((id) => ids.add(id));
    await until(() => pids.every((p) => !isAlive(p)), 5000);
    const rec = await pool.acquire(req('task-after-stall'));
    expect(rec.id).not.toBe(first);
    expect((await pool.handle(rec.id).exec({ command: 'echo fine' }, {})).stdout).toBe('fine\n');
  });

  it('closing the pool removes its warm sandboxes and their folders', async () => {
    const pool = makePool({ warmPool: 2 });
    await pool.whenWarm();
    const warm = pool.warmIds();
    warm.forEach((id) => ids.add(id));
    await pool.close();
    expect(await env.leftovers(warm)).toEqual([]);
    const left = await readdir(join(folders.dataDir, 'sandboxes')).catch(() => [] as string[]);
    expect(left.filter((d) => warm.includes(d))).toEqual([]);
  });
});

describe('eviction of idle sandboxes at the cap (bwrap driver)', () => {
  const folders = new SandboxFolders();
  let env: PoolDriverSetup;
  const pools: SandboxPool[] = [];

  beforeAll(async () => { await folders.init(); env = await setupPoolDriver('bwrap', folders); }, 180_000);
  afterEach(async () => { await Promise.all(pools.splice(0).map((p) => p.close())); });
  afterAll(async () => { expect(await folders.leftoverRunDirs()).toEqual([]); await folders.dispose(); });

  function makePool(maxRunning: number): SandboxPool {
    const pool = new SandboxPool({
      driver: env.driver, records: new InMemorySandboxRecordStore(), hostId: env.hostId, instanceId: 'i-evict',
      dataDir: folders.dataDir, runDir: folders.runBase, scheduler: { maxRunning, maxPerUser: 3 },
    });
    pools.push(pool);
    return pool;
  }
  const req = (taskId: string, ownerId: string) => ({ taskId, turnId: `${taskId}-t1`, ownerId, command: sh('sleep 60'), signal: new AbortController().signal });
  const stateOf = async (pool: SandboxPool, taskId: string) => (await pool.list({ taskId }))[0];

  it('a request waiting at the cap evicts the idle sandbox (Completed, EVICTED), whose workspace is kept', async () => {
    const pool = makePool(1);
    const a = await pool.acquire(req('task-a', 'alice'));
    pool.release('task-a', 'task-a-t1');
    const b = await pool.acquire(req('task-b', 'bob'));
    expect(b.state).toBe('Running');
    const evicted = await until(async () => { const r = await stateOf(pool, 'task-a'); return r?.state === 'Deleted' ? r : undefined; });
    expect(evicted).toMatchObject({ stateReason: 'EVICTED' });
    expect(existsSync(a.workspaceDir)).toBe(true);
  });

  it('never evicts a sandbox in use; the waiting request gets its place once the turn releases it', async () => {
    const pool = makePool(1);
    await pool.acquire(req('task-a', 'alice'));
    let granted = false;
    const waiting = pool.acquire(req('task-b', 'bob')).then((r) => { granted = true; return r; });
    await new Promise((r) => setTimeout(r, 300));
    expect(granted).toBe(false);
    expect((await stateOf(pool, 'task-a'))?.state).toBe('Running');
    pool.release('task-a', 'task-a-t1');
    expect((await waiting).state).toBe('Running');
    expect((await stateOf(pool, 'task-a'))?.stateReason).toBe('EVICTED');
  });

  it('prefers the user with the most sandboxes, then the least recently used', async () => {
    const pool = makePool(3);
    await pool.acquire(req('task-b1', 'bob'));
    pool.release('task-b1', 'task-b1-t1'); // bob's is the oldest idle one
    await new Promise((r) => setTimeout(r, 20));
    await pool.acquire(req('task-a1', 'alice'));
    await pool.acquire(req('task-a2', 'alice'));
    pool.release('task-a1', 'task-a1-t1');
    await new Promise((r) => setTimeout(r, 20));
    pool.release('task-a2', 'task-a2-t1');
    await pool.acquire(req('task-c', 'carol'));
    expect((await stateOf(pool, 'task-a1'))?.stateReason).toBe('EVICTED');
    expect(await stateOf(pool, 'task-a2')).toMatchObject({ state: 'Running', stateReason: null });
    expect(await stateOf(pool, 'task-b1')).toMatchObject({ state: 'Running', stateReason: null });
  });
});
