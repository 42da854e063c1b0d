/**
 * Per-sandbox cgroups on whichever hierarchy the host has (sandbox.md §4.2): memory (no swap), pids,
 * CPU quota; OOM counting; kill-all. Each sandbox gets `<parent>/wegent/<sandboxId>` per controller.
 */
import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export type CgroupVersion = 1 | 2;

/** Where this host lets us create sandbox cgroups. */
export interface CgroupLayout {
  version: CgroupVersion;
  /** v1: controller → `<mount>/<own path>/wegent`; v2: `unified` → `<mount>/<own path>/wegent`. */
  parents: Partial<Record<'memory' | 'pids' | 'cpu' | 'cpuacct' | 'unified', string>>;
}

/** The cgroup folders of one sandbox (stored in its state file, so a later run can reap them). */
export interface SandboxCgroup {
  version: CgroupVersion;
  dirs: Partial<Record<'memory' | 'pids' | 'cpu' | 'cpuacct' | 'unified', string>>;
}

interface Mount { point: string; fstype: string; options: string[] }

function cgroupMounts(): Mount[] {
  const out: Mount[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const point = pre.split(' ')[4];
    const [fstype, , superOpts] = post.split(' ');
    if (point && (fstype === 'cgroup' || fstype === 'cgroup2')) out.push({ point, fstype, options: (superOpts ?? '').split(',') });
  }
  return out;
}

function ownPaths(): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')) {
    const [, ctrls, path] = line.split(':');
    if (ctrls === undefined || path === undefined) continue;
    if (ctrls === '') m.set('unified', path);
    for (const c of ctrls.split(',')) if (c) m.set(c, path);
  }
  return m;
}

/** Finds the hierarchy that holds the memory controller; undefined when there is none. */
export function detectCgroupLayout(): CgroupLayout | undefined {
  const mounts = cgroupMounts();
  const own = ownPaths();
  const v1 = (ctrl: string) => mounts.find((m) => m.fstype === 'cgroup' && m.options.includes(ctrl));
  if (v1('memory')) {
    const parents: CgroupLayout['parents'] = {};
    for (const c of ['memory', 'pids', 'cpu', 'cpuacct'] as const) {
      const m = v1(c);
      if (m) parents[c] = join(m.point, own.get(c) ?? '/', 'wegent');
    }
    return { version: 1, parents };
  }
  const v2 = mounts.find((m) => m.fstype === 'cgroup2');
  if (v2) {
    try {
      if (readFileSync(join(v2.point, 'cgroup.controllers'), 'utf8').includes('memory')) {
        return { version: 2, parents: { unified: join(v2.point, own.get('unified') ?? '/', 'wegent') } };
      }
    } catch { /* no controllers */ }
  }
  return undefined;
}

/** Creates and configures the sandbox's cgroups; throws when the hierarchy is not writable. */
export async function createSandboxCgroup(layout: CgroupLayout, sandboxId: string, limits: { memoryBytes: number; pids: number; cpus: number }): Promise<SandboxCgroup> {
  const cg: SandboxCgroup = { version: layout.version, dirs: {} };
  try {
    if (layout.version === 2) {
      const parent = layout.parents.unified as string;
      await mkdir(parent, { recursive: true });
      // Controllers must be enabled on the parent before its children can use them.
      await writeFile(join(parent, 'cgroup.subtree_control'), '+memory +pids +cpu').catch(() => undefined);
      const dir = join(parent, sandboxId);
      cg.dirs.unified = dir;
      await mkdir(dir);
      await writeFile(join(dir, 'memory.max'), String(limits.memoryBytes));
      await writeFile(join(dir, 'memory.swap.max'), '0').catch(() => undefined);
      await writeFile(join(dir, 'pids.max'), String(limits.pids));
      await writeFile(join(dir, 'cpu.max'), `${Math.round(limits.cpus * 100_000)} 100000`);
      return cg;
    }
    for (const [ctrl, parent] of Object.entries(layout.parents) as [keyof SandboxCgroup['dirs'], string][]) {
      await mkdir(parent, { recursive: true });
      const dir = join(parent, sandboxId);
      await mkdir(dir);
      cg.dirs[ctrl] = dir;
    }
    if (cg.dirs.memory) {
      await writeFile(join(cg.dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
      await writeFile(join(cg.dirs.memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(() => undefined);
    }
    if (cg.dirs.pids) await writeFile(join(cg.dirs.pids, 'pids.max'), String(limits.pids));
    if (cg.dirs.cpu) {
      await writeFile(join(cg.dirs.cpu, 'cpu.cfs_period_us'), '100000');
      await writeFile(join(cg.dirs.cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * 100_000)));
    }
    return cg;
  } catch (err) {
    await removeSandboxCgroup(cg).catch(() => undefined);
    throw err;
  }
}

/** The `cgroup.procs` files a process must join (every controller's folder). */
export function procsFiles(cg: SandboxCgroup): string[] {
  return Object.values(cg.dirs).map((d) => join(d, 'cgroup.procs'));
}

/** Host pids of every process in the sandbox's cgroup. */
export async function cgroupPids(cg: SandboxCgroup): Promise<number[]> {
  const dir = cg.dirs.unified ?? cg.dirs.pids ?? cg.dirs.memory;
  if (!dir) return [];
  const text = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number);
}

/** How many processes the kernel's OOM killer has killed in this cgroup. */
export async function oomKillCount(cg: SandboxCgroup): Promise<number> {
  const file = cg.dirs.unified ? join(cg.dirs.unified, 'memory.events') : cg.dirs.memory ? join(cg.dirs.memory, 'memory.oom_control') : undefined;
  if (!file) return 0;
  const text = await readFile(file, 'utf8').catch(() => '');
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m?.[1] ? Number(m[1]) : 0;
}

/** CPU time used by the cgroup, in nanoseconds. */
export async function cgroupCpuNs(cg: SandboxCgroup): Promise<number | undefined> {
  if (cg.dirs.unified) {
    const m = /^usage_usec (\d+)$/m.exec(await readFile(join(cg.dirs.unified, 'cpu.stat'), 'utf8').catch(() => ''));
    return m?.[1] ? Number(m[1]) * 1000 : undefined;
  }
  if (cg.dirs.cpuacct) {
    const t = await readFile(join(cg.dirs.cpuacct, 'cpuacct.usage'), 'utf8').catch(() => '');
    return t ? Number(t.trim()) : undefined;
  }
  return undefined;
}

function signalAll(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try { process.kill(pid, sig); } catch { /* already gone */ }
  }
}

/** SIGTERM every process, SIGKILL after graceMs, repeated until the cgroup is empty. */
export async function killCgroup(cg: SandboxCgroup, graceMs: number): Promise<void> {
  let pids = await cgroupPids(cg);
  if (pids.length === 0) return;
  if (graceMs > 0) {
    signalAll(pids, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (pids = await cgroupPids(cg)).length > 0) await sleep(25);
  }
  if (cg.dirs.unified) await writeFile(join(cg.dirs.unified, 'cgroup.kill'), '1').catch(() => undefined);
  for (let i = 0; i < 400 && (pids = await cgroupPids(cg)).length > 0; i++) {
    signalAll(pids, 'SIGKILL');
    await sleep(i < 20 ? 5 : 25);
  }
  if ((await cgroupPids(cg)).length > 0) throw new Error('processes of the sandbox survived SIGKILL');
}

/** Removes the (empty) cgroup folders; missing ones are fine. */
export async function removeSandboxCgroup(cg: SandboxCgroup): Promise<void> {
  for (const dir of Object.values(cg.dirs)) {
    for (let i = 0; ; i++) {
      try { await rmdir(dir); break; } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        // A cgroup stays busy for a moment after its last process exits.
        if (code === 'EBUSY' && i < 40) { await sleep(25); continue; }
        throw err;
      }
    }
  }
}

/** Sandbox cgroup folders (by sandbox id) that exist under the layout's parents, for reaping. */
export async function listSandboxCgroups(layout: CgroupLayout): Promise<Map<string, SandboxCgroup>> {
  const out = new Map<string, SandboxCgroup>();
  for (const [ctrl, parent] of Object.entries(layout.parents) as [keyof SandboxCgroup['dirs'], string][]) {
    const entries = await readdir(parent, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const cg = out.get(e.name) ?? { version: layout.version, dirs: {} };
      cg.dirs[ctrl] = join(parent, e.name);
      out.set(e.name, cg);
    }
  }
  return out;
}
