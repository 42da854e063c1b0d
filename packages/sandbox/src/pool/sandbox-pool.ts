/**
 * The sandbox pool (sandbox.md §3, §7, §13): one sandbox per task, reused while alive; the cap and
 * fair queue; records through a storage-agnostic store; idle timeout; exit/OOM detection; clean-up
 * and orphan reaping; readiness through the sandbox agent, and a handle for commands and files.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  exec as agentExec, listFiles, readFile, waitForAgent, writeFile, ExecCancelledError,
  type ExecOptions, type ExecRequest, type ExecResult, type ListFilesRequest, type ListFilesResult,
  type ReadFileRequest, type ReadFileResult, type WriteFileRequest, type WriteFileResult,
} from '../agent-client.js';
import { EventChannel } from '../event-channel.js';
import { DEFAULT_LIMITS } from '../limits.js';
import type { PortAllocator } from '../ports/port-allocator.js';
import type { DriverHandle, SandboxDriver, SandboxLimits, StopReason, WorkspaceMode } from '../types.js';
import { SandboxError } from '../types.js';
import { FairScheduler, type SchedulerLimits, type Slot } from './fair-scheduler.js';
import type { SandboxRecord, SandboxRecordFilter, SandboxRecordStore } from './records.js';

const FAILED_REASONS: ReadonlySet<StopReason> = new Set(['DRIVER_ERROR', 'IMAGE_MISSING', 'CLONE_FAILED', 'READY_TIMEOUT', 'CRASHED', 'OOM', 'AGENT_UNRESPONSIVE', 'KILL_TIMEOUT', 'DISK_QUOTA']);
/** Grace before SIGKILL when a sandbox ends: its processes are gone well within 2 s. */
const STOP_GRACE_MS = 1000;

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
}

/** What a turn uses to work in a sandbox: commands and files through the sandbox agent (§2, §14.1). */
export interface SandboxAgentHandle {
  readonly id: string;
  /** The agent's socket on the host (`<run>/agent.sock`). */
  readonly socketPath: string;
  exec(req: ExecRequest, opts: ExecOptions): Promise<ExecResult>;
  readFile(req: ReadFileRequest, opts?: { signal?: AbortSignal }): Promise<ReadFileResult>;
  writeFile(req: WriteFileRequest, opts?: { signal?: AbortSignal }): Promise<WriteFileResult>;
  listFiles(req: ListFilesRequest, opts?: { signal?: AbortSignal }): Promise<ListFilesResult>;
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
  signal: AbortSignal;
  onQueued?(position: number): void;
}

interface LiveSandbox {
  record: SandboxRecord;
  handle: DriverHandle;
  slot: Slot;
  runDir: string;
  idleTimer?: NodeJS.Timeout;
  ending?: Promise<void>;
  /** Waiting for the agent's first health answer: an exit now is reported by the readiness check. */
  readying?: boolean;
}

/** Hands out one sandbox per task, fairly, within the limits. */
export class SandboxPool {
  readonly scheduler: FairScheduler;
  private readonly live = new Map<string, LiveSandbox>();
  private readonly byTask = new Map<string, string>();
  private readonly starting = new Map<string, Promise<SandboxRecord>>();
  private readonly statusChannel = new EventChannel<SandboxRecord>();
  private watching = false;
  private closed = false;

  constructor(private readonly opts: SandboxPoolOptions) {
    this.scheduler = new FairScheduler({ maxRunning: 5, maxPerUser: 3, queueTimeoutMs: 600_000, ...opts.scheduler });
  }

  /** Every state change of every record (the server forwards them as `sandbox:status`). */
  statusChanges(): AsyncIterable<SandboxRecord> { return this.statusChannel.subscribe(); }

  /** The task's live sandbox, or a new one once a slot is granted. */
  async acquire(req: AcquireRequest): Promise<SandboxRecord> {
    if (this.closed) throw new SandboxError('SANDBOX_UNAVAILABLE', 'the sandbox pool is shut down');
    this.watchDriver();
    const existing = this.byTask.get(req.taskId);
    const live = existing ? this.live.get(existing) : undefined;
    if (live && !live.ending && (live.record.state === 'Running' || live.record.state === 'Created')) return this.use(live, req.turnId);
    const pending = this.starting.get(req.taskId);
    if (pending) { const rec = await pending; const l = this.live.get(rec.id); if (l && !l.ending) return this.use(l, req.turnId); }
    const p = this.startNew(req);
    this.starting.set(req.taskId, p);
    try { return await p; } finally { this.starting.delete(req.taskId); }
  }

  private async use(live: LiveSandbox, turnId: string): Promise<SandboxRecord> {
    if (live.idleTimer) { clearTimeout(live.idleTimer); live.idleTimer = undefined; }
    if (!live.record.inUseBy.includes(turnId)) live.record.inUseBy.push(turnId);
    live.record = await this.opts.records.update(live.record.id, { inUseBy: live.record.inUseBy, lastUsedAt: new Date() });
    return live.record;
  }

  private async startNew(req: AcquireRequest): Promise<SandboxRecord> {
    const slot = await this.scheduler.acquire(req.ownerId, { signal: req.signal, label: req.taskId, onQueued: req.onQueued });
    const id = randomUUID();
    const limits = { ...DEFAULT_LIMITS, ...req.limits };
    const sandboxDir = join(this.opts.dataDir, 'sandboxes', id);
    const workspaceDir = join(sandboxDir, 'workspace');
    const runDir = join(this.opts.runDir, id);
    const now = new Date();
    let record: SandboxRecord = {
      id, taskId: req.taskId, ownerId: req.ownerId, hostId: this.opts.hostId, instanceId: this.opts.instanceId,
      driver: this.opts.driver.name, state: 'Created', stateReason: null, message: null, image: this.opts.image ?? null,
      limits, network: 'none', ports: [], workspaceDir, driverRef: null, inUseBy: [req.turnId],
      createdAt: now, readyAt: null, lastUsedAt: now, endedAt: null, deletedAt: null, exitCode: null, oomKilled: false,
    };
    await this.opts.records.insert(record);
    this.statusChannel.push(record);
    const live: LiveSandbox = { record, handle: { driver: this.opts.driver.name, sandboxId: id, ref: '', labels: { taskId: req.taskId, ownerId: req.ownerId, hostId: this.opts.hostId, instanceId: this.opts.instanceId } }, slot, runDir };
    this.live.set(id, live);
    this.byTask.set(req.taskId, id);
    try {
      // 0711: the unprivileged sandbox host user passes through to its own folder, never lists others.
      for (const d of [join(this.opts.dataDir, 'sandboxes'), sandboxDir, this.opts.runDir]) { await mkdir(d, { recursive: true }); await chmod(d, 0o711); }
      await mkdir(workspaceDir, { recursive: true });
      await mkdir(runDir, { recursive: true, mode: 0o700 });
      if (req.publishPorts?.length && this.opts.ports) {
        const hostPorts = await this.opts.ports.allocate(id, req.publishPorts.length);
        record.ports = req.publishPorts.map((container, i) => ({ container, host: hostPorts[i] as number, url: `http://127.0.0.1:${hostPorts[i]}` }));
      }
      live.handle = await this.opts.driver.create({
        id, labels: live.handle.labels, limits, network: 'none', workspaceMode: req.workspaceMode ?? 'dir',
        workspaceDir, runDir, command: req.command, image: this.opts.image,
      });
      await this.opts.driver.start(live.handle);
      if (req.command === undefined) {
        live.readying = true;
        try { await this.awaitReady(live, req.signal); } finally { live.readying = false; }
      }
      record = live.record = await this.opts.records.update(id, { state: 'Running', readyAt: new Date(), driverRef: live.handle.ref, ports: record.ports });
      this.statusChannel.push(record);
      if (req.signal.aborted) throw new SandboxError('CANCELLED', 'the request was cancelled while its sandbox started');
      req.signal.addEventListener('abort', () => void this.stop(id, 'USER_STOPPED'), { once: true });
      return record;
    } catch (err) {
      const code = err instanceof SandboxError && FAILED_REASONS.has(err.code as StopReason) ? err.code as StopReason : 'DRIVER_ERROR';
      await this.end(live, err instanceof SandboxError && err.code === 'CANCELLED' ? 'USER_STOPPED' : code, (err as Error).message);
      throw err;
    }
  }

  /** Readiness (§9): the agent answers `GET /v1/health` within the start timeout, else READY_TIMEOUT. */
  private async awaitReady(live: LiveSandbox, signal: AbortSignal): Promise<void> {
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
    if (signal.aborted) throw new SandboxError('CANCELLED', 'the request was cancelled while its sandbox started');
    const { stderr } = await this.opts.driver.logs(live.handle).catch(() => ({ stderr: '' }));
    const tail = Buffer.from(stderr).subarray(-2048).toString('utf8').trim();
    const why = exited ? 'the sandbox agent exited before it was ready' : `the sandbox agent did not answer within ${Math.round(timeoutMs / 1000)} s`;
    throw new SandboxError('READY_TIMEOUT', `${why}${tail ? `: ${tail}` : ''}`);
  }

  /**
   * Commands and files of a live sandbox, through its agent. A cancelled command whose kill the
   * agent does not confirm within 2 s ends the whole sandbox (KILL_TIMEOUT, §10).
   */
  handle(sandboxId: string): SandboxAgentHandle {
    const live = this.live.get(sandboxId);
    if (!live) throw new SandboxError('SANDBOX_UNAVAILABLE', `sandbox ${sandboxId} is not live in this pool`);
    const target = { runDir: live.runDir };
    return {
      id: sandboxId,
      socketPath: join(live.runDir, 'agent.sock'),
      exec: async (req, opts) => {
        try {
          return await agentExec(target, req, opts);
        } catch (err) {
          if (err instanceof ExecCancelledError && !err.confirmed) await this.stop(sandboxId, 'KILL_TIMEOUT', 'A cancelled command could not be stopped in time, so the sandbox was stopped.');
          throw err;
        }
      },
      readFile: (req, opts) => readFile(target, req, opts),
      writeFile: (req, opts) => writeFile(target, req, opts),
      listFiles: (req, opts) => listFiles(target, req, opts),
    };
  }

  /** The turn is done with the task's sandbox; when no turn holds it, the idle timer runs. */
  release(taskId: string, turnId: string): void {
    const id = this.byTask.get(taskId);
    const live = id ? this.live.get(id) : undefined;
    if (!live || live.ending) return;
    live.record.inUseBy = live.record.inUseBy.filter((t) => t !== turnId);
    void this.opts.records.update(live.record.id, { inUseBy: live.record.inUseBy, lastUsedAt: new Date() }).catch(() => undefined);
    if (live.record.inUseBy.length === 0) {
      live.idleTimer = setTimeout(() => void this.stop(live.record.id, 'IDLE_TIMEOUT'), this.opts.idleTimeoutMs ?? 600_000);
      live.idleTimer.unref?.();
    }
  }

  /** Ends a sandbox: Completed or Failed by reason, then Cleanup, then Deleted. */
  async stop(sandboxId: string, reason: StopReason, message?: string): Promise<void> {
    const live = this.live.get(sandboxId);
    if (live) await this.end(live, reason, message);
  }

  list(filter?: SandboxRecordFilter): Promise<SandboxRecord[]> { return this.opts.records.list(filter); }

  /** Host pids of a live sandbox's processes (the host's view). */
  async hostPids(sandboxId: string): Promise<number[]> {
    const live = this.live.get(sandboxId);
    return live ? this.opts.driver.hostPids(live.handle) : [];
  }

  private end(live: LiveSandbox, reason: StopReason, message?: string): Promise<void> {
    live.ending ??= (async () => {
      if (live.idleTimer) clearTimeout(live.idleTimer);
      const id = live.record.id;
      const inspect = live.handle.ref ? await this.opts.driver.inspect(live.handle).catch(() => undefined) : undefined;
      const failed = FAILED_REASONS.has(reason);
      const oom = reason === 'OOM';
      live.record = await this.opts.records.update(id, {
        state: failed ? 'Failed' : 'Completed', stateReason: reason, endedAt: new Date(),
        message: message ?? (oom ? `The sandbox ran out of memory (limit ${live.record.limits.memoryMB} MiB) and was stopped.` : null),
        exitCode: inspect?.exitCode ?? null, oomKilled: inspect?.oomKilled ?? false,
      });
      this.statusChannel.push(live.record);
      live.record = await this.opts.records.update(id, { state: 'Cleanup' });
      this.statusChannel.push(live.record);
      if (live.handle.ref) {
        await this.opts.driver.stop(live.handle, STOP_GRACE_MS);
        await this.opts.driver.remove(live.handle);
      }
      await this.opts.ports?.release(id);
      await rm(live.runDir, { recursive: true, force: true });
      live.slot.release();
      this.live.delete(id);
      if (this.byTask.get(live.record.taskId) === id) this.byTask.delete(live.record.taskId);
      live.record = await this.opts.records.update(id, { state: 'Deleted', deletedAt: new Date(), inUseBy: [] });
      this.statusChannel.push(live.record);
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
        const live = this.live.get(ev.handle.sandboxId);
        if (!live || live.ending || live.readying) continue;
        const st = await this.opts.driver.inspect(live.handle).catch(() => undefined);
        void this.end(live, st?.oomKilled ? 'OOM' : 'CRASHED', st?.oomKilled ? undefined : `The sandbox's main process exited with code ${ev.exitCode ?? st?.exitCode}.`);
      }
    })().catch(() => { this.watching = false; });
  }

  /**
   * Start-up and periodic reaping (§13): driver sandboxes of this host without a live sandbox here
   * are removed; records left Created/Running by a previous run become Failed (CRASHED) → Deleted.
   */
  async reapOrphans(): Promise<{ removed: string[]; records: string[] }> {
    const records: string[] = [];
    for (const r of await this.opts.records.list({ hostId: this.opts.hostId, states: ['Created', 'Running', 'Completed', 'Failed', 'Cleanup'] })) {
      if (this.live.has(r.id)) continue;
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
      if (this.live.has(h.sandboxId)) continue;
      await this.opts.driver.stop(h, 0).catch(() => undefined);
      await this.opts.driver.remove(h);
      await rm(join(this.opts.runDir, h.sandboxId), { recursive: true, force: true });
      removed.push(h.sandboxId);
    }
    if (this.opts.ports) await this.opts.ports.reclaim((id) => this.live.has(id));
    return { removed, records };
  }

  /** Server shutdown: every sandbox ends with SHUTDOWN. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.live.values()].map((l) => this.end(l, 'SHUTDOWN')));
    this.statusChannel.close();
  }
}
