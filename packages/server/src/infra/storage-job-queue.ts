import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { isUniqueViolation, type Storage } from '../storage/database.js';
import type { Database, JobsTable } from '../storage/schema.js';
import type { AdmissionLimits, ClaimedJob, Job, JobQueue, JobRecord, RemoveOutcome, WaitingPosition } from './job-queue.js';

/** Options of the storage-backed queue. */
export interface StorageJobQueueOptions {
  /** Lease length of a claim or renewal; default 30 s (chat-protocol.md §13). */
  leaseMs?: number;
  /** The clock leases are measured on; default `Date.now`. */
  now?: () => number;
}

/** The `counters` row whose lock serialises claims; its value counts claims ever made. */
const CLAIM_LOCK_ROW = 'job_queue_claims';
/** Users remembered for round-robin; the least recently served are forgotten first, which keeps their turn. */
const SERVED_USERS_REMEMBERED = 10_000;
/** Attempts of one claim that lost to a deadlock or a busy database before giving up. */
const CLAIM_ATTEMPTS = 5;

/**
 * The embedded job queue: the `jobs` table on SQLite, MariaDB or PostgreSQL, so jobs survive a restart
 * and claimed jobs of a dead process come back through lease expiry. Claims run one at a time across
 * all instances (a row lock on `counters`): the per-user cap and the worker capacity are counted and
 * the job taken in one transaction. Round-robin state (who was served last) is kept in memory: losing
 * it on restart only resets the rotation, and the embedded home has one process claiming.
 */
export class StorageJobQueue implements JobQueue {
  readonly leaseMs: number;
  private readonly now: () => number;
  private readonly listeners = new Set<() => void>();
  private notifyScheduled = false;
  private readonly lastServed = new Map<string, number>();
  private serviceTick = 0;
  private lockRowReady: Promise<void> | undefined;

  constructor(
    private readonly storage: Storage,
    options: StorageJobQueueOptions = {},
  ) {
    this.leaseMs = options.leaseMs ?? 30_000;
    this.now = options.now ?? Date.now;
    if (!(this.leaseMs > 0)) throw new RangeError('leaseMs must be positive');
  }

  async enqueue(job: Job): Promise<boolean> {
    const created = await this.enqueueIn(this.storage.db, job);
    if (created) this.notify();
    return created;
  }

  /**
   * Writes the job with the caller's transaction (chat-protocol.md §12: the job is written with the
   * run and its first turn). Workers are not woken: call `wake()` after the commit.
   */
  async enqueueIn(db: Kysely<Database>, job: Job): Promise<boolean> {
    const row = toRow(job, enqueueStamp(this.now()));
    if (this.storage.dialect === 'mysql') {
      // No ON CONFLICT on MySQL, and INSERT IGNORE would also hide truncation; a duplicate key only
      // rolls back this statement, not the caller's transaction.
      try {
        await db.insertInto('jobs').values(row).execute();
        return true;
      } catch (error) {
        if (isUniqueViolation(error)) return false;
        throw error;
      }
    }
    const result = await db
      .insertInto('jobs')
      .values(row)
      .onConflict((oc) => oc.column('id').doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  /** Tells workers that jobs may be claimable (after committing an `enqueueIn`). */
  wake(): void {
    this.notify();
  }

  async claim(workerId: string, limits: AdmissionLimits): Promise<ClaimedJob | null> {
    assertId('workerId', workerId, 64);
    if (!(limits.maxRunningPerUser >= 0) || !(limits.capacity >= 0)) throw new RangeError('claim limits must be non-negative numbers');
    await this.ensureLockRow();
    // Most wake-ups (a run finished, nothing waits) find no work: say so without the write lock. A job
    // enqueued just after this read wakes the workers again itself.
    const anyWaiting = await this.storage.db.selectFrom('jobs').select('id').where('state', '=', 'waiting').limit(1).executeTakeFirst();
    if (!anyWaiting) return null;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.claimOnce(workerId, limits);
      } catch (error) {
        if (attempt >= CLAIM_ATTEMPTS || !isTransientConflict(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 5 * attempt + Math.random() * 10));
      }
    }
  }

  async renew(jobId: string, workerId: string): Promise<boolean> {
    const now = this.now();
    const result = await this.storage.db
      .updateTable('jobs')
      .set({ lease_expires_at: iso(now + this.leaseMs) })
      .where('id', '=', jobId)
      .where('worker_id', '=', workerId)
      .where('state', '=', 'claimed')
      .where('lease_expires_at', '>', iso(now))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async complete(jobId: string, workerId: string): Promise<boolean> {
    const result = await this.storage.db
      .deleteFrom('jobs')
      .where('id', '=', jobId)
      .where('worker_id', '=', workerId)
      .where('state', '=', 'claimed')
      .executeTakeFirst();
    const done = Number(result.numDeletedRows) > 0;
    if (done) this.notify();
    return done;
  }

  async release(jobId: string, workerId: string): Promise<boolean> {
    // enqueued_at is kept, so the job returns to the head of its user's line.
    const result = await this.storage.db
      .updateTable('jobs')
      .set({ state: 'waiting', worker_id: null, lease_expires_at: null, claimed_at: null })
      .where('id', '=', jobId)
      .where('worker_id', '=', workerId)
      .where('state', '=', 'claimed')
      .executeTakeFirst();
    const released = Number(result.numUpdatedRows) > 0;
    if (released) this.notify();
    return released;
  }

  async remove(jobId: string): Promise<RemoveOutcome> {
    const result = await this.storage.db.deleteFrom('jobs').where('id', '=', jobId).where('state', '=', 'waiting').executeTakeFirst();
    if (Number(result.numDeletedRows) > 0) return 'removed';
    const row = await this.storage.db.selectFrom('jobs').select('state').where('id', '=', jobId).executeTakeFirst();
    return row ? 'claimed' : 'missing';
  }

  async get(jobId: string): Promise<JobRecord | null> {
    const row = await this.storage.db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirst();
    return row ? toRecord(row) : null;
  }

  async expired(now: number = this.now()): Promise<ClaimedJob[]> {
    let query = this.storage.db.selectFrom('jobs').selectAll().where('state', '=', 'claimed');
    if (Number.isFinite(now)) query = query.where('lease_expires_at', '<=', iso(now));
    const rows = await query.orderBy('lease_expires_at').orderBy('id').execute();
    return rows.map((row) => toRecord(row) as ClaimedJob);
  }

  async waiting(options: { maxRunningPerUser: number; userId?: string; taskId?: string }): Promise<WaitingPosition[]> {
    const db = this.storage.db;
    let userIds: string[] | undefined = options.userId === undefined ? undefined : [options.userId];
    if (options.taskId !== undefined) {
      // A position is a rank among the user's jobs, so a task's position needs its user's whole line.
      const owners = await db.selectFrom('jobs').select('user_id').distinct().where('task_id', '=', options.taskId).where('state', '=', 'waiting').execute();
      const ids = owners.map((o) => o.user_id).filter((id) => userIds === undefined || userIds.includes(id));
      if (ids.length === 0) return [];
      userIds = ids;
    }
    let jobsQuery = db.selectFrom('jobs').select(['id', 'user_id', 'task_id', 'run_id', 'run_seq']).where('state', '=', 'waiting');
    let claimedQuery = db.selectFrom('jobs').select(['user_id', sql<number | string>`count(*)`.as('n')]).where('state', '=', 'claimed');
    if (userIds) {
      jobsQuery = jobsQuery.where('user_id', 'in', userIds);
      claimedQuery = claimedQuery.where('user_id', 'in', userIds);
    }
    const [jobs, claimedRows] = await Promise.all([jobsQuery.orderBy('enqueued_at').orderBy('id').execute(), claimedQuery.groupBy('user_id').execute()]);
    const claimed = new Map(claimedRows.map((r) => [r.user_id, Number(r.n)]));
    const rank = new Map<string, number>();
    const positions: WaitingPosition[] = [];
    for (const job of jobs) {
      const position = (rank.get(job.user_id) ?? 0) + 1;
      rank.set(job.user_id, position);
      if (options.taskId !== undefined && job.task_id !== options.taskId) continue;
      const atCap = (claimed.get(job.user_id) ?? 0) >= options.maxRunningPerUser;
      positions.push({ jobId: job.id, userId: job.user_id, taskId: job.task_id, runId: job.run_id, runSeq: job.run_seq, position, reason: atCap ? 'user_limit' : 'global_limit' });
    }
    return positions;
  }

  onWork(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    // The storage belongs to the caller; only the notifications stop.
    this.listeners.clear();
  }

  /** One claim transaction: lock, count, pick the least recently served admissible user, take its oldest job. */
  private async claimOnce(workerId: string, limits: AdmissionLimits): Promise<ClaimedJob | null> {
    return this.transaction(async (trx) => {
      // Taking this row lock first makes every claim, on every instance, run one after another; on
      // SQLite it also starts the write transaction at once, so busy_timeout applies.
      const locked = await trx.updateTable('counters').set({ value: sql`value + 1` }).where('name', '=', CLAIM_LOCK_ROW).executeTakeFirst();
      if (Number(locked.numUpdatedRows) === 0) throw new Error(`the ${CLAIM_LOCK_ROW} counter row is missing`);
      const users = await trx
        .selectFrom('jobs')
        .select([
          'user_id',
          sql<number | string>`sum(case when state = 'waiting' then 1 else 0 end)`.as('waiting_count'),
          sql<number | string>`sum(case when state = 'claimed' then 1 else 0 end)`.as('claimed_count'),
          sql<number | string>`sum(case when state = 'claimed' and worker_id = ${workerId} then 1 else 0 end)`.as('worker_count'),
          sql<string | null>`min(case when state = 'waiting' then enqueued_at end)`.as('head'),
        ])
        .groupBy('user_id')
        .execute();
      const heldByWorker = users.reduce((sum, u) => sum + Number(u.worker_count), 0);
      if (heldByWorker >= limits.capacity) return null;
      const candidates = users
        .filter((u) => Number(u.waiting_count) > 0 && Number(u.claimed_count) < limits.maxRunningPerUser)
        .map((u) => ({ userId: u.user_id, served: this.lastServed.get(u.user_id) ?? 0, head: u.head ?? '' }))
        .sort((a, b) => a.served - b.served || compare(a.head, b.head) || compare(a.userId, b.userId));
      const now = this.now();
      for (const candidate of candidates) {
        const job = await trx
          .selectFrom('jobs')
          .selectAll()
          .where('state', '=', 'waiting')
          .where('user_id', '=', candidate.userId)
          .orderBy('enqueued_at')
          .orderBy('id')
          .limit(1)
          .executeTakeFirst();
        if (!job) continue;
        const claim = { state: 'claimed' as const, worker_id: workerId, lease_expires_at: iso(now + this.leaseMs), claimed_at: iso(now) };
        const taken = await trx
          .updateTable('jobs')
          .set({ ...claim, attempts: sql`attempts + 1` })
          .where('id', '=', job.id)
          .where('state', '=', 'waiting')
          .executeTakeFirst();
        // Zero rows: removed (cancelled) since we read it; the next user gets the slot.
        if (Number(taken.numUpdatedRows) === 0) continue;
        // Recorded before the commit, while the lock still orders claims, so the next claimer sees it.
        this.markServed(candidate.userId);
        return toRecord({ ...job, ...claim, attempts: job.attempts + 1 }) as ClaimedJob;
      }
      return null;
    });
  }

  private transaction<T>(work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    const builder = this.storage.db.transaction();
    // MySQL's default REPEATABLE READ would read a snapshot older than the claim that held the lock
    // before us; READ COMMITTED reads what it committed (PostgreSQL's default anyway).
    return (this.storage.dialect === 'sqlite' ? builder : builder.setIsolationLevel('read committed')).execute(work);
  }

  /** Creates the lock row once per instance; a concurrent creator elsewhere is fine. */
  private ensureLockRow(): Promise<void> {
    this.lockRowReady ??= (async () => {
      const db = this.storage.db;
      const row = { name: CLAIM_LOCK_ROW, value: 0 };
      if (this.storage.dialect === 'mysql') {
        try {
          await db.insertInto('counters').values(row).execute();
        } catch (error) {
          if (!isUniqueViolation(error)) throw error;
        }
      } else {
        await db
          .insertInto('counters')
          .values(row)
          .onConflict((oc) => oc.column('name').doNothing())
          .execute();
      }
    })().catch((error: unknown) => {
      this.lockRowReady = undefined;
      throw error;
    });
    return this.lockRowReady;
  }

  private markServed(userId: string): void {
    this.lastServed.delete(userId);
    this.lastServed.set(userId, ++this.serviceTick);
    if (this.lastServed.size > SERVED_USERS_REMEMBERED) {
      const oldest = this.lastServed.keys().next().value;
      if (oldest !== undefined) this.lastServed.delete(oldest);
    }
  }

  private notify(): void {
    if (this.notifyScheduled || this.listeners.size === 0) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      for (const listener of [...this.listeners]) {
        try {
          listener();
        } catch (error) {
          console.error('job queue listener failed:', error);
        }
      }
    });
  }
}

let lastEnqueueMicros = 0;

/**
 * An ISO timestamp with microseconds, strictly increasing within this process: jobs enqueued in one
 * millisecond keep their order (FIFO within a user), and every stamp has the same length, so text
 * comparison in SQL orders them by time.
 */
function enqueueStamp(nowMs: number): string {
  lastEnqueueMicros = Math.max(Math.floor(nowMs) * 1000, lastEnqueueMicros + 1);
  const ms = Math.floor(lastEnqueueMicros / 1000);
  const micros = lastEnqueueMicros - ms * 1000;
  return `${new Date(ms).toISOString().slice(0, -1)}${String(micros).padStart(3, '0')}Z`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function toRow(job: Job, enqueuedAt: string): JobsTable {
  assertId('job.id', job.id, 80);
  assertId('job.userId', job.userId, 36);
  assertId('job.taskId', job.taskId, 36);
  assertId('job.runId', job.runId, 36);
  if (!Number.isSafeInteger(job.runSeq) || !Number.isSafeInteger(job.step)) throw new TypeError('job.runSeq and job.step must be integers');
  const payload = JSON.stringify(job.payload);
  if (payload === undefined || !payload.startsWith('{')) throw new TypeError('job.payload must be a JSON object');
  return {
    id: job.id,
    user_id: job.userId,
    task_id: job.taskId,
    run_id: job.runId,
    run_seq: job.runSeq,
    step: job.step,
    payload,
    state: 'waiting',
    worker_id: null,
    lease_expires_at: null,
    attempts: 0,
    enqueued_at: enqueuedAt,
    claimed_at: null,
  };
}

function toRecord(row: Selectable<JobsTable>): JobRecord {
  return {
    id: row.id,
    userId: row.user_id,
    taskId: row.task_id,
    runId: row.run_id,
    runSeq: Number(row.run_seq),
    step: Number(row.step),
    payload: JSON.parse(row.payload) as Record<string, unknown>,
    state: row.state,
    workerId: row.worker_id,
    attempts: Number(row.attempts),
    enqueuedAt: Date.parse(row.enqueued_at),
    claimedAt: row.claimed_at === null ? null : Date.parse(row.claimed_at),
    leaseExpiresAt: row.lease_expires_at === null ? null : Date.parse(row.lease_expires_at),
  };
}

/** Column widths of the jobs table, checked here because SQLite would not enforce them. */
function assertId(name: string, value: unknown, maxLength: number): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) throw new TypeError(`${name} must be a string of 1 to ${maxLength} characters`);
}

/** Deadlocks, serialisation failures, lock timeouts and a busy SQLite file: worth another try. */
function isTransientConflict(error: unknown): boolean {
  const e = error as { code?: unknown; errno?: unknown };
  return ['40P01', '40001', '55P03', 'ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', 'SQLITE_BUSY'].includes(String(e?.code)) || e?.errno === 1213 || e?.errno === 1205;
}
