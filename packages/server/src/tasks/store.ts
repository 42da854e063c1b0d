import type { Kysely, Transaction } from 'kysely';
import type { Message } from '@wegent/core';
import type { Database, MessagesTable, TaskStateTable } from '../storage/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

/** Queries over task_state, runs, messages and idempotency records. */
export const taskStore = {
  async state(db: Db, taskId: string): Promise<TaskStateTable | undefined> {
    return db.selectFrom('task_state').selectAll().where('task_id', '=', taskId).where('deleted_at', 'is', null).executeTakeFirst();
  },

  async states(db: Db, taskIds: string[]): Promise<Map<string, TaskStateTable>> {
    if (!taskIds.length) return new Map();
    const rows = await db.selectFrom('task_state').selectAll().where('task_id', 'in', taskIds).execute();
    return new Map(rows.map((r) => [r.task_id, r]));
  },

  /** Reserves `count` message sequence numbers of a task; returns the first. */
  async allocateSeq(db: Db, taskId: string, count: number): Promise<number> {
    const row = await db.selectFrom('task_state').select('next_seq').where('task_id', '=', taskId).executeTakeFirstOrThrow();
    await db.updateTable('task_state').set({ next_seq: row.next_seq + count }).where('task_id', '=', taskId).where('next_seq', '=', row.next_seq).execute();
    return row.next_seq;
  },

  async message(db: Db, id: string): Promise<MessagesTable | undefined> {
    return db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirst();
  },

  async turnsOfRun(db: Db, runId: string): Promise<MessagesTable[]> {
    return db.selectFrom('messages').selectAll().where('run_id', '=', runId).where('role', '=', 'assistant').orderBy('seq').execute();
  },

  /** A page of messages in ascending seq (api.md §5.2). */
  async messages(db: Db, taskId: string, q: { afterSeq?: number; beforeSeq?: number; limit: number; includeHidden: boolean }): Promise<{ rows: MessagesTable[]; hasMoreBefore: boolean; hasMoreAfter: boolean }> {
    let query = db.selectFrom('messages').selectAll().where('task_id', '=', taskId);
    if (!q.includeHidden) query = query.where('visible', '=', 1);
    if (q.afterSeq !== undefined) {
      const rows = await query.where('seq', '>', q.afterSeq).orderBy('seq', 'asc').limit(q.limit + 1).execute();
      const more = rows.length > q.limit;
      const page = rows.slice(0, q.limit);
      return { rows: page, hasMoreAfter: more, hasMoreBefore: page.length ? await this.exists(db, taskId, '<', page[0]!.seq, q.includeHidden) : q.afterSeq > 0 };
    }
    if (q.beforeSeq !== undefined) query = query.where('seq', '<', q.beforeSeq);
    const rows = await query.orderBy('seq', 'desc').limit(q.limit + 1).execute();
    const more = rows.length > q.limit;
    const page = rows.slice(0, q.limit).reverse();
    return { rows: page, hasMoreBefore: more, hasMoreAfter: q.beforeSeq !== undefined && page.length ? await this.exists(db, taskId, '>', page[page.length - 1]!.seq, q.includeHidden) : false };
  },

  /** Token totals over the usage rows of every turn of a task, or of one run. */
  async usageTotals(db: Db, of: { taskId: string } | { runId: string }): Promise<{ inputTokens: number; outputTokens: number; reasoningTokens: number; cachedInputTokens: number }> {
    let q = db.selectFrom('messages').select('usage').where('usage', 'is not', null);
    q = 'taskId' in of ? q.where('task_id', '=', of.taskId) : q.where('run_id', '=', of.runId);
    const total = { inputTokens: 0, outputTokens: 0, reasoningTokens: 0, cachedInputTokens: 0 };
    for (const r of await q.execute()) {
      for (const u of JSON.parse(r.usage!) as Array<Record<string, number>>) {
        total.inputTokens += u.inputTokens ?? 0;
        total.outputTokens += u.outputTokens ?? 0;
        total.reasoningTokens += u.reasoningTokens ?? 0;
        total.cachedInputTokens += u.cachedInputTokens ?? 0;
      }
    }
    return total;
  },
  async exists(db: Db, taskId: string, op: '<' | '>', seq: number, includeHidden: boolean): Promise<boolean> {
    let query = db.selectFrom('messages').select('id').where('task_id', '=', taskId).where('seq', op, seq);
    if (!includeHidden) query = query.where('visible', '=', 1);
    return (await query.limit(1).executeTakeFirst()) !== undefined;
  },
};

const json = <T>(text: string | null): T | null => (text === null ? null : (JSON.parse(text) as T));

/** The API form of a stored message (api.md §5.1). */
export function toMessage(row: MessagesTable): Message {
  return {
    id: row.id,
    taskId: row.task_id,
    seq: row.seq,
    runId: row.run_id,
    runSeq: row.run_seq,
    role: row.role,
    purpose: row.purpose,
    visible: row.visible === 1,
    content: row.content,
    reasoning: row.reasoning,
    status: row.status as Message['status'],
    statusReason: row.status_reason,
    error: json(row.error),
    sender: JSON.parse(row.sender),
    supersededByRunSeq: row.superseded_by_run_seq,
    blocks: JSON.parse(row.blocks),
    model: json(row.model),
    usage: json(row.usage),
    clientMessageId: row.client_message_id,
    createdAt: row.created_at,
    startedAt: row.started_at,
    completedAt: row.completed_at,
    timeToFirstTokenMs: row.time_to_first_token_ms,
    durationMs: row.duration_ms,
  };
}
