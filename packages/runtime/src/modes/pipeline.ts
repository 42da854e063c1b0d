import type { ModelMessage } from 'ai';
import { earlierStepsMessage, insertedText, originalAndPreviousMessage, pipelineModeNote, revisionSuffix } from '../prompt/mode-prompts.js';
import { runMemberStep, type RunContext } from '../run/member-step.js';
import type { PipelineStageOutput, RunOutcome } from '../run/types.js';

/**
 * `pipeline` (runtime.md §9.2): the members are stages, run in order from the step's start stage. Each
 * stage receives what its member's `contextPassing` says; after a stage whose member has
 * `requireConfirmation` (not the last) the run pauses, and a confirmation continues with the next stage
 * in a new step. A failed or cancelled stage ends the run; later stages do not run.
 */
export async function runPipeline(ctx: RunContext): Promise<RunOutcome> {
  const { request, names } = ctx;
  const stageCount = request.members.length;
  const input = request.input.pipeline;
  const start = Math.min(Math.max(input?.startStage ?? 0, 0), stageCount - 1);
  const revision = input?.revision;
  // The run's request: its user message, or for a revision run the paused run's request.
  const runRequest = revision?.request ?? input?.request ?? request.input.userMessage;

  const outputs = new Map<number, string>();
  for (const e of input?.earlierStages ?? []) if (e.stage < start) outputs.set(e.stage, e.output);
  if (input?.editedText !== undefined && start > 0) outputs.set(start - 1, input.editedText);

  for (let k = start; k < stageCount; k++) {
    const member = request.members[k]!;
    const passing = member.contextPassing ?? 'none';
    const revising = revision !== undefined && k === start;
    const previousOutput = revising ? revision.previousOutput : outputs.get(k - 1);
    const previous = k > 0 && previousOutput !== undefined ? { name: names[k - 1]!, output: previousOutput } : undefined;

    let tail: ModelMessage[];
    if (passing === 'none') {
      tail = [{ role: 'user', content: request.input.userMessage }];
      const earlier: PipelineStageOutput[] = [...outputs].filter(([stage]) => stage < k).sort(([a], [b]) => a - b).map(([stage, output]) => ({ stage, output }));
      if (earlier.length > 0 && !revising) {
        tail.push({ role: 'user', content: earlierStepsMessage(earlier.map((e) => ({ ...e, name: names[e.stage]! })), k, stageCount, names[k]!) });
      }
    } else {
      let text: string;
      if (passing === 'original_user') text = runRequest;
      else if (passing === 'previous_bot') text = previous ? insertedText(previous.output) : runRequest;
      else text = originalAndPreviousMessage(runRequest, previous);
      if (revising) text += revisionSuffix(revision.ownOutput, request.input.userMessage);
      tail = [{ role: 'user', content: text }];
    }

    const step = await runMemberStep(ctx, {
      memberIndex: k,
      purpose: 'answer',
      visible: true,
      modeNote: pipelineModeNote(k, names),
      history: passing === 'none',
      tail,
    });
    const r = step.result;
    if (r.status === 'cancelled') return { status: 'cancelled' };
    if (r.status === 'failed') return { status: 'failed', error: { code: r.error.code, message: r.error.message } };
    outputs.set(k, r.text);
    if (k === stageCount - 1) break;
    if (member.requireConfirmation) return { status: 'paused', pausedAt: { stage: k, turnId: step.turnId } };
  }
  return { status: 'completed' };
}
