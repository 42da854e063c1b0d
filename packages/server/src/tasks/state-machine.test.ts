import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { openStorage, type Storage } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrations.js';
import { createTestDatabase, DATABASE_ENGINES, type TestDatabase } from '../testing/databases.js';
import { canTransitionTask, canTransitionTurn, TASK_STATUSES, TaskStateMachine, TURN_STATUSES, type TaskStatus, type TurnStatus } from './state-machine.js';

/** chat-protocol.md §9.3, written out independently of the implementation. */
const SAME_RUN: Array<[TaskStatus, TaskStatus]> = [
  ['PENDING', 'RUNNING'],
  ['PENDING', 'CANCELLED'],
  ['PENDING', 'FAILED'],
  ['RUNNING', 'COMPLETED'],
  ['RUNNING', 'FAILED'],
  ['RUNNING', 'CANCELLING'],
  ['RUNNING', 'PENDING_CONFIRMATION'],
  ['RUNNING', 'PENDING'],
  ['CANCELLING', 'CANCELLED'],
  ['CANCELLING', 'FAILED'],
  ['PENDING_CONFIRMATION', 'PENDING'],
  ['PENDING_CONFIRMATION', 'CANCELLED'],
];
/** Moves that start a new run (runSeq + 1). */
const NEW_RUN: Array<[TaskStatus, TaskStatus]> = [
  ['COMPLETED', 'PENDING'],
  ['FAILED', 'PENDING'],
  ['CANCELLED', 'PENDING'],
  ['PENDING_CONFIRMATION', 'PENDING'],
];
/** chat-protocol.md §9.4. */
const TURN: Array<[TurnStatus, TurnStatus]> = [
  ['PENDING', 'RUNNING'],
  ['PENDING', 'CANCELLED'],
  ['PENDING', 'FAILED'],
  ['RUNNING', 'COMPLETED'],
  ['RUNNING', 'FAILED'],
  ['RUNNING', 'CANCELLED'],
  ['RUNNING', 'PENDING'],
];
const has = <T>(list: Array<[T, T]>, a: T, b: T) => list.some(([x, y]) => x === a && y === b);

describe('transition tables', () => {
  for (const from of TASK_STATUSES) {
    for (const to of TASK_STATUSES) {
      const allowed = has(SAME_RUN, from, to);
      it(`${allowed ? 'allows' : 'refuses'} task ${from} → ${to} within a run`, () => {
        expect(canTransitionTask(from, to)).toBe(allowed);
      });
    }
  }
  for (const from of TURN_STATUSES) {
    for (const to of TURN_STATUSES) {
      const allowed = has(TURN, from, to);
      it(`${allowed ? 'allows' : 'refuses'} turn ${from} → ${to}`, () => {
        expect(canTransitionTurn(from, to)).toBe(allowed);
      });
    }
  }
});

describe.each(DATABASE_ENGINES)('compare-and-set in storage on %s', (engine) => {
  let tdb: TestDatabase;
  let storage: Storage;
  const stale: string[] = [];
  const sm = new TaskStateMachine((w) => stale.push(w));

  beforeAll(async () => {
    tdb = await createTestDatabase(engine);
    storage = await openStorage(tdb.url);
    await migrateToLatest(storage.db as never, storage.dialect);
  });
  afterAll(async () => {
    await storage?.close();
    await tdb?.drop();
  });

  async function taskIn(status: TaskStatus, runSeq = 1): Promise<string> {
    const id = randomUUID();
    const now = new Date().toISOString();
    await storage.db
      .insertInto('task_state')
      .values({ task_id: id, owner_id: 'u', status, run_seq: runSeq, run_id: randomUUID(), status_version: 1, status_reason: null, error_message: null, current_stage: null, pending_confirmation: null, usage: null, message_count: 0, next_seq: 1, team_deleted: 0, deleted_at: null, created_at: now, updated_at: now, started_at: null, completed_at: null, last_message_at: null })
      .execute();
    return id;
  }

  it('applies every allowed task move and refuses every other one, for all 7 × 7 pairs', async () => {
    for (const from of TASK_STATUSES) {
      for (const to of TASK_STATUSES) {
        const id = await taskIn(from);
        const sameRun = await sm.transitionTask(storage.db, { taskId: id, runSeq: 1, to });
        expect(sameRun !== null, `${from} → ${to} (same run)`).toBe(has(SAME_RUN, from, to));
        const id2 = await taskIn(from);
        const newRun = to === 'PENDING' ? await sm.startRun(storage.db, id2, 2, randomUUID()) : null;
        expect(newRun !== null, `${from} → ${to} (new run)`).toBe(has(NEW_RUN, from, to));
        const row = await storage.db.selectFrom('task_state').selectAll().where('task_id', '=', id).executeTakeFirstOrThrow();
        expect(row.status).toBe(sameRun ? to : from);
        expect(row.status_version).toBe(sameRun ? 2 : 1);
        expect(row.completed_at !== null).toBe(sameRun ? ['COMPLETED', 'FAILED', 'CANCELLED'].includes(to) : false);
      }
    }
  });

  it('never moves a finished run again: a late event of run r is stale once run r is terminal', async () => {
    const id = await taskIn('RUNNING');
    expect(await sm.transitionTask(storage.db, { taskId: id, runSeq: 1, to: 'COMPLETED' })).not.toBeNull();
    stale.length = 0;
    for (const to of TASK_STATUSES) expect(await sm.transitionTask(storage.db, { taskId: id, runSeq: 1, to })).toBeNull();
    expect(stale).toHaveLength(TASK_STATUSES.length);
    // A new run moves on; an event still addressed to run 1 stays stale.
    expect(await sm.startRun(storage.db, id, 2, randomUUID())).not.toBeNull();
    expect(await sm.transitionTask(storage.db, { taskId: id, runSeq: 1, to: 'RUNNING' })).toBeNull();
    expect(await sm.transitionTask(storage.db, { taskId: id, runSeq: 2, to: 'RUNNING' })).toMatchObject({ previous: 'PENDING', status: 'RUNNING', statusVersion: 4 });
  });

  it('lets exactly one of a completion and a cancel racing on the same run win', async () => {
    for (let i = 0; i < 10; i++) {
      const id = await taskIn('RUNNING');
      const [done, cancel] = await Promise.all([
        sm.transitionTask(storage.db, { taskId: id, runSeq: 1, to: 'COMPLETED' }),
        sm.transitionTask(storage.db, { taskId: id, runSeq: 1, to: 'CANCELLING', reason: 'USER_CANCELLED' }),
      ]);
      const row = await storage.db.selectFrom('task_state').select(['status', 'status_version']).where('task_id', '=', id).executeTakeFirstOrThrow();
      expect([done, cancel].filter(Boolean)).toHaveLength(1);
      expect(row.status).toBe(done ? 'COMPLETED' : 'CANCELLING');
      expect(row.status_version).toBe(2);
      // Whatever won, a terminal run stays terminal.
      if (row.status === 'COMPLETED') expect(await sm.transitionTask(storage.db, { taskId: id, runSeq: 1, to: 'CANCELLING' })).toBeNull();
    }
  });

  it('moves turns only along the turn table', async () => {
    for (const from of TURN_STATUSES) {
      for (const to of TURN_STATUSES) {
        const id = randomUUID();
        await storage.db
          .insertInto('messages')
          .values({ id, task_id: 't', seq: Math.floor(Math.random() * 1e9), run_id: 'r', run_seq: 1, role: 'assistant', purpose: 'answer', visible: 1, content: '', reasoning: '', status: from, status_reason: null, error: null, sender: '{}', blocks: '[]', model: null, usage: null, resolved: null, client_message_id: null, attempt: 1, member_index: 0, superseded_by_run_seq: null, created_at: '', started_at: null, completed_at: null, time_to_first_token_ms: null, duration_ms: null })
          .execute();
        const moved = await sm.transitionTurn(storage.db, id, to);
        expect(moved !== null, `turn ${from} → ${to}`).toBe(has(TURN, from, to));
      }
    }
  });
});
