import type { AppContext } from '../app.js';
import { BusChannels, type BusMessage, type Subscription } from '../infra/event-bus.js';
import type { TaskStatus } from '../tasks/state-machine.js';
import { streamKey } from '../tasks/turn-recorder.js';
import type { MessagesTable } from '../storage/schema.js';

/** Purposes of turns that show as answers (api.md §8.2: one output item per visible answer turn). */
export const ANSWER_PURPOSES = new Set(['answer', 'aggregate', 'contribution', 'summary']);
/** Task statuses at which a run stops producing output: terminal, or paused for confirmation. */
export const SETTLED = new Set<string>(['COMPLETED', 'FAILED', 'CANCELLED', 'PENDING_CONFIRMATION']);

/** One visible answer turn of the followed run, as far as it was seen. */
export interface FollowedItem {
  turnId: string;
  /** 0, 1, 2, … in the order the turns started. */
  index: number;
  text: string;
  status: 'in_progress' | 'completed' | 'incomplete';
  /** The turn's finish reason (`stop`, `length`, `content_filter`, …) once completed. */
  finishReason?: string;
}

/** What a follower reports, in order; `item.delta` texts concatenate to the item's final text. */
export type FollowEvent =
  | { type: 'started' }
  | { type: 'item.added'; item: FollowedItem }
  | { type: 'item.delta'; item: FollowedItem; delta: string }
  | { type: 'item.done'; item: FollowedItem }
  | { type: 'settled'; status: TaskStatus };

const SAFETY_CHECK_MS = 2000;

/**
 * Follows one run through the task's event-bus channel (the same events the chat gateway forwards)
 * and turns them into answer items. It subscribes before the run can start (`attach` is synchronous
 * on the embedded bus), then reconciles with storage: turns already under way, and, when storage
 * says the run is over, whatever the bus did not bring (a run cancelled before it started is
 * settled by the task service directly, without bus events). Chunks are merged by offset, so
 * nothing is reported twice.
 */
export class RunFollower {
  readonly items: FollowedItem[] = [];
  private readonly byTurn = new Map<string, FollowedItem>();
  private readonly backlog: BusMessage[] = [];
  private run?: { runId: string; runSeq: number };
  private sub?: Promise<Subscription>;
  private chain: Promise<void> = Promise.resolve();
  private started = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private taskId?: string;
  private settledWith?: TaskStatus;
  private readonly settledWaiters: Array<(s: TaskStatus) => void> = [];

  constructor(
    private readonly ctx: AppContext,
    private readonly onEvent: (event: FollowEvent) => void,
  ) {}

  /** Subscribes to the task's events; call before the run is committed (synchronous registration). */
  attach(taskId: string): void {
    if (this.sub || this.stopped) return;
    this.taskId = taskId;
    const bus = this.ctx.runtime!.bus;
    this.sub = bus.subscribe(BusChannels.taskEvents(taskId), (m) => {
      if (!this.run) this.backlog.push(m);
      else this.enqueue(() => this.handle(m));
    });
  }

  /** Starts reporting the run: catches up from storage, then from the bus, until it settles. */
  async follow(run: { taskId: string; runId: string; runSeq: number }): Promise<void> {
    this.attach(run.taskId);
    await this.sub;
    if (this.stopped) return;
    this.run = { runId: run.runId, runSeq: run.runSeq };
    this.enqueue(() => this.sync(false));
    for (const m of this.backlog.splice(0)) this.enqueue(() => this.handle(m));
    this.timer = setInterval(() => this.check(), SAFETY_CHECK_MS);
    this.timer.unref();
    await this.chain;
  }

  /** Resolves with the status the run settled at, or undefined after `ms`. */
  settled(ms: number): Promise<TaskStatus | undefined> {
    if (this.settledWith) return Promise.resolve(this.settledWith);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(undefined), ms);
      this.settledWaiters.push((s) => {
        clearTimeout(t);
        resolve(s);
      });
    });
  }

  /** Looks at storage now (after a cancel this process made, which may settle without bus events). */
  check(): void {
    if (this.run && !this.settledWith) this.enqueue(() => this.sync(true));
  }

  /** Stops following (the client went away, or the run settled); never affects the run. */
  async close(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    const sub = this.sub;
    this.sub = undefined;
    await (await sub)?.unsubscribe();
  }

  private enqueue(work: () => Promise<void> | void): void {
    this.chain = this.chain.then(work).catch((err) => this.ctx.log.error({ err }, 'following a run failed'));
  }

  private emit(event: FollowEvent): void {
    if (this.settledWith) return;
    if (event.type !== 'settled' && !this.started) {
      this.started = true;
      this.onEvent({ type: 'started' });
    }
    if (event.type !== 'started') this.onEvent(event);
  }

  private addItem(turnId: string): FollowedItem {
    let item = this.byTurn.get(turnId);
    if (item) return item;
    item = { turnId, index: this.items.length, text: '', status: 'in_progress' };
    this.items.push(item);
    this.byTurn.set(turnId, item);
    this.emit({ type: 'item.added', item });
    return item;
  }

  /** Merges text that starts at `offset` of the turn's stream (chat-protocol.md §7.3). */
  private merge(item: FollowedItem, offset: number, text: string): void {
    if (item.status !== 'in_progress') return;
    const known = item.text.length;
    if (offset + text.length <= known || offset > known) return;
    const delta = text.slice(known - offset);
    if (!delta) return;
    item.text += delta;
    this.emit({ type: 'item.delta', item, delta });
  }

  private close_(item: FollowedItem, status: 'completed' | 'incomplete', finalText: string, finishReason?: string): void {
    if (item.status !== 'in_progress') return;
    // The turn's final text normally equals its deltas; a longer one sends the rest as one more delta.
    if (finalText.length > item.text.length && finalText.startsWith(item.text)) this.merge(item, item.text.length, finalText.slice(item.text.length));
    item.status = status;
    if (finishReason) item.finishReason = finishReason;
    this.emit({ type: 'item.done', item });
  }

  private settle(status: TaskStatus): void {
    if (this.settledWith) return;
    for (const item of this.items) this.close_(item, 'incomplete', item.text);
    this.emit({ type: 'settled', status });
    this.settledWith = status;
    for (const w of this.settledWaiters.splice(0)) w(status);
    void this.close();
  }

  private handle(m: BusMessage): void {
    const run = this.run!;
    const name = String(m.name);
    const p = (m.payload ?? {}) as Record<string, unknown>;
    if (p.runSeq !== run.runSeq || this.settledWith) return;
    switch (name) {
      case 'task:status':
        if (p.status === 'RUNNING') this.emit({ type: 'started' });
        else if (SETTLED.has(String(p.status))) this.settle(p.status as TaskStatus);
        return;
      case 'chat:start':
        this.emit({ type: 'started' });
        if (p.visible === true && ANSWER_PURPOSES.has(String(p.purpose))) this.addItem(String(p.subtaskId));
        return;
      case 'chat:chunk': {
        const item = this.byTurn.get(String(p.subtaskId));
        if (item && p.kind === 'text') this.merge(item, Number(p.offset), String(p.text ?? ''));
        return;
      }
      case 'chat:done': {
        const item = this.byTurn.get(String(p.subtaskId));
        const result = (p.result ?? {}) as { value?: string; finishReason?: string };
        if (item) this.close_(item, 'completed', result.value ?? item.text, result.finishReason ?? 'stop');
        return;
      }
      case 'chat:error':
      case 'chat:cancelled': {
        const item = this.byTurn.get(String(p.subtaskId));
        if (item) this.close_(item, 'incomplete', String(p.partialText ?? item.text));
        return;
      }
    }
  }

  /** Reconciles with storage: turns under way or ended, and (when `settle`) a run that is over. */
  private async sync(settle: boolean): Promise<void> {
    if (this.settledWith || !this.taskId) return;
    const db = this.ctx.storage.db;
    const run = this.run!;
    const state = await db.selectFrom('task_state').select(['status', 'run_seq', 'deleted_at']).where('task_id', '=', this.taskId).executeTakeFirst();
    let status: string | undefined;
    if (!state || state.deleted_at) status = 'CANCELLED';
    else if (state.run_seq === run.runSeq) status = state.status;
    else status = (await db.selectFrom('runs').select('status').where('id', '=', run.runId).executeTakeFirst())?.status;
    const over = status !== undefined && SETTLED.has(status);
    if (settle && !over) return;
    if (status === 'RUNNING' || status === 'CANCELLING') this.emit({ type: 'started' });
    const turns = await answerTurns(this.ctx, run.runId);
    for (const t of turns) {
      // A turn that never began (still waiting, or cancelled before it started) is no item.
      if (t.status === 'PENDING' || !t.started_at) continue;
      const item = this.addItem(t.id);
      const text = t.status === 'RUNNING' ? ((await this.ctx.runtime?.cache.getRange(streamKey(t.id, 'text'), 0))?.text ?? t.content) : t.content;
      this.merge(item, 0, text);
      if (t.status === 'COMPLETED') this.close_(item, 'completed', t.content, t.status_reason ?? 'stop');
      else if (t.status === 'FAILED' || t.status === 'CANCELLED') this.close_(item, 'incomplete', t.content);
    }
    if (over) this.settle(status as TaskStatus);
  }
}

/** The visible answer turns of a run, in the order they started. */
export async function answerTurns(ctx: AppContext, runId: string): Promise<MessagesTable[]> {
  const rows = await ctx.storage.db.selectFrom('messages').selectAll().where('run_id', '=', runId).where('role', '=', 'assistant').where('visible', '=', 1).execute();
  return rows
    .filter((r) => ANSWER_PURPOSES.has(r.purpose ?? ''))
    .sort((a, b) => (a.started_at ?? '\uffff').localeCompare(b.started_at ?? '\uffff') || a.seq - b.seq);
}
