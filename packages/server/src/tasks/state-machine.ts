import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../storage/schema.js';

/** Task statuses (chat-protocol.md §9.1); a task's status is the status of its current run. */
export const TASK_STATUSES = ['PENDING', 'RUNNING', 'CANCELLING', 'PENDING_CONFIRMATION', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Turn (subtask) statuses (chat-protocol.md §9.4). */
export const TURN_STATUSES = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type TurnStatus = (typeof TURN_STATUSES)[number];

export const TERMINAL_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);
export const ACTIVE_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set(['PENDING', 'RUNNING', 'CANCELLING']);
export const TERMINAL_TURN_STATUSES: ReadonlySet<TurnStatus> = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/**
 * Transitions within one run (§9.3). Leaving a terminal status — or PENDING_CONFIRMATION by a
 * revision — is a *new run*, which `startRun` performs; it is not in this table.
 */
const TASK_TRANSITIONS: Record<TaskStatus, readonly TaskStatus[]> = {
  PENDING: ['RUNNING', 'CANCELLED', 'FAILED'],
  RUNNING: ['COMPLETED', 'FAILED', 'CANCELLING', 'PENDING_CONFIRMATION', 'PENDING'],
  CANCELLING: ['CANCELLED', 'FAILED'],
  PENDING_CONFIRMATION: ['PENDING', 'CANCELLED'],
  COMPLETED: [],
  FAILED: [],
  CANCELLED: [],
};

/** Statuses from which a new run may start (a new message, a retry, or a revision). */
export const NEW_RUN_FROM: readonly TaskStatus[] = ['COMPLETED', 'FAILED', 'CANCELLED', 'PENDING_CONFIRMATION'];

const TURN_TRANSITIONS: Record<TurnStatus, readonly TurnStatus[]> = {
  PENDING: ['RUNNING', 'CANCELLED', 'FAILED'],
  RUNNING: ['COMPLETED', 'FAILED', 'CANCELLED', 'PENDING'],
  COMPLETED: [],
  FAILED: [],
  CANCELLED: [],
};

/** Whether a task may move from `from` to `to` within the same run. */
export function canTransitionTask(from: TaskStatus, to: TaskStatus): boolean {
  return TASK_TRANSITIONS[from].includes(to);
}

/** Whether a turn may move from `from` to `to` (RUNNING → PENDING is recovery's only). */
export function canTransitionTurn(from: TurnStatus, to: TurnStatus): boolean {
  return TURN_TRANSITIONS[from].includes(to);
}

/** The statuses a task may be in for a move to `to`. */
export function taskFromStatuses(to: TaskStatus): TaskStatus[] {
  return TASK_STATUSES.filter((from) => canTransitionTask(from, to));
}

export function turnFromStatuses(to: TurnStatus): TurnStatus[] {
  return TURN_STATUSES.filter((from) => canTransitionTurn(from, to));
}

type Db = Kysely<Database> | Transaction<Database>;

export interface TaskTransition {
  taskId: string;
  runSeq: number;
  to: TaskStatus;
  reason?: string | null;
  errorMessage?: string | null;
  /** Narrow the allowed from-states further (e.g. cancel only from PENDING). */
  onlyFrom?: TaskStatus[];
  extra?: Partial<Pick<Database['task_state'], 'current_stage' | 'pending_confirmation' | 'started_at'>>;
}

export interface TransitionResult {
  previous: TaskStatus;
  status: TaskStatus;
  statusVersion: number;
  updatedAt: string;
}

/**
 * The one owner of every task and turn status change (chat-protocol.md §9): each change is a
 * compare-and-set on (id, runSeq, allowed from-states); a change whose compare fails is stale and
 * dropped (returns null), never applied.
 */
export class TaskStateMachine {
  constructor(private readonly onStale: (what: string) => void = () => undefined) {}

  /** Moves a task within its current run; null when stale. */
  async transitionTask(db: Db, t: TaskTransition): Promise<TransitionResult | null> {
    const allowed = taskFromStatuses(t.to).filter((s) => !t.onlyFrom || t.onlyFrom.includes(s));
    if (!allowed.length) return this.stale(`task ${t.taskId} → ${t.to}: no allowed from-state`);
    const current = await db.selectFrom('task_state').select(['status', 'status_version']).where('task_id', '=', t.taskId).where('run_seq', '=', t.runSeq).executeTakeFirst();
    if (!current || !allowed.includes(current.status as TaskStatus)) return this.stale(`task ${t.taskId} run ${t.runSeq}: ${current?.status ?? 'missing'} → ${t.to}`);
    const now = new Date().toISOString();
    const terminal = TERMINAL_TASK_STATUSES.has(t.to);
    const result = await db
      .updateTable('task_state')
      .set({
        status: t.to,
        status_version: current.status_version + 1,
        status_reason: t.reason ?? null,
        error_message: t.to === 'FAILED' ? (t.errorMessage ?? null) : null,
        updated_at: now,
        completed_at: terminal ? now : null,
        ...(t.to === 'PENDING_CONFIRMATION' ? {} : { pending_confirmation: null }),
        ...(t.extra ?? {}),
      })
      .where('task_id', '=', t.taskId)
      .where('run_seq', '=', t.runSeq)
      .where('status', '=', current.status)
      .where('status_version', '=', current.status_version)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return this.stale(`task ${t.taskId} run ${t.runSeq}: lost a race to ${t.to}`);
    return { previous: current.status as TaskStatus, status: t.to, statusVersion: current.status_version + 1, updatedAt: now };
  }

  /** Starts run `runSeq` (new message, retry or revision): allowed only from a terminal or paused status. */
  async startRun(db: Db, taskId: string, runSeq: number, runId: string): Promise<TransitionResult | null> {
    const current = await db.selectFrom('task_state').select(['status', 'status_version', 'run_seq']).where('task_id', '=', taskId).executeTakeFirst();
    if (!current || current.run_seq !== runSeq - 1 || !NEW_RUN_FROM.includes(current.status as TaskStatus)) {
      return this.stale(`task ${taskId}: cannot start run ${runSeq} from ${current?.status ?? 'missing'} (run ${current?.run_seq})`);
    }
    const now = new Date().toISOString();
    const result = await db
      .updateTable('task_state')
      .set({ status: 'PENDING', run_seq: runSeq, run_id: runId, status_version: current.status_version + 1, status_reason: null, error_message: null, completed_at: null, pending_confirmation: null, progress: null, updated_at: now })
      .where('task_id', '=', taskId)
      .where('run_seq', '=', runSeq - 1)
      .where('status_version', '=', current.status_version)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return this.stale(`task ${taskId}: lost a race starting run ${runSeq}`);
    return { previous: current.status as TaskStatus, status: 'PENDING', statusVersion: current.status_version + 1, updatedAt: now };
  }

  /** Moves a turn; null when stale. `fields` are written with the change (text, timestamps, ...). */
  async transitionTurn(db: Db, turnId: string, to: TurnStatus, fields: Partial<Database['messages']> = {}, onlyFrom?: TurnStatus[]): Promise<TurnStatus | null> {
    const allowed = turnFromStatuses(to).filter((s) => !onlyFrom || onlyFrom.includes(s));
    const result = await db
      .updateTable('messages')
      .set({ ...fields, status: to })
      .where('id', '=', turnId)
      .where('role', '=', 'assistant')
      .where('status', 'in', allowed)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return this.stale(`turn ${turnId} → ${to}`);
    return to;
  }

  private stale(what: string): null {
    this.onStale(what);
    return null;
  }
}
