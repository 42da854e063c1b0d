import type { Kysely, Transaction } from 'kysely';
import type { PipelineInput } from '@wegent/runtime';
import type { Database } from '../storage/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

/**
 * What a pipeline run keeps in its stored input (`runs.input`) besides its message: the confirmations
 * given so far (stage and optional edited text), and for a revision run the paused run it revises.
 */
export interface PipelineRunInput {
  message: string;
  confirmations?: Array<{ stage: number; editedText?: string }>;
  /** `runSeq` of the run that was paused when this revision message arrived (chat-protocol.md §5.1). */
  revisionOf?: number;
  /** A retry (chat-protocol.md §5.4): the retried run and the stage of the retried turn. */
  retryOf?: { runSeq: number; stage: number };
}

/**
 * The step a run is at: 0 for its first, +1 per confirmation (its job is `<runId>-<step>`, and the
 * confirmation that starts a step stores it first, chat-protocol.md §5.1).
 */
export async function currentStepOf(db: Db, runId: string): Promise<number> {
  const row = await db.selectFrom('runs').select('input').where('id', '=', runId).executeTakeFirst();
  return row ? ((JSON.parse(row.input) as PipelineRunInput).confirmations?.length ?? 0) : 0;
}

/** `task_state.pending_confirmation` and `task:status.pendingConfirmation` (chat-protocol.md §6.1). */
export interface PendingConfirmation {
  stage: number;
  subtaskId: string;
  memberName: string;
}

/** Outputs of a run's completed pipeline stages (answer turns by member index), edited texts applied. */
async function stageOutputs(db: Db, runId: string, input: PipelineRunInput): Promise<Map<number, string>> {
  const rows = await db
    .selectFrom('messages')
    .select(['member_index', 'content'])
    .where('run_id', '=', runId)
    .where('role', '=', 'assistant')
    .where('purpose', '=', 'answer')
    .where('status', '=', 'COMPLETED')
    .orderBy('seq')
    .execute();
  const outputs = new Map<number, string>();
  for (const r of rows) if (r.member_index !== null) outputs.set(r.member_index, r.content);
  for (const c of input.confirmations ?? []) if (c.editedText !== undefined && outputs.has(c.stage)) outputs.set(c.stage, c.editedText);
  return outputs;
}

async function runBySeq(db: Db, taskId: string, runSeq: number): Promise<{ id: string; input: PipelineRunInput } | undefined> {
  const row = await db.selectFrom('runs').select(['id', 'input']).where('task_id', '=', taskId).where('run_seq', '=', runSeq).executeTakeFirst();
  return row ? { id: row.id, input: JSON.parse(row.input) as PipelineRunInput } : undefined;
}

/** What a revision of the run paused at `pausedRunSeq` re-runs (runtime.md §9.2): the paused stage with its request and outputs. */
async function revisionOf(db: Db, taskId: string, pausedRunSeq: number, depth = 0): Promise<{ stage: number; request: string; ownOutput: string; previousOutput?: string } | undefined> {
  const paused = await runBySeq(db, taskId, pausedRunSeq);
  if (!paused) return undefined;
  const outputs = await stageOutputs(db, paused.id, paused.input);
  if (outputs.size === 0) return undefined;
  const stage = Math.max(...outputs.keys());
  let request = paused.input.message;
  let previousOutput = outputs.get(stage - 1);
  // A revision's request is the paused run's request, never a revision itself.
  if (paused.input.revisionOf !== undefined && depth < 50) {
    const base = await revisionOf(db, taskId, paused.input.revisionOf, depth + 1);
    if (base) {
      request = base.request;
      if (previousOutput === undefined && base.stage === stage) previousOutput = base.previousOutput;
    }
  }
  return { stage, request, ownOutput: outputs.get(stage) ?? '', ...(previousOutput !== undefined ? { previousOutput } : {}) };
}

/** What a run takes over from the run it retries or revises: where it starts, the earlier outputs, the request. */
interface InheritedInput {
  startStage?: number;
  earlier: Map<number, string>;
  request?: string;
  revision?: NonNullable<PipelineInput['revision']>;
}

async function inheritedInput(db: Db, taskId: string, input: PipelineRunInput, depth = 0): Promise<InheritedInput> {
  if (input.retryOf && depth < 50) {
    // A retry of stage k runs k onwards with the input stage k had in the retried run.
    const retried = await runBySeq(db, taskId, input.retryOf.runSeq);
    if (!retried) return { earlier: new Map() };
    const k = input.retryOf.stage;
    const before = await inheritedInput(db, taskId, retried.input, depth + 1);
    const own = await stageOutputs(db, retried.id, retried.input);
    const earlier = new Map([...before.earlier, ...own].filter(([stage]) => stage < k));
    return {
      startStage: k,
      earlier,
      ...(before.request !== undefined ? { request: before.request } : {}),
      ...(before.revision && before.startStage === k ? { revision: before.revision } : {}),
    };
  }
  if (input.revisionOf !== undefined) {
    const base = await revisionOf(db, taskId, input.revisionOf);
    if (base) {
      const revision = { request: base.request, ownOutput: base.ownOutput, ...(base.previousOutput !== undefined ? { previousOutput: base.previousOutput } : {}) };
      return { startStage: base.stage, earlier: new Map(), request: base.request, revision };
    }
  }
  return { earlier: new Map() };
}

const inOrder = (outputs: Map<number, string>) => [...outputs].sort(([a], [b]) => a - b).map(([stage, output]) => ({ stage, output }));

/**
 * Where a pipeline run step starts and what it carries (runtime.md §9.2): a confirmation continues after
 * the run's last completed stage with the outputs so far (edited text in place); a revision re-runs the
 * paused stage; a retry re-runs the retried stage with the input it had; a new message starts at stage 0, or at the last stage once the pipeline has completed in
 * an earlier run and `followUp` is `last_stage` (the default).
 */
export async function pipelineInput(db: Db, taskId: string, run: { id: string; runSeq: number; input: PipelineRunInput }, stageCount: number, followUp: unknown): Promise<PipelineInput> {
  const own = await stageOutputs(db, run.id, run.input);
  const inherited = await inheritedInput(db, taskId, run.input);
  const request = inherited.request !== undefined ? { request: inherited.request } : {};
  if (own.size > 0) {
    // A confirmation: continue after the last completed stage.
    return { startStage: Math.max(...own.keys()) + 1, earlierStages: inOrder(new Map([...inherited.earlier, ...own])), ...request };
  }
  if (inherited.startStage !== undefined) {
    return {
      startStage: inherited.startStage,
      ...(inherited.earlier.size > 0 ? { earlierStages: inOrder(inherited.earlier) } : {}),
      ...request,
      ...(inherited.revision ? { revision: inherited.revision } : {}),
    };
  }
  if (followUp !== 'restart' && stageCount > 1) {
    const completedBefore = await db
      .selectFrom('messages')
      .select('id')
      .where('task_id', '=', taskId)
      .where('run_seq', '<', run.runSeq)
      .where('role', '=', 'assistant')
      .where('purpose', '=', 'answer')
      .where('status', '=', 'COMPLETED')
      .where('member_index', '=', stageCount - 1)
      .where('superseded_by_run_seq', 'is', null)
      .limit(1)
      .executeTakeFirst();
    if (completedBefore) return { startStage: stageCount - 1 };
  }
  return { startStage: 0 };
}

/** The confirmation a paused run waits for: its stage, the stage's turn and member name. */
export async function pendingConfirmationOf(db: Db, pausedAt: { stage: number; turnId: string }): Promise<PendingConfirmation> {
  const turn = await db.selectFrom('messages').select('sender').where('id', '=', pausedAt.turnId).executeTakeFirst();
  const sender = turn ? (JSON.parse(turn.sender) as { memberName?: string }) : {};
  return { stage: pausedAt.stage, subtaskId: pausedAt.turnId, memberName: sender.memberName ?? '' };
}
