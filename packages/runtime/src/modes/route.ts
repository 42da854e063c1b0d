import type { Block } from '@wegent/core';
import { routeDecisionText } from '../prompt/mode-prompts.js';
import type { RunContext } from '../run/member-step.js';
import type { RunOutcome } from '../run/types.js';
import { runSolo } from './solo.js';
import { routeSchema, runStructuredTurn, validateRoute, type RouteDecision, type Validation } from './structured.js';
import { memberLineInputs, teamName } from './team.js';

/**
 * `route` (runtime.md §9.3): the leader picks exactly one member through structured output (a `route`
 * turn with a `route` block), then that member answers as in `solo`. An answer still invalid after the
 * repair makes the leader answer, recorded as `fallback: true` with the error as reason.
 */
export async function runRoute(ctx: RunContext, leader: number): Promise<RunOutcome> {
  const members = ctx.request.members;
  if (members.length === 1) return runSolo(ctx, leader);
  const all = members.map((_, i) => i);
  const names = all.map((i) => ctx.names[i]!);
  const chosenIndex = (r: Validation<RouteDecision>) => (r.ok ? names.indexOf(r.value.member) : leader);
  const decision = await runStructuredTurn<RouteDecision>(ctx, {
    purpose: 'route',
    memberIndex: leader,
    decisionText: routeDecisionText(teamName(ctx), memberLineInputs(ctx, all), names),
    schema: routeSchema(names),
    validate: (answer) => validateRoute(answer, names),
    block: (r): Block => {
      const chosen = members[chosenIndex(r)]!;
      return {
        id: 'route-1',
        type: 'route',
        status: 'completed',
        createdAt: ctx.host.now().toISOString(),
        route: {
          chosenMemberIndex: chosenIndex(r),
          chosenBot: { name: chosen.bot.name, namespace: chosen.bot.namespace },
          reason: r.ok ? r.value.reason : r.error,
          fallback: !r.ok,
        },
      };
    },
  });
  if (decision.status === 'failed') return { status: 'failed', error: { code: decision.error.code, message: decision.error.message } };
  if (decision.status === 'cancelled') return { status: 'cancelled' };
  return runSolo(ctx, decision.status === 'decided' ? names.indexOf(decision.value.member) : leader);
}
