import type { Block, TurnPurpose } from '@wegent/core';
import type { ModelMessage } from 'ai';
import { turnError } from '../models/model-errors.js';
import { isChatProtocol } from '../models/providers.js';
import type { HostResolver } from '../network/address-policy.js';
import { historyEntries } from '../prompt/history.js';
import { memberSkills } from '../prompt/skills.js';
import { assembleSystemPrompt } from '../prompt/system-prompt.js';
import { builtinTools } from '../tools/builtin-tools.js';
import { installSkillPackage, loadSkillTool, sandboxSkillInstaller } from '../tools/load-skill.js';
import { openTurnMcp } from '../mcp/turn-mcp.js';
import { openTurnSandbox, type TurnSandbox } from '../tools/sandbox-tools.js';
import type { RuntimeTool } from '../tools/tool.js';
import { cancelReasonOf, runMemberTurn, type MemberTurnResult } from '../turn/member-turn.js';
import type { EventSink, TurnReporter } from './event-sink.js';
import type { ResolvedRuntimeConfig } from './runtime-config.js';
import type { ModelConnection, ResolvedMember, RunHost, RunRequest } from './types.js';

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
  /** Whether the history (§4.3) comes before `tail`; default true (pipeline passings and coordinate work turns have none). */
  history?: boolean;
  /** What the mode places after the history; must end with a user message (runtime.md §4.4). */
  tail: ModelMessage[];
  /** Blocks to show on the turn before its first model call (warnings). */
  blocks?: Array<{ type: 'warning'; message: string }>;
  /** Tools the mode offers besides the Ghost's (collaborate: `collaboration_done`). */
  extraTools?: RuntimeTool[];
  /** Lets a mode see and reshape the turn's events before they are reported (collaborate: the [DONE] marker). */
  wrapReporter?: (reporter: TurnReporter) => TurnReporter;
}

export interface MemberStepResult {
  turnId: string;
  result: MemberTurnResult;
}

/** What the turn identity of a member step is (purpose, visibility). */
export interface MemberTurnIdentity {
  memberIndex: number;
  purpose: TurnPurpose;
  visible: boolean;
}

/** A member turn that was recorded and has started (`member.started` emitted). */
export interface StartedMemberTurn {
  turnId: string;
  reporter: TurnReporter;
  member: ResolvedMember;
  model: ModelConnection;
  /** Emits `member.finished` after the terminal event and returns the step result. */
  finish(result: MemberTurnResult): Promise<MemberStepResult>;
  /** The turn's sandbox, when its Shell or Ghost uses one (runtime.md §6.4); released by `finish`. */
  sandbox?: TurnSandbox;
}

const RUNNABLE_CHAT_SHELLS = new Set(['chat', 'code', 'claudecode']);

/**
 * Records a member's turn and starts it: `member.started` once it can run. A turn that cannot start (run
 * cancelled first, shell or Model unusable) gets only its terminal event and `member.finished`, and its
 * result is returned instead.
 */
export async function startMemberTurn(ctx: RunContext, step: MemberTurnIdentity): Promise<{ started: StartedMemberTurn } | { ended: MemberStepResult }> {
  const { request } = ctx;
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
  let turnSandbox: TurnSandbox | undefined = undefined; // set once the turn can start; `finish` may run before
  const finish = async (result: MemberTurnResult): Promise<MemberStepResult> => {
    turnSandbox?.lease.release();
    const status = result.status === 'completed' ? 'COMPLETED' : result.status === 'failed' ? 'FAILED' : 'CANCELLED';
    await reporter.emit({ type: 'member.finished', status });
    return { turnId, result };
  };
  const failBeforeStart = async (error: ReturnType<typeof turnError>) => {
    await reporter.emit({ type: 'turn.failed', code: error.code, message: error.message, retryable: error.retryable, text: '' });
    return { ended: await finish({ status: 'failed', error, text: '' }) };
  };

  // Turns that had not started never start (runtime.md §13.1).
  if (ctx.signal.aborted) {
    const reason = cancelReasonOf(ctx.signal);
    await reporter.emit({ type: 'turn.cancelled', reason, text: '' });
    return { ended: await finish({ status: 'cancelled', reason, text: '' }) };
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

  // A Code turn has its sandbox before it starts (runtime.md §12); a queued wait shows as sandbox:status.
  const opened = await openTurnSandbox(ctx.host, turnId, member, ctx.signal);
  turnSandbox = opened.sandbox;
  if (ctx.signal.aborted) {
    const reason = cancelReasonOf(ctx.signal);
    await reporter.emit({ type: 'turn.cancelled', reason, text: '' });
    return { ended: await finish({ status: 'cancelled', reason, text: '' }) };
  }
  if (opened.error) return failBeforeStart(opened.error);

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
  return { started: { turnId, reporter, member, model, finish, sandbox: turnSandbox } };
}

/**
 * Creates a member's turn and runs it: `member.started`, the tool loop, the terminal event, then
 * `member.finished` (runtime.md §9.6). A turn that cannot start gets only its terminal event.
 */
export async function runMemberStep(ctx: RunContext, step: MemberStep): Promise<MemberStepResult> {
  const { request, config } = ctx;
  const opened = await startMemberTurn(ctx, step);
  if ('ended' in opened) return opened.ended;
  const { member, model, finish } = opened.started;
  const reporter = step.wrapReporter ? step.wrapReporter(opened.started.reporter) : opened.started.reporter;

  let blockCounter = 0;
  const skills = memberSkills(member);
  // In a sandboxed turn, load_skill also copies the skill's files into the sandbox (runtime.md §8).
  const lease = opened.started.sandbox?.lease;
  const loadPackage = ctx.host.loadSkillPackage?.bind(ctx.host);
  const installPackage = lease && loadPackage ? sandboxSkillInstaller(lease, loadPackage) : undefined;
  // Preloaded skills' files are copied as soon as the turn has its sandbox, before its first tool runs.
  const preloadedPackages = (member.ghost.skills ?? []).filter((s) => s.packageHash && member.ghost.preloadSkills?.includes(s.name));
  if (lease && loadPackage && preloadedPackages.length) {
    lease.onAcquired(async (session, signal) => { for (const skill of preloadedPackages) await installSkillPackage(session, skill, loadPackage, signal); });
  }
  const ownTools = [...builtinTools(member.ghost.tools, config, ctx.resolver, lease), ...(skills.loadable.length ? [loadSkillTool({ skills: skills.loadable, ...(installPackage ? { installPackage } : {}) })] : []), ...(step.extraTools ?? [])];
  // The Ghost's MCP servers are connected at turn start; unreachable ones become warnings (runtime.md §7).
  const mcp = await openTurnMcp({ member, config, ownTools, signal: ctx.signal, sandbox: opened.started.sandbox, sandboxesAvailable: ctx.host.acquireSandbox !== undefined, resolver: ctx.resolver });
  for (const block of [...(step.blocks ?? []), ...skills.warnings, ...mcp.warnings]) {
    const warning: Block = { id: `warning-${++blockCounter}`, type: 'warning', status: 'completed', createdAt: ctx.host.now().toISOString(), message: block.message };
    await reporter.emit({ type: 'block.added', block: warning });
  }

  const system = assembleSystemPrompt({
    ghostSystemPrompt: member.ghost.systemPrompt,
    memberPrompt: member.prompt,
    modeNote: step.modeNote,
    instructions: request.overrides?.instructions,
    skillsCatalogue: skills.catalogue,
    preloadedSkills: skills.preloaded,
    sandboxNote: opened.started.sandbox?.note,
    now: ctx.host.now(),
  });
  const history = step.history === false ? [] : historyEntries(request.history, { botUid: member.bot.uid, memberIndex: step.memberIndex });
  const messages: ModelMessage[] = [...history.map((e) => e.message), ...step.tail];
  // Compaction (runtime.md §10.4) summarises the history part and checkpoints it through the host.
  const earlier = { count: history.length, seqs: history.map((e) => e.seq), ...(history[0]?.checkpoint ? { checkpoint: history[0].checkpoint } : {}) };
  const saveCompaction = ctx.host.saveCompaction ? (summary: string, coversUpToSeq: number) => ctx.host.saveCompaction!(summary, coversUpToSeq, opened.started.turnId) : undefined;
  const result = await runMemberTurn({
    reporter,
    model,
    system,
    messages,
    tools: [...ownTools, ...mcp.tools],
    botMaxToolRounds: member.bot.maxToolRounds,
    ghostTemperature: member.ghost.temperature,
    overrides: request.overrides ?? {},
    config,
    signal: ctx.signal,
    resolver: ctx.resolver,
    halt: opened.started.sandbox?.halt,
    earlier,
    userMessage: request.input.userMessage,
    saveCompaction,
    now: () => ctx.host.now(),
  }).finally(() => void mcp.close());
  return finish(result);
}
