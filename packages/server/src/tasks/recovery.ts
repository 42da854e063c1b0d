import type { AppContext } from '../app.js';
import type { JobQueue } from '../infra/job-queue.js';
import type { EventBus } from '../infra/event-bus.js';
import { BusChannels } from '../infra/event-bus.js';
import type { TaskStatus } from './state-machine.js';
import { taskStore } from './store.js';
import { currentStepOf } from './pipeline-steps.js';

const WORKER_LOST_MESSAGE = 'The server stopped while this answer was being written. The text so far is kept; use Retry to run it again.';

/**
 * Resolves runs a previous process left behind (chat-protocol.md §13), before the server reports
 * ready: nothing is left RUNNING, CANCELLING, or PENDING without a job. Judged per run *step* (a
 * pipeline run continues after each confirmation in a step of its own, job `<runId>-<step>`): only the
 * turns of the run's current step count, so a continuation lost before it showed anything is re-queued
 * as its own step even though earlier stages completed.
 */
export async function recoverRuns(ctx: AppContext, queue: JobQueue, bus: EventBus): Promise<{ requeued: number; failed: number; cancelled: number; jobsRestored: number }> {
  const db = ctx.storage.db;
  const sm = ctx.tasks.stateMachine;
  const counts = { requeued: 0, failed: 0, cancelled: 0, jobsRestored: 0 };
  const publish = (userId: string, taskId: string, name: string, payload: Record<string, unknown>) =>
    bus.publish(BusChannels.taskEvents(taskId), { name, taskId, ...(name === 'task:status' ? { userId } : {}), payload: { taskId, ...payload } });
  // In the embedded home every claimed job belongs to a process that is gone.
  const orphaned = new Map((await queue.expired(Infinity)).map((j) => [j.id, j]));
  const states = await db.selectFrom('task_state').selectAll().where('deleted_at', 'is', null).where('status', 'in', ['PENDING', 'RUNNING', 'CANCELLING']).execute();
  for (const state of states) {
    const runId = state.run_id!;
    const step = await currentStepOf(db, runId);
    const jobId = `${runId}-${step}`;
    const job = orphaned.get(jobId);
    orphaned.delete(jobId);
    const turns = await taskStore.turnsOfRun(db, runId);
    const open = turns.filter((t) => t.status === 'PENDING' || t.status === 'RUNNING');
    // The step's turns: its first (the job's) and every turn created after it. Earlier steps ended
    // before this one was queued, so their turns are settled.
    const firstId = job ? String(job.payload.subtaskId) : open[0]?.id;
    const first = turns.find((t) => t.id === firstId);
    const stepTurns = first ? turns.filter((t) => t.seq >= first.seq) : [];
    const stepJob = { id: jobId, userId: state.owner_id, taskId: state.task_id, runId, runSeq: state.run_seq, step, payload: { subtaskId: first?.id } };
    const now = new Date().toISOString();
    if (state.status === 'PENDING') {
      if (job) await queue.release(job.id, job.workerId);
      else if (first && !(await queue.get(jobId))) {
        await queue.enqueue(stepJob);
        counts.jobsRestored++;
      }
      continue;
    }
    if (state.status === 'CANCELLING') {
      for (const t of open) {
        if (await sm.transitionTurn(db, t.id, 'CANCELLED', { status_reason: 'USER_CANCELLED', error: JSON.stringify({ code: 'USER_CANCELLED', message: 'the run was cancelled' }), completed_at: now })) {
          await publish(state.owner_id, state.task_id, 'chat:cancelled', { subtaskId: t.id, runSeq: t.run_seq, seq: 1, status: 'CANCELLED', reason: 'USER_CANCELLED', offset: t.content.length, partialText: t.content, completedAt: now });
        }
      }
      const moved = await sm.transitionTask(db, { taskId: state.task_id, runSeq: state.run_seq, to: 'CANCELLED', reason: 'USER_CANCELLED' });
      if (moved) await publish(state.owner_id, state.task_id, 'task:status', { runId, runSeq: state.run_seq, status: 'CANCELLED', previousStatus: 'CANCELLING', statusVersion: moved.statusVersion, statusReason: 'USER_CANCELLED', updatedAt: moved.updatedAt });
      if (job) await queue.complete(job.id, job.workerId);
      counts.cancelled++;
      continue;
    }
    // RUNNING: re-queue a step that produced nothing observable on its first attempt; else fail it.
    const stepOpen = stepTurns.filter((t) => t.status === 'PENDING' || t.status === 'RUNNING');
    const observable = stepTurns.some((t) => t.status === 'COMPLETED' || t.content !== '' || t.reasoning !== '' || t.blocks !== '[]');
    const attempt = Math.max(1, ...stepOpen.map((t) => t.attempt));
    if (first && stepOpen.length > 0 && !observable && attempt < 2) {
      for (const t of stepOpen) await sm.transitionTurn(db, t.id, 'PENDING', { attempt: t.attempt + 1 }, ['RUNNING']);
      await db.updateTable('messages').set({ attempt: attempt + 1 }).where('id', 'in', stepOpen.map((t) => t.id)).where('status', '=', 'PENDING').execute();
      const moved = await sm.transitionTask(db, { taskId: state.task_id, runSeq: state.run_seq, to: 'PENDING', reason: 'WORKER_LOST', onlyFrom: ['RUNNING'] });
      await db.updateTable('runs').set({ status: 'PENDING', lease_owner: null }).where('id', '=', runId).execute();
      if (job) await queue.release(job.id, job.workerId);
      else await queue.enqueue(stepJob);
      if (moved) await publish(state.owner_id, state.task_id, 'task:status', { runId, runSeq: state.run_seq, status: 'PENDING', previousStatus: 'RUNNING', statusVersion: moved.statusVersion, statusReason: 'WORKER_LOST', updatedAt: moved.updatedAt });
      counts.requeued++;
      continue;
    }
    // Every open turn of the run is one of this step's (see above): none is left without a worker.
    for (const t of open) {
      if (await sm.transitionTurn(db, t.id, 'FAILED', { status_reason: 'WORKER_LOST', error: JSON.stringify({ code: 'WORKER_LOST', message: WORKER_LOST_MESSAGE }), completed_at: now })) {
        await publish(state.owner_id, state.task_id, 'chat:error', { subtaskId: t.id, runSeq: t.run_seq, seq: 1, status: 'FAILED', code: 'WORKER_LOST', message: WORKER_LOST_MESSAGE, retryable: true, offset: t.content.length, partialText: t.content, completedAt: now });
      }
    }
    const moved = await sm.transitionTask(db, { taskId: state.task_id, runSeq: state.run_seq, to: 'FAILED', reason: 'WORKER_LOST', errorMessage: WORKER_LOST_MESSAGE });
    await db.updateTable('runs').set({ status: 'FAILED', completed_at: now, lease_owner: null }).where('id', '=', runId).execute();
    if (moved) await publish(state.owner_id, state.task_id, 'task:status', { runId, runSeq: state.run_seq, status: 'FAILED', previousStatus: 'RUNNING', statusVersion: moved.statusVersion, statusReason: 'WORKER_LOST', errorMessage: WORKER_LOST_MESSAGE, updatedAt: moved.updatedAt });
    if (job) await queue.complete(job.id, job.workerId);
    counts.failed++;
  }
  // A claimed job no live step needs (its run settled, or moved on, before the job was dropped) would
  // hold its user's running slot for ever: drop it.
  for (const job of orphaned.values()) await queue.complete(job.id, job.workerId);
  return counts;
}

/**
 * The periodic sweep (chat-protocol.md §9.6): a run still CANCELLING after the cancel timeout ends
 * CANCELLED (CANCEL_TIMEOUT); a run PENDING past the queue timeout fails (QUEUE_TIMEOUT).
 */
export async function sweepRuns(ctx: AppContext, queue: JobQueue, bus: EventBus, limits: { cancelTimeoutMs: number; queueTimeoutMs: number }): Promise<void> {
  const db = ctx.storage.db;
  const sm = ctx.tasks.stateMachine;
  const nowMs = Date.now();
  const now = new Date(nowMs).toISOString();
  const stuck = await db
    .selectFrom('task_state')
    .selectAll()
    .where('deleted_at', 'is', null)
    .where((eb) => eb.or([eb.and([eb('status', '=', 'CANCELLING'), eb('updated_at', '<', new Date(nowMs - limits.cancelTimeoutMs).toISOString())]), eb.and([eb('status', '=', 'PENDING'), eb('updated_at', '<', new Date(nowMs - limits.queueTimeoutMs).toISOString())])]))
    .execute();
  for (const state of stuck) {
    const runId = state.run_id!;
    const cancelling = state.status === 'CANCELLING';
    const code = cancelling ? 'CANCEL_TIMEOUT' : 'QUEUE_TIMEOUT';
    const to: TaskStatus = cancelling ? 'CANCELLED' : 'FAILED';
    for (const t of await taskStore.turnsOfRun(db, runId)) {
      if (t.status !== 'PENDING' && t.status !== 'RUNNING') continue;
      const fields = { status_reason: code, error: JSON.stringify({ code, message: cancelling ? 'the run did not stop in time and was cancelled' : 'no capacity became free in time' }), completed_at: now };
      if (await sm.transitionTurn(db, t.id, to === 'CANCELLED' ? 'CANCELLED' : 'FAILED', fields)) {
        const name = cancelling ? 'chat:cancelled' : 'chat:error';
        await bus.publish(BusChannels.taskEvents(state.task_id), { name, taskId: state.task_id, payload: { taskId: state.task_id, subtaskId: t.id, runSeq: t.run_seq, seq: 1, status: to, ...(cancelling ? { reason: code } : { code, message: 'no capacity became free in time', retryable: true }), offset: t.content.length, partialText: t.content, completedAt: now } });
      }
    }
    const moved = await sm.transitionTask(db, { taskId: state.task_id, runSeq: state.run_seq, to, reason: code, errorMessage: cancelling ? undefined : 'no capacity became free in time' });
    await queue.remove(`${runId}-${await currentStepOf(db, runId)}`);
    if (moved) await bus.publish(BusChannels.taskEvents(state.task_id), { name: 'task:status', userId: state.owner_id, taskId: state.task_id, payload: { taskId: state.task_id, runId, runSeq: state.run_seq, status: to, previousStatus: state.status, statusVersion: moved.statusVersion, statusReason: code, updatedAt: moved.updatedAt } });
  }
}
