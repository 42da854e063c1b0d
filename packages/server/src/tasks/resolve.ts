import type { Ref, ShellSandboxSettings } from '@wegent/core';
import type { HistoryMessage, ModelConnection, ModelProtocol, ResolvedMember, ResolvedResource, RunRequest } from '@wegent/runtime';
import type { AppContext } from '../app.js';
import { PUBLIC_OWNER, type ResourceRecord } from '../resources/store.js';
import { effectiveModel } from '../resources/semantics.js';
import type { Database } from '../storage/schema.js';
import { SkillService } from '../skills/service.js';
import { pipelineInput, type PipelineRunInput } from './pipeline-steps.js';

type Obj = Record<string, unknown>;

/** A run that cannot start: its turn and task fail with this code (runtime.md §2). */
export class ResolutionError extends Error {
  constructor(
    readonly code: 'RESOLUTION_FAILED' | 'SHELL_NOT_SUPPORTED' | 'MODEL_PROTOCOL_UNSUPPORTED',
    message: string,
  ) {
    super(message);
  }
}

const RUNNABLE = ['Chat', 'Code', 'ClaudeCode'];

function identity(r: ResourceRecord): ResolvedResource {
  return { uid: r.uid, generation: r.generation, name: r.name, namespace: r.namespace, scope: r.ownerId === PUBLIC_OWNER ? 'public' : 'user' };
}

/** The first non-empty string among the upstream env forms for a secret (resources.md §11.2). */
function derivedKey(spec: Obj): string | undefined {
  const env: Obj = { ...((spec.env as Obj) ?? {}), ...(((spec.modelConfig as Obj | undefined)?.env as Obj) ?? {}) };
  const cfg = (spec.config as Obj) ?? {};
  for (const v of [spec.apiKey, env.api_key, env.ANTHROPIC_AUTH_TOKEN, env.ANTHROPIC_API_KEY, env.OPENAI_API_KEY, env.GOOGLE_API_KEY, env.GEMINI_API_KEY, env.DIFY_API_KEY, cfg.apiKey]) {
    if (typeof v === 'string' && v) return v;
  }
  return undefined;
}

/**
 * Resolves a task's Team into the plain-data RunRequest the runtime executes (runtime.md §2): members
 * in order with their Bot, Ghost, Shell and Model (run override → Bot → user default → system
 * default), secrets decrypted for this run only, and the conversation so far.
 */
export async function buildRunRequest(ctx: AppContext, task: { id: string; ownerId: string; namespace: string; spec: Obj }, run: { id: string; runSeq: number; input: { message: string; modelOverride?: Ref | null; overrides?: RunRequest['overrides'] } }, attempt: number): Promise<RunRequest> {
  const resources = ctx.resources;
  const teamRef = task.spec.teamRef as Ref;
  const team = await resources.resolveRef(task.ownerId, 'Team', teamRef, task.namespace);
  if (!team) throw new ResolutionError('RESOLUTION_FAILED', `Team '${teamRef.name}' no longer resolves`);
  const owner = team.record.ownerId === PUBLIC_OWNER ? null : team.record.ownerId;
  const user = await ctx.storage.db.selectFrom('users').select(['role', 'default_model']).where('id', '=', task.ownerId).executeTakeFirst();
  const override = run.input.modelOverride ?? (task.spec.modelRef as Ref | undefined);
  const members: ResolvedMember[] = [];
  const memberSpecs = (team.spec.members as Obj[]) ?? [];
  for (let index = 0; index < memberSpecs.length; index++) {
    const m = memberSpecs[index]!;
    const bot = await resources.resolveRef(owner, 'Bot', m.botRef as Ref, team.record.namespace);
    if (!bot) throw new ResolutionError('RESOLUTION_FAILED', `Bot '${(m.botRef as Ref).name}' of member ${index} no longer resolves`);
    const botOwner = bot.record.ownerId === PUBLIC_OWNER ? null : bot.record.ownerId;
    const ghost = await resources.resolveRef(botOwner, 'Ghost', bot.spec.ghostRef as Ref, bot.record.namespace);
    const shell = await resources.resolveRef(botOwner, 'Shell', bot.spec.shellRef as Ref, bot.record.namespace);
    if (!ghost) throw new ResolutionError('RESOLUTION_FAILED', `Ghost '${(bot.spec.ghostRef as Ref).name}' of Bot '${bot.record.name}' no longer resolves`);
    if (!shell) throw new ResolutionError('RESOLUTION_FAILED', `Shell '${(bot.spec.shellRef as Ref).name}' of Bot '${bot.record.name}' no longer resolves`);
    const shellType = String(shell.spec.shellType);
    if (!RUNNABLE.includes(shellType)) throw new ResolutionError('SHELL_NOT_SUPPORTED', `shellType ${shellType} of Shell '${shell.record.name}' cannot run here`);
    // Model precedence (resources.md §13.2): run override, Bot modelRef, user default, system default.
    let model: Awaited<ReturnType<typeof resources.resolveRef>>;
    if (override) model = await resources.resolveRef(task.ownerId, 'Model', override, task.namespace);
    else if (bot.spec.modelRef) model = await resources.resolveRef(botOwner, 'Model', bot.spec.modelRef as Ref, bot.record.namespace);
    else if (user?.default_model) model = await resources.resolveRef(task.ownerId, 'Model', JSON.parse(user.default_model) as Ref, 'default');
    else model = await resources.resolveRef(null, 'Model', await ctx.accounts.getSystemDefaultModel(), 'default');
    if (!model) throw new ResolutionError('RESOLUTION_FAILED', `no Model resolves for Bot '${bot.record.name}'`);
    if ((model.spec.modelType ?? 'llm') !== 'llm') throw new ResolutionError('MODEL_PROTOCOL_UNSUPPORTED', `Model '${model.record.name}' is not an llm Model`);
    const eff = effectiveModel(model.spec);
    if (eff.problems.length) throw new ResolutionError('RESOLUTION_FAILED', `Model '${model.record.name}' is unusable: ${eff.problems.join('; ')}`);
    const protocol = String(eff.effective.protocol) as ModelProtocol;
    if (protocol === 'dify') throw new ResolutionError('MODEL_PROTOCOL_UNSUPPORTED', `Model '${model.record.name}' (dify) cannot back a ${shellType} shell`);
    const ownerIsAdmin = model.record.ownerId !== PUBLIC_OWNER && model.record.ownerId === task.ownerId && user?.role === 'admin';
    const connection: ModelConnection = {
      resource: identity(model.record),
      protocol,
      modelId: String(eff.effective.modelId ?? ''),
      apiFormat: eff.effective.apiFormat as ModelConnection['apiFormat'],
      baseUrl: eff.effective.baseUrl as string | undefined,
      apiKey: derivedKey(model.spec),
      headers: model.spec.headers as Record<string, string> | undefined,
      contextWindow: eff.effective.contextWindow as number | undefined,
      maxOutputTokens: eff.effective.maxOutputTokens as number | undefined,
      temperature: model.spec.temperature as number | undefined,
      timeoutSeconds: model.spec.timeoutSeconds as number | undefined,
      maxRetries: model.spec.maxRetries as number | undefined,
      capabilities: model.spec.capabilities as ModelConnection['capabilities'],
      trustedOwner: model.record.ownerId === PUBLIC_OWNER || ownerIsAdmin,
    };
    members.push({
      index,
      role: typeof m.role === 'string' ? m.role : undefined,
      prompt: typeof m.prompt === 'string' ? m.prompt : undefined,
      ...(m.requireConfirmation === true ? { requireConfirmation: true } : {}),
      ...(typeof m.contextPassing === 'string' ? { contextPassing: m.contextPassing as ResolvedMember['contextPassing'] } : {}),
      bot: { ...identity(bot.record), displayName: bot.record.displayName, maxToolRounds: bot.spec.maxToolRounds as number | undefined },
      ghost: { ...identity(ghost.record), systemPrompt: String(ghost.spec.systemPrompt), ...(typeof ghost.spec.description === 'string' ? { description: ghost.spec.description } : {}), temperature: ghost.spec.temperature as number | undefined, tools: ghost.spec.tools as string[] | undefined, ...(ghost.spec.mcpServers ? { mcpServers: ghost.spec.mcpServers as ResolvedMember['ghost']['mcpServers'] } : {}), ...(await new SkillService(resources).resolveForGhost(ghost.record, ghost.spec, shellType)) },
      shell: { ...identity(shell.record), shellType, ...(shell.spec.sandbox ? { sandbox: shell.spec.sandbox as ShellSandboxSettings } : {}), ...(typeof shell.spec.engine === 'string' ? { engine: shell.spec.engine as 'auto' | 'builtin' | 'claude-cli' } : {}) },
      model: connection,
    });
  }
  return {
    taskId: task.id,
    runId: run.id,
    runSeq: run.runSeq,
    mode: (team.spec.collaborationModel as RunRequest['mode']) ?? 'solo',
    modeOptions: team.spec.collaborationOptions as Obj | undefined,
    members,
    leaderIndex: team.record.status.leaderIndex as number | undefined,
    team: { ...identity(team.record), ...(team.record.displayName ? { displayName: team.record.displayName } : {}) },
    history: await historyBefore(ctx, task.id, run.runSeq),
    input: {
      userMessage: run.input.message,
      // Pipeline steps start where the run stands: after a confirmed stage, at a revised stage, or per followUp (runtime.md §9.2).
      ...(team.spec.collaborationModel === 'pipeline'
        ? { pipeline: await pipelineInput(ctx.storage.db, task.id, { id: run.id, runSeq: run.runSeq, input: run.input as PipelineRunInput }, members.length, (team.spec.collaborationOptions as Obj | undefined)?.followUp) }
        : {}),
    },
    ...(run.input.overrides ? { overrides: run.input.overrides } : {}),
    attempt,
    config: runtimeConfig(ctx),
  };
}

/** Limits and network settings the runtime receives instead of reading the environment. */
export function runtimeConfig(ctx: AppContext): RunRequest['config'] {
  const l = ctx.config.runtimeLimits;
  return {
    version: ctx.version,
    maxToolRounds: l.maxToolRounds,
    toolOutputMaxTokens: l.toolOutputMaxTokens,
    defaultContextWindow: l.defaultContextWindow,
    ...(l.compactionTrigger !== undefined ? { compactionTrigger: l.compactionTrigger } : {}),
    ...(l.compactionTarget !== undefined ? { compactionTarget: l.compactionTarget } : {}),
    modelIdleTimeoutSeconds: l.modelIdleTimeoutSeconds,
    turnTimeoutSeconds: l.turnTimeoutSeconds,
    fetch: l.fetch,
    network: { privateHostsAllow: ctx.config.privateHostsAllow, modelAllowPrivate: ctx.config.modelAllowPrivate },
  };
}

/** Earlier runs' messages, oldest first (runtime.md §4.3): user messages and completed answers of runs not superseded. */
async function historyBefore(ctx: AppContext, taskId: string, runSeq: number): Promise<HistoryMessage[]> {
  const checkpoint = await latestCheckpoint(ctx, taskId, runSeq);
  const rows: Database['messages'][] = await ctx.storage.db
    .selectFrom('messages')
    .selectAll()
    .where('task_id', '=', taskId)
    .where('run_seq', '<', runSeq)
    .where('superseded_by_run_seq', 'is', null)
    .where('visible', '=', 1)
    .$if(checkpoint !== undefined, (q) => q.where('seq', '>', checkpoint!.coversUpToSeq))
    .orderBy('seq')
    .execute();
  // A retry run carries its input itself: the user message of the run it replaces is not history.
  const replaced = new Set((await ctx.storage.db.selectFrom('runs').select('run_seq').where('task_id', '=', taskId).where('superseded_by_run_seq', '=', runSeq).execute()).map((r) => r.run_seq));
  const out: HistoryMessage[] = checkpoint ? [{ role: 'summary', text: checkpoint.summary, coversUpToSeq: checkpoint.coversUpToSeq }] : [];
  for (const r of rows) {
    if (r.role === 'user' && replaced.has(r.run_seq)) continue;
    if (r.role === 'user') out.push({ role: 'user', text: r.content, seq: r.seq });
    else if (r.role === 'assistant' && r.status === 'COMPLETED') {
      const sender = JSON.parse(r.sender) as { type?: string; memberName?: string; bot?: { uid?: string } };
      out.push({ role: 'assistant', text: r.content, seq: r.seq, purpose: r.purpose as never, memberIndex: r.member_index ?? undefined, memberName: sender.memberName, botUid: (JSON.parse(r.resolved ?? '{}') as { bot?: { uid?: string } }).bot?.uid, ...(sender.type === 'imported' ? { imported: true } : {}) });
    }
  }
  return out;
}

/**
 * The latest compaction checkpoint usable by run `runSeq` (runtime.md §10.4 step 5): saved by this run or
 * an earlier one; it covers only messages before the run that made it.
 */
async function latestCheckpoint(ctx: AppContext, taskId: string, runSeq: number): Promise<{ summary: string; coversUpToSeq: number } | undefined> {
  const row = await ctx.storage.db
    .selectFrom('messages')
    .select(['content', 'resolved'])
    .where('task_id', '=', taskId)
    .where('role', '=', 'system')
    .where('purpose', '=', 'compaction')
    .where('run_seq', '<=', runSeq)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  const coversUpToSeq = (JSON.parse(row?.resolved ?? '{}') as { coversUpToSeq?: unknown }).coversUpToSeq;
  return row && typeof coversUpToSeq === 'number' ? { summary: row.content, coversUpToSeq } : undefined;
}
