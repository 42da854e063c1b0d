import type { Logger } from 'pino';
import type { RunOutcome, RunRequest, RunHost } from '@wegent/runtime';
import type { AppContext } from '../app.js';
import type { Cache } from '../infra/cache.js';
import { BusChannels, type EventBus, type Subscription } from '../infra/event-bus.js';
import type { ClaimedJob, JobQueue } from '../infra/job-queue.js';
import type { TaskStatus } from './state-machine.js';
import { taskStore } from './store.js';
import { TurnRecorder } from './turn-recorder.js';
import { buildRunRequest, ResolutionError } from './resolve.js';
import { pendingConfirmationOf } from './pipeline-steps.js';
import { boundGetter } from './host-proxy.js';

/**
 * Events that do not show a turn begun: the run's own (`run.*`), and a turn ending before it started
 * (not resolvable, no sandbox, cancelled first).
 */
const NOT_A_START: ReadonlySet<string> = new Set(['turn.failed', 'turn.cancelled', 'member.finished']);
const beginsTurn = (type: string) => !type.startsWith('run.') && !NOT_A_START.has(type);

/** The recorder as the run's host, starting the run (once) before the first event of a turn that begins. */
function startingOnFirstTurn(recorder: TurnRecorder, start: () => Promise<void>): RunHost {
  // Built once: `emit` is read for every streamed chunk, and after the start it only passes events on.
  let started = false;
  const emit: RunHost['emit'] = (event) => {
    if (started || !beginsTurn(event.type)) return recorder.emit(event);
    return start().then(() => {
      started = true;
      return recorder.emit(event);
    });
  };
  return new Proxy(recorder, { get: boundGetter<TurnRecorder>({ emit }) });
}


export type ExecuteRun = (request: RunRequest, host: RunHost, signal: AbortSignal) => Promise<RunOutcome>;

export interface RunWorkerOptions {
  workerId: string;
  capacity: number;
  maxRunningPerUser: number;
  executeRun: ExecuteRun;
}

const RENEW_MS = 5000;
/** The abort reason of a graceful shutdown: the run fails with WORKER_LOST instead of being cancelled. */
export const SHUTDOWN = 'WORKER_STOPPED';
const SHUTDOWN_MESSAGE = 'the server was stopped';
const POLL_MS = 1000;

/**
 * Takes run steps from the queue and executes them through the runtime (DESIGN.md §3 step 3), holding
 * each under a renewed lease, aborting on cancel, and moving the task through the state machine by
 * compare-and-set only — a late or duplicate step can never change a finished run.
 */
export class RunWorker {
  private readonly active = new Map<string, { controller: AbortController; job: ClaimedJob }>();
  private pumping = false;
  private again = false;
  private stopped = false;
  private stopWork?: () => void;
  private cancelSub?: Subscription;
  private renewTimer?: NodeJS.Timeout;
  private pollTimer?: NodeJS.Timeout;
  private readonly log: Logger;

  constructor(
    private readonly ctx: AppContext,
    private readonly queue: JobQueue,
    private readonly bus: EventBus,
    private readonly cache: Cache,
    private readonly opts: RunWorkerOptions,
  ) {
    this.log = ctx.log.child({ worker: opts.workerId });
  }

  async start(): Promise<void> {
    this.cancelSub = await this.bus.subscribe(BusChannels.runCancel, (m) => {
      const entry = this.active.get(`${String(m.taskId)}:${Number(m.runSeq)}`);
      entry?.controller.abort(String(m.reason ?? 'USER_CANCELLED'));
    });
    this.stopWork = this.queue.onWork(() => this.pump());
    this.renewTimer = setInterval(() => void this.renewLeases(), RENEW_MS);
    this.renewTimer.unref();
    // Other processes' enqueues are not signalled: look now and then as well.
    this.pollTimer = setInterval(() => this.pump(), POLL_MS);
    this.pollTimer.unref();
    this.pump();
  }

  /**
   * Graceful shutdown (api.md §9): stops taking work, lets running steps finish for up to `graceMs`,
   * then stops the rest, which fail with WORKER_LOST ("the server was stopped").
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopped = true;
    this.stopWork?.();
    clearInterval(this.pollTimer);
    let deadline = Date.now() + graceMs;
    while (this.active.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const { controller } of this.active.values()) controller.abort(SHUTDOWN);
    deadline = Date.now() + 5000;
    while (this.active.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    clearInterval(this.renewTimer);
    await this.cancelSub?.unsubscribe();
  }

  /** Claims jobs while there is capacity. */
  pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        do {
          this.again = false;
          while (!this.stopped && this.active.size < this.opts.capacity) {
            const job = await this.queue.claim(this.opts.workerId, { maxRunningPerUser: this.opts.maxRunningPerUser, capacity: this.opts.capacity });
            if (!job) break;
            const controller = new AbortController();
            this.active.set(`${job.taskId}:${job.runSeq}`, { controller, job });
            void this.execute(job, controller);
          }
        } while (this.again && !this.stopped);
      } catch (err) {
        this.log.error({ err }, 'claiming run steps failed');
      } finally {
        this.pumping = false;
      }
    })();
  }

  private async renewLeases(): Promise<void> {
    for (const { job, controller } of this.active.values()) {
      try {
        // A lapsed lease is lost: the sweeper may be handing the step on, so this worker stops.
        if (!(await this.queue.renew(job.id, this.opts.workerId))) controller.abort('LEASE_LOST');
      } catch (err) {
        this.log.warn({ err, job: job.id }, 'renewing a lease failed');
      }
    }
  }

  private async execute(job: ClaimedJob, controller: AbortController): Promise<void> {
    const db = this.ctx.storage.db;
    let recorder: TurnRecorder | undefined;
    let start: (() => Promise<void>) | undefined;
    try {
      const state = await taskStore.state(db, job.taskId);
      if (!state || state.run_seq !== job.runSeq || state.status !== 'PENDING') return;
      await db.updateTable('runs').set({ lease_owner: this.opts.workerId }).where('id', '=', job.runId).execute();
      const firstTurnId = String(job.payload.subtaskId);
      recorder = new TurnRecorder(this.ctx, this.cache, this.bus, { userId: job.userId, taskId: job.taskId, runId: job.runId, runSeq: job.runSeq, firstTurnId });
      const rec = recorder;
      controller.signal.addEventListener('abort', () => {
        if (controller.signal.reason === SHUTDOWN) rec.shuttingDown = true;
      });
      let starting: Promise<void> | undefined;
      start = () => (starting ??= this.startRun(job, state.started_at, rec));

      const run = await db.selectFrom('runs').selectAll().where('id', '=', job.runId).executeTakeFirstOrThrow();
      const taskRow = (await this.ctx.resources.store.findLiveByUid(job.taskId))!;
      const firstTurn = await taskStore.message(db, firstTurnId);
      let outcome: RunOutcome;
      let mode = 'solo';
      try {
        const request = await buildRunRequest(this.ctx, { id: job.taskId, ownerId: taskRow.ownerId, namespace: taskRow.namespace, spec: this.ctx.resources.clearSpecOf(taskRow) }, { id: job.runId, runSeq: job.runSeq, input: JSON.parse(run.input) }, firstTurn?.attempt ?? 1);
        recorder.describeMembers(request.members);
        mode = request.mode;
        outcome = await this.opts.executeRun(request, startingOnFirstTurn(recorder, start), controller.signal);
      } catch (e) {
        if (!(e instanceof ResolutionError)) throw e;
        outcome = { status: 'failed', error: { code: e.code, message: e.message } };
      }
      await recorder.close();
      await this.settleOpenTurns(recorder, outcome, controller, job.runId);
      await this.finishRun(job, outcome, controller, recorder, mode, start);
    } catch (err) {
      this.log.error({ err, taskId: job.taskId }, 'a run step failed unexpectedly');
      if (recorder) {
        await recorder.close().catch(() => undefined);
        await this.settleOpenTurns(recorder, { status: 'failed', error: { code: 'INTERNAL', message: 'internal error' } }, controller, job.runId).catch(() => undefined);
      }
      await this.finishRun(job, { status: 'failed', error: { code: 'INTERNAL', message: 'internal error; see the server log' } }, controller, recorder).catch((e) => this.log.error({ err: e }, 'failing a run failed'));
    } finally {
      this.active.delete(`${job.taskId}:${job.runSeq}`);
      await this.queue.complete(job.id, this.opts.workerId).catch(() => undefined);
      this.pump();
    }
  }

  /**
   * PENDING → RUNNING when the run's first turn begins (chat-protocol.md §9.3): a Code turn begins only
   * once its sandbox is Running, so while it waits for a slot the task stays PENDING (§10).
   */
  private async startRun(job: ClaimedJob, startedAt: string | null, recorder: TurnRecorder): Promise<void> {
    const db = this.ctx.storage.db;
    const moved = await this.ctx.tasks.stateMachine.transitionTask(db, { taskId: job.taskId, runSeq: job.runSeq, to: 'RUNNING', onlyFrom: ['PENDING'], extra: { started_at: startedAt ?? new Date().toISOString() } });
    if (!moved) return; // cancelled (or otherwise ended) before it began: its status says so already
    await db.updateTable('runs').set({ status: 'RUNNING' }).where('id', '=', job.runId).execute();
    await recorder.publishStatus({ runId: job.runId, runSeq: job.runSeq, status: 'RUNNING', previousStatus: moved.previous, statusVersion: moved.statusVersion, updatedAt: moved.updatedAt });
  }

  /**
   * Turns of the run still open in storage once the step is over — a turn the runtime never began (the
   * run failed to resolve, or was cancelled first) or one it left open — end with the run's outcome,
   * so that a finished run never keeps a PENDING or RUNNING turn (chat-protocol.md §9.5).
   */
  private async settleOpenTurns(recorder: TurnRecorder, outcome: RunOutcome, controller: AbortController, runId: string): Promise<void> {
    const open = (await taskStore.turnsOfRun(this.ctx.storage.db, runId)).filter((t) => t.status === 'PENDING' || t.status === 'RUNNING');
    for (const turn of open) {
      if (controller.signal.reason === SHUTDOWN) await recorder.endUnfinished(turn, 'FAILED', 'WORKER_LOST', SHUTDOWN_MESSAGE);
      else if (outcome.status === 'cancelled' || controller.signal.aborted) await recorder.endUnfinished(turn, 'CANCELLED', 'USER_CANCELLED', 'the run was cancelled');
      else if (outcome.status === 'failed') await recorder.endUnfinished(turn, 'FAILED', outcome.error?.code ?? 'INTERNAL', outcome.error?.message ?? 'the run failed');
    }
  }

  /** Moves the task by the run's outcome (chat-protocol.md §9.3) and publishes the change. */
  private async finishRun(job: ClaimedJob, outcome: RunOutcome, controller: AbortController, recorder?: TurnRecorder, mode = 'solo', start?: () => Promise<void>): Promise<void> {
    const sm = this.ctx.tasks.stateMachine;
    const db = this.ctx.storage.db;
    let state = await taskStore.state(db, job.taskId);
    if (!state || state.run_seq !== job.runSeq) return;
    // A run that ends before any turn began fails or is cancelled straight from PENDING; one that
    // completes or pauses has run, whatever its turns reported.
    if (state.status === 'PENDING' && start && (outcome.status === 'completed' || outcome.status === 'paused') && controller.signal.reason !== SHUTDOWN) {
      await start();
      state = await taskStore.state(db, job.taskId);
      if (!state || state.run_seq !== job.runSeq) return;
    }
    let to: TaskStatus;
    let reason: string | undefined;
    let message: string | undefined;
    if (controller.signal.reason === SHUTDOWN && state.status !== 'CANCELLING') {
      to = 'FAILED';
      reason = 'WORKER_LOST';
      message = SHUTDOWN_MESSAGE;
    } else if (state.status === 'CANCELLING' || outcome.status === 'cancelled') {
      to = outcome.status === 'failed' && state.status === 'CANCELLING' && !controller.signal.aborted ? 'FAILED' : 'CANCELLED';
      reason = to === 'FAILED' ? outcome.error?.code : (state.status_reason ?? 'USER_CANCELLED');
      message = outcome.error?.message;
    } else if (outcome.status === 'completed') to = 'COMPLETED';
    else if (outcome.status === 'paused') to = 'PENDING_CONFIRMATION';
    else {
      to = 'FAILED';
      reason = outcome.error?.code ?? 'INTERNAL';
      message = outcome.error?.message;
    }
    const usage = await this.taskUsage(job.taskId);
    // A paused pipeline names what waits for confirmation (chat-protocol.md §6.1).
    const pending = to === 'PENDING_CONFIRMATION' && outcome.pausedAt ? await pendingConfirmationOf(db, outcome.pausedAt) : undefined;
    const moved = await sm.transitionTask(db, { taskId: job.taskId, runSeq: job.runSeq, to, reason, errorMessage: message, ...(pending ? { extra: { current_stage: pending.stage, pending_confirmation: JSON.stringify(pending) } } : {}) });
    if (!moved) return;
    if (to === 'COMPLETED' || to === 'FAILED' || to === 'CANCELLED') this.ctx.metrics.runs.inc({ status: to, mode });
    const now = new Date().toISOString();
    await db.updateTable('task_state').set({ usage: JSON.stringify(usage) }).where('task_id', '=', job.taskId).execute();
    await db.updateTable('runs').set({ status: to, completed_at: now, lease_owner: null }).where('id', '=', job.runId).execute();
    const payload = { runId: job.runId, runSeq: job.runSeq, status: to, previousStatus: moved.previous, statusVersion: moved.statusVersion, updatedAt: moved.updatedAt, ...(reason ? { statusReason: reason } : {}), ...(message && to === 'FAILED' ? { errorMessage: message } : {}), ...(pending ? { currentStage: pending.stage, pendingConfirmation: pending } : {}) };
    if (recorder) await recorder.publishStatus(payload);
    else await this.bus.publish(BusChannels.taskEvents(job.taskId), { name: 'task:status', userId: job.userId, taskId: job.taskId, payload: { taskId: job.taskId, ...payload } });
  }

  /** Token totals over every turn of a task (resources.md §17.2 `usage`). */
  private async taskUsage(taskId: string): Promise<Record<string, number>> {
    const total = await taskStore.usageTotals(this.ctx.storage.db, { taskId });
    return { ...total, totalTokens: total.inputTokens + total.outputTokens };
  }

  /** For tests and the runtime endpoint: whether a run step is executing here. */
  isRunning(taskId: string, runSeq: number): boolean {
    return this.active.has(`${taskId}:${runSeq}`);
  }
}
