import type { RuntimeEvent, TurnErrorCode, TurnPurpose } from '@wegent/core';

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

/** One Team member, resolved by the server (runtime.md §2). */
export interface ResolvedMember {
  /** 0-based position in the Team. */
  index: number;
  /** The member's `role` from the Team, if any. */
  role?: string;
  /** The member's `prompt` from the Team. */
  prompt?: string;
  bot: ResolvedResource & { displayName?: string; maxToolRounds?: number };
  ghost: ResolvedResource & {
    systemPrompt: string;
    temperature?: number;
    /** The Ghost's `tools` as stored; absent means the default `calculator` and `web_fetch`. */
    tools?: string[];
  };
  shell: ResolvedResource & { shellType: string };
  /** The Model this member's turns use (resources.md §13.2), or null when none resolved. */
  model: ModelConnection | null;
}

/** A message of the conversation before this run (runtime.md §4.3), selected by the server. */
export type HistoryMessage =
  | { role: 'user'; text: string }
  | {
      role: 'assistant';
      text: string;
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
  | { role: 'summary'; text: string };

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

/** The input of this run step. */
export interface RunInput {
  /** The run's user message. */
  userMessage: string;
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
  team: ResolvedResource;
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
}

/** How a run step ended (runtime.md §1). */
export interface RunOutcome {
  status: 'completed' | 'paused' | 'failed' | 'cancelled';
  pausedAt?: { stage: number; turnId: string };
  error?: { code: TurnErrorCode; message: string };
}
