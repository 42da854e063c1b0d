import { v7 as uuidv7 } from 'uuid';
import type { Block, RuntimeEvent, UsageRow } from '@wegent/core';
import type { RunHost, TurnSpec } from '@wegent/runtime';
import type { AppContext } from '../app.js';
import type { Cache } from '../infra/cache.js';
import type { EventBus } from '../infra/event-bus.js';
import { BusChannels } from '../infra/event-bus.js';
import { taskStore } from './store.js';

/** Stream buffers live this long after their turn ended, for late resumes (chat-protocol.md §12). */
export const STREAM_TTL_MS = 3_600_000;
const CHECKPOINT_MS = 1000;
const CHECKPOINT_CHARS = 4000;

export const streamKey = (turnId: string, kind: 'text' | 'reasoning') => `stream:${turnId}:${kind}`;
export const seqKey = (turnId: string) => `seq:${turnId}`;

/** What a gateway forwards: an event name, its payload, and the rooms (chat-protocol.md §3). */
export interface BusClientEvent extends Record<string, unknown> {
  name: string;
  userId?: string;
  taskId: string;
  payload: Record<string, unknown>;
}

interface TurnState {
  id: string;
  spec?: TurnSpec;
  text: string;
  reasoning: string;
  blocks: Block[];
  usage: UsageRow[];
  startedAt?: number;
  firstTokenAt?: number;
  dirty: boolean;
  charsSinceCheckpoint: number;
  lastCheckpoint: number;
  ended: boolean;
  bot?: { name: string; namespace: string };
  memberIndex?: number;
  memberName?: string;
  /** The pipeline stage this turn runs, when it is one. */
  stage?: number;
  model?: { name: string; namespace: string; protocol: string; modelId: string } | null;
}

/**
 * The server side of a run step (runtime.md §1 RunHost): records turns, appends every delta to the
 * turn's stream buffer *before* publishing it (what makes resume exact, chat-protocol.md §5.3),
 * checkpoints text to storage at least once a second, writes the final turn, and publishes the
 * client events on the task's bus channel.
 */
export class TurnRecorder implements RunHost {
  private readonly turns = new Map<string, TurnState>();
  /** Per member: what metrics label turns with (shell type; model protocol and id, public ones only). */
  private members = new Map<number, { shellType: string; protocol: string; modelId: string }>();

  describeMembers(members: Array<{ index: number; shell: { shellType: string }; model: { protocol: string; modelId: string; resource: { scope: string } } | null }>): void {
    for (const m of members) this.members.set(m.index, { shellType: m.shell.shellType, protocol: m.model?.protocol ?? 'none', modelId: m.model?.resource.scope === 'public' ? m.model.modelId || 'demo' : 'other' });
  }

  /** Set on graceful shutdown: a turn the runtime reports cancelled failed with WORKER_LOST instead. */
  shuttingDown = false;
  /** A pipeline run (from `run.started`): its stage count and the stage that runs or ran last. */
  private pipeline?: { stages: number; current?: number };
  private firstTurnUsed = false;
  private timer: NodeJS.Timeout;
  /** Serialises event handling so storage and the bus see events in order. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: AppContext,
    private readonly cache: Cache,
    private readonly bus: EventBus,
    private readonly job: { userId: string; taskId: string; runId: string; runSeq: number; firstTurnId: string },
  ) {
    this.timer = setInterval(() => void this.enqueue(() => this.checkpointAll(false)), CHECKPOINT_MS);
    this.timer.unref();
  }

  now(): Date {
    return new Date();
  }

  async createTurn(spec: TurnSpec): Promise<string> {
    let id: string;
    if (!this.firstTurnUsed) {
      this.firstTurnUsed = true;
      id = this.job.firstTurnId;
    } else {
      id = uuidv7();
      const now = new Date().toISOString();
      await this.ctx.storage.db.transaction().execute(async (trx) => {
        const seq = await taskStore.allocateSeq(trx, this.job.taskId, 1);
        await trx
          .insertInto('messages')
          .values({ id, task_id: this.job.taskId, seq, run_id: this.job.runId, run_seq: this.job.runSeq, role: 'assistant', purpose: spec.purpose, visible: spec.visible ? 1 : 0, content: '', reasoning: '', status: 'PENDING', status_reason: null, error: null, sender: '{}', blocks: '[]', model: null, usage: null, resolved: JSON.stringify(spec.resolved), client_message_id: null, attempt: spec.attempt, member_index: spec.memberIndex, superseded_by_run_seq: null, created_at: now, started_at: null, completed_at: null, time_to_first_token_ms: null, duration_ms: null })
          .execute();
      });
    }
    this.turns.set(id, { id, spec, text: '', reasoning: '', blocks: [], usage: [], dirty: false, charsSinceCheckpoint: 0, lastCheckpoint: Date.now(), ended: false });
    return id;
  }

  emit(event: RuntimeEvent): Promise<void> {
    return this.enqueue(() => this.handle(event));
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    const next = this.chain.then(work, work);
    this.chain = next.catch((err) => this.ctx.log.error({ err }, 'recording a runtime event failed'));
    return this.chain;
  }

  /** Stops the checkpoint timer after a final checkpoint of turns still open. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.enqueue(() => this.checkpointAll(true));
  }

  private turn(id: string | undefined): TurnState | undefined {
    return id ? this.turns.get(id) : undefined;
  }

  private async publish(name: string, payload: Record<string, unknown>, toUser = false): Promise<void> {
    const message: BusClientEvent = { name, taskId: this.job.taskId, payload: { taskId: this.job.taskId, ...payload } };
    if (toUser) message.userId = this.job.userId;
    await this.bus.publish(BusChannels.taskEvents(this.job.taskId), message);
  }

  private async nextSeq(turnId: string): Promise<number> {
    return (await this.cache.increment(seqKey(turnId), STREAM_TTL_MS)).value;
  }

  private turnFields(t: TurnState) {
    return { turnId: t.id, subtaskId: t.id, runSeq: this.job.runSeq };
  }

  private async handle(event: RuntimeEvent): Promise<void> {
    const e = event as RuntimeEvent & Record<string, unknown>;
    const t = this.turn(e.turnId as string | undefined);
    switch (event.type) {
      case 'run.started': {
        const ev = event as Extract<RuntimeEvent, { type: 'run.started' }>;
        if (ev.mode === 'pipeline' && ev.memberCount > 0) this.pipeline = { stages: ev.memberCount };
        return;
      }
      case 'member.started': {
        if (!t) return;
        const ev = event as Extract<RuntimeEvent, { type: 'member.started' }>;
        if (this.pipeline && ev.purpose === 'answer') {
          t.stage = ev.memberIndex;
          await this.enterStage(ev.memberIndex);
        }
        t.startedAt = Date.now();
        t.bot = { name: ev.bot.name, namespace: ev.bot.namespace };
        t.memberIndex = ev.memberIndex;
        t.memberName = ev.memberName;
        t.model = ev.model ?? null;
        const startedAt = new Date(t.startedAt).toISOString();
        const sender = { type: 'bot', bot: t.bot, memberIndex: ev.memberIndex, memberRole: t.spec?.memberRole ?? null, memberName: ev.memberName };
        await this.ctx.tasks.stateMachine.transitionTurn(this.ctx.storage.db, t.id, 'RUNNING', { started_at: startedAt, sender: JSON.stringify(sender), model: JSON.stringify(t.model), resolved: t.spec ? JSON.stringify(t.spec.resolved) : null, purpose: ev.purpose, visible: ev.visible ? 1 : 0, member_index: ev.memberIndex, attempt: ev.attempt }, ['PENDING']);
        const seq = await this.nextSeq(t.id);
        await this.publish('chat:start', { runId: this.job.runId, runSeq: this.job.runSeq, subtaskId: t.id, seq, attempt: ev.attempt, purpose: ev.purpose, visible: ev.visible, bot: t.bot, memberIndex: ev.memberIndex, memberRole: t.spec?.memberRole ?? null, memberName: ev.memberName, model: t.model, ...(ev.engine ? { engine: ev.engine } : {}), startedAt });
        return;
      }
      case 'text.delta':
      case 'reasoning.delta': {
        if (!t || t.ended) return;
        const delta = (e.delta as string) ?? '';
        if (!delta) return;
        const kind = event.type === 'text.delta' ? 'text' : 'reasoning';
        t.firstTokenAt ??= Date.now();
        // Buffer first, publish second (chat-protocol.md §5.3).
        const length = await this.cache.append(streamKey(t.id, kind), delta, { ttlMs: STREAM_TTL_MS });
        if (kind === 'text') t.text += delta;
        else t.reasoning += delta;
        t.dirty = true;
        t.charsSinceCheckpoint += delta.length;
        const seq = await this.nextSeq(t.id);
        await this.publish('chat:chunk', { subtaskId: t.id, runSeq: this.job.runSeq, seq, kind, offset: length - delta.length, text: delta });
        if (t.charsSinceCheckpoint >= CHECKPOINT_CHARS) await this.checkpoint(t);
        return;
      }
      case 'tool.started': {
        if (!t || t.ended) return;
        const ev = event as Extract<RuntimeEvent, { type: 'tool.started' }>;
        const block = { id: ev.blockId, type: 'tool_call', status: 'running', createdAt: ev.at, toolName: ev.toolName, toolSource: ev.toolSource, ...(ev.mcpServer ? { mcpServer: ev.mcpServer } : {}), toolCallId: ev.toolCallId, toolInput: ev.input } as Block;
        t.blocks.push(block);
        await this.checkpoint(t);
        const seq = await this.nextSeq(t.id);
        await this.publish('chat:block_created', { subtaskId: t.id, runSeq: this.job.runSeq, seq, block });
        return;
      }
      case 'tool.output': {
        if (!t || t.ended) return;
        const ev = event as Extract<RuntimeEvent, { type: 'tool.output' }>;
        const seq = await this.nextSeq(t.id);
        await this.publish('chat:block_updated', { subtaskId: t.id, runSeq: this.job.runSeq, seq, blockId: ev.blockId, outputDelta: ev.delta });
        return;
      }
      case 'tool.finished': {
        if (!t || t.ended) return;
        const ev = event as Extract<RuntimeEvent, { type: 'tool.finished' }>;
        const block = t.blocks.find((b) => b.id === ev.blockId) as (Block & Record<string, unknown>) | undefined;
        const finishedAt = ev.at;
        const status = ev.status ?? (ev.isError ? 'failed' : 'completed');
        if (block) Object.assign(block, { status, toolOutput: ev.output, isError: ev.isError, finishedAt, durationMs: ev.durationMs });
        await this.checkpoint(t);
        const seq = await this.nextSeq(t.id);
        await this.publish('chat:block_updated', { subtaskId: t.id, runSeq: this.job.runSeq, seq, blockId: ev.blockId, status, toolOutput: ev.output, isError: ev.isError, finishedAt, durationMs: ev.durationMs });
        return;
      }
      case 'block.added': {
        if (!t || t.ended) return;
        const ev = event as Extract<RuntimeEvent, { type: 'block.added' }>;
        t.blocks.push(ev.block);
        await this.checkpoint(t);
        const seq = await this.nextSeq(t.id);
        await this.publish('chat:block_created', { subtaskId: t.id, runSeq: this.job.runSeq, seq, block: ev.block });
        return;
      }
      case 'context.updated': {
        if (!t || t.ended) return;
        const ev = event as Extract<RuntimeEvent, { type: 'context.updated' }>;
        const seq = await this.nextSeq(t.id);
        await this.publish('chat:context', { subtaskId: t.id, runSeq: this.job.runSeq, seq, usedTokens: ev.usedTokens, budgetTokens: ev.budgetTokens, contextWindow: ev.contextWindow, ratio: ev.budgetTokens ? ev.usedTokens / ev.budgetTokens : 0, compacted: ev.compacted });
        return;
      }
      case 'usage': {
        if (!t) return;
        const ev = event as Extract<RuntimeEvent, { type: 'usage' }>;
        const row = t.usage.find((u) => u.model.uid === ev.model.uid);
        if (row) {
          row.inputTokens += ev.inputTokens;
          row.outputTokens += ev.outputTokens;
          row.reasoningTokens += ev.reasoningTokens;
          row.cachedInputTokens += ev.cachedInputTokens;
          row.calls += 1;
          row.estimated ||= ev.estimated;
        } else {
          t.usage.push({ turnId: t.id, model: ev.model, inputTokens: ev.inputTokens, outputTokens: ev.outputTokens, reasoningTokens: ev.reasoningTokens, cachedInputTokens: ev.cachedInputTokens, calls: 1, estimated: ev.estimated });
        }
        return;
      }
      case 'turn.done':
      case 'turn.failed':
      case 'turn.cancelled':
        if (!t || t.ended) return;
        await this.finish(t, event);
        return;
      case 'member.finished': {
        const ev = event as Extract<RuntimeEvent, { type: 'member.finished' }>;
        // A completed stage counts as finished (progress = finished stages ÷ stages).
        if (this.pipeline && t?.stage !== undefined && ev.status === 'COMPLETED') {
          await this.ctx.storage.db.updateTable('task_state').set({ progress: this.progressOf(t.stage + 1) }).where('task_id', '=', this.job.taskId).where('run_seq', '=', this.job.runSeq).execute();
        }
        return;
      }
      default:
        return;
    }
  }

  private progressOf(finishedStages: number): number {
    return Math.floor((Math.min(finishedStages, this.pipeline!.stages) * 100) / this.pipeline!.stages);
  }

  /**
   * A pipeline stage starts (resources.md §17.2): `currentStage` becomes it and `progress` counts the
   * stages before it as finished (run here, or carried from the paused, retried or revised run). A
   * status change like any other: compare-and-set, `statusVersion` + 1 and a `task:status`.
   */
  private async enterStage(stage: number): Promise<void> {
    this.pipeline!.current = stage;
    const db = this.ctx.storage.db;
    const state = await db.selectFrom('task_state').select(['status', 'status_version', 'status_reason']).where('task_id', '=', this.job.taskId).where('run_seq', '=', this.job.runSeq).executeTakeFirst();
    // A run being cancelled or already settled keeps the status it has.
    if (state?.status !== 'RUNNING') return;
    const updatedAt = new Date().toISOString();
    const statusVersion = state.status_version + 1;
    const result = await db
      .updateTable('task_state')
      .set({ current_stage: stage, progress: this.progressOf(stage), status_version: statusVersion, updated_at: updatedAt })
      .where('task_id', '=', this.job.taskId)
      .where('run_seq', '=', this.job.runSeq)
      .where('status', '=', 'RUNNING')
      .where('status_version', '=', state.status_version)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return;
    await this.publish('task:status', { runId: this.job.runId, runSeq: this.job.runSeq, status: 'RUNNING', previousStatus: 'RUNNING', statusVersion, ...(state.status_reason ? { statusReason: state.status_reason } : {}), currentStage: stage, updatedAt }, true);
  }

  /** Writes the text so far when it changed (at least once a second while streaming, §12). */
  private async checkpoint(t: TurnState): Promise<void> {
    if (t.ended) return;
    t.dirty = false;
    t.charsSinceCheckpoint = 0;
    t.lastCheckpoint = Date.now();
    await this.ctx.storage.db.updateTable('messages').set({ content: t.text, reasoning: t.reasoning, blocks: JSON.stringify(t.blocks) }).where('id', '=', t.id).where('status', 'in', ['PENDING', 'RUNNING']).execute();
    // The seq counter is a fixed window: keep it alive while the turn runs.
    await this.cache.expire(seqKey(t.id), STREAM_TTL_MS);
  }

  private async checkpointAll(force: boolean): Promise<void> {
    for (const t of this.turns.values()) if (!t.ended && (t.dirty || force)) await this.checkpoint(t);
  }

  /** The final write of a turn (one statement), then its terminal event (chat-protocol.md §12). */
  private async finish(t: TurnState, event: RuntimeEvent): Promise<void> {
    if (this.shuttingDown && event.type === 'turn.cancelled') {
      event = { ...event, type: 'turn.failed', code: 'WORKER_LOST', message: 'the server was stopped', retryable: true } as unknown as RuntimeEvent;
    }
    const e = event as RuntimeEvent & { text?: string; reasoning?: string; finishReason?: string; code?: string; message?: string; retryable?: boolean; reason?: string };
    const text = typeof e.text === 'string' ? e.text : t.text;
    t.ended = true;
    const now = Date.now();
    const completedAt = new Date(now).toISOString();
    const status = event.type === 'turn.done' ? 'COMPLETED' : event.type === 'turn.failed' ? 'FAILED' : 'CANCELLED';
    const reason = event.type === 'turn.done' ? (e.finishReason ?? 'stop') : event.type === 'turn.failed' ? e.code! : e.reason!;
    const fields = {
      content: text,
      reasoning: e.reasoning ?? t.reasoning,
      blocks: JSON.stringify(t.blocks),
      usage: JSON.stringify(t.usage),
      status_reason: reason,
      error: status === 'COMPLETED' ? null : JSON.stringify({ code: reason, message: e.message ?? (status === 'CANCELLED' ? 'the run was cancelled' : '') }),
      completed_at: completedAt,
      time_to_first_token_ms: t.firstTokenAt && t.startedAt ? t.firstTokenAt - t.startedAt : null,
      duration_ms: t.startedAt ? now - t.startedAt : null,
    };
    const moved = await this.ctx.tasks.stateMachine.transitionTurn(this.ctx.storage.db, t.id, status, fields);
    if (!moved) return; // Settled elsewhere (cancel timeout, recovery): emit nothing more.
    // messageCount counts user messages and visible answers (resources.md §17.2).
    if (status === 'COMPLETED' && t.spec?.visible !== false) {
      await this.ctx.storage.db.updateTable('task_state').set((eb) => ({ message_count: eb('message_count', '+', 1), last_message_at: completedAt })).where('task_id', '=', this.job.taskId).execute();
    }
    this.observe(t, status, reason);
    await this.cache.expire(streamKey(t.id, 'text'), STREAM_TTL_MS);
    await this.cache.expire(seqKey(t.id), STREAM_TTL_MS);
    const seq = await this.nextSeq(t.id);
    const who = { bot: t.bot ?? null, memberIndex: t.memberIndex ?? null, memberName: t.memberName ?? null };
    const base = { subtaskId: t.id, runSeq: this.job.runSeq, seq, offset: text.length, completedAt, ...who };
    if (status === 'COMPLETED') {
      await this.publish('chat:done', { ...base, status, result: { value: text, reasoning: fields.reasoning || undefined, blocks: t.blocks, usage: t.usage, model: t.model ?? null, finishReason: reason }, messageId: t.id });
    } else if (status === 'FAILED') {
      await this.publish('chat:error', { ...base, status, code: reason, message: e.message ?? '', retryable: e.retryable ?? false, partialText: text });
    } else {
      await this.publish('chat:cancelled', { ...base, status, reason, partialText: text });
    }
  }

  /** Turn metrics (api.md §9): outcome by shell type, time to first token, tokens, model errors. */
  private observe(t: TurnState, status: string, reason: string): void {
    const m = this.ctx.metrics;
    const member = this.members.get(t.memberIndex ?? 0) ?? { shellType: 'unknown', protocol: 'unknown', modelId: 'other' };
    m.turns.inc({ status, shell_type: member.shellType });
    if (status === 'FAILED') m.modelErrors.inc({ code: reason });
    if (t.firstTokenAt && t.startedAt) m.timeToFirstToken.observe({ protocol: member.protocol }, (t.firstTokenAt - t.startedAt) / 1000);
    for (const u of t.usage) {
      const labels = { protocol: u.model.protocol, model_id: member.modelId };
      m.tokens.inc({ ...labels, direction: 'input' }, u.inputTokens);
      m.tokens.inc({ ...labels, direction: 'output' }, u.outputTokens);
      m.tokens.inc({ ...labels, direction: 'reasoning' }, u.reasoningTokens);
      m.tokens.inc({ ...labels, direction: 'cached_input' }, u.cachedInputTokens);
    }
  }

  /** Ends a turn this step never finished, with its stored text (one terminal event, §6.2). */
  async endUnfinished(turn: import('../storage/schema.js').MessagesTable, status: 'FAILED' | 'CANCELLED', code: string, message: string): Promise<void> {
    await this.enqueue(async () => {
      const known = this.turns.get(turn.id);
      if (known) known.ended = true;
      const text = known?.text ?? turn.content;
      const completedAt = new Date().toISOString();
      const moved = await this.ctx.tasks.stateMachine.transitionTurn(this.ctx.storage.db, turn.id, status, { content: text, status_reason: code, error: JSON.stringify({ code, message }), completed_at: completedAt });
      if (!moved) return;
      const seq = await this.nextSeq(turn.id);
      const who = { bot: known?.bot ?? null, memberIndex: known?.memberIndex ?? turn.member_index, memberName: known?.memberName ?? null };
      const base = { subtaskId: turn.id, runSeq: this.job.runSeq, seq, status, offset: text.length, partialText: text, completedAt, ...who };
      if (status === 'FAILED') await this.publish('chat:error', { ...base, code, message, retryable: !['RESOLUTION_FAILED', 'SHELL_NOT_SUPPORTED', 'MODEL_PROTOCOL_UNSUPPORTED'].includes(code) });
      else await this.publish('chat:cancelled', { ...base, reason: code });
    });
  }

  /**
   * Stores a compaction checkpoint (runtime.md §10.4 step 5): a hidden `system` message with purpose
   * `compaction` and the summary as its content; `coversUpToSeq` (the last summarised message) is kept in
   * its `resolved` column, which the API never shows. History reload starts from it (resolve.ts).
   */
  saveCompaction(summary: string, coversUpToSeq: number, turnId: string): Promise<void> {
    return this.enqueue(async () => {
      const t = this.turns.get(turnId);
      const sender = { type: 'bot', bot: t?.bot ?? null, memberIndex: t?.memberIndex ?? null, memberRole: t?.spec?.memberRole ?? null, memberName: t?.memberName ?? null };
      const now = new Date().toISOString();
      await this.ctx.storage.db.transaction().execute(async (trx) => {
        const seq = await taskStore.allocateSeq(trx, this.job.taskId, 1);
        await trx
          .insertInto('messages')
          .values({ id: uuidv7(), task_id: this.job.taskId, seq, run_id: this.job.runId, run_seq: this.job.runSeq, role: 'system', purpose: 'compaction', visible: 0, content: summary, reasoning: '', status: null, status_reason: null, error: null, sender: JSON.stringify(sender), blocks: '[]', model: null, usage: null, resolved: JSON.stringify({ coversUpToSeq }), client_message_id: null, attempt: 1, member_index: t?.memberIndex ?? null, superseded_by_run_seq: null, created_at: now, started_at: null, completed_at: now, time_to_first_token_ms: null, duration_ms: null })
          .execute();
      });
    });
  }

  /** Publishes a task status change to the user's and the task's rooms. */
  async publishStatus(payload: Record<string, unknown>): Promise<void> {
    // A pipeline's later status changes keep naming the stage that ran last.
    const stage = this.pipeline?.current;
    await this.enqueue(() => this.publish('task:status', stage !== undefined && payload.currentStage === undefined ? { ...payload, currentStage: stage } : payload, true));
  }
}
