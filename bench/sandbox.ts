/**
 * Sandbox benchmark (sandbox.md §4, §7.4, §9; issue 9): the real SandboxPool (in-memory records) on the
 * real drivers, `docker` (dockerd through dockerode) and `bwrap` (bubblewrap + cgroups), with the executor
 * image built locally. Per driver:
 *
 *   cold    start-to-ready: `pool.acquire()` until it resolves (the pool has created and started the sandbox
 *           and the sandbox agent has answered `GET /v1/health` over `<run>/agent.sock`), one at a time,
 *           warm pool off; with the time split into pool work, driver create, driver start and readiness.
 *   warm    the same from a warm pool of 1 (`warmPool: 1`): each sample waits until the replacement is warm.
 *   exec    `exec true` round trip through the agent (`SandboxAgentHandle.exec`), and a bare health round trip.
 *   memory  N idle sandboxes, measured from the host: the cgroup's charged memory (v1 memory.usage_in_bytes,
 *           v2 memory.current) and, for docker, the container's containerd-shim outside the cgroup.
 *   burst   100 sandboxes requested at once, with the scheduler cap raised to 100 so that all are admitted; the
 *           pool's start gate (default: twice the cores) lets them start a few at a time, first come first served.
 *
 * Environment: BENCH_SANDBOX_DRIVERS (docker,bwrap), BENCH_SANDBOX_SCENARIOS (comma subset of the ids above),
 * BENCH_SANDBOX_SAMPLES (cold and warm samples per driver, default 30), BENCH_SANDBOX_EXEC_SAMPLES (default 100),
 * BENCH_SANDBOX_IDLE (sandboxes in the memory scenario, default 10), BENCH_SANDBOX_BURST (default 100).
 * A run with a subset of drivers or scenarios prints its figures but leaves docs/benchmarks.md alone.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BwrapDriver, DockerDriver, InMemorySandboxRecordStore, SandboxPool, agentClient, buildExecutorRootfs, ensureExecutorImage,
  createSandboxCgroup, detectCgroupLayout, procsFiles, removeSandboxCgroup,
  type DriverName, type SandboxDriver, type SandboxPoolOptions, type SandboxRecord,
} from '@wegent/sandbox';
import type { Benchmark, BenchmarkReport } from './lib/benchmark.js';
import { envNumber, machineBusyMs, percentiles, selectedScenarios } from './lib/measure.js';
import { fmt, machineLine, limitsAndTargets, markdownTable, type Table } from './lib/report.js';

const ALL_SCENARIOS = ['cold', 'warm', 'exec', 'memory', 'burst'] as const;
const ALL_DRIVERS = ['docker', 'bwrap'] as const;

const TARGET_DOCKER_COLD_P50 = 450;
const TARGET_BWRAP_COLD_P50 = 30;
const TARGET_WARM_P50 = 30;
const TARGET_WARM_P99 = 100;
const TARGET_BURST_FACTOR = 2;
/** Warm-up samples before each measured series (first image and page-cache reads, JIT of the pool's code). */
const WARMUP = 3;
/** Pause after a sample's clean-up, so that a container's or namespace's teardown does not overlap the next start. */
const SETTLE_MS = 150;
/** Idle time before memory is read: the agent has finished its start-up allocations and a GC has run. */
const IDLE_SETTLE_MS = 3000;
/** The 100-at-once scenario may take longer than the default 30 s readiness timeout on 2 cores. */
const BURST_READY_TIMEOUT_MS = 180_000;
/** Host memory kept back from sandboxes in the "fits in memory" count: OS, dockerd, the Wegent server. */
const HOST_RESERVE_BYTES = 2 * 1024 ** 3;
const NOISY_LOAD = 0.5;

const q = (values: number[], p: number): number => percentiles(values, [p])[0]!;
const now = (): number => performance.now();

/** Times each call of a driver's create and start, for the cold-start breakdown. */
class TimedDriver {
  readonly calls = new Map<string, { create?: number; start?: number; startEnd?: number }>();
  readonly driver: SandboxDriver;
  constructor(inner: SandboxDriver) {
    const calls = this.calls;
    this.driver = new Proxy(inner, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (prop === 'create') {
          return async (spec: Parameters<SandboxDriver['create']>[0]) => {
            const t0 = now();
            const h = await target.create(spec);
            calls.set(spec.id, { create: now() - t0 });
            return h;
          };
        }
        if (prop === 'start') {
          return async (h: Parameters<SandboxDriver['start']>[0]) => {
            const t0 = now();
            await target.start(h);
            const c = calls.get(h.sandboxId) ?? {};
            c.start = now() - t0;
            c.startEnd = now();
            calls.set(h.sandboxId, c);
          };
        }
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
}

/** The memory cgroup folder of a host process (v1 `memory` hierarchy, else the v2 unified one). */
function memoryCgroupOf(pid: number): { dir: string; version: 1 | 2 } | undefined {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n').map((l) => l.split(':'));
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => {
    const [pre, post] = l.split(' - ');
    const f = (pre ?? '').split(' ');
    const [fstype, , opts] = (post ?? '').split(' ');
    return { root: f[3] ?? '/', point: f[4] ?? '', fstype, opts: (opts ?? '').split(',') };
  });
  const v1 = lines.find((l) => l[1]?.split(',').includes('memory'));
  const m1 = mounts.find((m) => m.fstype === 'cgroup' && m.opts.includes('memory'));
  if (v1 && m1) return { dir: path.join(m1.point, path.relative(m1.root, v1[2] ?? '/')), version: 1 };
  const v2 = lines.find((l) => l[0] === '0' && l[1] === '');
  const m2 = mounts.find((m) => m.fstype === 'cgroup2');
  if (v2 && m2) return { dir: path.join(m2.point, path.relative(m2.root, v2[2] ?? '/')), version: 2 };
  return undefined;
}

interface MemoryReading {
  /** Charged to the sandbox's cgroup (v1 memory.usage_in_bytes, v2 memory.current). */
  charged: number;
  /** Anonymous memory (process heaps and stacks): v1 total_rss, v2 anon. */
  anon: number;
  /** Page cache charged to the cgroup (v1 total_cache, v2 file). */
  file: number;
  /** Host processes outside the cgroup that exist per sandbox (docker's containerd-shim), proportional set size. */
  outsidePss: number;
}

function statField(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m?.[1] ? Number(m[1]) : 0;
}

function pssOf(pid: number): number {
  try {
    return statField(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').replace(/:\s+(\d+) kB/g, ' $1'), 'Pss') * 1024;
  } catch {
    return 0;
  }
}

function parentPid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

function readMemory(hostPids: number[], driver: DriverName): MemoryReading | undefined {
  const first = hostPids[0];
  if (first === undefined) return undefined;
  const cg = memoryCgroupOf(first);
  if (!cg) return undefined;
  const stat = readFileSync(path.join(cg.dir, 'memory.stat'), 'utf8');
  const charged = Number(readFileSync(path.join(cg.dir, cg.version === 1 ? 'memory.usage_in_bytes' : 'memory.current'), 'utf8').trim());
  const anon = cg.version === 1 ? statField(stat, 'total_rss') : statField(stat, 'anon');
  const file = cg.version === 1 ? statField(stat, 'total_cache') : statField(stat, 'file');
  let outsidePss = 0;
  if (driver === 'docker') {
    // The container's first process (docker-init) is a child of its containerd-shim.
    const shim = parentPid(Math.min(...hostPids));
    if (/containerd-shim/.test(readFileSync(`/proc/${shim}/cmdline`, 'utf8'))) outsidePss = pssOf(shim);
  }
  return { charged, anon, file, outsidePss };
}

/**
 * The floor under every cold start: the executor image's Node on the host, no sandbox, cleared environment,
 * in a new network namespace (`unshare --net`, so the agent's 127.0.0.1:4000 forwarder stays off the host's
 * loopback): spawn until the first `GET /v1/health` answer, seen through the same inotify watch the drivers use.
 * `script` is the agent's main.js, or an empty HTTP server (Node's own start-up).
 */
async function bareStarts(rootfsDir: string, tmp: string, which: 'agent' | 'empty', n: number): Promise<number[]> {
  const nodeBin = path.join(rootfsDir, 'opt/wegent/bin/node');
  const args = which === 'agent' ? [path.join(rootfsDir, 'opt/wegent/agent/main.js')] : ['-e', "require('node:http').createServer((q, s) => s.end('{}')).listen(process.env.WEGENT_AGENT_SOCKET)"];
  const out: number[] = [];
  for (let i = 0; i < WARMUP + n; i++) {
    const dir = mkdtempSync(path.join(tmp, 'bare-'));
    const socket = path.join(dir, 'agent.sock');
    const seen = new Promise<void>((resolve) => {
      const w = watch(dir, () => { if (existsSync(socket)) { w.close(); resolve(); } });
    });
    const t0 = now();
    const child = spawn('unshare', ['--net', '--', nodeBin, ...args], { env: { WEGENT_AGENT_SOCKET: socket }, stdio: 'ignore', cwd: dir });
    const exited = new Promise<void>((resolve, reject) => {
      child.on('exit', () => resolve());
      child.on('error', (err) => reject(new Error(`could not run unshare: ${err.message}`)));
    });
    await Promise.race([seen, exited]);
    for (let k = 0; ; k++) {
      try { await agentClient.health(socket, { timeoutMs: 1000 }); break; } catch (err) {
        if (k > 200) throw new Error(`${which} on the host did not answer: ${(err as Error).message}`);
        await sleep(1);
      }
    }
    const ms = now() - t0;
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    if (i >= WARMUP) out.push(ms);
  }
  return out;
}

/**
 * The other two parts of a bwrap cold start that no code of ours can shorten, each alone, paced like the cold
 * samples (one every 150 ms):
 * - `cgroupJoin`: a process moving into a fresh sandbox cgroup, the write to every controller's `cgroup.procs` the
 *   launcher makes before it becomes bwrap (on cgroup v1 the kernel waits for an RCU grace period when the first
 *   move after a quiet spell takes its lock: milliseconds of waiting, no CPU);
 * - `bwrapTrue`: setpriv + bwrap making a sandbox's namespaces and mounts (the driver's flags) around `/bin/true`.
 */
async function launchParts(rootfsDir: string, n: number): Promise<{ cgroupJoin: number[]; bwrapTrue: number[] }> {
  const layout = detectCgroupLayout();
  const cgroupJoin: number[] = [];
  const bwrapTrue: number[] = [];
  for (let i = 0; i < WARMUP + n; i++) {
    await sleep(150);
    if (layout) {
      const cg = await createSandboxCgroup(layout, `bench-floor-${process.pid}-${i}`, { memoryBytes: 256 << 20, pids: 64, cpus: 1 });
      const child = spawn('sleep', ['30'], { stdio: 'ignore' });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await sleep(150);
      const t0 = now();
      for (const file of procsFiles(cg)) writeFileSync(file, String(child.pid));
      if (i >= WARMUP) cgroupJoin.push(now() - t0);
      child.kill('SIGKILL');
      await exited;
      await removeSandboxCgroup(cg);
      await sleep(150);
    }
    const t0 = now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn('setpriv', ['--reuid', '1000', '--regid', '1000', '--clear-groups', 'bwrap', '--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--new-session',
        '--ro-bind', rootfsDir, '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--tmpfs', '/workspace', '--cap-drop', 'ALL', '--clearenv', '--', '/bin/true'], { stdio: 'ignore', cwd: '/', env: { PATH: '/usr/bin:/bin' } });
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bwrap /bin/true exited with ${code}`))));
      child.once('error', reject);
    });
    if (i >= WARMUP) bwrapTrue.push(now() - t0);
  }
  return { cgroupJoin, bwrapTrue };
}

interface ColdFigures {
  ms: number[];
  /** Pool work before the driver's create, create, start, readiness after start (ms, per sample). */
  phases: { before: number[]; create: number[]; start: number[]; ready: number[] };
  /** Whole-machine CPU (ms) used while each start ran. */
  cpuMs: number[];
}

interface DriverFigures {
  driver: DriverName;
  unavailable?: string;
  cold?: ColdFigures;
  warm?: number[];
  exec?: { exec: number[]; health: number[] };
  memory?: MemoryReading[];
  burst?: { ms: number[]; failed: string[]; wallMs: number };
  load: number;
}

async function run({ machine, log }: Parameters<Benchmark['run']>[0]): Promise<BenchmarkReport> {
  const started = Date.now();
  const startLoad = os.loadavg()[0]!;
  const scenarios = selectedScenarios('BENCH_SANDBOX_SCENARIOS', ALL_SCENARIOS);
  const drivers = selectedScenarios('BENCH_SANDBOX_DRIVERS', ALL_DRIVERS);
  const samples = envNumber('BENCH_SANDBOX_SAMPLES', 30, 1);
  const execSamples = envNumber('BENCH_SANDBOX_EXEC_SAMPLES', 100, 1);
  const idleCount = envNumber('BENCH_SANDBOX_IDLE', 10, 1);
  const burstCount = envNumber('BENCH_SANDBOX_BURST', 100, 2);

  // The rootfs is cached between runs (its content hash makes reuse safe); 0755 so the unprivileged
  // sandbox host user of bwrap can read it.
  const imageDir = path.join(os.tmpdir(), 'wegent-bench-sandbox-image');
  mkdirSync(imageDir, { recursive: true });
  chmodSync(imageDir, 0o755);
  log('building (or finding) the executor rootfs…');
  const rootfs = await buildExecutorRootfs({ dataDir: imageDir });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'wegent-bench-sbx-'));
  const dataDir = path.join(tmp, 'data');
  const runDir = path.join(tmp, 'run');
  for (const d of [tmp, dataDir, runDir]) { mkdirSync(d, { recursive: true }); chmodSync(d, 0o711); }
  const hostId = `bench-${randomBytes(3).toString('hex')}`;

  const figures: DriverFigures[] = [];
  const floor: Floor = {};
  try {
    if (scenarios.has('cold')) {
      if (process.getuid?.() === 0) {
        try {
          floor.empty = await bareStarts(rootfs.dir, tmp, 'empty', samples);
          floor.agent = await bareStarts(rootfs.dir, tmp, 'agent', samples);
          if (drivers.has('bwrap')) Object.assign(floor, await launchParts(rootfs.dir, samples));
          log(`on the host without a sandbox: empty HTTP server p50 ${fmt.ms(q(floor.empty, 0.5))}, agent p50 ${fmt.ms(q(floor.agent, 0.5))}`);
        } catch (err) {
          floor.why = (err as Error).message;
        }
      } else floor.why = 'needs root (unshare --net)';
    }
    for (const name of ALL_DRIVERS.filter((d) => drivers.has(d))) {
      const f: DriverFigures = { driver: name, load: os.loadavg()[0]! };
      figures.push(f);
      let inner: SandboxDriver;
      let image: string | undefined;
      if (name === 'docker') {
        const probeDriver = new DockerDriver({ hostId, defaultImage: '' });
        const probe = await probeDriver.probe();
        if (!probe.available) { f.unavailable = probe.reason; log(`docker: not available: ${probe.reason}`); continue; }
        log('building (or finding) the executor image…');
        image = await ensureExecutorImage(probeDriver.docker, rootfs);
        inner = new DockerDriver({ docker: probeDriver.docker, hostId, defaultImage: image });
      } else {
        inner = new BwrapDriver({ stateDir: path.join(dataDir, 'sandbox', 'bwrap'), rootfsDir: rootfs.dir });
        const probe = await inner.probe();
        if (!probe.available) { f.unavailable = probe.reason; log(`bwrap: not available: ${probe.reason}`); continue; }
      }
      const timed = new TimedDriver(inner);
      const pools: SandboxPool[] = [];
      const makePool = (over: Partial<SandboxPoolOptions> = {}): SandboxPool => {
        const p = new SandboxPool({
          driver: timed.driver, records: new InMemorySandboxRecordStore(), hostId, instanceId: 'bench', dataDir, runDir, image,
          idleTimeoutMs: 3_600_000, ...over,
        });
        pools.push(p);
        return p;
      };
      let seq = 0;
      const acquire = (pool: SandboxPool, owner = 'bench-user'): Promise<SandboxRecord> => {
        const task = `${name}-${seq++}`;
        return pool.acquire({ taskId: task, turnId: `${task}-turn`, ownerId: owner, signal: new AbortController().signal });
      };
      try {
        await makePool().reapOrphans();
        log(`${name}: load average ${f.load.toFixed(2)}`);

        if (scenarios.has('cold')) {
          const pool = makePool();
          const cold: ColdFigures = { ms: [], cpuMs: [], phases: { before: [], create: [], start: [], ready: [] } };
          for (let i = 0; i < WARMUP + samples; i++) {
            const busy0 = machineBusyMs();
            const t0 = now();
            const rec = await acquire(pool);
            const t1 = now();
            const busy = machineBusyMs() - busy0;
            const c = timed.calls.get(rec.id);
            if (i >= WARMUP && c?.create !== undefined && c.start !== undefined && c.startEnd !== undefined) {
              cold.ms.push(t1 - t0);
              cold.cpuMs.push(busy);
              cold.phases.ready.push(t1 - c.startEnd);
              cold.phases.start.push(c.start);
              cold.phases.create.push(c.create);
              cold.phases.before.push(t1 - t0 - (t1 - c.startEnd) - c.start - c.create);
            }
            await pool.stop(rec.id, 'USER_STOPPED');
            await sleep(SETTLE_MS);
          }
          f.cold = cold;
          log(`${name} cold: p50 ${fmt.ms(q(cold.ms, 0.5))}, p99 ${fmt.ms(q(cold.ms, 0.99))}`);
        }

        if (scenarios.has('warm')) {
          const pool = makePool({ warmPool: 1 });
          const warm: number[] = [];
          for (let i = 0; i < WARMUP + samples; i++) {
            await pool.whenWarm(120_000);
            await sleep(SETTLE_MS);
            const t0 = now();
            const rec = await acquire(pool);
            const ms = now() - t0;
            if (i >= WARMUP) warm.push(ms);
            await pool.stop(rec.id, 'USER_STOPPED');
          }
          await pool.close();
          f.warm = warm;
          log(`${name} warm: p50 ${fmt.ms(q(warm, 0.5))}, p99 ${fmt.ms(q(warm, 0.99))}`);
        }

        if (scenarios.has('exec')) {
          const pool = makePool();
          const rec = await acquire(pool);
          const h = pool.handle(rec.id);
          const exec: number[] = [];
          const health: number[] = [];
          for (let i = 0; i < 20 + execSamples; i++) {
            const t0 = now();
            const r = await h.exec({ command: 'true', timeoutSeconds: 30 }, {});
            const t1 = now();
            await agentClient.health(h.socketPath);
            const t2 = now();
            if (r.exitCode !== 0) throw new Error(`exec true answered exit code ${r.exitCode}: ${r.stderr}`);
            if (i >= 20) { exec.push(t1 - t0); health.push(t2 - t1); }
          }
          await pool.stop(rec.id, 'USER_STOPPED');
          f.exec = { exec, health };
          log(`${name} exec: p50 ${fmt.ms(q(exec, 0.5))}, p99 ${fmt.ms(q(exec, 0.99))}`);
        }

        if (scenarios.has('memory')) {
          const pool = makePool({ scheduler: { maxRunning: idleCount, maxPerUser: idleCount } });
          const recs = await Promise.all(Array.from({ length: idleCount }, () => acquire(pool)));
          await sleep(IDLE_SETTLE_MS);
          const readings: MemoryReading[] = [];
          for (const r of recs) {
            const m = readMemory(await pool.hostPids(r.id), name);
            if (m) readings.push(m);
          }
          await Promise.all(recs.map((r) => pool.stop(r.id, 'USER_STOPPED')));
          f.memory = readings;
          if (readings.length) log(`${name} memory: p50 ${fmt.bytes(q(readings.map((r) => r.charged), 0.5))} charged per idle sandbox`);
        }

        if (scenarios.has('burst')) {
          await sleep(1000);
          const pool = makePool({ scheduler: { maxRunning: burstCount, maxPerUser: burstCount }, readyTimeoutMs: BURST_READY_TIMEOUT_MS });
          const ms: number[] = [];
          const failed: string[] = [];
          const recs: SandboxRecord[] = [];
          const t0 = now();
          await Promise.all(Array.from({ length: burstCount }, async () => {
            const s = now();
            try {
              recs.push(await acquire(pool));
              ms.push(now() - s);
            } catch (err) {
              failed.push((err as Error).message.split('\n')[0]!);
            }
          }));
          const wallMs = now() - t0;
          for (let i = 0; i < recs.length; i += 10) await Promise.all(recs.slice(i, i + 10).map((r) => pool.stop(r.id, 'USER_STOPPED')));
          f.burst = { ms, failed, wallMs };
          log(`${name} ${burstCount} at once: p50 ${fmt.ms(q(ms, 0.5))}, p99 ${fmt.ms(q(ms, 0.99))}, all ready after ${fmt.ms(wallMs)}${failed.length ? `, ${failed.length} failed` : ''}`);
        }
      } finally {
        for (const p of pools) await p.close().catch(() => undefined);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return report(figures, floor, { scenarios, drivers, samples, execSamples, idleCount, burstCount, started, startLoad, machineText: machineLine(machine), rootfsHash: rootfs.hash, nodeVersion: rootfs.nodeVersion });
}

interface ReportOptions {
  scenarios: Set<string>;
  drivers: Set<string>;
  samples: number;
  execSamples: number;
  idleCount: number;
  burstCount: number;
  started: number;
  /** 1-minute load average before anything ran. */
  startLoad: number;
  machineText: string;
  rootfsHash: string;
  nodeVersion: string;
}

interface Floor {
  agent?: number[];
  empty?: number[];
  cgroupJoin?: number[];
  bwrapTrue?: number[];
  why?: string;
}

function report(figures: DriverFigures[], floor: Floor, o: ReportOptions): BenchmarkReport {
  const pass = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const pp = (v: number[] | undefined) => (v?.length ? `p50 ${fmt.ms(q(v, 0.5))}, p99 ${fmt.ms(q(v, 0.99))}` : 'not measured');
  const fig = (d: DriverName) => figures.find((f) => f.driver === d);
  const memTotal = os.totalmem();
  const perSandbox = (m: MemoryReading[]) => q(m.map((r) => r.charged + r.outsidePss), 0.5);
  const fits = (bytes: number) => Math.floor((memTotal - HOST_RESERVE_BYTES) / bytes);

  const targets: string[][] = [];
  const target = (label: string, values: number[] | undefined, measured: (v: number[]) => string, ok: (v: number[]) => boolean, why?: string) =>
    targets.push(values?.length ? [label, measured(values), pass(ok(values))] : [label, why ?? 'not measured', '—']);
  const unavailable = (d: DriverName) => (fig(d)?.unavailable ? `not measured: ${fig(d)?.unavailable}` : undefined);
  target(`docker cold start-to-ready ≤ ${TARGET_DOCKER_COLD_P50} ms p50`, fig('docker')?.cold?.ms, pp, (v) => q(v, 0.5) <= TARGET_DOCKER_COLD_P50, unavailable('docker'));
  target(`bwrap cold start-to-ready ≤ ${TARGET_BWRAP_COLD_P50} ms p50`, fig('bwrap')?.cold?.ms, pp, (v) => q(v, 0.5) <= TARGET_BWRAP_COLD_P50, unavailable('bwrap'));
  for (const d of ALL_DRIVERS) {
    target(`${d} from the warm pool ≤ ${TARGET_WARM_P50} ms p50 and ≤ ${TARGET_WARM_P99} ms p99`, fig(d)?.warm, pp, (v) => q(v, 0.5) <= TARGET_WARM_P50 && q(v, 0.99) <= TARGET_WARM_P99, unavailable(d));
  }
  for (const d of ALL_DRIVERS) {
    const f = fig(d);
    const single = f?.cold?.ms.length ? q(f.cold.ms, 0.5) : undefined;
    const label = `${d}: ${o.burstCount} at once ≤ ${TARGET_BURST_FACTOR} × the single cold start p50 (p50 of the ${o.burstCount})`;
    if (single === undefined && f?.burst) targets.push([label, `${pp(f.burst.ms)}; single cold start not measured`, '—']);
    else target(label, f?.burst?.failed.length ? undefined : f?.burst?.ms, (v) => `${pp(v)} vs limit ${fmt.ms(TARGET_BURST_FACTOR * (single as number))}`, (v) => q(v, 0.5) <= TARGET_BURST_FACTOR * (single as number),
      f?.burst?.failed.length ? `${f.burst.failed.length} of ${o.burstCount} failed: ${f.burst.failed[0]}` : unavailable(d));
  }
  const targetTable: Table = { title: 'Targets (issue 9)', columns: ['Target', 'Measured', 'Result'], rows: targets };

  const measured = figures.filter((f) => !f.unavailable);
  const startTable: Table = {
    title: 'Start-to-ready (acquire → the agent answers its health check)',
    columns: ['Driver', 'scenario', 'samples', 'p50', 'p99', 'min', 'max'],
    right: [2, 3, 4, 5, 6],
    rows: measured.flatMap((f) => {
      const row = (label: string, v: number[] | undefined) => (v?.length ? [[f.driver, label, String(v.length), fmt.ms(q(v, 0.5)), fmt.ms(q(v, 0.99)), fmt.ms(Math.min(...v)), fmt.ms(Math.max(...v))]] : []);
      return [...row('cold', f.cold?.ms), ...row('warm pool', f.warm), ...row(`${o.burstCount} at once`, f.burst?.ms)];
    }).concat(([['the agent alone', floor.agent], ['Node alone: an empty HTTP server', floor.empty], ['joining a fresh sandbox cgroup (no process start)', floor.cgroupJoin], ['setpriv + bwrap namespaces and mounts around /bin/true', floor.bwrapTrue]] as const).flatMap(([label, v]) =>
      v?.length ? [['none (host)', label, String(v.length), fmt.ms(q(v, 0.5)), fmt.ms(q(v, 0.99)), fmt.ms(Math.min(...v)), fmt.ms(Math.max(...v))]] : [])),
  };
  const phaseTable: Table = {
    title: 'Where a cold start goes (p50 of each part; the parts of one start add up to its total)',
    columns: ['Driver', 'pool before create', 'driver create', 'driver start', 'start → agent answers', 'total p50', 'machine CPU per start (mean, all processes)'],
    right: [1, 2, 3, 4, 5, 6],
    rows: measured.filter((f) => f.cold?.ms.length).map((f) => {
      const c = f.cold as ColdFigures;
      return [f.driver, fmt.ms(q(c.phases.before, 0.5)), fmt.ms(q(c.phases.create, 0.5)), fmt.ms(q(c.phases.start, 0.5)), fmt.ms(q(c.phases.ready, 0.5)), fmt.ms(q(c.ms, 0.5)),
        fmt.ms(c.cpuMs.reduce((a, b) => a + b, 0) / c.cpuMs.length)];
    }),
  };
  const execTable: Table = {
    title: `Round trips through the agent (${o.execSamples} sequential calls after 20 warm-up calls)`,
    columns: ['Driver', 'exec `true` p50', 'exec `true` p99', 'GET /v1/health p50', 'GET /v1/health p99'],
    right: [1, 2, 3, 4],
    rows: measured.filter((f) => f.exec).map((f) => [f.driver, fmt.ms(q(f.exec!.exec, 0.5)), fmt.ms(q(f.exec!.exec, 0.99)), fmt.ms(q(f.exec!.health, 0.5)), fmt.ms(q(f.exec!.health, 0.99))]),
  };
  const memTable: Table = {
    title: `Memory per idle sandbox (${o.idleCount} idle sandboxes, read from the host ${IDLE_SETTLE_MS / 1000} s after they were ready)`,
    columns: ['Driver', 'cgroup charged p50', 'cgroup charged p99', 'anon p50', 'page cache p50', 'outside the cgroup (containerd-shim PSS) p50', 'per sandbox p50', `sandboxes that fit in ${(memTotal / 1024 ** 3).toFixed(1)} GiB`],
    right: [1, 2, 3, 4, 5, 6, 7],
    rows: measured.filter((f) => f.memory?.length).map((f) => {
      const m = f.memory as MemoryReading[];
      const col = (k: keyof MemoryReading, p: number) => fmt.bytes(q(m.map((r) => r[k]), p));
      return [f.driver, col('charged', 0.5), col('charged', 0.99), col('anon', 0.5), col('file', 0.5), f.driver === 'docker' ? col('outsidePss', 0.5) : '—', fmt.bytes(perSandbox(m)), fmt.int(fits(perSandbox(m)))];
    }),
  };

  const verdicts = targets.map((r) => `${r[2] === '—' ? '—   ' : r[2]}  ${r[0]} — ${r[1]}`);
  if (o.startLoad > NOISY_LOAD) verdicts.push(`NOTE  the 1-minute load average was ${o.startLoad.toFixed(2)} when the benchmark started: other work shared the 2 cores, figures disturbed`);
  const bw = fig('bwrap')?.cold?.ms;
  const floorNotes = bw?.length && floor.empty?.length && floor.agent?.length ? [
    `- bwrap: a cold start (p50 ${fmt.ms(q(bw, 0.5))}) is the agent's own start-up (p50 ${fmt.ms(q(floor.agent, 0.5))} alone on the host, of which Node itself takes ${fmt.ms(q(floor.empty, 0.5))}) plus about ${fmt.ms(q(bw, 0.5) - q(floor.agent, 0.5))} of launcher, namespaces, mounts, cgroup and pool.` +
      (floor.cgroupJoin?.length && floor.bwrapTrue?.length
        ? ` Measured alone, joining the fresh cgroup takes p50 ${fmt.ms(q(floor.cgroupJoin, 0.5))} (cgroup v${detectCgroupLayout()?.version ?? '?'}; the kernel waits for an RCU grace period on the first move after a quiet spell) and bwrap's namespaces and mounts p50 ${fmt.ms(q(floor.bwrapTrue, 0.5))}: with Node's own start-up that is ${fmt.ms(q(floor.empty, 0.5) + q(floor.cgroupJoin, 0.5) + q(floor.bwrapTrue, 0.5))} before any code of ours runs.`
        : '') +
      ` A target below that cannot be met by the driver while the agent is a Node ${o.nodeVersion} program; the warm pool is what gives a start within it.`,
  ] : [];
  const burstNotes = measured.filter((f) => f.burst && f.cold?.cpuMs.length).map((f) => {
    const cpu = f.cold!.cpuMs.reduce((a, b) => a + b, 0) / f.cold!.cpuMs.length;
    const floor = (o.burstCount / 2) * cpu / os.cpus().length;
    return `- ${f.driver}: a cold start costs the machine about ${fmt.ms(cpu)} of CPU (all processes: the agent's Node start-up, ${f.driver === 'docker' ? 'dockerd, containerd, runc' : 'bwrap and its launcher'}, the pool). Half of ${o.burstCount} starts therefore need about ${fmt.ms((o.burstCount / 2) * cpu)} of CPU, i.e. about ${fmt.ms(floor)} on ${os.cpus().length} cores, before the p50 of ${o.burstCount} at once can be reached, whatever the order of the starts (a start in a burst costs somewhat less than a lone one: caches are warm). All ${o.burstCount} were ready after ${fmt.ms(f.burst!.wallMs)}.`;
  });

  const limits = [
    `drivers: ${[...o.drivers].join(', ')}; executor rootfs ${o.rootfsHash.slice(0, 12)} (Node ${o.nodeVersion} inside); default sandbox limits (1024 MiB memory + 256 MiB /tmp, 1 CPU, 256 processes, no network)`,
    `SandboxPool with in-memory records, idle timeout 1 h; cold and memory: warm pool off; warm: \`warmPool: 1\``,
    `cold and warm: ${o.samples} samples each after ${WARMUP} warm-up starts, one at a time; each sample is stopped (not timed) and followed by a ${SETTLE_MS} ms pause`,
    `${o.burstCount} at once: scheduler cap raised to maxRunning ${o.burstCount}, maxPerUser ${o.burstCount} (default 5 and 3), so that all ${o.burstCount} are admitted at once; they start ${2 * os.availableParallelism()} at a time through the pool's start gate (\`startConcurrency\`, default twice the cores); readiness timeout ${BURST_READY_TIMEOUT_MS / 1000} s (default 30 s)`,
    `memory: ${o.idleCount} sandboxes at once (cap raised to ${o.idleCount}); "fits" = ⌊(MemTotal ${(memTotal / 1024 ** 3).toFixed(1)} GiB − ${HOST_RESERVE_BYTES / 1024 ** 3} GiB kept for the OS, dockerd and the server) ÷ per sandbox p50⌋, per sandbox = cgroup charged + (docker) its containerd-shim`,
  ];
  const markdown = [
    '## Sandboxes (`bench/sandbox.ts`)',
    '',
    `Run ${new Date(o.started).toISOString().replace(/\.\d+Z$/, 'Z')} on ${o.machineText}; took ${Math.round((Date.now() - o.started) / 1000)} s. 1-minute load average when it started: ${o.startLoad.toFixed(2)}${o.startLoad > NOISY_LOAD ? ' (**other work shared the 2 cores: figures disturbed**)' : ''}; before each driver: ${figures.map((f) => `${f.driver} ${f.load.toFixed(2)}`).join(', ')} (the later one includes the earlier driver's own ${o.burstCount} at once).`,
    '',
    'The real `SandboxPool` (packages/sandbox, in-memory records) on the real drivers: `docker` (the local dockerd through',
    'dockerode, the executor image `wegent-executor:<hash>` built locally) and `bwrap` (bubblewrap, a cgroup per sandbox,',
    'the executor rootfs folder). *Start-to-ready* is `pool.acquire()` until it resolves: the pool has made the folders, the',
    'driver has created and started the sandbox and the sandbox agent (Node, inside) has answered `GET /v1/health` over',
    '`<run>/agent.sock`. The agent\'s own start-up is part of it.',
    '',
    ...limitsAndTargets(limits, targetTable),
    '### Start-to-ready',
    '',
    markdownTable(startTable),
    '',
    markdownTable(phaseTable),
    '',
    '- *pool before create*: records, folders, the model gateway socket; *driver create*: the container (docker) or the',
    '  cgroup and state file (bwrap); *driver start*: until the driver reports the main process started (both drivers wait',
    '  for the agent\'s socket to appear when the agent is the main process); *start → agent answers*: the pool\'s readiness check.',
    `- *none (host)*: the image's Node (${o.nodeVersion}) started on the host without any sandbox (cleared environment, \`unshare --net\`), to`,
    '  its first health answer: *the agent alone* runs the agent\'s main.js, *Node alone* an empty HTTP server on the socket. This',
    `  is the floor under a cold start of either driver${floor.why ? ` (not measured: ${floor.why})` : ''}.`,
    '- *machine CPU per start*: CPU time of the whole machine (`os.cpus()`) while each start ran, so other load adds to it.',
    ...floorNotes,
    ...burstNotes,
    '',
    '### Commands',
    '',
    markdownTable(execTable),
    '',
    '- *exec `true`*: `SandboxAgentHandle.exec` from the request to the `exit` line. The agent holds each result 100 ms after the',
    '  shell exits to collect late output (sandbox.md §10: "output still arriving within 100 ms is collected"), which is most of',
    '  this round trip; *GET /v1/health* is the transport alone (HTTP over the Unix socket, one connection per call).',
    '',
    '### Memory',
    '',
    markdownTable(memTable),
    '',
    '- *cgroup charged*: cgroup v1 `memory.usage_in_bytes` (v2 `memory.current`) of the sandbox\'s cgroup: the agent, docker-init or',
    '  bwrap, kernel memory and page cache first read by this sandbox. Files already cached by earlier sandboxes (the Node binary)',
    '  are shared and charged once, so this is the cost of one more sandbox. *anon*: `total_rss` (v2 `anon`).',
    '- *outside the cgroup*: docker starts one `containerd-shim-runc-v2` per container; its proportional set size is added.',
    '- An idle sandbox is what the count measures; a busy one may grow to its limit.',
  ].join('\n');

  const partial = o.scenarios.size < ALL_SCENARIOS.length || o.drivers.size < ALL_DRIVERS.length ? 'BENCH_SANDBOX_SCENARIOS or BENCH_SANDBOX_DRIVERS selects a subset' : undefined;
  return { tables: [startTable, phaseTable, execTable, memTable, targetTable], markdown, verdicts, doNotWrite: partial };
}

export const benchmark: Benchmark = { id: 'sandbox', title: 'Sandboxes: start-to-ready, exec, memory (docker, bwrap)', run };

