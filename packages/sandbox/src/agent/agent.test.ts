import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import Docker from 'dockerode';
import { AgentCallError, ExecCancelledError, health } from '../agent-client.js';
import { BwrapDriver } from '../drivers/bwrap.js';
import { DockerDriver } from '../drivers/docker.js';
import { ensureExecutorImage } from '../image/docker-image.js';
import type { SandboxDriver, SandboxSpec } from '../types.js';
import { InMemorySandboxRecordStore } from '../pool/records.js';
import { SandboxPool, type SandboxAgentHandle } from '../pool/sandbox-pool.js';
import { SandboxFolders, testRootfs } from '../testing/sandbox-fixture.js';
import { OUTPUT_CAP_BYTES } from './exec.js';

/** A process exists and is not a zombie. */
function isAlive(pid: number): boolean {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

interface Setup { driver: SandboxDriver; image?: string; leftovers(id: string): Promise<string[]> }

const drivers: [string, (folders: SandboxFolders) => Promise<Setup>][] = [
  ['bwrap', async (folders) => {
    const driver = new BwrapDriver({ stateDir: folders.stateDir, rootfsDir: (await testRootfs()).dir });
    const probe = await driver.probe();
    if (!probe.available) throw new Error(`the bwrap driver is not available on this machine: ${probe.reason}`);
    return { driver, leftovers: async (id) => (await readdir(folders.stateDir).catch(() => [] as string[])).filter((f) => f.startsWith(id)) };
  }],
  ['docker', async () => {
    const docker = new Docker();
    try { await docker.ping(); } catch (err) { throw new Error(`dockerd is not answering (run .ci/sandbox-setup.sh): ${(err as Error).message}`); }
    const image = await ensureExecutorImage(docker, await testRootfs());
    return {
      driver: new DockerDriver({ docker, hostId: 'test-host', defaultImage: image }), image,
      leftovers: async (id) => (await docker.listContainers({ all: true, filters: { label: [`wegent.sandbox.id=${id}`] } })).map((c) => c.Id),
    };
  }],
];

describe.each(drivers)('the sandbox agent in a pool-acquired sandbox (%s driver)', (_name, setup) => {
  const folders = new SandboxFolders();
  let pool: SandboxPool;
  let sbx: SandboxAgentHandle;
  let sandboxId: string;
  let env: Setup;

  beforeAll(async () => {
    await folders.init();
    env = await setup(folders);
    pool = new SandboxPool({ driver: env.driver, image: env.image, records: new InMemorySandboxRecordStore(), hostId: 'test-host', instanceId: 'i-agent', dataDir: folders.dataDir, runDir: folders.runBase });
    const rec = await pool.acquire({ taskId: 'task-agent', turnId: 't1', ownerId: 'alice', signal: new AbortController().signal });
    expect(rec.state).toBe('Running');
    expect(rec.readyAt).not.toBeNull();
    sandboxId = rec.id;
    sbx = pool.handle(rec.id);
  }, 180_000);

  afterAll(async () => {
    const pids = sandboxId ? await pool.hostPids(sandboxId) : [];
    await pool?.close();
    // Nothing is left behind: no process, no run folder, no state file.
    expect(pids.filter(isAlive)).toEqual([]);
    expect(await folders.leftoverRunDirs()).toEqual([]);
    if (sandboxId) expect(await env.leftovers(sandboxId)).toEqual([]);
    await folders.dispose();
  });

  /** Host pids of processes the sandbox has beyond its agent (the launcher, bwrap and the agent itself). */
  async function commandPids(baseline: number[]): Promise<number[]> {
    return (await pool.hostPids(sandboxId)).filter((p) => !baseline.includes(p));
  }

  it('is Running only once /v1/health answers, and answers it', async () => {
    const h = await health(sbx.socketPath);
    expect(h).toMatchObject({ ok: true });
    expect(typeof h.uptimeMs).toBe('number');
  });

  it('exec streams output in order and returns the exit code', async () => {
    const events: string[] = [];
    const r = await sbx.exec({ command: 'for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done; pwd; id -u; exit 3' }, {
      onOutput: (s, t) => events.push(`${s}:${t}`),
    });
    expect(r).toMatchObject({ exitCode: 3, signal: null, timedOut: false, droppedBytes: 0 });
    expect(r.stdout).toBe(`out1\nout2\nout3\n/workspace\n${process.getuid?.() === 0 ? 1000 : process.getuid?.()}\n`);
    expect(r.stderr).toBe('err1\nerr2\nerr3\n');
    const outs = events.filter((e) => e.startsWith('stdout:')).map((e) => e.slice(7)).join('');
    expect(outs).toBe(r.stdout);
    // The streams interleave as they were written (each line is written 50 ms after the last).
    const firstErr2 = events.findIndex((e) => e.includes('err2'));
    const firstOut3 = events.findIndex((e) => e.includes('out3'));
    expect(firstErr2).toBeLessThan(firstOut3);
    const argv = await sbx.exec({ command: ['/bin/sh', '-c', 'echo "$0 $1 $FOO"', 'a b', 'c'], env: { FOO: 'bar' }, cwd: '/tmp' }, {});
    expect(argv).toMatchObject({ exitCode: 0, stdout: 'a b c bar\n' });
  });

  it('a timeout kills the whole group, children that ignore SIGTERM included, within ~2 s and reports timedOut', async () => {
    const baseline = await pool.hostPids(sandboxId);
    const t0 = Date.now();
    let pids: number[] = [];
    const r = await sbx.exec({ command: 'trap "" TERM; (trap "" TERM; sleep 100) & sleep 100 & echo started; sleep 100', timeoutSeconds: 1 }, {
      onOutput: () => { void commandPids(baseline).then((p) => { pids = p; }); },
    });
    const elapsed = Date.now() - t0;
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    expect(elapsed).toBeLessThan(3000);
    expect(elapsed).toBeGreaterThanOrEqual(1000);
    expect(pids.length).toBeGreaterThanOrEqual(3);
    expect(pids.filter(isAlive)).toEqual([]);
    expect(await commandPids(baseline)).toEqual([]);
  });

  it("aborting the client's signal kills the process group within 2 s; the sandbox stays Running", async () => {
    const baseline = await pool.hostPids(sandboxId);
    const ac = new AbortController();
    let ready!: () => void;
    const started = new Promise<void>((r) => { ready = r; });
    const run = sbx.exec({ command: 'trap "" TERM; sleep 100 & (trap "" TERM; sleep 100) & echo ready; wait' }, { signal: ac.signal, onOutput: () => ready() });
    const settled = run.catch((e: unknown) => e);
    await started;
    let pids: number[] = [];
    for (let i = 0; i < 40 && pids.length < 3; i++) { pids = await commandPids(baseline); await sleep(25); }
    expect(pids.length).toBeGreaterThanOrEqual(3);
    const t0 = Date.now();
    ac.abort();
    const err = await settled;
    expect(err).toBeInstanceOf(ExecCancelledError);
    expect((err as ExecCancelledError).confirmed).toBe(true);
    while (pids.some(isAlive) && Date.now() - t0 < 3000) await sleep(20);
    expect(pids.filter(isAlive)).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(await commandPids(baseline)).toEqual([]);
    expect((await pool.list({ taskId: 'task-agent' }))[0]?.state).toBe('Running');
    expect((await sbx.exec({ command: 'echo still here' }, {})).stdout).toBe('still here\n');
  });

  it('a client that disconnects from the exec stream takes the process group with it within 2 s', async () => {
    const baseline = await pool.hostPids(sandboxId);
    const req = httpRequest({ socketPath: sbx.socketPath, method: 'POST', path: '/v1/exec', agent: false, headers: { 'content-type': 'application/json' } });
    req.on('error', () => undefined);
    const ready = new Promise<void>((resolve) => {
      req.on('response', (res) => { res.on('error', () => undefined); res.on('data', (c: Buffer) => { if (c.toString().includes('ready')) resolve(); }); });
    });
    req.end(JSON.stringify({ command: 'trap "" TERM; sleep 100 & echo ready; sleep 100' }));
    await ready;
    let pids: number[] = [];
    for (let i = 0; i < 40 && pids.length < 3; i++) { pids = await commandPids(baseline); await sleep(25); }
    expect(pids.length).toBeGreaterThanOrEqual(3);
    const t0 = Date.now();
    req.destroy();
    while (pids.some(isAlive) && Date.now() - t0 < 3000) await sleep(20);
    expect(pids.filter(isAlive)).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('caps each output stream at 1 MiB, counts the rest and marks the truncation', async () => {
    const total = 2_000_000;
    let streamed = 0;
    const r = await sbx.exec({ command: `head -c ${total} /dev/zero | tr '\\0' a; echo done >&2` }, { onOutput: (s, t) => { if (s === 'stdout') streamed += t.length; } });
    expect(r.exitCode).toBe(0);
    expect(r.truncated).toEqual({ stdout: true, stderr: false });
    expect(r.droppedBytes).toBe(total - OUTPUT_CAP_BYTES);
    expect(r.stdout.startsWith('a'.repeat(OUTPUT_CAP_BYTES))).toBe(true);
    expect(r.stdout.slice(OUTPUT_CAP_BYTES)).toMatch(/^\n\[wegent: stdout truncated at 1048576 bytes; the rest was dropped\]\n$/);
    expect(streamed).toBe(r.stdout.length);
    expect(r.stderr).toBe('done\n');
  });

  it('reads, writes and lists inside /workspace', async () => {
    expect(await sbx.writeFile({ path: 'dir/sub/hello.txt', content: 'one\ntwo\nthree\n' })).toEqual({ path: 'dir/sub/hello.txt', bytesWritten: 14 });
    expect(await sbx.writeFile({ path: '/workspace/dir/sub/hello.txt', content: 'four\n', append: true })).toMatchObject({ bytesWritten: 5 });
    const read = await sbx.readFile({ path: 'dir/sub/hello.txt' });
    expect(read).toMatchObject({ content: 'one\ntwo\nthree\nfour\n', encoding: 'utf8', binary: false, totalLines: 4, truncated: false });
    expect(await sbx.readFile({ path: 'dir/sub/hello.txt', offset: 1, limit: 2 })).toMatchObject({ content: 'two\nthree\n', truncated: true });
    await sbx.writeFile({ path: 'bin.dat', content: Buffer.from([0, 1, 2, 255]).toString('base64'), encoding: 'base64' });
    expect(await sbx.readFile({ path: 'bin.dat' })).toMatchObject({ binary: true, encoding: 'base64', content: 'AAEC/w==' });
    // The file is the sandbox user's, as the command sees it.
    expect((await sbx.exec({ command: 'cat dir/sub/hello.txt | wc -l' }, {})).stdout.trim()).toBe('4');
    const list = await sbx.listFiles({ path: '.', recursive: true });
    expect(list.entries.map((e) => `${e.type}:${e.path}`)).toEqual(expect.arrayContaining(['dir:dir', 'dir:dir/sub', 'file:dir/sub/hello.txt', 'file:bin.dat']));
    expect(list.truncated).toBe(false);
    expect((await sbx.listFiles({ path: 'dir', maxEntries: 1, recursive: true })).truncated).toBe(true);
    await expect(sbx.readFile({ path: 'nope.txt' })).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 });
  });

  it('refuses paths outside the workspace: .., absolute paths, symbolic links that escape', async () => {
    await sbx.exec({ command: 'ln -sfn /etc /workspace/etc-link && ln -sfn /etc/passwd /workspace/pw-link && ln -sfn /nowhere/x /workspace/dangling' }, {});
    const refusals = [
      sbx.readFile({ path: '../etc/passwd' }),
      sbx.readFile({ path: '/etc/passwd' }),
      sbx.readFile({ path: 'etc-link/passwd' }),
      sbx.readFile({ path: 'pw-link' }),
      sbx.readFile({ path: 'dir/../../etc/passwd' }),
      sbx.writeFile({ path: '../evil.txt', content: 'x' }),
      sbx.writeFile({ path: '/etc/evil.txt', content: 'x' }),
      sbx.writeFile({ path: 'etc-link/evil.txt', content: 'x' }),
      sbx.writeFile({ path: 'dangling', content: 'x' }),
      sbx.listFiles({ path: '..' }),
      sbx.listFiles({ path: '/etc' }),
      sbx.listFiles({ path: 'etc-link' }),
    ];
    for (const r of await Promise.allSettled(refusals)) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as AgentCallError;
      expect(err).toBeInstanceOf(AgentCallError);
      expect({ code: err.code, status: err.status }).toEqual({ code: 'PATH_OUTSIDE_WORKSPACE', status: 403 });
    }
    // Listing the workspace shows the links as links, without following them.
    const list = await sbx.listFiles({ path: '.', recursive: true });
    expect(list.entries.filter((e) => e.path.startsWith('etc-link'))).toEqual([{ path: 'etc-link', type: 'symlink', size: 0 }]);
    // A link that stays inside is fine.
    await sbx.exec({ command: 'ln -sfn dir/sub /workspace/inside-link' }, {});
    expect((await sbx.readFile({ path: 'inside-link/hello.txt' })).content).toContain('one');
  });

  it('answers bad requests with JSON errors and reports a command that cannot start', async () => {
    await expect(sbx.exec({ command: '' }, {})).rejects.toMatchObject({ code: 'BAD_REQUEST', status: 400 });
    const r = await sbx.exec({ command: 'true', cwd: '/workspace/no-such-dir' }, {});
    expect(r.exitCode).toBe(127);
    expect(r.stderr).toMatch(/ENOENT/);
  });
});

describe('readiness (bwrap driver)', () => {
  const folders = new SandboxFolders();
  let rootfsDir: string;

  beforeAll(async () => { await folders.init(); rootfsDir = (await testRootfs()).dir; }, 180_000);
  afterAll(async () => {
    expect(await folders.leftoverRunDirs()).toEqual([]);
    expect(await readdir(folders.stateDir).catch(() => [] as string[])).toEqual([]);
    await folders.dispose();
  });

  /** A bwrap driver whose agent listens on another socket path than the pool expects. */
  function poolWithAgentSocket(socket: string, readyTimeoutMs: number): SandboxPool {
    const base = new BwrapDriver({ stateDir: folders.stateDir, rootfsDir });
    const driver = Object.assign(Object.create(base) as BwrapDriver, {
      create: (spec: SandboxSpec) => base.create({ ...spec, env: { ...spec.env, WEGENT_AGENT_SOCKET: socket } }),
    });
    return new SandboxPool({ driver, records: new InMemorySandboxRecordStore(), hostId: 'test-host', instanceId: 'i-ready', dataDir: folders.dataDir, runDir: folders.runBase, readyTimeoutMs });
  }

  it('an agent that never answers fails the sandbox with READY_TIMEOUT and cleans it up', async () => {
    const pool = poolWithAgentSocket('/tmp/elsewhere.sock', 800);
    const t0 = Date.now();
    await expect(pool.acquire({ taskId: 'task-slow', turnId: 't1', ownerId: 'alice', signal: new AbortController().signal }))
      .rejects.toMatchObject({ code: 'READY_TIMEOUT', message: expect.stringContaining('did not answer within') as unknown });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect((await pool.list({ taskId: 'task-slow' }))[0]).toMatchObject({ state: 'Deleted', stateReason: 'READY_TIMEOUT', readyAt: null });
    await pool.close();
  });

  it('an agent that exits at start fails at once, with its stderr in the message', async () => {
    const pool = poolWithAgentSocket('/opt/wegent/cannot.sock', 30_000);
    const t0 = Date.now();
    const err = await pool.acquire({ taskId: 'task-crash', turnId: 't1', ownerId: 'alice', signal: new AbortController().signal }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(err).toMatchObject({ code: 'READY_TIMEOUT' });
    expect((err as Error).message).toMatch(/exited before it was ready.*(EROFS|EACCES)/s);
    const rec = (await pool.list({ taskId: 'task-crash' }))[0];
    expect(rec?.state).toBe('Deleted');
    expect(rec?.readyAt).toBeNull();
    await pool.close();
  });
});
