import { z } from 'zod';
import { ciEnum, HttpUrl, Name, ref, specObject, StringMap, Text } from './fields.js';

export const SHELL_TYPES = ['Chat', 'Code', 'ClaudeCode', 'Dify', 'Agno', 'Codex'] as const;
export const RUNNABLE_SHELL_TYPES = ['Chat', 'Code', 'ClaudeCode', 'Dify'] as const;
export const PROTOCOLS = ['openai', 'openai-compatible', 'anthropic', 'google', 'dify', 'demo'] as const;
export const BUILTIN_TOOLS = ['calculator', 'web_fetch', 'sandbox'] as const;
export const COLLABORATION_MODELS = ['solo', 'pipeline', 'route', 'coordinate', 'collaborate'] as const;
export const CONTEXT_PASSING = ['none', 'original_user', 'previous_bot', 'original_and_previous'] as const;
export const TASK_SOURCES = ['chat', 'api', 'chat-completions', 'cli', 'manifest'] as const;

export const ShellTypeEnum = ciEnum(SHELL_TYPES);
export const ProtocolEnum = ciEnum(PROTOCOLS, { claude: 'anthropic', gemini: 'google' });

/** Sandbox maxima for Shell overrides (sandbox.md §5); the server may lower them through config. */
export const SANDBOX_MAXIMA = { memoryMB: 8192, cpus: 4, pids: 4096, diskMB: 20480, execTimeoutSeconds: 600, idleTimeoutSeconds: 3600 };

export const McpServer = specObject({
  type: ciEnum(['streamable-http', 'sse', 'stdio'] as const).optional(),
  url: HttpUrl.optional(),
  headers: StringMap.optional(),
  command: z.string().min(1).max(4096).optional(),
  args: z.array(z.string()).max(100).optional(),
  env: StringMap.optional(),
  timeoutSeconds: z.number().int().min(1).max(600).optional(),
  tools: specObject({ allow: z.array(z.string()).optional(), deny: z.array(z.string()).optional() }).optional(),
}).superRefine((v, ctx) => {
  if (v.url === undefined && v.command === undefined) {
    ctx.addIssue({ code: 'custom', path: ['url'], message: 'an MCP server needs either url or command', params: { reason: 'FieldValueRequired' } });
  }
});

export const GhostSpec = specObject({
  systemPrompt: z.string().min(1).max(200_000),
  description: Text(2000).optional(),
  tools: z.array(ciEnum(BUILTIN_TOOLS)).optional(),
  skills: z.array(Name).max(50).optional(),
  preload_skills: z.array(Name).max(50).optional(),
  mcpServers: z.record(Name, McpServer).optional(),
  temperature: z.number().min(0).max(2).optional(),
}).superRefine((v, ctx) => {
  const skills = v.skills ?? [];
  skills.forEach((s, i) => {
    if (skills.indexOf(s) !== i) ctx.addIssue({ code: 'custom', path: ['skills', i], message: `skill '${s}' is listed twice`, params: { reason: 'FieldValueDuplicate' } });
  });
  (v.preload_skills ?? []).forEach((s, i) => {
    if (!skills.includes(s)) ctx.addIssue({ code: 'custom', path: ['preload_skills', i], message: `'${s}' is not in skills`, params: { reason: 'FieldValueInvalid' } });
  });
  if (v.mcpServers && Object.keys(v.mcpServers).length > 20) {
    ctx.addIssue({ code: 'custom', path: ['mcpServers'], message: 'at most 20 MCP servers', params: { reason: 'FieldValueTooLong' } });
  }
});

const FORBIDDEN_HEADERS = ['host', 'content-length', 'transfer-encoding', 'connection'];

export const ModelSpec = specObject({
  protocol: ProtocolEnum.optional(),
  modelId: z.string().min(1).max(256).optional(),
  apiFormat: ciEnum(['chat/completions', 'responses'] as const).optional(),
  baseUrl: HttpUrl.optional(),
  apiKey: z.string().max(4096).optional(),
  headers: StringMap.optional(),
  contextWindow: z.number().int().min(1).max(10_000_000).optional(),
  maxOutputTokens: z.number().int().min(1).max(1_000_000).optional(),
  temperature: z.number().min(0).max(2).optional(),
  timeoutSeconds: z.number().int().min(1).max(3600).optional(),
  maxRetries: z.number().int().min(0).max(10).optional(),
  capabilities: specObject({
    tools: z.boolean().optional(),
    vision: z.boolean().optional(),
    reasoning: z.boolean().optional(),
    structuredOutput: z.boolean().optional(),
  }).optional(),
  modelType: ciEnum(['llm', 'embedding', 'rerank', 'tts', 'stt', 'image', 'video'] as const).optional(),
  dify: specObject({
    appMode: ciEnum(['chat', 'agent-chat', 'advanced-chat', 'workflow', 'completion'] as const).optional(),
    inputs: z.record(z.string(), z.unknown()).optional(),
    user: z.string().max(256).optional(),
  }).optional(),
  description: Text(2000).optional(),
  modelConfig: z.record(z.string(), z.unknown()).optional(),
  env: z.record(z.string(), z.unknown()).optional(),
}).superRefine((v, ctx) => {
  const headers = v.headers ?? {};
  if (Object.keys(headers).length > 20) ctx.addIssue({ code: 'custom', path: ['headers'], message: 'at most 20 headers', params: { reason: 'FieldValueTooLong' } });
  for (const h of Object.keys(headers)) {
    if (FORBIDDEN_HEADERS.includes(h.toLowerCase())) ctx.addIssue({ code: 'custom', path: ['headers', h], message: `header '${h}' may not be set`, params: { reason: 'FieldValueForbidden' } });
  }
  if (v.maxOutputTokens !== undefined && v.contextWindow !== undefined && v.maxOutputTokens >= v.contextWindow) {
    ctx.addIssue({ code: 'custom', path: ['maxOutputTokens'], message: 'must be less than contextWindow', params: { reason: 'FieldValueInvalid' } });
  }
});

export const ShellSandbox = specObject({
  network: ciEnum(['none', 'egress'] as const).optional(),
  memoryMB: z.number().int().min(64).max(SANDBOX_MAXIMA.memoryMB).optional(),
  cpus: z.number().positive().max(SANDBOX_MAXIMA.cpus).optional(),
  pids: z.number().int().min(16).max(SANDBOX_MAXIMA.pids).optional(),
  diskMB: z.number().int().min(16).max(SANDBOX_MAXIMA.diskMB).optional(),
  execTimeoutSeconds: z.number().int().min(1).max(SANDBOX_MAXIMA.execTimeoutSeconds).optional(),
  idleTimeoutSeconds: z.number().int().min(1).max(SANDBOX_MAXIMA.idleTimeoutSeconds).optional(),
  publishPorts: z.array(z.number().int().min(1).max(65535)).max(10).optional(),
});

export const ShellSpec = specObject({
  shellType: ShellTypeEnum,
  supportModel: z.array(z.string()).optional(),
  baseImage: z.string().min(1).max(512).optional(),
  baseShellRef: z.string().max(256).optional(),
  requiresWorkspace: z.boolean().optional(),
  engine: ciEnum(['auto', 'builtin', 'claude-cli'] as const).optional(),
  sandbox: ShellSandbox.optional(),
  description: Text(2000).optional(),
});

export const BotSpec = specObject({
  ghostRef: ref('Ghost'),
  shellRef: ref('Shell'),
  modelRef: ref('Model').optional(),
  secondaryModelRef: ref('Model').optional(),
  maxToolRounds: z.number().int().min(1).max(30).optional(),
  description: Text(2000).optional(),
});

export const TeamMember = specObject({
  botRef: ref('Bot'),
  role: Text(64).optional(),
  prompt: Text(20_000).optional(),
  requireConfirmation: z.boolean().optional(),
  contextPassing: ciEnum(CONTEXT_PASSING).optional(),
});

export const TeamSpec = specObject({
  members: z.array(TeamMember).min(1).max(20),
  collaborationModel: ciEnum(COLLABORATION_MODELS).optional(),
  collaborationOptions: specObject({
    maxRounds: z.number().int().min(1).max(10).optional(),
    finalSummary: z.boolean().optional(),
    maxParallel: z.number().int().min(1).max(10).optional(),
    maxSubRequests: z.number().int().min(1).max(20).optional(),
    followUp: ciEnum(['last_stage', 'restart'] as const).optional(),
  }).optional(),
  description: Text(2000).optional(),
  icon: Text(512).optional(),
  requiresWorkspace: z.boolean().optional(),
});

export const SkillSpec = specObject({
  description: z.string().min(1).max(1024),
  displayName: Text(256).optional(),
  prompt: Text(256 * 1024).optional(),
  version: z.preprocess((v) => (typeof v === 'number' ? String(v) : v), z.string().max(64)).optional(),
  author: Text(256).optional(),
  tags: z.array(Text(64)).max(20).optional(),
  bindShells: z.array(ciEnum(SHELL_TYPES)).optional(),
  config: z.record(z.string(), z.unknown()).optional(),
});

const GIT_URL = /^(https?:\/\/|ssh:\/\/|file:\/\/|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)/;
// Git ref-name rules (git check-ref-format): control characters are part of the rule.
// eslint-disable-next-line no-control-regex
const GIT_REF_BAD = /(^[./]|\.\.|[\x00-\x20~^:?*[\\\x7f]|@\{|\/\.|\/$|\.lock$|\.$|\/\/)/;

export const WorkspaceSpec = specObject({
  repository: specObject({
    gitUrl: z.string().min(1).max(2048).regex(GIT_URL, 'must be an https://, http://, ssh:// or git@host:path URL'),
    branchName: z.string().min(1).max(255).refine((s) => !GIT_REF_BAD.test(s), 'not a valid git branch name').optional(),
    gitRepo: z.string().max(512).optional(),
    gitDomain: z.string().max(255).optional(),
    gitRepoId: z.number().int().optional(),
  }),
  credentials: specObject({
    username: z.string().max(256).optional(),
    token: z.string().max(4096).optional(),
    password: z.string().max(4096).optional(),
  }).optional(),
  description: Text(2000).optional(),
});

export const TaskSpec = specObject({
  title: Text(256).optional(),
  prompt: z.string().min(1).max(100_000).optional(),
  teamRef: ref('Team'),
  workspaceRef: ref('Workspace').optional(),
  modelRef: ref('Model').optional(),
  source: ciEnum(TASK_SOURCES).optional(),
});

export type GhostSpec = z.output<typeof GhostSpec>;
export type ModelSpec = z.output<typeof ModelSpec>;
export type ShellSpec = z.output<typeof ShellSpec>;
export type BotSpec = z.output<typeof BotSpec>;
export type TeamSpec = z.output<typeof TeamSpec>;
export type SkillSpec = z.output<typeof SkillSpec>;
export type WorkspaceSpec = z.output<typeof WorkspaceSpec>;
export type TaskSpec = z.output<typeof TaskSpec>;
