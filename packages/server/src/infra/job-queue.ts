/**
 * The run-step queue of chat-protocol.md §10 (DESIGN.md §4). Embedded: the `jobs` table
 * (StorageJobQueue); scaled: BullMQ on Redis. Both pass the suite in contract.ts.
 */

/** One run step to execute; `id` is `<runId>-<step>`, which makes enqueueing idempotent. */
export interface Job {
  id: string;
  userId: string;
  taskId: string;
  runId: string;
  runSeq: number;
  step: number;
  /** JSON-serialisable; the worker receives a copy. */
  payload: Record<string, unknown>;
}

/** A job as the queue holds it. Times are milliseconds since the epoch. */
export interface JobRecord extends Job {
  state: 'waiting' | 'claimed';
  workerId: string | null;
  /** How many times the job was claimed (1 for the first run). */
  attempts: number;
  enqueuedAt: number;
  claimedAt: number | null;
  leaseExpiresAt: number | null;
}

/** A job held by a worker under a lease. */
export interface ClaimedJob extends JobRecord {
  state: 'claimed';
  workerId: string;
  claimedAt: number;
  leaseExpiresAt: number;
}

/** Admission limits of one claim (chat-protocol.md §10). */
export interface AdmissionLimits {
  /** Claimed jobs one user may hold across all workers (WEGENT_MAX_RUNNING_PER_USER). */
  maxRunningPerUser: number;
  /** Claimed jobs this worker may hold (WEGENT_WORKER_CONCURRENCY). */
  capacity: number;
}

/** Where a waiting job stands (the `queue` of a PENDING task). */
export interface WaitingPosition {
  jobId: string;
  userId: string;
  taskId: string;
  runId: string;
  runSeq: number;
  /** 1-based rank among the user's waiting jobs, oldest first. */
  position: number;
  /** `user_limit` while the user holds `maxRunningPerUser` claimed jobs, else `global_limit`. */
  reason: 'user_limit' | 'global_limit';
}

/** What `remove` found. */
export type RemoveOutcome = 'removed' | 'claimed' | 'missing';

/**
 * The queue. Admission is atomic: the per-user cap and the worker's capacity are checked in the same
 * step as the claim, so no interleaving of claimers on any number of instances exceeds them. Among
 * users waiting jobs are served round-robin (least recently served user first), FIFO within a user.
 */
export interface JobQueue {
  /** How long a claim or renewal holds a job. */
  readonly leaseMs: number;
  /** Adds a waiting job unless one with its id exists (waiting or claimed); true when added. */
  enqueue(job: Job): Promise<boolean>;
  /** Takes the next admissible job for `workerId` under a fresh lease, or null when none is. */
  claim(workerId: string, limits: AdmissionLimits): Promise<ClaimedJob | null>;
  /**
   * Extends the lease of a job this worker holds; false when the worker no longer holds it or its
   * lease has already lapsed (a lapsed lease is lost: the sweeper may be handing the job on).
   */
  renew(jobId: string, workerId: string): Promise<boolean>;
  /**
   * Drops a job the worker holds, freeing its slot; false when the worker does not hold it. The sweeper
   * also uses it, with the lost worker's id, to drop a step it has failed.
   */
  complete(jobId: string, workerId: string): Promise<boolean>;
  /** Puts a held job back to waiting at its old place (also the sweeper's re-enqueue after lease expiry). */
  release(jobId: string, workerId: string): Promise<boolean>;
  /** Removes a job no worker holds (cancel before start); a claimed job stays and its holder must abort. */
  remove(jobId: string): Promise<RemoveOutcome>;
  /** The job with this id, or null. */
  get(jobId: string): Promise<JobRecord | null>;
  /** Claimed jobs whose lease expired at or before `now` (default: now); `Infinity` lists every claimed job. */
  expired(now?: number): Promise<ClaimedJob[]>;
  /** Positions of waiting jobs, all or those of one user or one task. */
  waiting(options: { maxRunningPerUser: number; userId?: string; taskId?: string }): Promise<WaitingPosition[]>;
  /**
   * Calls `listener` (coalesced, asynchronously) whenever a job may have become claimable: one was
   * enqueued or released, or a slot was freed. Returns the function that stops the calls. Workers
   * should still poll now and then: other processes' changes are not always signalled.
   */
  onWork(listener: () => void): () => void;
  /** Stops notifications and releases connections the queue owns. */
  close(): Promise<void>;
}
