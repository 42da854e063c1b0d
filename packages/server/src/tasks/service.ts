import { createHash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Transaction } from 'kysely';
import type { Logger } from 'pino';
import { type Cause, type ChatSendPayload, type Message, type Ref, type SendResult, type TaskRuntime } from '@wegent/core';
import type { ServerConfig } from '../config.js';
import type { Storage } from '../storage/database.js';
import type { Database } from '../storage/schema.js';
import { ApiError, NotFoundError, ValidationError, invalidMessage } from '../errors.js';
import type { Actor, ResourceService } from '../resources/service.js';
import type { ResourceRecord } from '../resources/store.js';
import { ACTIVE_TASK_STATUSES, TaskStateMachine, TERMINAL_TASK_STATUSES, type TaskStatus } from './state-machine.js';
import { taskStore, toMessage } from './store.js';
import type { PendingConfirmation, PipelineRunInput } from './pipeline-steps.js';
import type { Job } from '../infra/job-queue.js';


/** Where run steps go; the embedded queue writes inside the caller's transaction. */
export interface RunScheduler {
  enqueue(trx: Transaction<Database>, job: Job): Promise<void>;
  /** Removes a job that no worker has claimed; true when it was still waiting. */
  removeWaiting(jobId: string): Promise<boolean>;
  queuePosition(taskId: string): Promise<TaskRuntime['queue']>;
  /** Tells workers that work was committed. */
  wake(): void;
}

/** What the sandboxes know of a task (set by the sandbox service, sandboxes/service.ts). */
export interface TaskSandboxes {
  /** The task's live sandbox, else its latest one, as the runtime shows it (api.md §5.1). */
  current(taskId: string): Promise<TaskRuntime['sandbox']>;
}

/** A run of the task waiting for a sandbox slot (chat-protocol.md §10 "Sandbox waits"). */
interface SandboxWait {
  runSeq: number;
  /** The position now; null once the wait is over (granted, given up). */
  position: number | null;
  /** What clients were last told (undefined: nothing yet). */
  sent?: number | null;
  sentAt: number;
  timer?: NodeJS.Timeout;
}

/** Queue positions are re-sent at most once per second per task (chat-protocol.md §6.1). */
const QUEUE_RESEND_MS = 1000;

/** A server event for clients: to the user's room, the task's room, or both (chat-protocol.md §3, §6). */
export interface ClientEvent {
  name: string;
  userId?: string;
  taskId?: string;
  payload: Record<string, unknown>;
}

export interface ClientNotifier {
  emit(event: ClientEvent): void;
}

/** The error a socket ack carries (chat-protocol.md §4.2), with the HTTP error it maps from. */
export class SendError extends ApiError {
  constructor(
    readonly ackCode: 'TASK_BUSY' | 'TEAM_DELETED' | 'CONFLICT',
    code: number,
    message: string,
    details: ApiError['details'] = {},
  ) {
    super(code, 'Conflict', message, details);
  }
}

export interface SendOptions {
  source: 'chat' | 'api' | 'cli' | 'chat-completions' | 'manifest';
  labels?: Record<string, string>;
  /** Called with the task id before the transaction commits (the socket joins the room first, §5.1 step 4). */
  beforeCommit?: (taskId: string) => void;
  /** New task only: conversation before the message (Responses / chat completions input, api.md §8), stored as imported history. */
  importedHistory?: Array<{ role: 'user' | 'assistant'; text: string }>;
  /** Extra members of the run's stored input (run overrides, OpenAI-compatible request fields); part of the idempotency hash. */
  runInput?: Record<string, unknown>;
}

const ACTIVE_STATES = [...ACTIVE_TASK_STATUSES, 'PENDING_CONFIRMATION'];

function parseTeamString(team: string): Ref | undefined {
  const [a, b, ...rest] = team.split('#');
  if (rest.length) return undefined;
  return b === undefined ? { name: a!, namespace: 'default' } : { namespace: a!, name: b };
}

/** Tasks, runs and messages: sending, cancelling, reading (chat-protocol.md §5, api.md §5). */
export class TaskService {
  readonly stateMachine: TaskStateMachine;
  notifier: ClientNotifier = { emit: () => undefined };
  scheduler?: RunScheduler;
  sandboxes?: TaskSandboxes;
  /** Runs of this process waiting for a sandbox slot, by task. */
  private readonly sandboxWaits = new Map<string, SandboxWait>();

  constructor(
    readonly storage: Storage,
    readonly resources: ResourceService,
    readonly config: ServerConfig,
    readonly log: Logger,
  ) {
    this.stateMachine = new TaskStateMachine((what) => log.debug({ what }, 'stale state change dropped'));
  }

  private validateMessage(message: unknown, field = 'message'): string {
    if (typeof message !== 'string' || message.trim() === '') {
      throw new ValidationError(invalidMessage(undefined, undefined, [{ field, reason: 'FieldValueRequired', message: 'the message must contain a non-whitespace character' }]), [
        { field, reason: 'FieldValueRequired', message: 'the message must contain a non-whitespace character' },
      ]);
    }
    if (message.length > this.config.maxMessageChars) {
      const cause: Cause = { field, reason: 'FieldValueTooLong', message: `at most ${this.config.maxMessageChars} characters` };
      throw new ValidationError(invalidMessage(undefined, undefined, [cause]), [cause]);
    }
    return message;
  }

  /**
   * `chat:send` / POST /tasks / POST /tasks/{id}/messages (chat-protocol.md §5.1): everything is
   * written in one transaction before the answer; events follow the commit.
   */
  async send(actor: Actor & { username: string }, payload: ChatSendPayload, opts: SendOptions): Promise<SendResult> {
    const hash = createHash('sha256')
      .update(JSON.stringify([payload.taskId ?? null, payload.message ?? null, payload.action ?? null, payload.team ?? null, payload.teamRef ?? null, ...(opts.runInput || opts.importedHistory ? [opts.runInput ?? null, opts.importedHistory ?? null] : [])]))
      .digest('hex');
    // Another user's task is indistinguishable from a missing one, whatever the payload says.
    if (payload.taskId) await this.ownedState(actor.userId, payload.taskId);
    const replay = await this.replay(actor.userId, payload.clientMessageId, hash);
    if (replay) return replay;
    if (payload.action === 'pipeline:confirm') return this.confirm(actor, payload, hash, opts);
    const message = this.validateMessage(payload.message);

    let result: SendResult;
    const events: ClientEvent[] = [];
    if (!payload.taskId) {
      const causes: Cause[] = [];
      const teamRef = payload.teamRef ?? (payload.team ? parseTeamString(payload.team) : undefined);
      if (!teamRef) causes.push({ field: 'team', reason: 'FieldValueRequired', message: "name the team as 'namespace#name' or 'name'" });
      const team = teamRef ? await this.resources.resolveRef(actor.userId, 'Team', teamRef, teamRef.namespace ?? 'default') : undefined;
      if (teamRef && !team) causes.push({ field: payload.teamRef ? 'teamRef' : 'team', reason: 'FieldValueNotFound', message: `Team '${teamRef.name}' not found in namespace '${teamRef.namespace ?? 'default'}' (neither yours nor public)` });
      if (payload.workspaceRef && !(await this.resources.resolveRef(actor.userId, 'Workspace', payload.workspaceRef, team?.record.namespace ?? 'default'))) {
        causes.push({ field: 'workspaceRef', reason: 'FieldValueNotFound', message: `Workspace '${payload.workspaceRef.name}' not found` });
      }
      if (payload.modelOverride && !(await this.resources.resolveRef(actor.userId, 'Model', payload.modelOverride, team?.record.namespace ?? 'default'))) {
        causes.push({ field: 'modelOverride', reason: 'FieldValueNotFound', message: `Model '${payload.modelOverride.name}' not found` });
      }
      if (causes.length) throw new ValidationError(invalidMessage(undefined, undefined, causes), causes);
      result = await this.createTask(actor, team!.record, payload, message, hash, opts, events);
    } else {
      result = await this.continueTask(actor, payload.taskId, payload, message, hash, opts, events);
    }
    // A run held back by the per-user cap shows as queued at once (chat-protocol.md §10).
    const queue = this.scheduler ? await this.scheduler.queuePosition(result.taskId) : null;
    if (queue && queue.reason === 'user_limit') {
      result.queue = queue;
      for (const e of events) if (e.name === 'task:status') e.payload.queue = queue;
    }
    for (const e of events) this.notifier.emit(e);
    return result;
  }

  private async replay(userId: string, clientMessageId: string, hash: string): Promise<SendResult | undefined> {
    const row = await this.storage.db.selectFrom('idempotency').selectAll().where('user_id', '=', userId).where('client_message_id', '=', clientMessageId).executeTakeFirst();
    if (!row) return undefined;
    if (row.request_hash !== hash) throw new SendError('CONFLICT', 409, 'idempotency key reused with a different request');
    return { ...(JSON.parse(row.ack) as SendResult), duplicate: true };
  }

  private async createTask(actor: Actor & { username: string }, team: ResourceRecord, payload: ChatSendPayload, message: string, hash: string, opts: SendOptions, events: ClientEvent[]): Promise<SendResult> {
    const taskId = uuidv7();
    const runId = uuidv7();
    const messageId = uuidv7();
    const subtaskId = uuidv7();
    const now = new Date().toISOString();
    const name = `t-${taskId.replace(/-/g, '').slice(-12)}`;
    const namespace = team.namespace;
    const title = (payload.title ?? message.split('\n')[0]!.trim()).slice(0, payload.title ? 256 : 80);
    const teamRef: Ref = { name: team.name, namespace: team.namespace };
    const spec: Record<string, unknown> = { title, prompt: message, teamRef, source: opts.source };
    if (payload.workspaceRef) spec.workspaceRef = payload.workspaceRef;
    if (payload.modelOverride) spec.modelRef = payload.modelOverride;
    const result: SendResult = { taskId, runId, runSeq: 1, messageId, subtaskId, status: 'PENDING', created: true, duplicate: false };
    await this.storage.db.transaction().execute(async (trx) => {
      const version = await this.resources.store.nextVersions(trx, 1);
      const record: ResourceRecord = {
        uid: taskId,
        ownerId: actor.userId,
        namespace,
        kind: 'Task',
        name,
        generation: 1,
        resourceVersion: version,
        labels: { ...(opts.labels ?? {}), 'wegent.io/source': opts.source },
        annotations: {},
        spec,
        status: {},
        createdAt: now,
        updatedAt: now,
      };
      await this.resources.store.insert(trx, record, [{ field: 'spec.teamRef', kind: 'Team', namespace: team.namespace, name: team.name }]);
      await trx
        .insertInto('task_state')
        .values({ task_id: taskId, owner_id: actor.userId, status: 'PENDING', run_seq: 1, run_id: runId, status_version: 1, status_reason: null, error_message: null, current_stage: null, pending_confirmation: null, usage: null, message_count: 1 + (opts.importedHistory?.length ?? 0), next_seq: 1, team_deleted: 0, deleted_at: null, created_at: now, updated_at: now, started_at: null, completed_at: null, last_message_at: now })
        .execute();
      if (opts.importedHistory?.length) await this.insertImportedHistory(trx, taskId, opts.importedHistory, actor, now);
      await this.insertRunWithMessages(trx, { taskId, runId, runSeq: 1, messageId, subtaskId, message, actor, clientMessageId: payload.clientMessageId, now, modelOverride: payload.modelOverride, runInput: opts.runInput });
      await trx.insertInto('idempotency').values({ user_id: actor.userId, client_message_id: payload.clientMessageId, request_hash: hash, ack: JSON.stringify(result), created_at: now }).execute();
      opts.beforeCommit?.(taskId);
    });
    this.scheduler?.wake();
    const task = await this.taskDocument(actor.userId, taskId);
    events.push({ name: 'task:created', userId: actor.userId, payload: { taskId, task } });
    const userMessage = await taskStore.message(this.storage.db, messageId);
    events.push({ name: 'chat:message', taskId, payload: { taskId, message: toMessage(userMessage!) } });
    events.push(this.statusEvent(actor.userId, taskId, runId, 1, 'PENDING', null, 1, now));
    return result;
  }

  private async continueTask(actor: Actor & { username: string }, taskId: string, payload: ChatSendPayload, message: string, hash: string, opts: SendOptions, events: ClientEvent[]): Promise<SendResult> {
    const state = await taskStore.state(this.storage.db, taskId);
    if (!state || state.owner_id !== actor.userId) throw new NotFoundError('task not found', { kind: 'Task' });
    if (state.team_deleted) throw new SendError('TEAM_DELETED', 409, 'the team of this task was deleted');
    const status = state.status as TaskStatus;
    if (!TERMINAL_TASK_STATUSES.has(status) && status !== 'PENDING_CONFIRMATION') {
      throw new SendError('TASK_BUSY', 409, `task is ${status}; cancel it or wait`, { causes: [{ field: 'status', reason: 'FieldValueInvalid', message: status }], status });
    }
    const runSeq = state.run_seq + 1;
    const runId = uuidv7();
    const messageId = uuidv7();
    const subtaskId = uuidv7();
    const now = new Date().toISOString();
    const result: SendResult = { taskId, runId, runSeq, messageId, subtaskId, status: 'PENDING', created: false, duplicate: false };
    let moved: Awaited<ReturnType<TaskStateMachine['startRun']>> = null;
    await this.storage.db.transaction().execute(async (trx) => {
      moved = await this.stateMachine.startRun(trx, taskId, runSeq, runId);
      if (!moved) throw new SendError('TASK_BUSY', 409, 'task is busy; cancel it or wait', { status });
      if (status === 'PENDING_CONFIRMATION') await trx.updateTable('runs').set({ status: 'COMPLETED', completed_at: now }).where('task_id', '=', taskId).where('run_seq', '=', state.run_seq).execute();
      // A message while paused revises the paused stage in a new run (runtime.md §9.2): the run remembers which one.
      const runInput = status === 'PENDING_CONFIRMATION' ? { ...(opts.runInput ?? {}), revisionOf: state.run_seq } : opts.runInput;
      await this.insertRunWithMessages(trx, { taskId, runId, runSeq, messageId, subtaskId, message, actor, clientMessageId: payload.clientMessageId, now, modelOverride: payload.modelOverride, runInput });
      await trx.updateTable('task_state').set({ message_count: state.message_count + 1, last_message_at: now }).where('task_id', '=', taskId).execute();
      await trx.insertInto('idempotency').values({ user_id: actor.userId, client_message_id: payload.clientMessageId, request_hash: hash, ack: JSON.stringify(result), created_at: now }).execute();
      opts.beforeCommit?.(taskId);
    });
    this.scheduler?.wake();
    const userMessage = await taskStore.message(this.storage.db, messageId);
    events.push({ name: 'chat:message', taskId, payload: { taskId, message: toMessage(userMessage!) } });
    const m = moved as unknown as { previous: TaskStatus; statusVersion: number; updatedAt: string };
    events.push(this.statusEvent(actor.userId, taskId, runId, runSeq, 'PENDING', m.previous, m.statusVersion, m.updatedAt));
    return result;
  }

  /**
   * `chat:send` with `action: "pipeline:confirm"` (chat-protocol.md §5.1): the paused run continues in
   * the same run with its next stage, as a new job; an optional message is stored as a user message and
   * replaces the paused stage's output as the next stage's input (runtime.md §9.2).
   */
  private async confirm(actor: Actor & { username: string }, payload: ChatSendPayload, hash: string, opts: SendOptions): Promise<SendResult> {
    if (!payload.taskId) throw new SendError('CONFLICT', 409, 'nothing to confirm');
    const editedText = payload.message === undefined ? undefined : this.validateMessage(payload.message);
    const taskId = payload.taskId;
    const db = this.storage.db;
    const state = await taskStore.state(db, taskId);
    if (!state || state.owner_id !== actor.userId) throw new NotFoundError('task not found', { kind: 'Task' });
    if (state.team_deleted) throw new SendError('TEAM_DELETED', 409, 'the team of this task was deleted');
    if (state.status !== 'PENDING_CONFIRMATION' || !state.run_id) throw new SendError('CONFLICT', 409, 'nothing to confirm');
    const run = await db.selectFrom('runs').selectAll().where('id', '=', state.run_id).executeTakeFirstOrThrow();
    const input = JSON.parse(run.input) as PipelineRunInput;
    const pending = state.pending_confirmation ? (JSON.parse(state.pending_confirmation) as PendingConfirmation) : undefined;
    const stage = pending?.stage ?? state.current_stage ?? 0;
    const confirmations = [...(input.confirmations ?? []), { stage, ...(editedText !== undefined ? { editedText } : {}) }];
    const step = confirmations.length;
    const subtaskId = uuidv7();
    const messageId = editedText !== undefined ? uuidv7() : undefined;
    const now = new Date().toISOString();
    const result: SendResult = { taskId, runId: run.id, runSeq: state.run_seq, ...(messageId ? { messageId } : {}), subtaskId, status: 'PENDING', created: false, duplicate: false };
    let moved: Awaited<ReturnType<TaskStateMachine['transitionTask']>> = null;
    await db.transaction().execute(async (trx) => {
      moved = await this.stateMachine.transitionTask(trx, { taskId, runSeq: state.run_seq, to: 'PENDING', onlyFrom: ['PENDING_CONFIRMATION'] });
      if (!moved) throw new SendError('CONFLICT', 409, 'nothing to confirm');
      await trx.updateTable('runs').set({ status: 'PENDING', completed_at: null, input: JSON.stringify({ ...input, confirmations }) }).where('id', '=', run.id).execute();
      const seq = await taskStore.allocateSeq(trx, taskId, messageId ? 2 : 1);
      const base = { task_id: taskId, run_id: run.id, run_seq: state.run_seq, reasoning: '', status_reason: null, error: null, blocks: '[]', model: null, usage: null, resolved: null, attempt: 1, superseded_by_run_seq: null, started_at: null, completed_at: null, time_to_first_token_ms: null, duration_ms: null, created_at: now };
      await trx
        .insertInto('messages')
        .values([
          ...(messageId
            ? [{ ...base, id: messageId, seq, role: 'user' as const, purpose: null, visible: 1, content: editedText!, status: null, sender: JSON.stringify({ type: 'user', userId: actor.userId, username: actor.username }), client_message_id: payload.clientMessageId, member_index: null }]
            : []),
          { ...base, id: subtaskId, seq: messageId ? seq + 1 : seq, role: 'assistant' as const, purpose: 'answer', visible: 1, content: '', status: 'PENDING', sender: JSON.stringify({ type: 'pending' }), client_message_id: null, member_index: stage + 1 },
        ])
        .execute();
      if (messageId) await trx.updateTable('task_state').set({ message_count: state.message_count + 1, last_message_at: now }).where('task_id', '=', taskId).execute();
      await this.scheduler?.enqueue(trx, { id: `${run.id}-${step}`, userId: actor.userId, taskId, runId: run.id, runSeq: state.run_seq, step, payload: { subtaskId } });
      await trx.insertInto('idempotency').values({ user_id: actor.userId, client_message_id: payload.clientMessageId, request_hash: hash, ack: JSON.stringify(result), created_at: now }).execute();
      opts.beforeCommit?.(taskId);
    });
    this.scheduler?.wake();
    const events: ClientEvent[] = [];
    if (messageId) events.push({ name: 'chat:message', taskId, payload: { taskId, message: toMessage((await taskStore.message(db, messageId))!) } });
    const m = moved as unknown as { previous: TaskStatus; statusVersion: number; updatedAt: string };
    events.push(this.statusEvent(actor.userId, taskId, run.id, state.run_seq, 'PENDING', m.previous, m.statusVersion, m.updatedAt, state.current_stage !== null ? { currentStage: state.current_stage } : {}));
    for (const e of events) this.notifier.emit(e);
    return result;
  }

  /** The live cursor of a running turn's stream buffer (set by the stream machinery). */
  streamCursor: (subtaskId: string) => Promise<{ offset: number; reasoningOffset: number } | undefined> = async () => undefined;

  /**
   * `chat:retry` / POST /tasks/{id}/retry (chat-protocol.md §5.4): a new run with the same input as the
   * retried turn's run; that run is marked superseded and leaves the model context of later runs.
   */
  async retry(actor: Actor & { username: string }, input: { taskId: string; subtaskId: string; clientMessageId: string; modelOverride?: Ref }): Promise<SendResult> {
    const state = await this.ownedState(actor.userId, input.taskId);
    const hash = createHash('sha256').update(JSON.stringify(['retry', input.taskId, input.subtaskId, input.modelOverride ?? null])).digest('hex');
    const replay = await this.replay(actor.userId, input.clientMessageId, hash);
    if (replay) return replay;
    const turn = await taskStore.message(this.storage.db, input.subtaskId);
    if (!turn || turn.task_id !== input.taskId || turn.role !== 'assistant') throw new NotFoundError('turn not found');
    if (state.team_deleted) throw new SendError('TEAM_DELETED', 409, 'the team of this task was deleted');
    const status = state.status as TaskStatus;
    if (!TERMINAL_TASK_STATUSES.has(status)) throw new SendError('TASK_BUSY', 409, `task is ${status}; cancel it or wait`, { status });
    if (turn.run_seq !== state.run_seq || !['COMPLETED', 'FAILED', 'CANCELLED'].includes(turn.status ?? '')) throw new SendError('CONFLICT', 409, 'only the latest answer can be retried');
    if (input.modelOverride && !(await this.resources.resolveRef(actor.userId, 'Model', input.modelOverride, 'default'))) {
      const cause: Cause = { field: 'modelOverride', reason: 'FieldValueNotFound', message: `Model '${input.modelOverride.name}' not found` };
      throw new ValidationError(invalidMessage(undefined, undefined, [cause]), [cause]);
    }
    const previous = await this.storage.db.selectFrom('runs').selectAll().where('task_id', '=', input.taskId).where('run_seq', '=', turn.run_seq).executeTakeFirstOrThrow();
    const runSeq = state.run_seq + 1;
    const runId = uuidv7();
    const subtaskId = uuidv7();
    const now = new Date().toISOString();
    const previousInput = JSON.parse(previous.input) as { message: string; modelOverride?: Ref | null; overrides?: Record<string, unknown>; openai?: Record<string, unknown> };
    const result: SendResult = { taskId: input.taskId, runId, runSeq, subtaskId, status: 'PENDING', created: false, duplicate: false };
    let moved: Awaited<ReturnType<TaskStateMachine['startRun']>> = null;
    await this.storage.db.transaction().execute(async (trx) => {
      moved = await this.stateMachine.startRun(trx, input.taskId, runSeq, runId);
      if (!moved) throw new SendError('TASK_BUSY', 409, 'task is busy; cancel it or wait', { status });
      await trx.updateTable('runs').set({ superseded_by_run_seq: runSeq }).where('id', '=', previous.id).execute();
      // Its answers leave the context; its user message stays (the new run answers it again).
      await trx.updateTable('messages').set({ superseded_by_run_seq: runSeq }).where('run_id', '=', previous.id).where('role', '=', 'assistant').execute();
      const seq = await taskStore.allocateSeq(trx, input.taskId, 1);
      await trx.insertInto('runs').values({ id: runId, task_id: input.taskId, run_seq: runSeq, status: 'PENDING', input: JSON.stringify({ ...(previousInput.overrides ? { overrides: previousInput.overrides } : {}), ...(previousInput.openai ? { openai: previousInput.openai } : {}), message: previousInput.message, modelOverride: input.modelOverride ?? previousInput.modelOverride ?? null, retryOf: { runSeq: turn.run_seq, stage: turn.member_index ?? 0 } }), superseded_by_run_seq: null, lease_owner: null, lease_expires_at: null, created_at: now, completed_at: null }).execute();
      await trx
        .insertInto('messages')
        .values({ id: subtaskId, task_id: input.taskId, seq, run_id: runId, run_seq: runSeq, role: 'assistant', purpose: 'answer', visible: 1, content: '', reasoning: '', status: 'PENDING', status_reason: null, error: null, sender: JSON.stringify({ type: 'pending' }), blocks: '[]', model: null, usage: null, resolved: null, client_message_id: null, attempt: 1, member_index: 0, superseded_by_run_seq: null, created_at: now, started_at: null, completed_at: null, time_to_first_token_ms: null, duration_ms: null })
        .execute();
      await this.scheduler?.enqueue(trx, { id: `${runId}-0`, userId: actor.userId, taskId: input.taskId, runId, runSeq, step: 0, payload: { subtaskId } });
      await trx.insertInto('idempotency').values({ user_id: actor.userId, client_message_id: input.clientMessageId, request_hash: hash, ack: JSON.stringify(result), created_at: now }).execute();
    });
    this.scheduler?.wake();
    const m = moved as unknown as { previous: TaskStatus; statusVersion: number; updatedAt: string };
    this.notifier.emit(this.statusEvent(actor.userId, input.taskId, runId, runSeq, 'PENDING', m.previous, m.statusVersion, m.updatedAt));
    return result;
  }

  /** Asks the worker holding a run to stop (set by the worker pool; chat-protocol.md §11 step 3). */
  cancelRunning: (taskId: string, runSeq: number, reason: string) => void = () => undefined;

  /**
   * Cancels the task's current run (chat-protocol.md §11): a run not started is cancelled at once; a
   * running one moves to CANCELLING and its worker is told to abort. Idempotent.
   */
  async cancel(userId: string, taskId: string, opts: { subtaskId?: string; reason?: string } = {}): Promise<{ taskId: string; status: TaskStatus; changed: boolean }> {
    const state = await this.ownedState(userId, taskId);
    const status = state.status as TaskStatus;
    const reason = opts.reason ?? 'USER_CANCELLED';
    if (opts.subtaskId) {
      const turn = await taskStore.message(this.storage.db, opts.subtaskId);
      if (!turn || turn.task_id !== taskId || turn.run_seq !== state.run_seq) return { taskId, status, changed: false };
    }
    if (status === 'PENDING' || status === 'PENDING_CONFIRMATION') {
      if (status === 'PENDING' && state.run_id && this.scheduler) {
        const removed = await this.scheduler.removeWaiting(`${state.run_id}-0`);
        // A worker already holds the job but has not started the run (it may be waiting for a sandbox):
        // the run ends CANCELLED at once and the worker is told to abort (chat-protocol.md §11 step 2).
        if (!removed && (await this.hasClaimedJob(state.run_id))) {
          const result = await this.cancelNow(userId, state, reason);
          if (result.changed) this.cancelRunning(taskId, state.run_seq, reason);
          else if (result.status === 'RUNNING') return this.requestCancel(userId, state, reason);
          return result;
        }
      }
      return this.cancelNow(userId, state, reason);
    }
    if (status === 'RUNNING') return this.requestCancel(userId, state, reason);
    return { taskId, status, changed: false };
  }

  private async hasClaimedJob(runId: string): Promise<boolean> {
    const row = await this.storage.db.selectFrom('jobs').select('id').where('run_id', '=', runId).where('state', '=', 'claimed').executeTakeFirst();
    return row !== undefined;
  }

  private async requestCancel(userId: string, state: Database['task_state'], reason: string) {
    const moved = await this.stateMachine.transitionTask(this.storage.db, { taskId: state.task_id, runSeq: state.run_seq, to: 'CANCELLING', reason, onlyFrom: ['RUNNING'] });
    if (!moved) {
      // The run finished or started meanwhile: answer what is true now.
      const now = await taskStore.state(this.storage.db, state.task_id);
      if (now && now.status === 'PENDING' && now.run_seq === state.run_seq) return this.cancelNow(userId, now, reason);
      return { taskId: state.task_id, status: (now?.status ?? state.status) as TaskStatus, changed: false };
    }
    this.notifier.emit(this.statusEvent(userId, state.task_id, state.run_id, state.run_seq, 'CANCELLING', moved.previous, moved.statusVersion, moved.updatedAt, { statusReason: reason }));
    this.cancelRunning(state.task_id, state.run_seq, reason);
    return { taskId: state.task_id, status: 'CANCELLING' as TaskStatus, changed: true };
  }

  /** Cancels a run that no worker is executing: its unfinished turns and the task end CANCELLED now. */
  private async cancelNow(userId: string, state: Database['task_state'], reason: string) {
    const now = new Date().toISOString();
    let moved: Awaited<ReturnType<TaskStateMachine['transitionTask']>> = null;
    const cancelledTurns: Database['messages'][] = [];
    await this.storage.db.transaction().execute(async (trx) => {
      moved = await this.stateMachine.transitionTask(trx, { taskId: state.task_id, runSeq: state.run_seq, to: 'CANCELLED', reason, onlyFrom: ['PENDING', 'PENDING_CONFIRMATION'] });
      if (!moved) return;
      for (const turn of await taskStore.turnsOfRun(trx, state.run_id!)) {
        if (await this.stateMachine.transitionTurn(trx, turn.id, 'CANCELLED', { status_reason: reason, error: JSON.stringify({ code: reason, message: 'the run was cancelled' }), completed_at: now }, ['PENDING', 'RUNNING'])) cancelledTurns.push(turn);
      }
      await trx.updateTable('runs').set({ status: 'CANCELLED', completed_at: now }).where('id', '=', state.run_id!).execute();
      await trx.deleteFrom('jobs').where('run_id', '=', state.run_id!).execute();
    });
    if (!moved) {
      const current = await taskStore.state(this.storage.db, state.task_id);
      return { taskId: state.task_id, status: (current?.status ?? state.status) as TaskStatus, changed: false };
    }
    const m = moved as { previous: TaskStatus; statusVersion: number; updatedAt: string };
    for (const turn of cancelledTurns) {
      const sender = JSON.parse(turn.sender) as { bot?: unknown; memberIndex?: number; memberName?: string };
      this.notifier.emit({ name: 'chat:cancelled', taskId: state.task_id, payload: { taskId: state.task_id, subtaskId: turn.id, runSeq: turn.run_seq, seq: 1, status: 'CANCELLED', reason, offset: turn.content.length, partialText: turn.content, completedAt: now, bot: sender.bot ?? null, memberIndex: turn.member_index, memberName: sender.memberName ?? null } });
    }
    this.notifier.emit(this.statusEvent(userId, state.task_id, state.run_id, state.run_seq, 'CANCELLED', m.previous, m.statusVersion, m.updatedAt, { statusReason: reason }));
    return { taskId: state.task_id, status: 'CANCELLED' as TaskStatus, changed: true };
  }

  /** DELETE /tasks/{id}: an active run is cancelled first (TASK_DELETED), then the task is soft-deleted. */
  async delete(userId: string, taskId: string): Promise<void> {
    const state = await this.ownedState(userId, taskId);
    if (ACTIVE_STATES.includes(state.status as TaskStatus)) await this.cancel(userId, taskId, { reason: 'TASK_DELETED' });
    const at = new Date().toISOString();
    await this.storage.db.transaction().execute(async (trx) => {
      const version = await this.resources.store.nextVersions(trx, 1);
      await this.resources.store.softDelete(trx, taskId, version, at);
      await trx.updateTable('task_state').set({ deleted_at: at }).where('task_id', '=', taskId).execute();
      await trx.deleteFrom('jobs').where('task_id', '=', taskId).execute();
    });
    this.notifier.emit({ name: 'task:deleted', userId, taskId, payload: { taskId } });
  }

  /** A Task created by `apply` (resources.md §17): its state, first run and messages, in the apply's transaction. */
  async onTaskApplied(trx: Transaction<Database>, record: ResourceRecord, actor: Actor & { username: string }): Promise<void> {
    const now = record.createdAt;
    const runId = uuidv7();
    await trx
      .insertInto('task_state')
      .values({ task_id: record.uid, owner_id: record.ownerId, status: 'PENDING', run_seq: 1, run_id: runId, status_version: 1, status_reason: null, error_message: null, current_stage: null, pending_confirmation: null, usage: null, message_count: 1, next_seq: 1, team_deleted: 0, deleted_at: null, created_at: now, updated_at: now, started_at: null, completed_at: null, last_message_at: now })
      .execute();
    await this.insertRunWithMessages(trx, { taskId: record.uid, runId, runSeq: 1, messageId: uuidv7(), subtaskId: uuidv7(), message: String(record.spec.prompt ?? ''), actor, clientMessageId: `apply-${record.uid}`, now, modelOverride: record.spec.modelRef as Ref | undefined });
  }

  /** Writes a run, its user message and its first (PENDING) turn, and queues the run's job. */
  private async insertRunWithMessages(
    trx: Transaction<Database>,
    r: { taskId: string; runId: string; runSeq: number; messageId: string; subtaskId: string; message: string; actor: Actor & { username: string }; clientMessageId: string; now: string; modelOverride?: Ref; runInput?: Record<string, unknown> },
  ): Promise<void> {
    const seq = await taskStore.allocateSeq(trx, r.taskId, 2);
    await trx.insertInto('runs').values({ id: r.runId, task_id: r.taskId, run_seq: r.runSeq, status: 'PENDING', input: JSON.stringify({ ...(r.runInput ?? {}), message: r.message, modelOverride: r.modelOverride ?? null }), superseded_by_run_seq: null, lease_owner: null, lease_expires_at: null, created_at: r.now, completed_at: null }).execute();
    const base = { task_id: r.taskId, run_id: r.runId, run_seq: r.runSeq, reasoning: '', status_reason: null, error: null, blocks: '[]', model: null, usage: null, resolved: null, attempt: 1, superseded_by_run_seq: null, started_at: null, completed_at: null, time_to_first_token_ms: null, duration_ms: null };
    await trx
      .insertInto('messages')
      .values([
        { ...base, id: r.messageId, seq, role: 'user', purpose: null, visible: 1, content: r.message, status: null, sender: JSON.stringify({ type: 'user', userId: r.actor.userId, username: r.actor.username }), client_message_id: r.clientMessageId, member_index: null, created_at: r.now },
        { ...base, id: r.subtaskId, seq: seq + 1, role: 'assistant', purpose: 'answer', visible: 1, content: '', status: 'PENDING', sender: JSON.stringify({ type: 'pending' }), client_message_id: null, member_index: 0, created_at: r.now },
      ])
      .execute();
    await this.scheduler?.enqueue(trx, { id: `${r.runId}-0`, userId: r.actor.userId, taskId: r.taskId, runId: r.runId, runSeq: r.runSeq, step: 0, payload: { subtaskId: r.subtaskId } });
  }

  /**
   * Imported history (runtime.md §4.3): visible, finished messages before the first run, under run
   * sequence 0 so that run 1 reads them as history; assistant ones carry sender `{type: "imported"}`.
   */
  private async insertImportedHistory(trx: Transaction<Database>, taskId: string, history: Array<{ role: 'user' | 'assistant'; text: string }>, actor: Actor & { username: string }, now: string): Promise<void> {
    const seq = await taskStore.allocateSeq(trx, taskId, history.length);
    const importId = uuidv7();
    const base = { task_id: taskId, run_id: importId, run_seq: 0, visible: 1, reasoning: '', status_reason: null, error: null, blocks: '[]', model: null, usage: null, resolved: null, client_message_id: null, attempt: 1, superseded_by_run_seq: null, started_at: null, time_to_first_token_ms: null, duration_ms: null, created_at: now };
    await trx
      .insertInto('messages')
      .values(
        history.map((m, i) =>
          m.role === 'user'
            ? { ...base, id: uuidv7(), seq: seq + i, role: 'user' as const, purpose: null, content: m.text, status: null, sender: JSON.stringify({ type: 'user', userId: actor.userId, username: actor.username }), member_index: null, completed_at: null }
            : { ...base, id: uuidv7(), seq: seq + i, role: 'assistant' as const, purpose: 'answer', content: m.text, status: 'COMPLETED', sender: JSON.stringify({ type: 'imported' }), member_index: null, completed_at: now },
        ),
      )
      .execute();
  }

  statusEvent(userId: string, taskId: string, runId: string | null, runSeq: number, status: TaskStatus, previous: TaskStatus | null, statusVersion: number, updatedAt: string, extra: Record<string, unknown> = {}): ClientEvent {
    return { name: 'task:status', userId, taskId, payload: { taskId, runId, runSeq, status, previousStatus: previous, statusVersion, updatedAt, ...extra } };
  }

  /** The Task document with its live status (resources.md §17.2). */
  async taskDocument(userId: string, taskId: string): Promise<Record<string, unknown>> {
    const rows = await this.resources.store.storage.db.selectFrom('resources').select(['uid', 'namespace', 'name']).where('uid', '=', taskId).where('owner_id', '=', userId).where('live', '=', 1).executeTakeFirst();
    if (!rows) throw new NotFoundError('task not found', { kind: 'Task' });
    const records = await this.resources.store.findLive(this.storage.db, 'Task', rows.namespace, rows.name, [userId]);
    return (await this.resources.toApiMany([records[0]!]))[0]!;
  }

  /** The task's status fields for its document (resources.md §17.2). */
  static statusOf(state: Database['task_state']): Record<string, unknown> {
    const status: Record<string, unknown> = {
      status: state.status,
      runSeq: state.run_seq,
      runId: state.run_id,
      statusVersion: state.status_version,
      messageCount: state.message_count,
      teamDeleted: state.team_deleted === 1,
      progress: state.progress ?? (TERMINAL_TASK_STATUSES.has(state.status as TaskStatus) ? 100 : 0),
      createdAt: state.created_at,
      updatedAt: state.updated_at,
    };
    if (state.status_reason) status.statusReason = state.status_reason;
    if (state.error_message) status.errorMessage = state.error_message;
    if (state.current_stage !== null) status.currentStage = state.current_stage;
    if (state.pending_confirmation) status.pendingConfirmation = JSON.parse(state.pending_confirmation);
    if (state.usage) status.usage = JSON.parse(state.usage);
    if (state.started_at) status.startedAt = state.started_at;
    if (state.completed_at) status.completedAt = state.completed_at;
    if (state.last_message_at) status.lastMessageAt = state.last_message_at;
    return status;
  }

  async ownedState(userId: string, taskId: string): Promise<Database['task_state']> {
    const state = await taskStore.state(this.storage.db, taskId);
    if (!state || state.owner_id !== userId) throw new NotFoundError('task not found', { kind: 'Task' });
    return state;
  }

  /** GET /tasks/{id}/messages and `history:sync`. */
  async messages(userId: string, taskId: string, q: { afterSeq?: number; beforeSeq?: number; limit: number; includeHidden: boolean }): Promise<{ items: Message[]; hasMoreBefore: boolean; hasMoreAfter: boolean }> {
    await this.ownedState(userId, taskId);
    const page = await taskStore.messages(this.storage.db, taskId, q);
    return { items: page.rows.map(toMessage), hasMoreBefore: page.hasMoreBefore, hasMoreAfter: page.hasMoreAfter };
  }

  /** GET /tasks/{id}/runtime: status and the active stream cursors, no message bodies. */
  async runtime(userId: string, taskId: string, cursor: (subtaskId: string) => Promise<{ offset: number; reasoningOffset: number } | undefined> = async () => undefined): Promise<TaskRuntime> {
    const state = await this.ownedState(userId, taskId);
    const active = ACTIVE_STATES.includes(state.status as TaskStatus) && state.run_id
      ? (await taskStore.turnsOfRun(this.storage.db, state.run_id)).filter((t) => t.status === 'PENDING' || t.status === 'RUNNING')
      : [];
    const activeStreams = await Promise.all(
      active.map(async (t) => {
        const c = await cursor(t.id);
        const sender = JSON.parse(t.sender) as { bot?: { name: string; namespace: string } };
        return { subtaskId: t.id, status: t.status as 'PENDING' | 'RUNNING', offset: c?.offset ?? t.content.length, reasoningOffset: c?.reasoningOffset ?? t.reasoning.length, bot: sender.bot ?? null, memberIndex: t.member_index, lastActivityAt: t.started_at };
      }),
    );
    return {
      taskId,
      status: state.status as TaskStatus,
      runId: state.run_id,
      runSeq: state.run_seq,
      statusVersion: state.status_version,
      statusUpdatedAt: state.updated_at,
      activeStreams,
      pendingConfirmation: state.pending_confirmation ? JSON.parse(state.pending_confirmation) : null,
      queue: state.status === 'PENDING' ? (this.sandboxQueueOf(taskId, state.run_seq) ?? (this.scheduler ? await this.scheduler.queuePosition(taskId) : null)) : null,
      sandbox: this.sandboxes ? await this.sandboxes.current(taskId) : null,
    };
  }

  /** The sandbox wait of run `runSeq` of the task, when it is waiting in this process. */
  private sandboxQueueOf(taskId: string, runSeq: number): TaskRuntime['queue'] {
    const w = this.sandboxWaits.get(taskId);
    return w && w.runSeq === runSeq && w.position !== null ? { position: w.position, reason: 'sandbox' } : null;
  }

  /**
   * A turn of the task's run `runSeq` waits for a sandbox slot at `position`, or (null) no longer does.
   * While the run has not started, the task shows it: PENDING with `queue: {reason: "sandbox", position}`
   * and a `task:status` for each change, at most one a second (chat-protocol.md §6.1, §10). A run that
   * is already RUNNING (a Chat turn's first sandbox tool call) keeps its status; only `sandbox:status`
   * reports that wait.
   */
  noteSandboxQueue(taskId: string, runSeq: number, position: number | null): void {
    let w = this.sandboxWaits.get(taskId);
    if (!w || w.runSeq !== runSeq) {
      if (position === null) return;
      if (w) clearTimeout(w.timer);
      w = { runSeq, position, sentAt: 0 };
      this.sandboxWaits.set(taskId, w);
    }
    w.position = position;
    if (w.timer) return; // a send is due; it sends the latest position
    const wait = w;
    wait.timer = setTimeout(() => {
      wait.timer = undefined;
      void this.sendSandboxQueue(taskId, wait).catch((err) => this.log.warn({ err, taskId }, 'publishing a sandbox queue position failed'));
    }, Math.max(0, wait.sentAt + QUEUE_RESEND_MS - Date.now()));
    wait.timer.unref();
  }

  private async sendSandboxQueue(taskId: string, w: SandboxWait): Promise<void> {
    if (this.sandboxWaits.get(taskId) !== w) return;
    const position = w.position;
    if (position === null) this.sandboxWaits.delete(taskId);
    // Nothing new to say: the position did not change, or a wait that was never shown ended.
    if (w.sent === position || (w.sent === undefined && position === null)) return;
    w.sent = position;
    w.sentAt = Date.now();
    const bumped = await this.bumpPendingVersion(taskId, w.runSeq);
    if (!bumped) return; // the run started, ended or was replaced meanwhile: its own status says so
    const queue = position === null ? {} : { queue: { position, reason: 'sandbox' } };
    this.notifier.emit(this.statusEvent(bumped.owner_id, taskId, bumped.run_id, w.runSeq, 'PENDING', 'PENDING', bumped.status_version, bumped.updated_at, queue));
  }

  /**
   * A queue position update of a PENDING run: `statusVersion` + 1 (chat-protocol.md §6.1), by
   * compare-and-set on (run, PENDING, version) so that it never follows the run's start. The status
   * itself does not change, so `updatedAt` — from which the queue timeout counts — stays.
   */
  private async bumpPendingVersion(taskId: string, runSeq: number): Promise<Database['task_state'] | undefined> {
    const db = this.storage.db;
    const current = await taskStore.state(db, taskId);
    if (!current || current.run_seq !== runSeq || current.status !== 'PENDING') return undefined;
    const result = await db
      .updateTable('task_state')
      .set({ status_version: current.status_version + 1 })
      .where('task_id', '=', taskId)
      .where('run_seq', '=', runSeq)
      .where('status', '=', 'PENDING')
      .where('status_version', '=', current.status_version)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1 ? { ...current, status_version: current.status_version + 1 } : undefined;
  }
}
