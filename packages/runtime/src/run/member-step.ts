import type { Block, TurnPurpose } from '@wegent/core';
import type { ModelMessage } from 'ai';
import { turnError } from '../models/model-errors.js';
import { isChatProtocol } from '../models/providers.js';
import type { HostResolver } from '../network/address-policy.js';
import { historyMessages } from '../prompt/history.js';
import { assembleSystemPrompt } from '../prompt/system-prompt.js';
import { builtinTools } from '../tools/builtin-tools.js';
import { cancelReasonOf, runMemberTurn, type MemberTurnResult } from '../turn/member-turn.js';
import type { EventSink } from './event-sink.js';
import type { ResolvedRuntimeConfig } from './runtime-config.js';
import type { RunHost, RunRequest } from './types.js';

/** What every mode's turns share within one run step. */
export interface RunContext {
  request: RunRequest;
  host: RunHost;
  sink: EventSink;
  signal: AbortSignal;
  config: ResolvedRuntimeConfig;
  /** Member names (runtime.md §4.2), by index. */
  names: string[];
  resolver?: HostResolver;
}

/** One member turn as a mode asks for it. */
export interface MemberStep {
  memberIndex: number;
  purpose: TurnPurpose;
  visible: boolean;
  /** §4.1 item 3. */
  modeNote?: string;
  /** What the mode places after the history; must end with a user message (runtime.md §4.4). */
  tail: ModelMessage[];
  /** Blocks to show on the turn before its first model call (warnings). */
  blocks?: Array<{ type: 'warning'; message: string }>;
}

export interface MemberStepResult {
  turnId: string;
  result: MemberTurnResult;
}

const RUNNABLE_CHAT_SHELLS = new Set(['chat']);

/**
 * Creates a member's turn and runs it: `member.started`, the tool loop, the terminal event, then
 * `member.finished` (runtime.md §9.6). A turn that cannot start gets only its terminal event.
 */
export async function runMemberStep(ctx: RunContext, step: MemberStep): Promise<MemberStepResult> {
  const { request, config } = ctx;
  const member = request.members[step.memberIndex]!;
  const memberName = ctx.names[step.memberIndex]!;
  const model = member.model;
  const attempt = request.attempt ?? 1;
  const resource = (r: { uid: string; generation: number; name: string; namespace: string; scope: string }) => ({
    uid: r.uid,
    generation: r.generation,
    name: r.name,
    namespace: r.namespace,
    scope: r.scope,
  });
  const turnId = await ctx.host.createTurn({
    memberIndex: step.memberIndex,
    memberName,
    memberRole: member.role ?? null,
    purpose: step.purpose,
    visible: step.visible,
    attempt,
    resolved: {
      team: resource(request.team),
      bot: resource(member.bot),
      ghost: resource(member.ghost),
      shell: resource(member.shell),
      model: model ? { ...resource(model.resource), protocol: model.protocol, modelId: model.modelId } : null,
    },
  });
  const reporter = ctx.sink.turn(turnId);
  const finish = async (result: MemberTurnResult): Promise<MemberStepResult> => {
    const status = result.status === 'completed' ? 'COMPLETED' : result.status === 'failed' ? 'FAILED' : 'CANCELLED';
    await reporter.emit({ type: 'member.finished', status });
    return { turnId, result };
  };
  const failBeforeStart = async (error: ReturnType<typeof turnError>): Promise<MemberStepResult> => {
    await reporter.emit({ type: 'turn.failed', code: error.code, message: error.message, retryable: error.retryable, text: '' });
    return finish({ status: 'failed', error, text: '' });
  };

  // Turns that had not started never start (runtime.md §13.1).
  if (ctx.signal.aborted) {
    const reason = cancelReasonOf(ctx.signal);
    await reporter.emit({ type: 'turn.cancelled', reason, text: '' });
    return finish({ status: 'cancelled', reason, text: '' });
  }
  if (!RUNNABLE_CHAT_SHELLS.has(member.shell.shellType.toLowerCase())) {
    return failBeforeStart(turnError('SHELL_NOT_SUPPORTED', `Shell '${member.shell.name}' (namespace ${member.shell.namespace}) has type ${member.shell.shellType}, which this runtime cannot run yet.`));
  }
  if (!model) return failBeforeStart(turnError('RESOLUTION_FAILED', `Bot '${member.bot.name}' (namespace ${member.bot.namespace}) has no Model to use.`));
  if (!isChatProtocol(model.protocol)) {
    return failBeforeStart(
      turnError('MODEL_PROTOCOL_UNSUPPORTED', `Model '${model.resource.name}' (namespace ${model.resource.namespace}) has protocol '${model.protocol}', which cannot back a ${member.shell.shellType} shell.`),
    );
  }

  await reporter.emit({
    type: 'member.started',
    memberIndex: step.memberIndex,
    memberName,
    memberRole: member.role ?? null,
    bot: { name: member.bot.name, namespace: member.bot.namespace },
    purpose: step.purpose,
    visible: step.visible,
    model: { name: model.resource.name, namespace: model.resource.namespace, protocol: model.protocol, modelId: model.modelId },
    attempt,
  });
  let blockCounter = 0;
  for (const block of step.blocks ?? []) {
    const warning: Block = { id: `warning-${++blockCounter}`, type: 'warning', status: 'completed', createdAt: ctx.host.now().toISOString(), message: block.message };
    await reporter.emit({ type: 'block.added', block: warning });
  }

  const system = assembleSystemPrompt({
    ghostSystemPrompt: member.ghost.systemPrompt,
    memberPrompt: member.prompt,
    modeNote: step.modeNote,
    instructions: request.overrides?.instructions,
    now: ctx.host.now(),
  });
  const messages: ModelMessage[] = [...historyMessages(request.history, { botUid: member.bot.uid, memberIndex: step.memberIndex }), ...step.tail];
  const result = await runMemberTurn({
    reporter,
    model,
    system,
    messages,
    tools: builtinTools(member.ghost.tools, config, ctx.resolver),
    botMaxToolRounds: member.bot.maxToolRounds,
    ghostTemperature: member.ghost.temperature,
    overrides: request.overrides ?? {},
    config,
    signal: ctx.signal,
    resolver: ctx.resolver,
  });
  return finish(result);
}
