import { RUNNABLE_SHELL_TYPES, type Cause, type KindName, type Ref } from '@wegent/core';
import type { ResourceRecord } from './store.js';

/** A reference field of a spec, as resources.md §6.3 describes it. */
export interface RefField {
  field: string;
  kind: KindName;
  ref: Ref;
  /** A miss is an error (else a warning). */
  required: boolean;
  /** Blocks deletion of its target (Task refs only while the task is active). */
  protects: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Every reference a spec holds. */
export function referencesOf(kind: KindName, spec: Obj): RefField[] {
  const out: RefField[] = [];
  const add = (field: string, k: KindName, value: unknown, required = true, protects = true) => {
    if (isObj(value) && typeof value.name === 'string') out.push({ field, kind: k, ref: value as Ref, required, protects });
  };
  if (kind === 'Bot') {
    add('spec.ghostRef', 'Ghost', spec.ghostRef);
    add('spec.shellRef', 'Shell', spec.shellRef);
    add('spec.modelRef', 'Model', spec.modelRef);
    add('spec.secondaryModelRef', 'Model', spec.secondaryModelRef);
  } else if (kind === 'Team' && Array.isArray(spec.members)) {
    spec.members.forEach((m, i) => add(`spec.members[${i}].botRef`, 'Bot', isObj(m) ? m.botRef : undefined));
  } else if (kind === 'Ghost' && Array.isArray(spec.skills)) {
    spec.skills.forEach((s, i) => typeof s === 'string' && out.push({ field: `spec.skills[${i}]`, kind: 'Skill', ref: { name: s }, required: false, protects: true }));
  } else if (kind === 'Task') {
    add('spec.teamRef', 'Team', spec.teamRef);
    add('spec.workspaceRef', 'Workspace', spec.workspaceRef);
    add('spec.modelRef', 'Model', spec.modelRef, true, false);
  }
  return out;
}

export const ACTIVE_TASK_STATES = ['PENDING', 'RUNNING', 'CANCELLING', 'PENDING_CONFIRMATION'];

/** The resolved targets of a document's references, by field. */
export type Resolved = Map<string, ResourceRecord | undefined>;

export interface KindCheck {
  causes: Cause[];
  status: Obj;
}

const PROTOCOL_ALIASES: Record<string, string> = { claude: 'anthropic', gemini: 'google', 'openai_compatible': 'openai-compatible' };
const KNOWN_PROTOCOLS = ['openai', 'openai-compatible', 'anthropic', 'google', 'dify', 'demo'];

function normProtocol(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.trim().toLowerCase();
  return PROTOCOL_ALIASES[v] ?? v;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  return undefined;
}

/** The connection a Model resolves to: canonical fields first, then the upstream forms (§11.2). */
export function effectiveModel(spec: Obj): { effective: Obj; problems: string[]; warnings: string[] } {
  const env: Obj = { ...(isObj(spec.env) ? spec.env : {}), ...(isObj(spec.modelConfig) && isObj(spec.modelConfig.env) ? spec.modelConfig.env : {}) };
  const mc = isObj(spec.modelConfig) ? spec.modelConfig : {};
  const cfg = isObj(spec.config) ? spec.config : {};
  const derived: { protocol?: string; modelId?: string; baseUrl?: string; hasKey: boolean } = { hasKey: false };
  if (str(env.model)) derived.protocol = normProtocol(env.model);
  if (str(env.model_id)) derived.modelId = str(env.model_id);
  if (str(env.base_url)) derived.baseUrl = str(env.base_url);
  if (str(env.api_key)) derived.hasKey = true;
  if (str(env.ANTHROPIC_MODEL)) {
    derived.protocol ??= 'anthropic';
    const m = String(env.ANTHROPIC_MODEL);
    derived.modelId ??= m.includes(',') ? m.slice(m.indexOf(',') + 1) : m;
  }
  if (str(env.ANTHROPIC_AUTH_TOKEN) || str(env.ANTHROPIC_API_KEY)) derived.hasKey = true;
  if (str(env.ANTHROPIC_BASE_URL)) derived.baseUrl ??= str(env.ANTHROPIC_BASE_URL);
  if (str(env.OPENAI_MODEL) || str(env.OPENAI_API_KEY) || str(env.OPENAI_BASE_URL)) {
    derived.protocol ??= 'openai';
    derived.modelId ??= str(env.OPENAI_MODEL);
    derived.baseUrl ??= str(env.OPENAI_BASE_URL);
    if (str(env.OPENAI_API_KEY)) derived.hasKey = true;
  }
  if (str(env.GOOGLE_API_KEY) || str(env.GEMINI_API_KEY) || str(env.GEMINI_MODEL)) {
    derived.protocol ??= 'google';
    derived.modelId ??= str(env.GEMINI_MODEL);
    if (str(env.GOOGLE_API_KEY) || str(env.GEMINI_API_KEY)) derived.hasKey = true;
  }
  if (str(env.DIFY_API_KEY) || str(env.DIFY_BASE_URL)) {
    derived.protocol ??= 'dify';
    derived.baseUrl ??= str(env.DIFY_BASE_URL);
    if (str(env.DIFY_API_KEY)) derived.hasKey = true;
  }
  if (str(cfg.provider)) derived.protocol ??= normProtocol(cfg.provider);
  if (str(cfg.modelName)) derived.modelId ??= str(cfg.modelName);
  if (str(cfg.baseUrl)) derived.baseUrl ??= str(cfg.baseUrl);
  if (str(cfg.apiKey)) derived.hasKey = true;

  const warnings: string[] = [];
  const problems: string[] = [];
  const pick = <T>(field: string, canonical: T | undefined, fromUpstream: T | undefined): T | undefined => {
    if (canonical !== undefined && fromUpstream !== undefined && canonical !== fromUpstream) {
      warnings.push(`spec.${field} (${String(canonical)}) differs from the upstream form (${String(fromUpstream)}); using spec.${field}`);
    }
    return canonical ?? fromUpstream;
  };
  const protocol = pick('protocol', str(spec.protocol), derived.protocol);
  const modelId = pick('modelId', str(spec.modelId), derived.modelId);
  let baseUrl = pick('baseUrl', str(spec.baseUrl), derived.baseUrl);
  const effective: Obj = {};
  if (protocol && !KNOWN_PROTOCOLS.includes(protocol)) problems.push(`protocol '${protocol}' from the upstream form is not supported`);
  else if (protocol) effective.protocol = protocol;
  if (modelId) effective.modelId = modelId;
  if (protocol === 'openai' || protocol === 'openai-compatible') effective.apiFormat = str(spec.apiFormat) ?? 'chat/completions';
  if (baseUrl) {
    try {
      const u = new URL(baseUrl);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    } catch {
      problems.push(`base URL '${baseUrl}' is not an http(s) URL`);
      baseUrl = undefined;
    }
  }
  if (baseUrl) effective.baseUrl = baseUrl;
  effective.contextWindow = num(spec.contextWindow) ?? num(mc.context_window) ?? 128_000;
  const maxOut = num(spec.maxOutputTokens) ?? num(mc.max_output_tokens);
  if (maxOut !== undefined) effective.maxOutputTokens = maxOut;
  effective.hasApiKey = Boolean(str(spec.apiKey)) || derived.hasKey;
  if (!effective.protocol && !problems.length) problems.push('no protocol: set spec.protocol');
  if (effective.protocol && !['dify', 'demo'].includes(String(effective.protocol)) && !effective.modelId) problems.push('no model id: set spec.modelId');
  if ((effective.protocol === 'openai-compatible' || effective.protocol === 'dify') && !effective.baseUrl) problems.push(`protocol ${String(effective.protocol)} needs spec.baseUrl`);
  return { effective, problems, warnings };
}

const SHELL_UNSUPPORTED = (t: string) => `shellType ${t} is not supported by this server; use Chat, Code or ClaudeCode`;

function shellRunnable(shell: ResourceRecord | undefined): boolean {
  return !!shell && (RUNNABLE_SHELL_TYPES as readonly string[]).includes(String(shell.spec.shellType));
}

function modelProtocol(model: ResourceRecord): string | undefined {
  return (model.status.effective as Obj | undefined)?.protocol as string | undefined ?? effectiveModel(model.spec).effective.protocol as string | undefined;
}

function scopeOf(r: ResourceRecord): 'user' | 'public' {
  return r.ownerId === '' ? 'public' : 'user';
}

/**
 * Kind-specific write-time checks (422 causes) and the computed status (resources.md §10–§17).
 * `resolved` holds the targets of the document's references.
 */
export function checkKind(kind: KindName, spec: Obj, resolved: Resolved, generation: number, opts: { gitAllowLocal: boolean; now: string; existingStatus?: Obj }): KindCheck {
  const causes: Cause[] = [];
  const warnings: string[] = [];
  const status: Obj = {};
  let unavailable: string | undefined;
  switch (kind) {
    case 'Ghost': {
      (Array.isArray(spec.skills) ? spec.skills : []).forEach((s, i) => {
        if (!resolved.get(`spec.skills[${i}]`)) warnings.push(`skill '${String(s)}' not found; it will be skipped at run time`);
      });
      const servers = isObj(spec.mcpServers) ? spec.mcpServers : {};
      const tools = Array.isArray(spec.tools) ? spec.tools : [];
      for (const [name, s] of Object.entries(servers)) {
        if (isObj(s) && (s.type === 'stdio' || (s.type === undefined && s.command !== undefined)) && !tools.includes('sandbox')) {
          warnings.push(`MCP server '${name}' uses stdio: it runs only for Bots that have a sandbox (a Code or ClaudeCode shell, or the 'sandbox' tool)`);
        }
      }
      break;
    }
    case 'Model': {
      const { effective, problems, warnings: w } = effectiveModel(spec);
      warnings.push(...w);
      status.effective = effective;
      if (problems.length) unavailable = problems.join('; ');
      if (opts.existingStatus?.lastTest) status.lastTest = opts.existingStatus.lastTest;
      break;
    }
    case 'Shell': {
      const t = String(spec.shellType);
      if (!(RUNNABLE_SHELL_TYPES as readonly string[]).includes(t)) unavailable = SHELL_UNSUPPORTED(t);
      status.sandboxRequired = t === 'Code' || t === 'ClaudeCode';
      for (const entry of Array.isArray(spec.supportModel) ? spec.supportModel : []) {
        const p = normProtocol(entry);
        if (!p || !KNOWN_PROTOCOLS.includes(p)) warnings.push(`supportModel entry '${String(entry)}' is not a known protocol; ignored`);
      }
      break;
    }
    case 'Skill':
      status.package = false;
      // The package facts belong to the package upload (skills/service.ts); a write of the spec keeps them.
      for (const k of ['package', 'fileSize', 'fileHash', 'fileCount']) if (opts.existingStatus?.[k] !== undefined) status[k] = opts.existingStatus[k];
      if (spec.bindShells === undefined) warnings.push('bindShells not set; defaulting to Chat, Code, ClaudeCode');
      break;
    case 'Workspace': {
      const repo = isObj(spec.repository) ? spec.repository : {};
      const gitUrl = String(repo.gitUrl ?? '');
      if (gitUrl.startsWith('file://') && !opts.gitAllowLocal) {
        causes.push({ field: 'spec.repository.gitUrl', reason: 'FieldValueNotSupported', message: 'file:// URLs are allowed only when the server sets WEGENT_GIT_ALLOW_LOCAL=true' });
      }
      let gitDomain: string | null = null;
      const scp = /^[^@/]+@([^:]+):/.exec(gitUrl);
      if (scp) gitDomain = scp[1]!;
      else {
        try {
          gitDomain = new URL(gitUrl).hostname || null;
        } catch {
          gitDomain = null;
        }
      }
      status.effective = { gitUrl, branchName: typeof repo.branchName === 'string' ? repo.branchName : null, gitDomain: typeof repo.gitDomain === 'string' ? repo.gitDomain : gitDomain };
      break;
    }
    case 'Bot': {
      const shell = resolved.get('spec.shellRef');
      const model = resolved.get('spec.modelRef');
      const shellType = shell ? String(shell.spec.shellType) : undefined;
      if (shell && !shellRunnable(shell)) unavailable = SHELL_UNSUPPORTED(String(shellType));
      if (model) {
        const modelType = model.spec.modelType ?? 'llm';
        if (modelType !== 'llm') causes.push({ field: 'spec.modelRef', reason: 'FieldValueInvalid', message: `Model '${model.name}' has modelType ${String(modelType)}; a Bot needs an llm Model` });
        const protocol = modelProtocol(model);
        const support = (Array.isArray(shell?.spec.supportModel) ? shell.spec.supportModel : []).map(normProtocol).filter((p): p is string => !!p && KNOWN_PROTOCOLS.includes(p));
        if (protocol && support.length && protocol !== 'demo' && !support.includes(protocol) && !(protocol === 'openai-compatible' && support.includes('openai'))) {
          causes.push({ field: 'spec.modelRef', reason: 'FieldValueInvalid', message: `Shell '${shell!.name}' does not support models of protocol ${protocol} (supportModel: ${support.join(', ')})` });
        }
        if (protocol === 'dify' && shellType && shellType !== 'Dify') causes.push({ field: 'spec.modelRef', reason: 'FieldValueInvalid', message: 'a Model with protocol dify can back only a Dify shell' });
        if (shellType === 'Dify' && protocol && protocol !== 'dify') causes.push({ field: 'spec.modelRef', reason: 'FieldValueInvalid', message: 'a Dify shell needs a Model with protocol dify' });
      } else if (shellType === 'Dify') {
        warnings.push('a Dify bot needs a Model with protocol dify before it can run');
      }
      status.effectiveModel = model ? { name: model.name, namespace: model.namespace, scope: scopeOf(model) } : null;
      break;
    }
    case 'Team': {
      const members = Array.isArray(spec.members) ? (spec.members as Obj[]) : [];
      const mode = String(spec.collaborationModel ?? 'solo');
      const leaders = members.map((m, i) => (typeof m.role === 'string' && m.role.trim().toLowerCase() === 'leader' ? i : -1)).filter((i) => i >= 0);
      const leaderIndex = leaders[0] ?? 0;
      if (leaders.length > 1) warnings.push(`more than one member has role leader; member ${leaderIndex} leads`);
      if (mode === 'solo' && members.length > 1) warnings.push('solo uses only the leader');
      if (['route', 'coordinate', 'collaborate'].includes(mode) && members.length === 1) warnings.push(`a ${mode} team with one member behaves like solo`);
      members.forEach((m, i) => {
        if (mode !== 'pipeline' && (m.requireConfirmation === true || (m.contextPassing !== undefined && m.contextPassing !== 'none'))) {
          warnings.push(`members[${i}]: requireConfirmation and contextPassing apply only to pipeline teams`);
        }
        if (mode === 'pipeline' && i === members.length - 1 && m.requireConfirmation === true && members.length > 0) {
          warnings.push(`members[${i}]: requireConfirmation on the last pipeline member has no effect`);
        }
      });
      const resolvedMembers = members.map((m, i) => {
        const bot = resolved.get(`spec.members[${i}].botRef`);
        if (bot && bot.status.state === 'Unavailable' && !unavailable) unavailable = `member ${i} (Bot '${bot.name}') is unavailable: ${String(bot.status.message ?? '')}`;
        return { index: i, bot: bot ? { name: bot.name, namespace: bot.namespace, scope: scopeOf(bot) } : null, role: m.role ?? null, leader: i === leaderIndex };
      });
      if (mode === 'route' || mode === 'coordinate') {
        const bot = resolved.get(`spec.members[${leaderIndex}].botRef`);
        const shellRef = bot?.spec.shellRef as Ref | undefined;
        // The leader's shell type is recorded on the Bot's status at write time.
        if (bot && (bot.status.shellType === 'Dify' || (shellRef && /^dify$/i.test(shellRef.name) && bot.status.shellType === undefined))) {
          causes.push({ field: `spec.members[${leaderIndex}].botRef`, reason: 'FieldValueInvalid', message: `the leader of a ${mode} team cannot be a Dify bot: it has to produce structured decisions` });
        }
      }
      status.leaderIndex = leaderIndex;
      status.resolvedMembers = resolvedMembers;
      break;
    }
    case 'Task': {
      status.status = (opts.existingStatus?.status as string | undefined) ?? 'PENDING';
      for (const key of ['runSeq', 'runId', 'statusVersion', 'statusReason', 'createdAt', 'startedAt', 'completedAt', 'messageCount', 'usage']) {
        if (opts.existingStatus?.[key] !== undefined) status[key] = opts.existingStatus[key];
      }
      status.statusVersion ??= 1;
      status.messageCount ??= 0;
      status.createdAt ??= opts.now;
      status.updatedAt = opts.now;
      break;
    }
  }
  if (kind === 'Bot') {
    const shell = resolved.get('spec.shellRef');
    if (shell) status.shellType = shell.spec.shellType;
  }
  const result: Obj = kind === 'Task' ? status : { state: unavailable ? 'Unavailable' : 'Available', ...(unavailable ? { message: unavailable } : {}), ...status };
  if (warnings.length) result.warnings = warnings;
  result.observedGeneration = generation;
  return { causes, status: result };
}
