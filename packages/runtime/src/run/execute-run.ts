import type { CancelReason } from '@wegent/core';
import { runCollaborate } from '../modes/collaborate.js';
import { runCoordinate } from '../modes/coordinate.js';
import { runPipeline } from '../modes/pipeline.js';
import { runRoute } from '../modes/route.js';
import { runSolo } from '../modes/solo.js';
import type { HostResolver } from '../network/address-policy.js';
import { leaderIndex, memberNames } from '../prompt/member-names.js';
import { cancelReasonOf } from '../turn/member-turn.js';
import { EventSink } from './event-sink.js';
import type { RunContext } from './member-step.js';
import { resolveRuntimeConfig } from './runtime-config.js';
import type { RunHost, RunOutcome, RunRequest } from './types.js';

/** Services a caller may replace (tests inject a DNS resolver). */
export interface RunServices {
  resolver?: HostResolver;
}

/** Execute one step of a run (a whole run, or a pipeline continuation) and report through `host`. */
export async function executeRun(request: RunRequest, host: RunHost, signal: AbortSignal, services: RunServices = {}): Promise<RunOutcome> {
  const sink = new EventSink(host, { taskId: request.taskId, runId: request.runId, runSeq: request.runSeq });
  const ctx: RunContext = {
    request,
    host,
    sink,
    signal,
    config: resolveRuntimeConfig(request.config),
    names: memberNames(request.members),
    resolver: services.resolver,
  };
  let outcome: RunOutcome;
  try {
    await sink.run({ type: 'run.started', mode: request.mode, memberCount: request.members.length });
    const leader = request.leaderIndex ?? leaderIndex(request.members);
    switch (request.mode) {
      case 'solo':
        outcome = await runSolo(ctx, leader);
        break;
      case 'pipeline':
        outcome = await runPipeline(ctx);
        break;
      case 'route':
        outcome = await runRoute(ctx, leader);
        break;
      case 'coordinate':
        outcome = await runCoordinate(ctx, leader);
        break;
      case 'collaborate':
        outcome = await runCollaborate(ctx, leader);
        break;
      default:
        outcome = { status: 'failed', error: { code: 'INTERNAL', message: `unknown collaboration mode '${String(request.mode)}'` } };
        break;
    }
  } catch (err) {
    outcome = { status: 'failed', error: { code: 'INTERNAL', message: `internal error: ${err instanceof Error ? err.message : String(err)}` } };
  }
  try {
    if (outcome.status === 'completed') await sink.run({ type: 'run.done' });
    else if (outcome.status === 'paused') await sink.run({ type: 'run.paused', stage: outcome.pausedAt!.stage, turnId: outcome.pausedAt!.turnId });
    else if (outcome.status === 'cancelled') await sink.run({ type: 'run.cancelled', reason: cancelReasonOf(signal) as CancelReason });
    else if (outcome.status === 'failed') await sink.run({ type: 'run.failed', code: outcome.error!.code, message: outcome.error!.message });
  } catch {
    // The host could not take the event; the outcome still tells the server what happened.
  }
  return outcome;
}
