import { runMemberStep, type RunContext } from '../run/member-step.js';
import type { RunOutcome } from '../run/types.js';

/** `solo` (runtime.md §9.1): one `answer` turn of the leader with its system prompt, the history and the run's user message. */
export async function runSolo(ctx: RunContext, leader: number, warnings: string[] = []): Promise<RunOutcome> {
  const { result } = await runMemberStep(ctx, {
    memberIndex: leader,
    purpose: 'answer',
    visible: true,
    tail: [{ role: 'user', content: ctx.request.input.userMessage }],
    blocks: warnings.map((message) => ({ type: 'warning' as const, message })),
  });
  if (result.status === 'completed') return { status: 'completed' };
  if (result.status === 'cancelled') return { status: 'cancelled' };
  return { status: 'failed', error: { code: result.error.code, message: result.error.message } };
}
