import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { Gauge, Histogram } from 'prom-client';
import {
  SANDBOX_STATES,
  SandboxAcquireError,
  SandboxCallError,
  type Ref,
  type RuntimeEvent,
  type SandboxExecResult,
  type SandboxSession,
  type SandboxStdioConfig,
  type SandboxStatusPayload,
  type SandboxView,
  type ShellSandboxSettings,
} from '@wegent/core';
import type { ModelConnection, ResolvedSkill, RunHost, RunRequest } from '@wegent/runtime';
import {
  AgentCallError,
  ExecCancelledError,
  PortAllocator,
  SandboxError,
  SandboxPool,
  resolveLimits,
  selectSandboxDriver,
  type AcquireRequest,
  type DriverProbe,
  type GatewayUsageRecord,
  type SandboxPoolOptions,
  type SandboxRecord,
  type WorkspaceSpec,
} from '@wegent/sandbox';
import type { AppContext } from '../app.js';
import { NotFoundError, ValidationError } from '../errors.js';
import { BusChannels, type EventBus } from '../infra/event-bus.js';
import { SkillService } from '../skills/service.js';
import { boundGetter } from '../tasks/host-proxy.js';
import { SandboxPortStore, SandboxStore } from './store.js';

/** Who is asking (REST): admins may read and stop every sandbox (api.md §11). */
export interface SandboxCaller {
  userId: string;
  isAdmin: boolean;
}

const ENDED = new Set(['Completed', 'Failed', 'Cleanup', 'Deleted']);
/** How long a Deleted record stays visible (sandbox.md §3). */
const DELETED_RETENTION_MS = 7 * 86_400_000;
/** After a failed call, how long to wait for the pool to record that its sandbox ended (crash, OOM). */
const END_NOTICE_MS = 1500;

/** The API form of a record (api.md §6). */
export function sandboxView(r: SandboxRecord): SandboxView {
  const limits = r.limits as SandboxRecord['limits'] & { execTimeoutSeconds?: number };
  return {
    id: r.id,
    taskId: r.taskId,
    driver: r.driver,
    state: r.state,
    stateReason: r.stateReason,
    message: r.message,
    image: r.image,
    limits: { memoryMB: limits.memoryMB, cpus: limits.cpus, pids: limits.pids, diskMB: limits.diskMB, execTimeoutSeconds: limits.execTimeoutSeconds ?? 600, network: r.network },
    ports: r.ports,
    createdAt: r.createdAt.toISOString(),
    readyAt: r.readyAt?.toISOString() ?? null,
    lastUsedAt: r.lastUsedAt.toISOString(),
    endedAt: r.endedAt?.toISOString() ?? null,
  };
}

/** The run a host belongs to: the envelope of the events the sandbox side emits on its behalf. */
export type RunOfHost = Pick<RunRequest, 'taskId' | 'runId' | 'runSeq'>;

/** Agent-side relay names are unique per process, so two turns of a task never claim the same one (§14.3). */
let stdioCounter = 0;

/** The sentence of an ended sandbox when the pool gave none. */
function endSentence(r: SandboxRecord): string {
  if (r.message) return r.message;
  if (r.stateReason === 'OOM') return `The sandbox ran out of memory (limit ${r.limits.memoryMB} MiB) and was stopped.`;
  return `The sandbox stopped (${r.stateReason ?? 'unknown reason'}).`;
}

/** `<WEGENT_DATA_DIR>/host-id`: this host's stable id (sandbox.md §13). */
function hostIdOf(dataDir: string): string {
  const file = path.join(dataDir, 'host-id');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const id = `host-${randomBytes(8).toString('hex')}`;
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

/**
 * The run folder (sandbox.md §1): created 0700, refused when it exists and belongs to another user
 * (a socket folder someone else controls could be swapped under us).
 */
function prepareRunDir(runDir: string): void {
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const uid = process.getuid?.();
  if (uid !== undefined && statSync(runDir).uid !== uid) throw new Error(`WEGENT_SANDBOX_RUN_DIR ${runDir} belongs to another user`);
}

/**
 * bwrap runs the sandbox as an unprivileged host user, which must pass through the data folder to
 * reach its workspace: the folder becomes 0711 (no listing) and every file directly in it 0600, so the
 * database and keys stay the server's own.
 */
function openDataDirForSandboxUser(dataDir: string): void {
  for (const name of readdirSync(dataDir)) {
    const full = path.join(dataDir, name);
    if (statSync(full).isFile()) chmodSync(full, 0o600);
  }
  chmodSync(dataDir, 0o711);
}

/** One turn's hold on its task's sandbox, as the runtime sees it (core `SandboxSession`). */
class PoolSession implements SandboxSession {
  readonly id: string;
  readonly memoryMB: number;
  #failure?: { code: 'SANDBOX_FAILED'; message: string };
  #released = false;
  /** The stdio programs this turn started: the Ghost's server name → the agent's relay name. */
  readonly #stdio = new Map<string, string>();
  /** Runs when the turn lets go of the sandbox (the gateway usage sink ends). */
  onRelease?: () => void;

  constructor(
    private readonly service: SandboxService,
    private readonly pool: SandboxPool,
    private readonly record: SandboxRecord,
    private readonly turnId: string,
  ) {
    this.id = record.id;
    this.memoryMB = record.limits.memoryMB;
  }

  fail(record: SandboxRecord): void {
    if (!this.#released && !this.#failure) this.#failure = { code: 'SANDBOX_FAILED', message: endSentence(record) };
  }

  failure() {
    return this.#failure;
  }

  /** A call failed: if its sandbox ended meanwhile, that is the turn's error; else the agent's error is the tool's. */
  private async rethrow(err: unknown): Promise<never> {
    if (err instanceof ExecCancelledError || (err instanceof Error && err.name === 'AbortError')) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
    // A lost agent or a sandbox gone from the pool usually means the sandbox ended: wait for its record to say so.
    const transport = err instanceof SandboxError || (err instanceof AgentCallError && ['AGENT_UNREACHABLE', 'AGENT_UNRESPONSIVE', 'AGENT_TIMEOUT'].includes(err.code));
    const deadline = Date.now() + (transport ? END_NOTICE_MS : 0);
    while (!this.#failure) {
      const r = await this.service.store.get(this.id);
      if (r && ENDED.has(r.state)) this.fail(r);
      else if (Date.now() >= deadline) break;
      else await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (err instanceof AgentCallError || err instanceof SandboxError) throw new SandboxCallError(err.code, err.message);
    throw err;
  }

  async exec(req: Parameters<SandboxSession['exec']>[0], opts: Parameters<SandboxSession['exec']>[1]): Promise<SandboxExecResult> {
    try {
      const r = await this.pool.handle(this.id).exec({ command: req.command, cwd: req.cwd, env: req.env, timeoutSeconds: req.timeoutSeconds }, { signal: opts.signal, onOutput: opts.onOutput });
      return { exitCode: r.exitCode, signal: r.signal, timedOut: r.timedOut, oomKilled: r.oomKilled, durationMs: r.durationMs, stdout: r.stdout, stderr: r.stderr, truncated: r.truncated };
    } catch (err) {
      return this.rethrow(err);
    }
  }

  async readFile(req: Parameters<SandboxSession['readFile']>[0], opts: { signal: AbortSignal }) {
    try {
      return await this.pool.handle(this.id).readFile(req, opts);
    } catch (err) {
      return this.rethrow(err);
    }
  }

  async writeFile(req: Parameters<SandboxSession['writeFile']>[0], opts: { signal: AbortSignal }) {
    try {
      return await this.pool.handle(this.id).writeFile({ path: req.path, content: req.content, encoding: req.encoding ?? 'utf8', append: req.append ?? false }, opts);
    } catch (err) {
      return this.rethrow(err);
    }
  }

  async listFiles(req: Parameters<SandboxSession['listFiles']>[0], opts: { signal: AbortSignal }) {
    try {
      return await this.pool.handle(this.id).listFiles(req, opts);
    } catch (err) {
      return this.rethrow(err);
    }
  }

  /**
   * A Ghost's stdio MCP server inside the sandbox (sandbox.md §14.3): the agent starts it under a relay
   * name of its own (a server name need not fit the agent's name rules); the pool stops it when the turn
   * releases the sandbox, if the runtime has not already.
   */
  async startStdio(name: string, cfg: SandboxStdioConfig, opts: { signal?: AbortSignal }): Promise<{ hostSocketPath: string }> {
    const relayName = `${name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40)}-${++stdioCounter}`;
    try {
      const started = await this.pool.handle(this.id).startStdio(relayName, { command: cfg.command, args: cfg.args ?? [], env: cfg.env ?? {} }, { turnId: this.turnId, signal: opts.signal });
      this.#stdio.set(name, relayName);
      return { hostSocketPath: started.hostSocketPath };
    } catch (err) {
      return this.rethrow(err);
    }
  }

  async stopStdio(name: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const relayName = this.#stdio.get(name);
    if (relayName === undefined) return;
    this.#stdio.delete(name);
    try {
      await this.pool.handle(this.id).stopStdio(relayName, opts);
    } catch (err) {
      return this.rethrow(err);
    }
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.onRelease?.();
    this.pool.release(this.record.taskId, this.turnId);
    this.service.forget(this);
  }
}

/**
 * Sandboxes in the server (sandbox.md): the pool built from config at start, records in storage, the
 * `/api/v1/sandboxes` operations, `sandbox:status` to task rooms, and the `RunHost.acquireSandbox`
 * seam the runtime's sandbox tools use.
 */
export class SandboxService {
  readonly store: SandboxStore;
  pool?: SandboxPool;
  /** Why sandboxes are off (`WEGENT_SANDBOX_DRIVER=none`, or no driver available). */
  unavailableReason?: string;
  probe?: DriverProbe;
  driverName?: string;
  private readonly sessions = new Map<string, Set<PoolSession>>();
  /** Where the gateway's usage goes, by turn: that turn's run host, as `usage` events (sandbox.md §11). */
  private readonly usageSinks = new Map<string, (u: GatewayUsageRecord) => void>();
  /** `wegent_sandbox_start_seconds` (api.md §9); `pool` tells a taken warm sandbox from a cold start. */
  private readonly startSeconds: Histogram<'driver' | 'pool'>;
  private readonly warmTaken = new Set<string>();
  private purgeTimer?: NodeJS.Timeout;
  private reapTimer?: NodeJS.Timeout;
  private portTimer?: NodeJS.Timeout;
  private watching?: Promise<void>;

  constructor(
    private readonly ctx: AppContext,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {
    this.store = new SandboxStore(ctx.storage.db);
    ctx.tasks.sandboxes = { current: (taskId) => this.currentOf(taskId) };
    const registers = [ctx.metrics.registry];
    const db = ctx.storage.db;
    new Gauge({
      name: 'wegent_sandboxes',
      help: 'Sandbox records by state (Deleted ones excepted)',
      labelNames: ['state', 'driver'] as const,
      registers,
      async collect() {
        this.reset();
        const rows = await db.selectFrom('sandboxes').select(['state', 'driver', (eb) => eb.fn.countAll<string | number>().as('n')]).where('state', '<>', 'Deleted').groupBy(['state', 'driver']).execute();
        for (const r of rows) this.set({ state: r.state, driver: r.driver }, Number(r.n));
      },
    });
    this.startSeconds = new Histogram({ name: 'wegent_sandbox_start_seconds', help: 'From a sandbox record to its agent answering', labelNames: ['driver', 'pool'] as const, buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30], registers });
  }

  /** For /readyz: `unavailable` both for `none` and for no driver found (sandbox.md §4.3); never makes the server unready. */
  get readiness(): 'ok' | 'unavailable' {
    return this.pool ? 'ok' : 'unavailable';
  }

  /**
   * Chooses the driver (sandbox.md §4.3), builds the pool, and reaps what a previous process left
   * (§13) — after migrations, before the server reports ready. No driver is not an error: sandbox
   * features are refused with the reason, everything else works.
   */
  async start(): Promise<void> {
    const cfg = this.ctx.config.sandbox;
    const dataDir = this.ctx.config.dataDir;
    const hostId = hostIdOf(dataDir);
    const sweep = () => void this.sweep(hostId).catch((err) => this.log.warn({ err }, 'sweeping ended sandboxes failed'));
    this.purgeTimer = setInterval(sweep, 3_600_000);
    this.purgeTimer.unref();
    if (cfg.driver === 'none') {
      this.unavailableReason = 'no sandbox driver is available on this server: WEGENT_SANDBOX_DRIVER is none';
      this.log.info('sandboxes are off (WEGENT_SANDBOX_DRIVER=none)');
      await this.failLeftovers(hostId);
      return;
    }
    let choice: Awaited<ReturnType<typeof selectSandboxDriver>>;
    // bwrap's probe already runs as the sandbox host user, who must pass through the data folder.
    if (cfg.driver !== 'docker') openDataDirForSandboxUser(dataDir);
    try {
      choice = await selectSandboxDriver({ mode: cfg.driver, dataDir, hostId, allowWeakLimits: cfg.allowWeakLimits, hostUid: cfg.hostUid, hostGid: cfg.hostGid });
    } catch (err) {
      choice = { driver: undefined, reason: `no sandbox driver is available on this server: ${(err as Error).message}` };
    }
    if (!choice.driver) {
      chmodSync(dataDir, 0o700);
      this.unavailableReason = choice.reason.startsWith('no sandbox driver') ? choice.reason : `no sandbox driver is available on this server: ${choice.reason}`;
      this.log.warn({ reason: this.unavailableReason }, 'sandboxes are unavailable');
      await this.failLeftovers(hostId);
      return;
    }
    if (choice.driver.name !== 'bwrap') chmodSync(dataDir, 0o700);
    prepareRunDir(cfg.runDir);
    const ports = new PortAllocator(new SandboxPortStore(this.ctx.storage.db), { hostId, min: cfg.portMin, max: cfg.portMax });
    const options: SandboxPoolOptions = {
      driver: choice.driver,
      records: this.store,
      hostId,
      instanceId: `${hostId}-${process.pid}-${randomBytes(3).toString('hex')}`,
      dataDir,
      runDir: cfg.runDir,
      scheduler: { maxRunning: cfg.maxRunning, maxPerUser: cfg.maxPerUser, queueTimeoutMs: cfg.queueTimeoutSeconds * 1000 },
      ports,
      warmPool: cfg.warmPool,
      ...(cfg.startConcurrency !== undefined ? { startConcurrency: cfg.startConcurrency } : {}),
      workspaceRetentionMs: cfg.workspaceRetentionHours * 3_600_000,
      git: { depth: cfg.gitCloneDepth, allowLocal: this.ctx.config.gitAllowLocal, allowSsh: cfg.gitAllowSsh, privateHostsAllow: this.ctx.config.privateHostsAllow },
      gateway: { privateHostsAllow: this.ctx.config.privateHostsAllow, allowPrivateTargets: this.ctx.config.modelAllowPrivate, onUsage: (u) => this.usageSinks.get(u.turnId)?.(u) },
      sandboxHostUid: cfg.hostUid,
      reapUnlabelled: cfg.reapUnlabelled,
      sandboxHostGid: cfg.hostGid,
    };
    this.pool = new SandboxPool(options);
    this.probe = choice.probe;
    this.driverName = choice.driver.name;
    this.log.info({ driver: choice.driver.name, enforces: choice.probe.enforces }, 'sandbox driver selected');
    const reaped = await this.pool.reapOrphans();
    if (reaped.removed.length + reaped.records.length) this.log.info({ removed: reaped.removed.length, records: reaped.records.length }, 'reaped sandboxes left by a previous process');
    this.reapTimer = setInterval(() => void this.pool?.reapOrphans().catch((err) => this.log.warn({ err }, 'reaping sandboxes failed')), 300_000);
    this.reapTimer.unref();
    this.portTimer = setInterval(() => void this.pool?.reclaimPorts().catch((err) => this.log.warn({ err }, 'reclaiming sandbox ports failed')), 60_000);
    this.portTimer.unref();
    this.watching = this.watchStatus(this.pool);
    sweep();
  }

  /** `<dataDir>/sandboxes/<id>`, the folder holding a sandbox's workspace; never anything outside it. */
  private sandboxFolder(r: SandboxRecord): string | undefined {
    const root = path.join(this.ctx.config.dataDir, 'sandboxes');
    const folder = path.dirname(r.workspaceDir);
    return path.dirname(folder) === root && path.basename(folder) === r.id ? folder : undefined;
  }

  /**
   * Hourly: workspaces of ended sandboxes past WEGENT_SANDBOX_WORKSPACE_RETENTION_HOURS are deleted, and
   * Deleted records past their 7 days are purged (sandbox.md §3, §13).
   */
  private async sweep(hostId: string): Promise<void> {
    const keepUntil = Date.now() - this.ctx.config.sandbox.workspaceRetentionHours * 3_600_000;
    for (const r of await this.store.list({ hostId, states: ['Deleted'] })) {
      const ended = (r.deletedAt ?? r.endedAt ?? r.createdAt).getTime();
      const folder = this.sandboxFolder(r);
      if (folder && (ended < keepUntil || ended < Date.now() - DELETED_RETENTION_MS)) await rm(folder, { recursive: true, force: true });
    }
    await this.store.purgeDeleted(new Date(Date.now() - DELETED_RETENTION_MS));
  }

  /** Without a pool, records a previous process left live can only be marked lost. */
  private async failLeftovers(hostId: string): Promise<void> {
    const now = new Date();
    for (const r of await this.store.list({ hostId, states: ['Created', 'Running', 'Completed', 'Failed', 'Cleanup'] })) {
      if (r.state === 'Created' || r.state === 'Running') await this.store.update(r.id, { state: 'Failed', stateReason: 'CRASHED', message: 'The sandbox was lost when its server stopped.', endedAt: now });
      await this.store.update(r.id, { state: 'Deleted', deletedAt: now, inUseBy: [] });
    }
  }

  /** Every record change becomes `sandbox:status` in its task's room; an end fails the turns holding it. */
  private async watchStatus(pool: SandboxPool): Promise<void> {
    for await (const record of pool.statusChanges()) {
      // A sandbox taken from the warm pool is recorded already started (it has a driver reference).
      if (record.state === 'Created' && record.driverRef) this.warmTaken.add(record.id);
      if (record.state === 'Running' && record.readyAt) {
        this.startSeconds.observe({ driver: record.driver, pool: this.warmTaken.has(record.id) ? 'warm' : 'cold' }, Math.max(0, record.readyAt.getTime() - record.createdAt.getTime()) / 1000);
        this.warmTaken.delete(record.id);
      }
      if (record.state === 'Completed' || record.state === 'Failed') for (const s of this.sessions.get(record.id) ?? []) s.fail(record);
      if (record.state === 'Deleted') this.sessions.delete(record.id);
      const payload: SandboxStatusPayload = { taskId: record.taskId, sandboxId: record.id, state: record.state, ...(record.message ? { message: record.message } : {}) };
      await this.publish(payload).catch((err) => this.log.warn({ err }, 'publishing sandbox:status failed'));
    }
  }

  private publish(payload: SandboxStatusPayload): Promise<void> {
    return this.bus.publish(BusChannels.taskEvents(payload.taskId), { name: 'sandbox:status', taskId: payload.taskId, payload: payload as unknown as Record<string, unknown> });
  }

  forget(session: PoolSession): void {
    this.sessions.get(session.id)?.delete(session);
  }

  /**
   * The task's sandbox for one turn (RunHost seam): the Shell's limits within the admin maxima, the
   * task's Workspace cloned on creation, `Queued` positions pushed while waiting.
   */
  async acquire(taskId: string, req: { turnId: string; shell: ShellSandboxSettings | undefined; signal: AbortSignal; model?: ModelConnection }, host?: { run: RunOfHost; emit: RunHost['emit'] }): Promise<SandboxSession> {
    const pool = this.pool;
    if (!pool) throw new SandboxAcquireError('SANDBOX_UNAVAILABLE', this.unavailableReason ?? 'no sandbox driver is available on this server');
    const cfg = this.ctx.config.sandbox;
    const shell = req.shell ?? {};
    if (shell.network === 'egress') {
      const why = this.driverName === 'bwrap' ? 'the bwrap driver cannot give a sandbox network egress' : cfg.allowEgress ? 'network egress is not available in this build' : 'network egress is not allowed on this server (WEGENT_SANDBOX_ALLOW_EGRESS)';
      throw new SandboxAcquireError('SANDBOX_UNAVAILABLE', `This Shell asks for network egress, but ${why}.`);
    }
    const task = await this.ctx.storage.db.selectFrom('task_state').select(['owner_id']).where('task_id', '=', taskId).executeTakeFirst();
    if (!task) throw new SandboxAcquireError('SANDBOX_UNAVAILABLE', 'the task no longer exists');
    const limits = { ...resolveLimits(shell, cfg.maxima), execTimeoutSeconds: shell.execTimeoutSeconds ?? 600 };
    let queued = false;
    const request: AcquireRequest = {
      taskId,
      turnId: req.turnId,
      ownerId: task.owner_id,
      limits,
      workspaceMode: cfg.workspaceMode,
      publishPorts: shell.publishPorts,
      ...(shell.idleTimeoutSeconds !== undefined ? { idleTimeoutMs: shell.idleTimeoutSeconds * 1000 } : {}),
      signal: req.signal,
      onQueued: (position) => {
        queued = true;
        void this.publish({ taskId, sandboxId: null, state: 'Queued', queue: { position } }).catch(() => undefined);
        // A run that has not started shows the wait as its task's queue (chat-protocol.md §10).
        if (host) this.ctx.tasks.noteSandboxQueue(taskId, host.run.runSeq, position);
      },
    };
    const workspace = await this.workspaceOf(taskId, task.owner_id);
    if (workspace) request.workspace = workspace;
    let record: SandboxRecord;
    try {
      record = await pool.acquire(request);
    } catch (err) {
      if (req.signal.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
      if (err instanceof SandboxError && err.code === 'SANDBOX_QUEUE_TIMEOUT') throw new SandboxAcquireError('SANDBOX_QUEUE_TIMEOUT', err.message);
      throw new SandboxAcquireError('SANDBOX_UNAVAILABLE', err instanceof Error ? err.message : String(err));
    } finally {
      if (queued && host) this.ctx.tasks.noteSandboxQueue(taskId, host.run.runSeq, null);
    }
    const session = new PoolSession(this, pool, record, req.turnId);
    // The turn's Model is reachable from inside through the gateway for the turn; release revokes it (sandbox.md §11).
    if (req.model && req.model.protocol !== 'demo') {
      const m = req.model;
      try {
        pool.handle(record.id).grantModel(req.turnId, { protocol: m.protocol, modelId: m.modelId, apiFormat: m.apiFormat, baseUrl: m.baseUrl, apiKey: m.apiKey, headers: m.headers, allowPrivate: m.trustedOwner });
        if (host) this.recordGatewayUsage(session, req.turnId, m, host);
      } catch (err) {
        this.log.warn({ err, sandboxId: record.id }, 'granting the model gateway failed');
      }
    }
    let set = this.sessions.get(record.id);
    if (!set) this.sessions.set(record.id, (set = new Set()));
    set.add(session);
    return session;
  }

  /**
   * The gateway's usage of a turn goes on that turn's usage rows (sandbox.md §11, runtime.md §14): each
   * answer becomes a `usage` event of the turn's Model, which the recorder sums with the turn's own calls.
   */
  private recordGatewayUsage(session: PoolSession, turnId: string, m: ModelConnection, host: { run: RunOfHost; emit: RunHost['emit'] }): void {
    const sink = (u: GatewayUsageRecord) => {
      const event = {
        type: 'usage',
        taskId: host.run.taskId,
        runId: host.run.runId,
        runSeq: host.run.runSeq,
        at: new Date().toISOString(),
        turnId,
        model: { uid: m.resource.uid, name: m.resource.name, namespace: m.resource.namespace, protocol: m.protocol, modelId: u.model || m.modelId },
        inputTokens: u.inputTokens,
        outputTokens: u.outputTokens,
        reasoningTokens: u.reasoningTokens,
        cachedInputTokens: u.cachedInputTokens,
        estimated: false,
      } satisfies Extract<RuntimeEvent, { type: 'usage' }>;
      void Promise.resolve(host.emit(event)).catch((err: unknown) => this.log.warn({ err, turnId }, 'recording gateway usage failed'));
    };
    this.usageSinks.set(turnId, sink);
    session.onRelease = () => {
      if (this.usageSinks.get(turnId) === sink) this.usageSinks.delete(turnId);
    };
  }

  /**
   * The files of a skill's package (relative paths and bytes) for a sandboxed turn's
   * `/workspace/.skills/<name>/` (runtime.md §8, `RunHost.loadSkillPackage`).
   */
  async skillPackage(skill: ResolvedSkill): Promise<Array<{ path: string; data: Uint8Array }>> {
    return new SkillService(this.ctx.resources).packageFiles(skill.uid);
  }

  /** The task's Workspace as the clone needs it (credentials in clear, host side only, sandbox.md §12). */
  private async workspaceOf(taskId: string, ownerId: string): Promise<WorkspaceSpec | undefined> {
    const taskRow = await this.ctx.resources.store.findLiveByUid(taskId);
    if (!taskRow) return undefined;
    const spec = this.ctx.resources.clearSpecOf(taskRow) as { workspaceRef?: Ref };
    if (!spec.workspaceRef) return undefined;
    const ws = await this.ctx.resources.resolveRef(ownerId, 'Workspace', spec.workspaceRef, taskRow.namespace);
    if (!ws) throw new SandboxAcquireError('SANDBOX_UNAVAILABLE', `Workspace '${spec.workspaceRef.name}' of the task no longer resolves`);
    const wsSpec = ws.spec as { repository: { gitUrl: string; branchName?: string }; credentials?: { username?: string; token?: string; password?: string } };
    const user = await this.ctx.storage.db.selectFrom('users').select(['display_name', 'email']).where('id', '=', ownerId).executeTakeFirst();
    return {
      gitUrl: wsSpec.repository.gitUrl,
      ...(wsSpec.repository.branchName ? { branchName: wsSpec.repository.branchName } : {}),
      ...(wsSpec.credentials ? { credentials: wsSpec.credentials } : {}),
      ...(user ? { userName: user.display_name, userEmail: user.email } : {}),
    };
  }

  /**
   * Adds `acquireSandbox` and `loadSkillPackage` to a run's host; every other host call passes through
   * unchanged. The gateway's usage of the run's turns is emitted through the host's own `emit`.
   */
  attach<H extends RunHost>(host: H, run: RunOfHost): H {
    const emit: RunHost['emit'] = (event) => host.emit(event);
    const acquireSandbox: RunHost['acquireSandbox'] = (req) => this.acquire(run.taskId, req, { run, emit });
    const loadSkillPackage: RunHost['loadSkillPackage'] = (skill) => this.skillPackage(skill);
    return new Proxy(host, { get: boundGetter<H>({ acquireSandbox, loadSkillPackage }) });
  }

  /** The task's live sandbox, else its latest record (the store lists newest first). */
  private async latestOf(taskId: string): Promise<SandboxRecord | undefined> {
    const records = await this.store.list({ taskId });
    return records.find((x) => x.state === 'Created' || x.state === 'Running') ?? records[0];
  }

  /** `runtime.sandbox` (api.md §5.1). */
  async currentOf(taskId: string): Promise<{ id: string; state: SandboxRecord['state'] } | null> {
    const r = await this.latestOf(taskId);
    return r ? { id: r.id, state: r.state } : null;
  }

  /**
   * GET /api/v1/tasks/{id}/sandbox (api.md §5): the task's live sandbox, else its latest one (which tells
   * how it ended). The task must be the caller's; one without any sandbox is a 404.
   */
  async ofTask(caller: SandboxCaller, taskId: string): Promise<SandboxRecord> {
    await this.ctx.tasks.ownedState(caller.userId, taskId);
    const r = await this.latestOf(taskId);
    if (!r) throw new NotFoundError('the task has no sandbox', { kind: 'Sandbox' });
    return r;
  }

  /** GET /api/v1/sandboxes: own sandboxes; an admin's `all=true` lists everyone's. */
  async list(caller: SandboxCaller, q: { all?: boolean; state?: string }): Promise<SandboxView[]> {
    let states: SandboxRecord['state'][] | undefined;
    if (q.state !== undefined) {
      const wanted = q.state.split(',').map((s) => s.trim());
      const bad = wanted.find((s) => !(SANDBOX_STATES as readonly string[]).includes(s));
      if (bad !== undefined) throw new ValidationError(`state: unknown sandbox state '${bad}'`, [{ field: 'state', reason: 'FieldValueNotSupported', message: `must be one of ${SANDBOX_STATES.join(', ')}` }]);
      states = wanted as SandboxRecord['state'][];
    }
    const records = await this.store.list({ ...(q.all && caller.isAdmin ? {} : { ownerId: caller.userId }), ...(states ? { states } : {}) });
    return records.map(sandboxView);
  }

  /** Another user's sandbox does not exist for the caller (admins see all). */
  async get(caller: SandboxCaller, id: string): Promise<SandboxRecord> {
    const r = await this.store.get(id);
    if (!r || (r.ownerId !== caller.userId && !caller.isAdmin)) throw new NotFoundError('sandbox not found', { kind: 'Sandbox' });
    return r;
  }

  /**
   * DELETE /api/v1/sandboxes/{id} (api.md §6): a run of the task that is using the sandbox is
   * cancelled first (SANDBOX_STOPPED), then the sandbox ends (USER_STOPPED) and is cleaned up.
   */
  async stop(caller: SandboxCaller, id: string): Promise<SandboxRecord> {
    const r = await this.get(caller, id);
    if (ENDED.has(r.state)) return r;
    if (r.inUseBy.length) await this.ctx.tasks.cancel(r.ownerId, r.taskId, { reason: 'SANDBOX_STOPPED' }).catch(() => undefined);
    void this.pool?.stop(id, 'USER_STOPPED').catch((err) => this.log.warn({ err, sandboxId: id }, 'stopping a sandbox failed'));
    return r;
  }

  /** A deleted task's sandbox ends at once (TASK_DELETED, sandbox.md §13). */
  async onTaskDeleted(taskId: string): Promise<void> {
    for (const r of await this.store.list({ taskId, states: ['Created', 'Running'] })) await this.pool?.stop(r.id, 'TASK_DELETED');
    // The task's workspaces go with it (sandbox.md §13), whatever their retention.
    for (const r of await this.store.list({ taskId })) {
      const folder = this.sandboxFolder(r);
      if (folder && (r.state === 'Deleted' || !this.pool)) await rm(folder, { recursive: true, force: true });
    }
  }

  /** Server shutdown: every sandbox ends (SHUTDOWN) within the grace period. */
  async close(): Promise<void> {
    clearInterval(this.purgeTimer);
    clearInterval(this.reapTimer);
    clearInterval(this.portTimer);
    await this.pool?.close();
    await this.watching?.catch(() => undefined);
  }
}
