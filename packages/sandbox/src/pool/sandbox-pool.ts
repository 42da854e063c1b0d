/**
 * The sandbox pool (sandbox.md §3, §7, §9, §11–§13): one sandbox per task, reused while alive; the
 * cap and fair queue, eviction of idle sandboxes and the warm pool; records through a
 * storage-agnostic store; readiness, heartbeats, crash/OOM detection, idle and lifetime timers;
 * the model gateway and the workspace clone; clean-up and orphan reaping; a handle for commands,
 * files and stdio relays through the sandbox agent.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  exec as agentExec, health, listFiles, readFile, startStdio, stdioStatus, stopStdio, waitForAgent, writeFile, ExecCancelledError,
  type ExecOptions, type ExecRequest, type ExecResult, type ListFilesRequest, type ListFilesResult,
  type ReadFileRequest, type ReadFileResult, type StdioConfig, type StdioStarted, type StdioStatus, type WriteFileRequest, type WriteFileResult,
} from '../agent-client.js';
import { EventChannel } from '../event-channel.js';
import { ModelGateway, type GatewayModel, type GatewayUsageRecord, type ModelGrant } from '../gateway/model-gateway.js';
import { DEFAULT_LIMITS } from '../limits.js';
import type { PortAllocator } from '../ports/port-allocator.js';
import type { DriverHandle, SandboxDriver, SandboxLimits, StopReason, WorkspaceMode } from '../types.js';
import { SandboxError } from '../types.js';
import { cloneWorkspace, type CloneOptions, type WorkspaceSpec } from '../workspace/git-clone.js';
import { FairScheduler, type SchedulerLimits, type Slot } from './fair-scheduler.js';
import { StartGate } from './start-gate.js';
import { oomEventsFile, readOomKills } from './oom-counter.js';
import type { SandboxRecord, SandboxRecordFilter, SandboxRecordStore } from './records.js';

const FAILED_REASONS: ReadonlySet<StopReason> = new Set(['DRIVER_ERROR', 'IMAGE_MISSING', 'CLONE_FAILED', 'READY_TIMEOUT', 'CRASHED', 'OOM', 'AGENT_UNRESPONSIVE', 'KILL_TIMEOUT', 'DISK_QUOTA']);
/** Grace before SIGKILL when a sandbox ends: its processes are gone well within 2 s. */
const STOP_GRACE_MS = 1000;
/** A warm pool start that failed is tried again after this long. */
const WARM_RETRY_MS = 30_000;

export interface SandboxPoolOptions {
  driver: SandboxDriver;
  records: SandboxRecordStore;
  hostId: string;
  instanceId: string;
  /** `<WEGENT_DATA_DIR>`: workspaces go to `<dataDir>/sandboxes/<id>/workspace`. */
  dataDir: string;
  /** WEGENT_SANDBOX_RUN_DIR. */
  runDir: string;
  scheduler?: Partial<SchedulerLimits>;
  /** Idle time before a sandbox not in use ends (default 600 s). */
  idleTimeoutMs?: number;
  ports?: PortAllocator;
  image?: string;
  /** How long the agent has to answer its first health check (§9; default 30 s). */
  readyTimeoutMs?: number;
  /** Heartbeat period (§9; default 5 s). */
  heartbeatIntervalMs?: number;
  /** Heartbeats failing in a row before the driver is asked what happened (default 3). */
  heartbeatFailures?: number;
  /** A sandbox ends (Completed, LIFETIME_LIMIT) this long after creation (default 4 h, §13). */
  lifetimeMs?: number;
  /**
   * WEGENT_SANDBOX_WARM_POOL (§7.4): sandboxes pre-started with default settings and no task, outside
   * the cap. 0 when not given here; the server's production default is 1.
   */
  warmPool?: number;
  /** Warm sandboxes unused this long are recycled (default 1 h). */
  warmMaxIdleMs?: number;
  /** The model gateway (§11). */
  gateway?: {
    /** Usage read from every answer, for the turn's usage rows (runtime.md §14). */
    onUsage?(record: GatewayUsageRecord): void;
    /** WEGENT_PRIVATE_HOSTS_ALLOW. */
    privateHostsAllow?: readonly string[];
    /** Every Model may reach loopback/private addresses — tests with a loopback model server, trusted installs. */
    allowPrivateTargets?: boolean;
  };
  /** The workspace clone (§12): WEGENT_GIT_CLONE_DEPTH, _ALLOW_LOCAL, _ALLOW_SSH, private hosts. */
  git?: Pick<CloneOptions, 'depth' | 'allowLocal' | 'allowSsh' | 'allowPrivate' | 'privateHostsAllow' | 'timeoutMs'>;
  /**
   * Reaping also removes driver sandboxes that carry no labels (bwrap cgroups without a state file).
   * Default true; false where several pools share one host's cgroup tree (parallel test files).
   */
  reapUnlabelled?: boolean;
  /**
   * WEGENT_SANDBOX_WORKSPACE_RETENTION_HOURS (§13): a new sandbox of a task takes over the workspace an
   * ended sandbox of the same task left on this host this recently, instead of starting empty or cloning
   * (default 24 h; 0: never).
   */
  workspaceRetentionMs?: number;
  /**
   * Sandboxes started at once (create, start, readiness); the rest wait their turn, first come first served
   * (default: twice the number of cores — a start is mostly CPU, with some waiting in between). On a burst
   * this hands the first sandboxes out early instead of all of them late.
   */
  startConcurrency?: number;
  /** Host uid/gid of the sandbox user under bwrap run by root (WEGENT_SANDBOX_HOST_UID/_GID, default 1000). */
  sandboxHostUid?: number;
  sandboxHostGid?: number;
}

/** What a turn uses to work in a sandbox: commands, files, stdio relays, the model gateway (§2, §14). */
export interface SandboxAgentHandle {
  readonly id: string;
  /** The agent's socket on the host (`<run>/agent.sock`). */
  readonly socketPath: string;
  /** The model gateway's socket on the host (`<run>/gateway.sock`). */
  readonly gatewaySocketPath: string;
  /** Runs a command; `oomKilled` tells whether the OOM killer struck while it ran (§9). */
  exec(req: ExecRequest, opts: ExecOptions): Promise<ExecResult>;
  readFile(req: ReadFileRequest, opts?: { signal?: AbortSignal }): Promise<ReadFileResult>;
  writeFile(req: WriteFileRequest, opts?: { signal?: AbortSignal }): Promise<WriteFileResult>;
  listFiles(req: ListFilesRequest, opts?: { signal?: AbortSignal }): Promise<ListFilesResult>;
  /**
   * Starts a stdio program (an MCP server) inside the sandbox behind a Unix socket (§14.3); connect
   * to `hostSocketPath`. With `turnId`, it is stopped when that turn releases the sandbox.
   */
  startStdio(name: string, cfg: StdioConfig, opts?: { turnId?: string; signal?: AbortSignal }): Promise<StdioStarted>;
  stopStdio(name: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Whether the program still runs, and its stderr tail (for error messages). */
  stdioStatus(name: string, opts?: { signal?: AbortSignal }): Promise<StdioStatus>;
  /** Access to the turn's Model through the gateway (§11); revoked by `revoke()` or when the turn releases the sandbox. */
  grantModel(turnId: string, model: GatewayModel): ModelGrant;
}

export interface AcquireRequest {
  taskId: string;
  turnId: string;
  ownerId: string;
  limits?: Partial<SandboxLimits>;
  workspaceMode?: WorkspaceMode;
  /** Container ports to publish (allocates host ports). */
  publishPorts?: number[];
  /** The main command (the agent by default). A custom command has no agent: it is Running once started. */
  command?: string[];
  /** The task's repository, cloned into the workspace of a new sandbox (§12). */
  workspace?: WorkspaceSpec;
  /** The Shell's `idleTimeoutSeconds` (§5): idle time before the sandbox ends; the pool's `idleTimeoutMs` without it. */
  idleTimeoutMs?: number;
  signal: AbortSignal;
  onQueued?(position: number): void;
}

interface LiveSandbox {
  record: SandboxRecord;
  handle: DriverHandle;
  /** Absent while the sandbox is warm (outside the cap). */
  slot?: Slot;
  runDir: string;
  gateway: ModelGateway;
  hasAgent: boolean;
  idleTimer?: NodeJS.Timeout;
  /** The idle timeout the latest turn's Shell asked for. */
  idleTimeoutMs?: number;
  heartbeatTimer?: NodeJS.Timeout;
  lifetimeTimer?: NodeJS.Timeout;
  /** Warm: pre-started, no task, no record yet. */
  warm?: { since: number; recycleTimer?: NodeJS.Timeout };
  ending?: Promise<void>;
  evicting?: boolean;
  /** Waiting for the agent's first health answer: an exit now is reported by the readiness check. */
  readying?: boolean;
  activeExecs: number;
  /** The lifetime ran out while a command ran: the sandbox ends when the last command does. */
  lifetimeDue?: boolean;
  oomFile?: string | null;
  /** Stdio relays by name, with the turn that started them. */
  stdio: Map<string, string | undefined>;
}

/** Hands out one sandbox per task, fairly, within the limits. */
export class SandboxPool {
  readonly scheduler: FairScheduler;
  private readonly startGate: StartGate;
  private readonly live = new Map<string, LiveSandbox>();
  private readonly byTask = new Map<string, string>();
  private readonly starting = new Map<string, Promise<SandboxRecord>>();
  private readonly statusChannel = new EventChannel<SandboxRecord>();
  private readonly warm: LiveSandbox[] = [];
  private warmStarting = 0;
  /** Ids of warm sandboxes still starting (not reaped meanwhile). */
  private readonly warmPending = new Set<string>();
  private warmRetry?: NodeJS.Timeout;
  private watching = false;
  private closed = false;

  constructor(private readonly opts: SandboxPoolOptions) {
    this.scheduler = new FairScheduler({ maxRunning: 5, maxPerUser: 3, queueTimeoutMs: 600_000, ...opts.scheduler });
    this.startGate = new StartGate(opts.startConcurrency ?? 2 * availableParallelism());
    if ((opts.warmPool ?? 0) > 0) this.fillWarm();
  }

  /** Every state change of every record (the server forwards them as `sandbox:status`). */
  statusChanges(): AsyncIterable<SandboxRecord> { return this.statusChannel.subscribe(); }

  /** The task's live sandbox, or a new one once a slot is granted. */
  async acquire(req: AcquireRequest): Promise<SandboxRecord> {
    if (this.closed) throw new SandboxError('SANDBOX_UNAVAILABLE', 'the sandbox pool is shut down');
    this.watchDriver();
    for (;;) {
      const existing = this.byTask.get(req.taskId);
      const live = existing ? this.live.get(existing) : undefined;
      if (live && !live.ending && (live.record.state === 'Running' || live.record.state === 'Created')) return this.use(live, req);
      const pending = this.starting.get(req.taskId);
      if (pending) {
        const rec = await pending;
        const l = this.live.get(rec.id);
        if (l && !l.ending) return this.use(l, req);
        continue;
      }
      // The task's previous sandbox is still being cleaned up: its workspace is taken over once it is free.
      // Then look again — another request of the task may have started the next sandbox meanwhile.
      if (live?.ending) { await live.ending.catch(() => undefined); continue; }
      const p = this.startNew(req);
      this.starting.set(req.taskId, p);
      try { return await p; } finally { this.starting.delete(req.taskId); }
    }
  }

  private async use(live: LiveSandbox, req: Pick<AcquireRequest, 'turnId' | 'idleTimeoutMs'>): Promise<SandboxRecord> {
    const turnId = req.turnId;
    live.idleTimeoutMs = req.idleTimeoutMs;
    if (live.idleTimer) { clearTimeout(live.idleTimer); live.idleTimer = undefined; }
    if (!live.record.inUseBy.includes(turnId)) live.record.inUseBy.push(turnId);
    live.record = await this.opts.records.update(live.record.id, { inUseBy: live.record.inUseBy, lastUsedAt: new Date() });
    return live.record;
  }

  /** The host uid/gid the sandbox user maps to (§1): owner of cloned files and the gateway socket. */
  private sandboxHostOwner(): { uid: number; gid: number } {
    if (this.opts.driver.name === 'docker') return { uid: 1000, gid: 1000 };
    const root = process.getuid?.() === 0;
    return root
      ? { uid: this.opts.sandboxHostUid ?? 1000, gid: this.opts.sandboxHostGid ?? 1000 }
      : { uid: process.getuid?.() ?? 1000, gid: process.getgid?.() ?? 1000 };
  }

  /** A request a warm sandbox can serve: default limits, image, network and workspace mode, no ports. */
  private fitsWarm(req: AcquireRequest): boolean {
    const limits = { ...DEFAULT_LIMITS, ...req.limits };
    const defaults = (Object.keys(DEFAULT_LIMITS) as (keyof SandboxLimits)[]).every((k) => limits[k] === DEFAULT_LIMITS[k]);
    return defaults && (req.workspaceMode ?? 'dir') === 'dir' && !req.publishPorts?.length && req.command === undefined;
  }

  private takeWarm(): LiveSandbox | undefined {
    for (;;) {
      const w = this.warm.shift();
      if (!w) return undefined;
      if (w.ending) continue;
      if (w.warm?.recycleTimer) clearTimeout(w.warm.recycleTimer);
      if (w.heartbeatTimer) clearTimeout(w.heartbeatTimer);
      w.warm = undefined;
      return w;
    }
  }

  private async startNew(req: AcquireRequest): Promise<SandboxRecord> {
    const slot = await this.scheduler.acquire(req.ownerId, {
      signal: req.signal, label: req.taskId,
      onQueued: (position) => { req.onQueued?.(position); this.maybeEvict(); },
    });
    const retained = (req.workspaceMode ?? 'dir') === 'dir' ? await this.retainedWorkspace(req.taskId).catch(() => undefined) : undefined;
    // A warm sandbox starts with an empty workspace; a task with a retained one starts cold with it (§7.4).
    const taken = !retained && this.fitsWarm(req) ? this.takeWarm() : undefined;
    if (taken) this.fillWarm();
    const id = taken?.record.id ?? randomUUID();
    const limits = taken ? { ...DEFAULT_LIMITS } : { ...DEFAULT_LIMITS, ...req.limits };
    const sandboxDir = join(this.opts.dataDir, 'sandboxes', id);
    const workspaceDir = join(sandboxDir, 'workspace');
    const runDir = join(this.opts.runDir, id);
    const now = new Date();
    let record: SandboxRecord = {
      id, taskId: req.taskId, ownerId: req.ownerId, hostId: this.opts.hostId, instanceId: this.opts.instanceId,
      driver: this.opts.driver.name, state: 'Created', stateReason: null, message: null, image: this.opts.image ?? null,
      limits, network: 'none', ports: [], workspaceDir, driverRef: taken?.handle.ref ?? null, inUseBy: [req.turnId],
      createdAt: now, readyAt: null, lastUsedAt: now, endedAt: null, deletedAt: null, exitCode: null, oomKilled: false,
    };
    await this.opts.records.insert(record);
    this.statusChannel.push(record);
    const live: LiveSandbox = taken ?? {
      record, runDir, hasAgent: req.command === undefined, activeExecs: 0, stdio: new Map(),
      handle: { driver: this.opts.driver.name, sandboxId: id, ref: '', labels: { taskId: req.taskId, ownerId: req.ownerId, hostId: this.opts.hostId, instanceId: this.opts.instanceId } },
      gateway: this.newGateway(id, runDir),
    };
    live.record = record;
    live.slot = slot;
    live.idleTimeoutMs = req.idleTimeoutMs;
    this.live.set(id, live);
    this.byTask.set(req.taskId, id);
    try {
      if (taken) {
        // A warm sandbox is already Running; only the clone (if any) remains (§7.4).
        if (req.workspace) await this.clone(req, workspaceDir, limits);
      } else {
        const adopted = await this.prepareFolders(sandboxDir, workspaceDir, runDir, retained);
        if (req.workspace && !adopted) await this.clone(req, workspaceDir, limits);
        if (req.publishPorts?.length && this.opts.ports) {
          const hostPorts = await this.opts.ports.allocate(id, req.publishPorts.length);
          record.ports = req.publishPorts.map((container, i) => ({ container, host: hostPorts[i] as number, url: `http://127.0.0.1:${hostPorts[i]}` }));
        }
        await this.launch(live, { limits, workspaceMode: req.workspaceMode ?? 'dir', workspaceDir, command: req.command, signal: req.signal });
      }
      record = live.record = await this.opts.records.update(id, { state: 'Running', readyAt: new Date(), driverRef: live.handle.ref, ports: record.ports });
      this.statusChannel.push(record);
      if (req.signal.aborted) throw new SandboxError('CANCELLED', 'the request was cancelled while its sandbox started');
      this.startTimers(live);
      req.signal.addEventListener('abort', () => void this.stop(id, 'USER_STOPPED'), { once: true });
      return record;
    } catch (err) {
      // A request cancelled while its sandbox started (or cloned) is the user's doing, not a failure.
      if (req.signal.aborted) {
        await this.end(live, 'USER_STOPPED', 'The request was cancelled while its sandbox started.');
        throw err instanceof SandboxError && err.code === 'CANCELLED' ? err : new SandboxError('CANCELLED', 'the request was cancelled while its sandbox started');
      }
      const code = err instanceof SandboxError && FAILED_REASONS.has(err.code as StopReason) ? err.code as StopReason : 'DRIVER_ERROR';
      await this.end(live, err instanceof SandboxError && err.code === 'CANCELLED' ? 'USER_STOPPED' : code, (err as Error).message);
      throw err;
    }
  }

  /** Makes the sandbox's folders; with `retained`, moves that workspace in. True when it did. */
  private async prepareFolders(sandboxDir: string, workspaceDir: string, runDir: string, retained?: string): Promise<boolean> {
    // 0711: the unprivileged sandbox host user passes through to its own folder, never lists others.
    for (const d of [join(this.opts.dataDir, 'sandboxes'), sandboxDir, this.opts.runDir]) { await mkdir(d, { recursive: true }); await chmod(d, 0o711); }
    let adopted = false;
    if (retained) {
      // One folder, moved (same file system): the ended sandbox's record keeps a path that no longer exists,
      // so its retention sweep has nothing left to delete.
      adopted = await rename(retained, workspaceDir).then(() => true, () => false);
    }
    if (!adopted) await mkdir(workspaceDir, { recursive: true });
    await mkdir(runDir, { recursive: true, mode: 0o700 });
    return adopted;
  }

  /**
   * The workspace the task's most recent ended sandbox on this host left (§13), if it is within the
   * retention and still there with something in it. Only sandboxes whose clean-up is done (Deleted) count:
   * nothing mounts it any more.
   */
  private async retainedWorkspace(taskId: string): Promise<string | undefined> {
    const retentionMs = this.opts.workspaceRetentionMs ?? 24 * 3_600_000;
    if (retentionMs <= 0) return undefined;
    const since = Date.now() - retentionMs;
    const ended = (r: SandboxRecord) => (r.endedAt ?? r.deletedAt ?? r.createdAt).getTime();
    const candidates = (await this.opts.records.list({ taskId, hostId: this.opts.hostId, states: ['Deleted'] }))
      .filter((r) => ended(r) >= since && r.workspaceDir === join(this.opts.dataDir, 'sandboxes', r.id, 'workspace'))
      .sort((a, b) => ended(b) - ended(a));
    for (const r of candidates) {
      // An empty one (a clone that failed, a sandbox that wrote nothing) carries nothing worth keeping.
      if ((await readdir(r.workspaceDir).catch(() => [])).length > 0) return r.workspaceDir;
    }
    return undefined;
  }

  private clone(req: AcquireRequest, workspaceDir: string, limits: SandboxLimits): Promise<void> {
    return cloneWorkspace(req.workspace as WorkspaceSpec, workspaceDir, {
      ...this.opts.git, maxBytes: limits.diskMB * 1024 * 1024, owner: this.sandboxHostOwner(), signal: req.signal,
    });
  }

  private newGateway(id: string, runDir: string): ModelGateway {
    const g = this.opts.gateway ?? {};
    return new ModelGateway({
      sandboxId: id, socketPath: join(runDir, 'gateway.sock'), socketOwner: this.sandboxHostOwner(),
      onUsage: g.onUsage, privateHostsAllow: g.privateHostsAllow, allowPrivateTargets: g.allowPrivateTargets,
    });
  }

  /** Driver create + start, the gateway socket, and readiness (agent sandboxes). */
  private async launch(live: LiveSandbox, p: { limits: SandboxLimits; workspaceMode: WorkspaceMode; workspaceDir: string; command?: string[]; signal?: AbortSignal }): Promise<void> {
    const leave = await this.startGate.enter(p.signal);
    try {
      await this.createAndStart(live, p);
    } finally {
      leave();
    }
  }

  private async createAndStart(live: LiveSandbox, p: { limits: SandboxLimits; workspaceMode: WorkspaceMode; workspaceDir: string; command?: string[]; signal?: AbortSignal }): Promise<void> {
    const id = live.record.id;
    live.handle = await this.opts.driver.create({
      id, labels: live.handle.labels, limits: p.limits, network: 'none', workspaceMode: p.workspaceMode,
      workspaceDir: p.workspaceDir, runDir: live.runDir, command: p.command, image: this.opts.image,
    });
    // After create: the driver has given the run folder to the sandbox user.
    await live.gateway.start();
    if (p.command !== undefined) { await this.opts.driver.start(live.handle); return; }
    // From start on (a driver's start may wait for the agent's socket), an exit is the readiness check's to report.
    live.readying = true;
    try {
      await this.opts.driver.start(live.handle);
      await this.awaitReady(live, p.signal);
    } finally { live.readying = false; }
  }

  /** Readiness (§9): the agent answers `GET /v1/health` within the start timeout, else READY_TIMEOUT. */
  private async awaitReady(live: LiveSandbox, signal?: AbortSignal): Promise<void> {
    const timeoutMs = this.opts.readyTimeoutMs ?? 30_000;
    let exited = false;
    const ok = await waitForAgent({ runDir: live.runDir }, {
      timeoutMs, signal,
      stillRunning: async () => {
        const st = await this.opts.driver.inspect(live.handle).catch(() => undefined);
        exited = st !== undefined && !st.running;
        return !exited;
      },
    });
    if (ok) return;
    if (signal?.aborted) throw new SandboxError('CANCELLED', 'the request was cancelled while its sandbox started');
    const { stderr } = await this.opts.driver.logs(live.handle).catch(() => ({ stderr: '' }));
    const tail = Buffer.from(stderr).subarray(-2048).toString('utf8').trim();
    const why = exited ? 'the sandbox agent exited before it was ready' : `the sandbox agent did not answer within ${Math.round(timeoutMs / 1000)} s`;
    throw new SandboxError('READY_TIMEOUT', `${why}${tail ? `: ${tail}` : ''}`);
  }

  /** Heartbeats (agent sandboxes) and the lifetime limit, from the moment a sandbox is Running. */
  private startTimers(live: LiveSandbox): void {
    const lifetime = this.opts.lifetimeMs ?? 4 * 3600_000;
    const age = Date.now() - live.record.createdAt.getTime();
    live.lifetimeTimer = setTimeout(() => {
      if (live.activeExecs > 0) live.lifetimeDue = true; // waits for the command in progress (§13)
      else void this.stop(live.record.id, 'LIFETIME_LIMIT', 'The sandbox reached its lifetime limit and was stopped.');
    }, Math.max(0, lifetime - age));
    live.lifetimeTimer.unref?.();
    if (live.hasAgent) this.heartbeat(live, () => !live.ending && !this.closed, () => void this.agentLost(live));
  }

  /**
   * §9: `GET /v1/health` every interval while `watched()` holds; after N failures in a row, `lost()`.
   * Live sandboxes and warm ones are watched alike; only what a lost agent means differs.
   */
  private heartbeat(live: LiveSandbox, watched: () => boolean, lost: () => void, failures = 0): void {
    const interval = this.opts.heartbeatIntervalMs ?? 5000;
    const limit = this.opts.heartbeatFailures ?? 3;
    live.heartbeatTimer = setTimeout(() => {
      void (async () => {
        if (!watched()) return;
        const ok = await health({ runDir: live.runDir }, { timeoutMs: Math.min(2000, Math.max(200, interval)) }).then(() => true, () => false);
        if (!watched()) return;
        const n = ok ? 0 : failures + 1;
        if (n < limit) this.heartbeat(live, watched, lost, n);
        else lost();
      })();
    }, interval);
    live.heartbeatTimer.unref?.();
  }

  /** A live sandbox whose agent stopped answering: not running → CRASHED or OOM; running but silent → AGENT_UNRESPONSIVE. */
  private async agentLost(live: LiveSandbox): Promise<void> {
    const st = await this.opts.driver.inspect(live.handle).catch(() => undefined);
    if (st && !st.running) {
      await this.end(live, st.oomKilled ? 'OOM' : 'CRASHED', st.oomKilled ? undefined : `The sandbox stopped unexpectedly (exit code ${st.exitCode ?? 'unknown'}).`);
    } else {
      await this.end(live, 'AGENT_UNRESPONSIVE', `The sandbox agent did not answer ${this.opts.heartbeatFailures ?? 3} health checks in a row, so the sandbox was stopped.`);
    }
  }

  /** The sandbox's memory cgroup `oom_kill` file, found once from a host pid of the sandbox. */
  private async oomFile(live: LiveSandbox): Promise<string | undefined> {
    if (live.oomFile === undefined) {
      const pids = await this.opts.driver.hostPids(live.handle).catch(() => [] as number[]);
      live.oomFile = (pids[0] !== undefined ? await oomEventsFile(pids[0]) : undefined) ?? null;
    }
    return live.oomFile ?? undefined;
  }

  /**
   * Commands, files, stdio relays and the model gateway of a live sandbox. A cancelled command whose
   * kill the agent does not confirm within 2 s ends the whole sandbox (KILL_TIMEOUT, §10).
   */
  handle(sandboxId: string): SandboxAgentHandle {
    const live = this.live.get(sandboxId);
    if (!live) throw new SandboxError('SANDBOX_UNAVAILABLE', `sandbox ${sandboxId} is not live in this pool`);
    const target = { runDir: live.runDir };
    return {
      id: sandboxId,
      socketPath: join(live.runDir, 'agent.sock'),
      gatewaySocketPath: live.gateway.socketPath,
      exec: async (req, opts) => {
        const file = await this.oomFile(live);
        const before = file ? await readOomKills(file) : undefined;
        live.activeExecs++;
        try {
          const result = await agentExec(target, req, opts);
          const after = file ? await readOomKills(file) : undefined;
          return { ...result, oomKilled: before !== undefined && after !== undefined && after > before };
        } catch (err) {
          if (err instanceof ExecCancelledError && !err.confirmed) await this.stop(sandboxId, 'KILL_TIMEOUT', 'A cancelled command could not be stopped in time, so the sandbox was stopped.');
          throw err;
        } finally {
          live.activeExecs--;
          if (live.lifetimeDue && live.activeExecs === 0) void this.stop(sandboxId, 'LIFETIME_LIMIT', 'The sandbox reached its lifetime limit and was stopped.');
        }
      },
      readFile: (req, opts) => readFile(target, req, opts),
      writeFile: (req, opts) => writeFile(target, req, opts),
      listFiles: (req, opts) => listFiles(target, req, opts),
      startStdio: async (name, cfg, opts = {}) => {
        const started = await startStdio(target, name, cfg, { signal: opts.signal });
        live.stdio.set(name, opts.turnId);
        return started;
      },
      stopStdio: async (name, opts = {}) => {
        live.stdio.delete(name);
        await stopStdio(target, name, opts);
      },
      stdioStatus: (name, opts = {}) => stdioStatus(target, name, opts),
      grantModel: (turnId, model) => live.gateway.grant(turnId, model),
    };
  }

  /** The turn is done with the task's sandbox: its grants and stdio relays end; when no turn holds it, the idle timer runs. */
  release(taskId: string, turnId: string): void {
    const id = this.byTask.get(taskId);
    const live = id ? this.live.get(id) : undefined;
    if (!live || live.ending) return;
    live.gateway.revokeTurn(turnId);
    for (const [name, owner] of live.stdio) {
      if (owner !== turnId) continue;
      live.stdio.delete(name);
      void stopStdio({ runDir: live.runDir }, name).catch(() => undefined);
    }
    live.record.inUseBy = live.record.inUseBy.filter((t) => t !== turnId);
    live.record.lastUsedAt = new Date();
    void this.opts.records.update(live.record.id, { inUseBy: live.record.inUseBy, lastUsedAt: live.record.lastUsedAt }).catch(() => undefined);
    if (live.record.inUseBy.length === 0) {
      live.idleTimer = setTimeout(() => void this.stop(live.record.id, 'IDLE_TIMEOUT'), live.idleTimeoutMs ?? this.opts.idleTimeoutMs ?? 600_000);
      live.idleTimer.unref?.();
      this.maybeEvict();
    }
  }

  /**
   * Eviction (§7.3): while a request waits at the cap, the least-recently-used idle sandbox ends
   * (EVICTED), preferring the user with the most sandboxes. When the first waiting request is held
   * by its user's own share, only that user's idle sandboxes can help.
   */
  private maybeEvict(): void {
    if (this.closed) return;
    const waiting = this.scheduler.queued();
    const evicting = [...this.live.values()].filter((l) => l.evicting && l.slot).length;
    if (waiting.length <= evicting) return;
    const first = waiting[evicting] ?? waiting[0];
    if (!first) return;
    const { total, perUser } = this.scheduler.usage();
    const { maxRunning, maxPerUser } = this.scheduler.limits;
    const ownShare = (perUser[first.ownerId] ?? 0) >= maxPerUser;
    if (!ownShare && total < maxRunning) return;
    const idle = [...this.live.values()].filter((l) => l.slot && !l.ending && !l.evicting && l.record.state === 'Running' && l.record.inUseBy.length === 0
      && (!ownShare || l.record.ownerId === first.ownerId));
    if (idle.length === 0) return;
    idle.sort((a, b) => (perUser[b.record.ownerId] ?? 0) - (perUser[a.record.ownerId] ?? 0) || a.record.lastUsedAt.getTime() - b.record.lastUsedAt.getTime());
    const victim = idle[0] as LiveSandbox;
    victim.evicting = true;
    void this.end(victim, 'EVICTED', 'The sandbox was idle and its place was needed for another request; its workspace is kept.');
  }

  /** Ends a sandbox: Completed or Failed by reason, then Cleanup, then Deleted. */
  async stop(sandboxId: string, reason: StopReason, message?: string): Promise<void> {
    const live = this.live.get(sandboxId);
    if (live) await this.end(live, reason, message);
  }

  list(filter?: SandboxRecordFilter): Promise<SandboxRecord[]> { return this.opts.records.list(filter); }

  /** Host pids of a live (or warm) sandbox's processes (the host's view). */
  async hostPids(sandboxId: string): Promise<number[]> {
    const live = this.live.get(sandboxId) ?? this.warm.find((w) => w.record.id === sandboxId);
    return live ? this.opts.driver.hostPids(live.handle) : [];
  }

  /** Ids of the warm sandboxes ready to be taken. */
  warmIds(): string[] { return this.warm.filter((w) => !w.ending).map((w) => w.record.id); }

  /** Resolves once the warm pool holds `warmPool` sandboxes (or rejects after `timeoutMs`). */
  async whenWarm(timeoutMs = 60_000): Promise<void> {
    const want = this.opts.warmPool ?? 0;
    const deadline = Date.now() + timeoutMs;
    while (this.warmIds().length < want) {
      if (this.closed) throw new SandboxError('SANDBOX_UNAVAILABLE', 'the sandbox pool is shut down');
      if (Date.now() > deadline) throw new SandboxError('SANDBOX_UNAVAILABLE', `the warm pool did not fill within ${Math.round(timeoutMs / 1000)} s`);
      await sleep(20);
    }
  }

  /** Starts warm sandboxes until the pool holds `warmPool` of them (§7.4). */
  private fillWarm(): void {
    const want = this.opts.warmPool ?? 0;
    while (!this.closed && this.warm.length + this.warmStarting < want) {
      this.warmStarting++;
      void this.startWarm().then((w) => {
        this.warmStarting--;
        if (this.closed) { void this.discardWarm(w); return; }
        this.warm.push(w);
      }, () => {
        this.warmStarting--;
        // Not at once again: a missing image would otherwise spin.
        if (!this.warmRetry && !this.closed) {
          this.warmRetry = setTimeout(() => { this.warmRetry = undefined; this.fillWarm(); }, WARM_RETRY_MS);
          this.warmRetry.unref?.();
        }
      });
    }
  }

  private async startWarm(): Promise<LiveSandbox> {
    this.watchDriver();
    const id = randomUUID();
    const sandboxDir = join(this.opts.dataDir, 'sandboxes', id);
    const workspaceDir = join(sandboxDir, 'workspace');
    const runDir = join(this.opts.runDir, id);
    const now = new Date();
    const labels = { taskId: '', ownerId: '', hostId: this.opts.hostId, instanceId: this.opts.instanceId };
    const w: LiveSandbox = {
      // Not stored until taken: a warm sandbox has no task and no owner.
      record: {
        id, taskId: '', ownerId: '', hostId: this.opts.hostId, instanceId: this.opts.instanceId, driver: this.opts.driver.name,
        state: 'Running', stateReason: null, message: null, image: this.opts.image ?? null, limits: { ...DEFAULT_LIMITS }, network: 'none',
        ports: [], workspaceDir, driverRef: null, inUseBy: [], createdAt: now, readyAt: null, lastUsedAt: now,
        endedAt: null, deletedAt: null, exitCode: null, oomKilled: false,
      },
      handle: { driver: this.opts.driver.name, sandboxId: id, ref: '', labels }, runDir, hasAgent: true, activeExecs: 0, stdio: new Map(),
      gateway: this.newGateway(id, runDir), warm: { since: Date.now() },
    };
    this.warmPending.add(id);
    try {
      await this.prepareFolders(sandboxDir, workspaceDir, runDir);
      await this.launch(w, { limits: { ...DEFAULT_LIMITS }, workspaceMode: 'dir', workspaceDir });
    } catch (err) {
      await this.discardWarm(w);
      throw err;
    } finally {
      this.warmPending.delete(id);
    }
    const recycle = setTimeout(() => this.replaceWarm(w), this.opts.warmMaxIdleMs ?? 3600_000);
    recycle.unref?.();
    if (w.warm) w.warm.recycleTimer = recycle;
    // Health-checked like a live one (§9), so that no task is handed an agent that stopped answering while it
    // waited: after N failures in a row it is replaced. Taking it ends these checks.
    this.heartbeat(w, () => w.warm !== undefined && !w.ending && !this.closed, () => this.replaceWarm(w));
    return w;
  }

  /** Removes a warm sandbox still waiting in the pool and starts another in its place. */
  private replaceWarm(w: LiveSandbox): void {
    const i = this.warm.indexOf(w);
    if (i < 0) return;
    this.warm.splice(i, 1);
    void this.discardWarm(w).finally(() => this.fillWarm());
  }

  /** Removes a warm sandbox that was never taken: processes, container, gateway and both folders. */
  private discardWarm(w: LiveSandbox): Promise<void> {
    w.ending ??= (async () => {
      if (w.warm?.recycleTimer) clearTimeout(w.warm.recycleTimer);
      if (w.heartbeatTimer) clearTimeout(w.heartbeatTimer);
      await w.gateway.close().catch(() => undefined);
      if (w.handle.ref) {
        await this.opts.driver.stop(w.handle, 0).catch(() => undefined);
        await this.opts.driver.remove(w.handle).catch(() => undefined);
      }
      await rm(w.runDir, { recursive: true, force: true });
      await rm(join(this.opts.dataDir, 'sandboxes', w.record.id), { recursive: true, force: true });
    })();
    return w.ending;
  }

  private end(live: LiveSandbox, reason: StopReason, message?: string): Promise<void> {
    live.ending ??= (async () => {
      for (const t of [live.idleTimer, live.heartbeatTimer, live.lifetimeTimer]) if (t) clearTimeout(t);
      const id = live.record.id;
      try {
        const inspect = live.handle.ref ? await this.opts.driver.inspect(live.handle).catch(() => undefined) : undefined;
        const failed = FAILED_REASONS.has(reason);
        const oom = reason === 'OOM';
        live.record = await this.opts.records.update(id, {
          state: failed ? 'Failed' : 'Completed', stateReason: reason, endedAt: new Date(),
          message: message ?? (oom ? `The sandbox ran out of memory (limit ${live.record.limits.memoryMB} MiB) and was stopped.` : null),
          exitCode: inspect?.exitCode ?? null, oomKilled: oom || (inspect?.oomKilled === true && reason === 'CRASHED'),
        });
        this.statusChannel.push(live.record);
        live.record = await this.opts.records.update(id, { state: 'Cleanup' });
        this.statusChannel.push(live.record);
        await live.gateway.close().catch(() => undefined);
        if (live.handle.ref) {
          await this.opts.driver.stop(live.handle, STOP_GRACE_MS);
          await this.opts.driver.remove(live.handle);
        }
        // Ports of a sandbox that is gone are reclaimed by the reaper if this fails.
        await this.opts.ports?.release(id).catch(() => undefined);
        await rm(live.runDir, { recursive: true, force: true });
        live.record = await this.opts.records.update(id, { state: 'Deleted', deletedAt: new Date(), inUseBy: [] });
        this.statusChannel.push(live.record);
      } finally {
        // Also when a step above failed (the reaper finishes what is left): the slot frees up, and only now
        // does the task's next request look for the workspace this one leaves.
        live.slot?.release();
        this.live.delete(id);
        if (this.byTask.get(live.record.taskId) === id) this.byTask.delete(live.record.taskId);
      }
    })();
    return live.ending;
  }

  /** Ends sandboxes whose main process exited: the exit code and the OOM counter tell why. */
  private watchDriver(): void {
    if (this.watching) return;
    this.watching = true;
    void (async () => {
      for await (const ev of this.opts.driver.events()) {
        if (this.closed) break;
        if (ev.type !== 'exit') continue;
        const warm = this.warm.find((w) => w.record.id === ev.handle.sandboxId);
        if (warm) {
          this.warm.splice(this.warm.indexOf(warm), 1);
          void this.discardWarm(warm).finally(() => this.fillWarm());
          continue;
        }
        const live = this.live.get(ev.handle.sandboxId);
        if (!live || live.ending || live.readying) continue;
        const st = await this.opts.driver.inspect(live.handle).catch(() => undefined);
        void this.end(live, st?.oomKilled ? 'OOM' : 'CRASHED', st?.oomKilled ? undefined : `The sandbox's main process exited with code ${ev.exitCode ?? st?.exitCode}.`);
      }
    })().catch(() => { this.watching = false; });
  }

  private isOurs(id: string): boolean {
    return this.live.has(id) || this.warm.some((w) => w.record.id === id) || this.warmPending.has(id);
  }

  /**
   * Start-up and periodic reaping (§13): driver sandboxes of this host without a live sandbox here
   * are removed; records left Created/Running by a previous run become Failed (CRASHED) → Deleted.
   */
  async reapOrphans(): Promise<{ removed: string[]; records: string[] }> {
    const records: string[] = [];
    for (const r of await this.opts.records.list({ hostId: this.opts.hostId, states: ['Created', 'Running', 'Completed', 'Failed', 'Cleanup'] })) {
      if (this.isOurs(r.id)) continue;
      if (r.state === 'Created' || r.state === 'Running') {
        await this.opts.records.update(r.id, { state: 'Failed', stateReason: 'CRASHED', message: 'The sandbox was lost when its server stopped.', endedAt: new Date() });
      }
      await this.opts.ports?.release(r.id);
      await rm(join(this.opts.runDir, r.id), { recursive: true, force: true });
      await this.opts.records.update(r.id, { state: 'Deleted', deletedAt: new Date(), inUseBy: [] });
      records.push(r.id);
    }
    const removed: string[] = [];
    for (const h of await this.opts.driver.listOwned()) {
      if (this.isOurs(h.sandboxId)) continue;
      // Another host's sandboxes are never ours to reap; unlabelled ones only when allowed.
      if (h.labels.hostId ? h.labels.hostId !== this.opts.hostId : this.opts.reapUnlabelled === false) continue;
      await this.opts.driver.stop(h, 0).catch(() => undefined);
      await this.opts.driver.remove(h);
      await rm(join(this.opts.runDir, h.sandboxId), { recursive: true, force: true });
      // A warm sandbox of a previous run that was never taken has no record: nothing of its folder is worth keeping.
      if (!h.labels.taskId && !(await this.opts.records.get(h.sandboxId))) await rm(join(this.opts.dataDir, 'sandboxes', h.sandboxId), { recursive: true, force: true });
      removed.push(h.sandboxId);
    }
    await this.reclaimPorts();
    return { removed, records };
  }

  /** Frees the host ports of sandboxes that are not live here (§8: at start-up and every minute); returns them. */
  async reclaimPorts(): Promise<number[]> {
    return this.opts.ports ? this.opts.ports.reclaim((id) => this.live.has(id)) : [];
  }

  /** Server shutdown: every sandbox ends with SHUTDOWN; warm ones are removed. */
  async close(): Promise<void> {
    this.closed = true;
    this.startGate.close();
    if (this.warmRetry) clearTimeout(this.warmRetry);
    while (this.warmStarting > 0) await sleep(20);
    await Promise.all(this.warm.splice(0).map((w) => this.discardWarm(w)));
    await Promise.all([...this.live.values()].map((l) => this.end(l, 'SHUTDOWN')));
    this.statusChannel.close();
  }
}
