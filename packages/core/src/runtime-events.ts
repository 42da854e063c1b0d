import { z } from 'zod';

/**
 * Runtime events (runtime.md §13.2): what `packages/runtime` reports through `RunHost.emit`, plus the
 * Block (chat-protocol.md §6.4) and usage row (runtime.md §14) shapes those events carry.
 */

/** Turn and run error codes (runtime.md §15). */
export const TURN_ERROR_CODES = [
  'RESOLUTION_FAILED',
  'SHELL_NOT_SUPPORTED',
  'MODEL_PROTOCOL_UNSUPPORTED',
  'MODEL_AUTH_FAILED',
  'MODEL_NOT_FOUND',
  'MODEL_BAD_REQUEST',
  'MODEL_RATE_LIMITED',
  'MODEL_UNAVAILABLE',
  'MODEL_UNREACHABLE',
  'MODEL_TIMEOUT',
  'MODEL_STREAM_INTERRUPTED',
  'MODEL_BAD_RESPONSE',
  'MODEL_OUTPUT_TRUNCATED',
  'CONTENT_FILTERED',
  'CONTEXT_TOO_LONG',
  'TURN_TIMEOUT',
  'SANDBOX_UNAVAILABLE',
  'SANDBOX_QUEUE_TIMEOUT',
  'SANDBOX_FAILED',
  'ENGINE_UNAVAILABLE',
  'ENGINE_ERROR',
  'DIFY_ERROR',
  'ALL_MEMBERS_FAILED',
  'WORKER_LOST',
  'QUEUE_TIMEOUT',
  'INTERNAL',
] as const;
export const TurnErrorCode = z.enum(TURN_ERROR_CODES);
export type TurnErrorCode = z.infer<typeof TurnErrorCode>;

/** Whether a client may usefully retry after each code (runtime.md §15). */
export const RETRYABLE_TURN_ERROR_CODES: ReadonlySet<TurnErrorCode> = new Set<TurnErrorCode>([
  'MODEL_RATE_LIMITED',
  'MODEL_UNAVAILABLE',
  'MODEL_UNREACHABLE',
  'MODEL_TIMEOUT',
  'MODEL_STREAM_INTERRUPTED',
  'MODEL_BAD_RESPONSE',
  'MODEL_OUTPUT_TRUNCATED',
  'TURN_TIMEOUT',
  'SANDBOX_UNAVAILABLE',
  'SANDBOX_QUEUE_TIMEOUT',
  'SANDBOX_FAILED',
  'ENGINE_ERROR',
  'DIFY_ERROR',
  'ALL_MEMBERS_FAILED',
  'WORKER_LOST',
  'QUEUE_TIMEOUT',
  'INTERNAL',
]);

/** Why a turn was cancelled (chat-protocol.md §6.2). */
export const CANCEL_REASONS = ['USER_CANCELLED', 'CANCEL_TIMEOUT', 'TASK_DELETED', 'SANDBOX_STOPPED'] as const;
export const CancelReason = z.enum(CANCEL_REASONS);
export type CancelReason = z.infer<typeof CancelReason>;

/** Finish reasons of a completed turn (chat-protocol.md §6.2). */
export const FINISH_REASONS = ['stop', 'length', 'content_filter', 'tool_rounds_exhausted'] as const;
export const FinishReason = z.enum(FINISH_REASONS);
export type FinishReason = z.infer<typeof FinishReason>;

/** Turn purposes (runtime.md §9). */
export const TURN_PURPOSES = ['answer', 'route', 'plan', 'subrequest', 'aggregate', 'contribution', 'summary'] as const;
export const TurnPurpose = z.enum(TURN_PURPOSES);
export type TurnPurpose = z.infer<typeof TurnPurpose>;

export const TOOL_SOURCES = ['builtin', 'mcp', 'sandbox', 'skill'] as const;
export const ToolSource = z.enum(TOOL_SOURCES);
export type ToolSource = z.infer<typeof ToolSource>;

export const BLOCK_STATUSES = ['running', 'completed', 'failed', 'cancelled'] as const;
export const BlockStatus = z.enum(BLOCK_STATUSES);
export type BlockStatus = z.infer<typeof BlockStatus>;

/** How a member turn ended, as reported by `member.finished`. */
export const MEMBER_TURN_STATUSES = ['COMPLETED', 'FAILED', 'CANCELLED'] as const;
export const MemberTurnStatus = z.enum(MEMBER_TURN_STATUSES);
export type MemberTurnStatus = z.infer<typeof MemberTurnStatus>;

const Timestamp = z.string(); // ISO 8601, from RunHost.now()

/** A Bot as named in events and blocks. */
export const BotName = z.object({ name: z.string(), namespace: z.string() });
export type BotName = z.infer<typeof BotName>;

/** The Model a turn used, as shown to clients (`chat:start.model`). */
export const TurnModel = z.object({ name: z.string(), namespace: z.string(), protocol: z.string(), modelId: z.string() });
export type TurnModel = z.infer<typeof TurnModel>;

/** The Model of a usage row (runtime.md §14). */
export const UsageModel = TurnModel.extend({ uid: z.string() });
export type UsageModel = z.infer<typeof UsageModel>;

/** Token usage of one turn with one Model, summed over its calls (runtime.md §14). */
export const UsageRow = z.object({
  turnId: z.string(),
  model: UsageModel,
  inputTokens: z.number().int().min(0),
  outputTokens: z.number().int().min(0),
  reasoningTokens: z.number().int().min(0),
  cachedInputTokens: z.number().int().min(0),
  calls: z.number().int().min(0),
  estimated: z.boolean(),
});
export type UsageRow = z.infer<typeof UsageRow>;

const BlockBase = z.object({
  id: z.string(),
  status: BlockStatus,
  createdAt: Timestamp,
  finishedAt: Timestamp.optional(),
  durationMs: z.number().min(0).optional(),
});

export const ToolCallBlock = BlockBase.extend({
  type: z.literal('tool_call'),
  toolName: z.string(),
  toolSource: ToolSource,
  mcpServer: z.string().optional(),
  toolCallId: z.string(),
  toolInput: z.unknown(),
  toolOutput: z.string().optional(),
  isError: z.boolean().optional(),
});
export const RouteBlock = BlockBase.extend({
  type: z.literal('route'),
  route: z.object({ chosenMemberIndex: z.number().int(), chosenBot: BotName, reason: z.string(), fallback: z.boolean() }),
});
export const PlanBlock = BlockBase.extend({
  type: z.literal('plan'),
  plan: z.object({
    subRequests: z.array(z.object({ memberIndex: z.number().int(), bot: BotName, request: z.string() })),
    fallback: z.boolean(),
    reason: z.string().optional(),
  }),
});
export const CompactionBlock = BlockBase.extend({
  type: z.literal('compaction'),
  compaction: z.object({ beforeTokens: z.number().int(), afterTokens: z.number().int(), summarizedMessages: z.number().int() }),
});
export const WarningBlock = BlockBase.extend({ type: z.literal('warning'), message: z.string() });

/** A block of a turn (chat-protocol.md §6.4). */
export const Block = z.discriminatedUnion('type', [ToolCallBlock, RouteBlock, PlanBlock, CompactionBlock, WarningBlock]);
export type Block = z.infer<typeof Block>;

/** Fields every runtime event carries. */
export const RuntimeEventEnvelope = z.object({
  taskId: z.string(),
  runId: z.string(),
  runSeq: z.number().int(),
  at: Timestamp,
});

const TurnEnvelope = RuntimeEventEnvelope.extend({ turnId: z.string() });

export const RunStartedEvent = RuntimeEventEnvelope.extend({
  type: z.literal('run.started'),
  mode: z.string(),
  memberCount: z.number().int(),
});
export const MemberStartedEvent = TurnEnvelope.extend({
  type: z.literal('member.started'),
  memberIndex: z.number().int(),
  memberName: z.string(),
  memberRole: z.string().nullable(),
  bot: BotName,
  purpose: TurnPurpose,
  visible: z.boolean(),
  model: TurnModel.nullable(),
  engine: z.enum(['builtin', 'claude-cli', 'dify']).optional(),
  attempt: z.number().int().min(1),
});
export const TextDeltaEvent = TurnEnvelope.extend({ type: z.literal('text.delta'), delta: z.string().min(1) });
export const ReasoningDeltaEvent = TurnEnvelope.extend({ type: z.literal('reasoning.delta'), delta: z.string().min(1) });
export const ToolStartedEvent = TurnEnvelope.extend({
  type: z.literal('tool.started'),
  blockId: z.string(),
  toolCallId: z.string(),
  toolName: z.string(),
  toolSource: ToolSource,
  mcpServer: z.string().optional(),
  input: z.unknown(),
});
export const ToolOutputEvent = TurnEnvelope.extend({ type: z.literal('tool.output'), blockId: z.string(), delta: z.string() });
export const ToolFinishedEvent = TurnEnvelope.extend({
  type: z.literal('tool.finished'),
  blockId: z.string(),
  /** The output for display (at most 64 KiB); the model may have received a shorter text (runtime.md §10.1). */
  output: z.string(),
  isError: z.boolean(),
  /** `cancelled` when the run was cancelled while the tool ran. */
  status: z.enum(['completed', 'failed', 'cancelled']),
  durationMs: z.number().min(0),
});
export const BlockAddedEvent = TurnEnvelope.extend({ type: z.literal('block.added'), block: Block });
export const ContextUpdatedEvent = TurnEnvelope.extend({
  type: z.literal('context.updated'),
  usedTokens: z.number().int(),
  budgetTokens: z.number().int(),
  contextWindow: z.number().int(),
  compacted: z.boolean(),
});
/** The usage of one model call, emitted when the call ends (before the turn's terminal event); rows sum them per Model. */
export const UsageEvent = TurnEnvelope.extend({ type: z.literal('usage') }).extend(UsageRow.omit({ turnId: true, calls: true }).shape);
export const TurnDoneEvent = TurnEnvelope.extend({
  type: z.literal('turn.done'),
  text: z.string(),
  reasoning: z.string(),
  finishReason: FinishReason,
});
export const TurnFailedEvent = TurnEnvelope.extend({
  type: z.literal('turn.failed'),
  code: TurnErrorCode,
  message: z.string(),
  retryable: z.boolean(),
  text: z.string(),
});
export const TurnCancelledEvent = TurnEnvelope.extend({ type: z.literal('turn.cancelled'), reason: CancelReason, text: z.string() });
export const MemberFinishedEvent = TurnEnvelope.extend({ type: z.literal('member.finished'), status: MemberTurnStatus });
export const RunPausedEvent = RuntimeEventEnvelope.extend({ type: z.literal('run.paused'), stage: z.number().int(), turnId: z.string() });
export const RunDoneEvent = RuntimeEventEnvelope.extend({ type: z.literal('run.done') });
export const RunFailedEvent = RuntimeEventEnvelope.extend({ type: z.literal('run.failed'), code: TurnErrorCode, message: z.string() });
export const RunCancelledEvent = RuntimeEventEnvelope.extend({ type: z.literal('run.cancelled'), reason: CancelReason });

/** Any runtime event (runtime.md §13.2). */
export const RuntimeEvent = z.discriminatedUnion('type', [
  RunStartedEvent,
  MemberStartedEvent,
  TextDeltaEvent,
  ReasoningDeltaEvent,
  ToolStartedEvent,
  ToolOutputEvent,
  ToolFinishedEvent,
  BlockAddedEvent,
  ContextUpdatedEvent,
  UsageEvent,
  TurnDoneEvent,
  TurnFailedEvent,
  TurnCancelledEvent,
  MemberFinishedEvent,
  RunPausedEvent,
  RunDoneEvent,
  RunFailedEvent,
  RunCancelledEvent,
]);
export type RuntimeEvent = z.infer<typeof RuntimeEvent>;
export type RuntimeEventType = RuntimeEvent['type'];
/** The event of one type, e.g. `RuntimeEventOf<'text.delta'>`. */
export type RuntimeEventOf<T extends RuntimeEventType> = Extract<RuntimeEvent, { type: T }>;

/** The three events that end a turn; a turn emits exactly one of them and nothing after it but `member.finished`. */
export const TURN_TERMINAL_EVENT_TYPES = ['turn.done', 'turn.failed', 'turn.cancelled'] as const;
