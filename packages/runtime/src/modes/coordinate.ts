import type { Block } from '@wegent/core';
import { COORDINATE_AGGREGATE_NOTE, COORDINATE_WORK_NOTE, planDecisionText, resultsMessage, subRequestMessage, type SubRequestResult } from '../prompt/mode-prompts.js';
import { runMemberStep, type MemberStepResult, type RunContext } from '../run/member-step.js';
import type { RunOutcome } from '../run/types.js';
import { runSolo } from './solo.js';
import { planSchema, runStructuredTurn, validatePlan, type PlanDecision } from './structured.js';
import { intOption, memberLineInputs, teamName } from './team.js';

/** Team `collaborationOptions` defaults and ranges (resources.md §14.1). */
export const DEFAULT_MAX_PARALLEL = 4;
export const DEFAULT_MAX_SUB_REQUESTS = 8;

/**
 * `coordinate` (runtime.md §9.4): the leader plans sub-requests (structured output, `plan` turn), the
 * members work on them in parallel (at most `maxParallel` at once, `subrequest` turns, no history), and
 * the leader aggregates their results (`aggregate`). An invalid plan after the repair makes the leader
 * answer alone; if every sub-request fails the run fails with ALL_MEMBERS_FAILED.
 */
export async function runCoordinate(ctx: RunContext, leader: number): Promise<RunOutcome> {
  const { request } = ctx;
  const helpers = request.members.map((_, i) => i).filter((i) => i !== leader);
  if (helpers.length === 0) return runSolo(ctx, leader);
  const names = helpers.map((i) => ctx.names[i]!);
  const maxSubRequests = intOption(ctx, 'maxSubRequests', DEFAULT_MAX_SUB_REQUESTS, 1, 20);
  const maxParallel = intOption(ctx, 'maxParallel', DEFAULT_MAX_PARALLEL, 1, 10);
  const indexOf = (name: string) => helpers[names.indexOf(name)]!;

  const plan = await runStructuredTurn<PlanDecision>(ctx, {
    purpose: 'plan',
    memberIndex: leader,
    decisionText: planDecisionText(teamName(ctx), memberLineInputs(ctx, helpers), names, maxSubRequests),
    schema: planSchema(names),
    validate: (answer) => validatePlan(answer, names, maxSubRequests),
    block: (r): Block => ({
      id: 'plan-1',
      type: 'plan',
      status: 'completed',
      createdAt: ctx.host.now().toISOString(),
      plan: r.ok
        ? {
            subRequests: r.value.subRequests.map((s) => {
              const m = request.members[indexOf(s.member)]!;
              return { memberIndex: m.index, bot: { name: m.bot.name, namespace: m.bot.namespace }, request: s.request };
            }),
            fallback: false,
          }
        : { subRequests: [], fallback: true, reason: r.error },
    }),
  });
  if (plan.status === 'failed') return { status: 'failed', error: { code: plan.error.code, message: plan.error.message } };
  if (plan.status === 'cancelled') return { status: 'cancelled' };
  if (plan.status === 'fallback') return runSolo(ctx, leader);

  const subRequests = plan.value.subRequests;
  const steps = await inParallel(subRequests, maxParallel, (s) =>
    runMemberStep(ctx, {
      memberIndex: indexOf(s.member),
      purpose: 'subrequest',
      visible: true,
      modeNote: COORDINATE_WORK_NOTE,
      history: false,
      tail: [{ role: 'user', content: subRequestMessage(request.input.userMessage, s.request) }],
    }),
  );
  if (ctx.signal.aborted) return { status: 'cancelled' };
  if (!steps.some((s) => s.result.status === 'completed')) {
    return { status: 'failed', error: { code: 'ALL_MEMBERS_FAILED', message: `None of the ${steps.length} sub-requests of the plan completed.` } };
  }

  const results: SubRequestResult[] = subRequests.map((s, i) => {
    const r = steps[i]!.result;
    const base = { member: s.member, request: s.request };
    if (r.status === 'completed') return { ...base, text: r.text };
    return { ...base, code: r.status === 'failed' ? r.error.code : r.reason };
  });
  const aggregate = await runMemberStep(ctx, {
    memberIndex: leader,
    purpose: 'aggregate',
    visible: true,
    modeNote: COORDINATE_AGGREGATE_NOTE,
    tail: [
      { role: 'user', content: request.input.userMessage },
      { role: 'user', content: resultsMessage(results) },
    ],
  });
  const r = aggregate.result;
  if (r.status === 'completed') return { status: 'completed' };
  if (r.status === 'cancelled') return { status: 'cancelled' };
  return { status: 'failed', error: { code: r.error.code, message: r.error.message } };
}

/** Runs `work` over `items` with at most `limit` at once, the rest starting as slots free up; results in item order. */
async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<MemberStepResult>): Promise<MemberStepResult[]> {
  const results = new Array<MemberStepResult>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}
