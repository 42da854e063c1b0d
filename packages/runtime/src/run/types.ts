import type { GhostSpec, RuntimeEvent, SandboxSession, ShellSandboxSettings, TurnErrorCode, TurnPurpose } from '@wegent/core';

/** Identity of a resource a turn used, recorded on the turn (runtime.md §2). */
export interface ResolvedResource {
  uid: string;
  generation: number;
  name: string;
  namespace: string;
  /** `user` (the caller's own) or `public`. */
  scope: string;
}

/** The protocols a Model can have (resources.md §11.1). */
export type ModelProtocol = 'openai' | 'openai-compatible' | 'anthropic' | 'google' | 'demo' | 'dify';

/** A resolved Model with its secrets in clear, for this run only (runtime.md §2 step 4). */
export interface ModelConnection {
  resource: ResolvedResource;
  protocol: ModelProtocol;
  /** The provider's model id; empty for `demo`. */
  modelId: string;
  apiFormat?: 'chat/completions' | 'responses';
  baseUrl?: string;
  apiKey?: string;
  headers?: Record<string, string>;
  contextWindow?: number;
  maxOutputTokens?: number;
  temperature?: number;
  timeoutSeconds?: number;
  maxRetries?: number;
  capabilities?: { tools?: boolean; vision?: boolean; reasoning?: boolean; structuredOutput?: boolean };
  /**
   * The Model may reach loopback, private and link-local addresses: true for Models owned by an admin and
   * for public Models (runtime.md §3.5). `WEGENT_MODEL_ALLOW_PRIVATE` is `RuntimeConfig.network.modelAllowPrivate`.
   */
  trustedOwner: boolean;
}

/** What a pipeline stage receives (resources.md §14.1 `contextPassing`). */
export type ContextPassing = 'none' | 'original_user' | 'previous_bot' | 'original_and_previous';

/** A Skill a member may use (runtime.md §8): only name and description are shown until it is loaded. */
export interface ResolvedSkill extends ResolvedResource {
  /** `spec.description`, shown in the system prompt's skills catalogue. */
  description: string;
  /** `spec.prompt`: what `load_skill` returns. */
  body: string;
  /** `sha256:<hex>` of its package, when it has one (`status.fileHash`). */
  packageHash?: string;
}

/** One Team member, resolved by the server (runtime.md §2). */
export interface ResolvedMember {
  /** 0-based position in the Team. */
  index: number;
  /** The member's `role` from the Team, if any. */
  role?: string;
  /** The member's `prompt` from the Team. */
  prompt?: string;
  /** `pipeline` only: pause for confirmation after this member's stage (resources.md §14.1). */
  requireConfirmation?: boolean;
  /** `pipeline` only: what this member's stage receives (runtime.md §9.2); default `none`. */
  contextPassing?: ContextPassing;
  bot: ResolvedResource & { displayName?: string; maxToolRounds?: number };
  ghost: ResolvedResource & {
    systemPrompt: string;
    /** The Ghost's `description`, used in route/coordinate member lines (runtime.md §9.3). */
    description?: string;
    temperature?: number;
    /** The Ghost's `tools` as stored; absent means the default `calculator` and `web_fetch`. */
    tools?: string[];
    /** The Ghost's `skills` that resolved and are bound to the Shell type, in the Ghost's order (runtime.md §8). */
    skills?: ResolvedSkill[];
    /** The Ghost's `preload_skills`, in their order: their bodies go into the system prompt instead. */
    preloadSkills?: string[];
    /** Listed skills that were left out; each becomes a warning block on the turn. */
    skillsLeftOut?: Array<{ name: string; reason: 'notFound' | 'notBound' }>;
    /** The Ghost's `mcpServers` in its order, header and env secrets in clear (runtime.md §7). */
    mcpServers?: GhostSpec['mcpServers'];
  };
  /** `sandbox`: the Shell's `spec.sandbox` overrides; `engine`: a ClaudeCode Shell's engine (resources.md §12.1). */
  shell: ResolvedResource & { shellType: string; sandbox?: ShellSandboxSettings; engine?: 'auto' | 'builtin' | 'claude-cli' };
  /** The Model this member's turns use (resources.md §13.2), or null when none resolved. */
  model: ModelConnection | null;
}

/** A message of the conversation before this run (runtime.md §4.3), selected by the server. */
export type HistoryMessage =
  | { role: 'user'; text: string; /** The stored message's seq (for a compaction's `coversUpToSeq`). */ seq?: number }
  | {
      role: 'assistant';
      text: string;
      /** The stored message's seq (for a compaction's `coversUpToSeq`). */
      seq?: number;
      /** Purpose of the turn; messages of other purposes than the answer-bearing ones are skipped. */
      purpose?: TurnPurpose | null;
      /** The Bot (uid) and member position that produced it; absent for imported history. */
      botUid?: string;
      memberIndex?: number;
      /** The `memberName` recorded on the message. */
      memberName?: string;
      /** Imported history (Responses / chat completions input): no label. */
      imported?: boolean;
    }
  /** The summary of the latest compaction checkpoint; placed first. */
  | { role: 'summary'; text: string; /** The last stored seq the checkpoint summarises (runtime.md §10.4). */ coversUpToSeq?: number };

/** Run-level overrides (runtime.md §1). */
export interface RunOverrides {
  /** Run instructions, already joined by the server (runtime.md §4.1 item 4). */
  instructions?: string;
  temperature?: number;
  topP?: number;
  maxOutputTokens?: number;
}

/** Limits and install settings the server passes in (runtime.md §16); the runtime never reads env. */
export interface RuntimeConfig {
  /** `WEGENT_MAX_TOOL_ROUNDS` (30). */
  maxToolRounds?: number;
  /** `WEGENT_MAX_TOOLS_PER_TURN` (128). */
  maxToolsPerTurn?: number;
  /** `WEGENT_TOOL_OUTPUT_MAX_TOKENS` (15,000). */
  toolOutputMaxTokens?: number;
  /** `WEGENT_DEFAULT_CONTEXT_WINDOW` (128,000). */
  defaultContextWindow?: number;
  /** `WEGENT_COMPACTION_TRIGGER` (0.9) and `WEGENT_COMPACTION_TARGET` (0.7), shares of the budget (runtime.md §10.4). */
  compactionTrigger?: number;
  compactionTarget?: number;
  /** `WEGENT_MODEL_IDLE_TIMEOUT_SECONDS` (120). */
  modelIdleTimeoutSeconds?: number;
  /** `WEGENT_TURN_TIMEOUT_SECONDS` (1,800). */
  turnTimeoutSeconds?: number;
  network?: {
    /** `WEGENT_PRIVATE_HOSTS_ALLOW`: host names, IPs or CIDRs. */
    privateHostsAllow?: string[];
    /** `WEGENT_MODEL_ALLOW_PRIVATE`. */
    modelAllowPrivate?: boolean;
  };
  fetch?: {
    /** `WEGENT_FETCH_ENABLED` (true). */
    enabled?: boolean;
    /** `WEGENT_FETCH_DENY_HOSTS`. */
    denyHosts?: string[];
    /** `WEGENT_FETCH_MAX_BYTES` (2 MiB). */
    maxBytes?: number;
    /** Whole-fetch time limit (15 s). */
    timeoutMs?: number;
  };
  /** Product version for the `web_fetch` User-Agent. */
  version?: string;
}

/** The output of a pipeline stage that ran earlier in this run (runtime.md §9.2). */
export interface PipelineStageOutput {
  stage: number;
  /** Its final text, or the user's edited text when its pause was confirmed with one. */
  output: string;
}

/**
 * Where a pipeline run step starts and what it carries (runtime.md §1, §9.2). Absent: a whole run from
 * stage 0. The server picks `startStage` by what started the run (new message and `followUp`, revision,
 * confirmation, retry).
 */
export interface PipelineInput {
  /** The first stage this step runs (0-based). */
  startStage: number;
  /**
   * Outputs of the run's stages before `startStage`, in stage order (for a retry of stage k: those of
   * the retried run). Empty or absent when the run starts at `startStage` (new message, follow-up, revision).
   */
  earlierStages?: PipelineStageOutput[];
  /**
   * The run's request when it is not this step's user message: a continuation of a revision run keeps the
   * paused run's request (a revision's request is never a revision itself).
   */
  request?: string;
  /** A confirmation's edited text: replaces the output of stage `startStage - 1`. */
  editedText?: string;
  /**
   * A revision run (a message while paused at stage `startStage`): the paused run's request, the output
   * stage `startStage` had there, and the previous output it received (absent for stage 0).
   */
  revision?: { request: string; ownOutput: string; previousOutput?: string };
}

/** The input of this run step. */
export interface RunInput {
  /** The run's user message (for a confirmation step, the run's original request). */
  userMessage: string;
  /** `pipeline` only. */
  pipeline?: PipelineInput;
}

/** Everything one run step needs (runtime.md §1), built by the server. */
export interface RunRequest {
  taskId: string;
  runId: string;
  runSeq: number;
  mode: 'solo' | 'pipeline' | 'route' | 'coordinate' | 'collaborate';
  /** Team `collaborationOptions`, for the modes that use them. */
  modeOptions?: Record<string, unknown>;
  /** Team members in order. */
  members: ResolvedMember[];
  /** Index of the leader in `members` (resources.md §14.1); computed from roles when absent. */
  leaderIndex?: number;
  /** The Team; `displayName` names it in route/coordinate decisions (runtime.md §9.3). */
  team: ResolvedResource & { displayName?: string };
  history: HistoryMessage[];
  input: RunInput;
  overrides?: RunOverrides;
  config?: RuntimeConfig;
  /** Attempt number of the first turn (2 when recovery re-queues it). */
  attempt?: number;
}

/** What the runtime asks the server to record when a turn begins. */
export interface TurnSpec {
  memberIndex: number;
  memberName: string;
  memberRole: string | null;
  purpose: TurnPurpose;
  visible: boolean;
  attempt: number;
  resolved: {
    team: ResolvedResource;
    bot: ResolvedResource;
    ghost: ResolvedResource;
    shell: ResolvedResource;
    model: (ResolvedResource & { protocol: string; modelId: string }) | null;
  };
}

/** Implemented by the server (runtime.md §1); sandbox, skill and compaction hooks come with those features. */
export interface RunHost {
  /** Records a new turn and returns its id (for the run's first answer turn, the id the server already made). */
  createTurn(spec: TurnSpec): string | Promise<string>;
  /** Receives a runtime event (runtime.md §13.2); a returned promise is awaited, which keeps events in order. */
  emit(event: RuntimeEvent): void | Promise<void>;
  /** The clock; prompts show its date, events carry its time. */
  now(): Date;
  /**
   * The files of a skill's package (relative paths and bytes), for copying into a sandboxed turn's
   * `/workspace/.skills/<name>/` (runtime.md §8). Absent: skills load without files.
   */
  loadSkillPackage?(skill: ResolvedSkill): Promise<Array<{ path: string; data: Uint8Array }>>;
  /**
   * The task's sandbox for a turn (sandbox.md §2, §7): the live one, or a new one once a slot is free.
   * Rejects with `SandboxAcquireError` (SANDBOX_UNAVAILABLE, SANDBOX_QUEUE_TIMEOUT). Absent: no sandboxes.
   */
  acquireSandbox?(req: { turnId: string; shell: ShellSandboxSettings | undefined; signal: AbortSignal; model?: ModelConnection }): Promise<SandboxSession>;
  /**
   * Persists a compaction checkpoint (runtime.md §10.4 step 5): the summary of the task's messages up to
   * `coversUpToSeq`, made by turn `turnId`. Absent: checkpoints are not kept.
   */
  saveCompaction?(summary: string, coversUpToSeq: number, turnId: string): void | Promise<void>;
}

/** How a run step ended (runtime.md §1). */
export interface RunOutcome {
  status: 'completed' | 'paused' | 'failed' | 'cancelled';
  pausedAt?: { stage: number; turnId: string };
  error?: { code: TurnErrorCode; message: string };
}
