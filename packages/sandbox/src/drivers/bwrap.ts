/**
 * The `bwrap` driver (sandbox.md §4.2): bubblewrap namespaces, a per-sandbox cgroup for memory /
 * pids / CPU, rlimits set by the launcher shell (`ulimit`: the setrlimit `prlimit` would make). Run by
 * root, it drops to an unprivileged host user with `setpriv` after joining the cgroup, so the sandbox
 * user is never host root.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chown, mkdir, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { baseEnvironment, chargedMemoryBytes } from '../limits.js';
import { EventChannel } from '../event-channel.js';
import type { DriverEvent, DriverHandle, DriverInspect, DriverProbe, SandboxDriver, SandboxSpec } from '../types.js';
import { SandboxError } from '../types.js';
import { waitForAgentSocket } from './agent-socket.js';
import {
  cgroupCpuNs, cgroupPids, createSandboxCgroup, detectCgroupLayout, killCgroup, listSandboxCgroups,
  oomKillCount, procsFiles, removeSandboxCgroup, type CgroupLayout, type SandboxCgroup,
} from './cgroup.js';

const run = promisify(execFile);
const LOG_TAIL_BYTES = 64 * 1024;
const AGENT_COMMAND = ['/opt/wegent/bin/node', '/opt/wegent/agent/main.js'];

export interface BwrapDriverOptions {
  /** Host-only folder for state files and logs (`<WEGENT_DATA_DIR>/sandbox/bwrap`). */
  stateDir: string;
  /** The executor rootfs folder (§14.2). */
  rootfsDir: string;
  /** Host uid/gid that runs bwrap when the server is root (WEGENT_SANDBOX_HOST_UID/_GID, default 1000). */
  hostUid?: number;
  hostGid?: number;
  /** WEGENT_SANDBOX_ALLOW_WEAK_LIMITS: run without cgroups. */
  allowWeakLimits?: boolean;
  bwrapPath?: string;
}

interface BwrapState {
  id: string;
  labels: SandboxSpec['labels'];
  cgroup?: SandboxCgroup;
  pid?: number;
  createdAt: string;
}

interface Live {
  spec: SandboxSpec;
  state: BwrapState;
  child?: ChildProcess;
  exit?: { code: number };
  exited?: Promise<void>;
}

/** Runs sandboxes as bubblewrap process trees on this host. */
export class BwrapDriver implements SandboxDriver {
  readonly name = 'bwrap' as const;
  private readonly isRoot = process.getuid?.() === 0;
  private readonly hostUid: number;
  private readonly hostGid: number;
  private readonly layout: CgroupLayout | undefined = detectCgroupLayout();
  private readonly live = new Map<string, Live>();
  private readonly channel = new EventChannel<DriverEvent>();

  constructor(private readonly opts: BwrapDriverOptions) {
    this.hostUid = this.isRoot ? (opts.hostUid ?? 1000) : (process.getuid?.() ?? 1000);
    this.hostGid = this.isRoot ? (opts.hostGid ?? 1000) : (process.getgid?.() ?? 1000);
  }

  /** The uid the sandbox user has inside: 1000 under a root server, else the server's own. */
  get sandboxUid(): number { return this.isRoot ? 1000 : this.hostUid; }
  get sandboxGid(): number { return this.isRoot ? 1000 : this.hostGid; }

  async probe(): Promise<DriverProbe> {
    const weak = { memory: false, cpu: false, pids: false, hardDiskQuota: false, noNetwork: true, publishPorts: false };
    const bwrap = this.opts.bwrapPath ?? 'bwrap';
    try {
      await run(bwrap, ['--version']);
    } catch {
      return { available: false, reason: 'bubblewrap (bwrap) is not installed', enforces: { ...weak, noNetwork: false } };
    }
    const cgroupsOk = await this.cgroupsWritable();
    const enforces = { memory: cgroupsOk, cpu: cgroupsOk, pids: cgroupsOk, hardDiskQuota: false, noNetwork: true, publishPorts: false };
    try {
      const drop = this.isRoot ? ['setpriv', '--reuid', String(this.hostUid), '--regid', String(this.hostGid), '--clear-groups'] : [];
      const argv = [...drop, bwrap, '--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--ro-bind', this.opts.rootfsDir, '/', '--', '/bin/true'];
      await run(argv[0] as string, argv.slice(1), { cwd: '/', env: { PATH: '/usr/bin:/bin' }, timeout: 10_000 });
    } catch (err) {
      return { available: false, reason: `a probe sandbox did not start (are unprivileged user namespaces enabled?): ${(err as Error).message.split('\n')[0]}`, enforces };
    }
    if (!cgroupsOk && !this.opts.allowWeakLimits) {
      return { available: false, reason: 'no writable cgroup hierarchy: memory, CPU and process limits cannot be enforced (set WEGENT_SANDBOX_ALLOW_WEAK_LIMITS=true to run without them)', enforces };
    }
    return { available: true, enforces };
  }

  private async cgroupsWritable(): Promise<boolean> {
    if (!this.layout) return false;
    try {
      const cg = await createSandboxCgroup(this.layout, `probe-${process.pid}-${Date.now()}`, { memoryBytes: 64 << 20, pids: 16, cpus: 1 });
      await removeSandboxCgroup(cg);
      return true;
    } catch {
      return false;
    }
  }

  private statePath(id: string): string { return join(this.opts.stateDir, `${id}.json`); }

  async create(spec: SandboxSpec): Promise<DriverHandle> {
    if (spec.network !== 'none') throw new SandboxError('DRIVER_ERROR', 'the bwrap driver does not support network egress; use the docker driver');
    await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    // bwrap resolves the bind sources as the unprivileged host user: they must be reachable by it.
    for (const dir of spec.workspaceMode === 'dir' ? [spec.workspaceDir, spec.runDir] : [spec.runDir]) {
      await chown(dir, this.hostUid, this.hostGid);
    }
    const state: BwrapState = { id: spec.id, labels: spec.labels, createdAt: new Date().toISOString() };
    if (this.layout) {
      try {
        state.cgroup = await createSandboxCgroup(this.layout, spec.id, {
          memoryBytes: chargedMemoryBytes(spec.limits, spec.workspaceMode === 'tmpfs'), pids: spec.limits.pids, cpus: spec.limits.cpus,
        });
      } catch (err) {
        if (!this.opts.allowWeakLimits) throw new SandboxError('DRIVER_ERROR', `could not create the sandbox cgroup: ${(err as Error).message}`);
      }
    }
    await writeFile(this.statePath(spec.id), JSON.stringify(state));
    this.live.set(spec.id, { spec, state });
    return { driver: 'bwrap', sandboxId: spec.id, ref: this.statePath(spec.id), labels: spec.labels };
  }

  private bwrapArgs(spec: SandboxSpec): string[] {
    const mb = (n: number) => String(n * 1024 * 1024);
    const args = [
      '--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--new-session',
      '--ro-bind', this.opts.rootfsDir, '/',
      '--proc', '/proc', '--dev', '/dev',
      '--perms', '1777', '--size', mb(spec.limits.tmpMB), '--tmpfs', '/tmp',
    ];
    if (spec.workspaceMode === 'tmpfs') args.push('--perms', '0755', '--size', mb(spec.limits.diskMB), '--tmpfs', '/workspace');
    else args.push('--bind', spec.workspaceDir, '/workspace');
    args.push('--bind', spec.runDir, '/run/wegent',
      '--uid', String(this.sandboxUid), '--gid', String(this.sandboxGid), '--hostname', 'sandbox', '--cap-drop', 'ALL', '--clearenv');
    for (const [k, v] of Object.entries({ ...baseEnvironment(spec.id), ...spec.env })) args.push('--setenv', k, v);
    args.push('--chdir', '/workspace');
    return args;
  }

  async start(h: DriverHandle): Promise<void> {
    const live = this.live.get(h.sandboxId);
    if (!live) throw new SandboxError('DRIVER_ERROR', `sandbox ${h.sandboxId} is not known to this driver`);
    if (live.child) return;
    const { spec, state } = live;
    const command = spec.command ?? AGENT_COMMAND;
    // Options travel through fd 3 (--args), so the host paths are not in the sandbox's /proc/1/cmdline.
    const argsData = Buffer.from(this.bwrapArgs(spec).map((a) => `${a}\0`).join(''));
    const drop = this.isRoot ? ['setpriv', '--reuid', String(this.hostUid), '--regid', String(this.hostGid), '--clear-groups'] : [];
    // The launcher shell sets the rlimits with its `ulimit` built-in (soft and hard; one exec fewer than
    // prlimit), joins the cgroup, reports that on fd 4 and closes it, then becomes setpriv → bwrap.
    const launcher = `ulimit -n ${spec.limits.nofile} && ulimit -c 0 || exit 125; for f in $WEGENT_CG; do echo $$ > "$f" || exit 125; done; unset WEGENT_CG; echo joined >&4; exec 4>&-; exec "$@"`;
    const out = openSync(join(this.opts.stateDir, `${spec.id}.out`), 'a', 0o600);
    const err = openSync(join(this.opts.stateDir, `${spec.id}.err`), 'a', 0o600);
    const child = spawn('/bin/sh', ['-c', launcher, 'sh', ...drop, this.opts.bwrapPath ?? 'bwrap', '--args', '3', '--', ...command], {
      cwd: '/',
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', WEGENT_CG: state.cgroup ? procsFiles(state.cgroup).join(' ') : '' },
      stdio: ['ignore', out, err, 'pipe', 'pipe'],
      detached: true,
    });
    closeSync(out); closeSync(err);
    const argsPipe = child.stdio[3] as NodeJS.WritableStream;
    argsPipe.on('error', () => undefined);
    argsPipe.end(argsData);
    // Until the launcher has joined the cgroup, a kill through the cgroup would miss it: wait for its word
    // (or for fd 4 to close, which also happens when it failed and exited).
    const joined = new Promise<void>((resolve) => {
      const notify = child.stdio[4] as NodeJS.ReadableStream | null;
      if (!notify) { resolve(); return; }
      notify.on('error', () => resolve());
      notify.on('data', () => resolve());
      notify.on('end', () => resolve());
      notify.on('close', () => resolve());
      notify.resume();
    });
    live.child = child;
    live.exited = new Promise<void>((resolve) => {
      child.on('exit', (code, signal) => {
        live.exit = { code: code ?? 128 + (signal ? (osSignals[signal] ?? 9) : 9) };
        void this.reportExit(h, live.exit.code).finally(resolve);
      });
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (e) => reject(new SandboxError('DRIVER_ERROR', `could not start bwrap: ${e.message}`)));
    });
    state.pid = child.pid;
    // The agent's socket is awaited while the state file is written; the cgroup join comes first.
    const socket = spec.command === undefined ? waitForAgentSocket(spec.runDir, { exited: live.exited }) : undefined;
    await Promise.all([writeFile(this.statePath(spec.id), JSON.stringify(state)), joined]);
    await socket;
  }

  private async reportExit(h: DriverHandle, exitCode: number): Promise<void> {
    const state = this.live.get(h.sandboxId)?.state;
    if (state?.cgroup && await oomKillCount(state.cgroup) > 0) this.channel.push({ handle: h, type: 'oom' });
    this.channel.push({ handle: h, type: 'exit', exitCode });
  }

  private async loadState(h: DriverHandle): Promise<BwrapState | undefined> {
    const live = this.live.get(h.sandboxId);
    if (live) return live.state;
    try { return JSON.parse(await readFile(this.statePath(h.sandboxId), 'utf8')) as BwrapState; } catch { return undefined; }
  }

  async inspect(h: DriverHandle): Promise<DriverInspect> {
    const live = this.live.get(h.sandboxId);
    const state = await this.loadState(h);
    const oomKilled = state?.cgroup ? (await oomKillCount(state.cgroup)) > 0 : false;
    if (live) {
      // The process has exited once the exit handler has run; until then it counts as running.
      return { running: live.child !== undefined && live.exit === undefined, exitCode: live.exit?.code, oomKilled };
    }
    const pids = state?.cgroup ? await cgroupPids(state.cgroup) : [];
    return { running: pids.length > 0, oomKilled };
  }

  async stop(h: DriverHandle, graceMs: number): Promise<void> {
    const live = this.live.get(h.sandboxId);
    const state = await this.loadState(h);
    if (state?.cgroup) await killCgroup(state.cgroup, graceMs);
    if (live?.child?.pid && live.exit === undefined) {
      // Outside any cgroup (weak limits), or not yet in it: the launcher's process group.
      try { process.kill(-live.child.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    if (live?.child && live.exited) await live.exited;
  }

  async remove(h: DriverHandle): Promise<void> {
    await this.stop(h, 0);
    const state = await this.loadState(h);
    if (state?.cgroup) await removeSandboxCgroup(state.cgroup);
    this.live.delete(h.sandboxId);
    for (const suffix of ['.json', '.out', '.err']) await rm(join(this.opts.stateDir, `${h.sandboxId}${suffix}`), { force: true });
  }

  async listOwned(): Promise<DriverHandle[]> {
    const out = new Map<string, DriverHandle>();
    const files = await readdir(this.opts.stateDir).catch(() => [] as string[]);
    for (const f of files.filter((x) => x.endsWith('.json'))) {
      try {
        const st = JSON.parse(await readFile(join(this.opts.stateDir, f), 'utf8')) as BwrapState;
        out.set(st.id, { driver: 'bwrap', sandboxId: st.id, ref: join(this.opts.stateDir, f), labels: st.labels });
      } catch { /* a half-written state file: its cgroup is still found below */ }
    }
    // Cgroups without a state file are orphans too; stop/remove handle them through a synthetic state.
    if (this.layout) {
      for (const [id, cg] of await listSandboxCgroups(this.layout)) {
        if (out.has(id) || id.startsWith('probe-')) continue;
        const state: BwrapState = { id, labels: { taskId: '', ownerId: '', hostId: '', instanceId: '' }, cgroup: cg, createdAt: '' };
        await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
        await writeFile(this.statePath(id), JSON.stringify(state));
        out.set(id, { driver: 'bwrap', sandboxId: id, ref: this.statePath(id), labels: state.labels });
      }
    }
    return [...out.values()];
  }

  events(): AsyncIterable<DriverEvent> { return this.channel.subscribe(); }

  async hostPids(h: DriverHandle): Promise<number[]> {
    const state = await this.loadState(h);
    if (state?.cgroup) return cgroupPids(state.cgroup);
    const pid = this.live.get(h.sandboxId)?.child?.pid;
    return pid && this.live.get(h.sandboxId)?.exit === undefined ? [pid] : [];
  }

  async logs(h: DriverHandle): Promise<{ stdout: string; stderr: string }> {
    const tail = async (suffix: string) => {
      const fh = await open(join(this.opts.stateDir, `${h.sandboxId}${suffix}`), 'r').catch(() => undefined);
      if (!fh) return '';
      try {
        const { size } = await fh.stat();
        const len = Math.min(size, LOG_TAIL_BYTES);
        const buf = Buffer.alloc(len);
        await fh.read(buf, 0, len, size - len);
        return buf.toString('utf8');
      } finally { await fh.close(); }
    };
    return { stdout: await tail('.out'), stderr: await tail('.err') };
  }

  async stats(h: DriverHandle): Promise<{ cpuNs?: number }> {
    const state = await this.loadState(h);
    return { cpuNs: state?.cgroup ? await cgroupCpuNs(state.cgroup) : undefined };
  }
}

const osSignals: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGSEGV: 11, SIGABRT: 6 };
