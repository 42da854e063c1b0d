import { z } from 'zod';
import { Name } from './kinds/fields.js';
import { SandboxState } from './sandboxes.js';

/** Wire types of the chat protocol (chat-protocol.md) shared by server, web app and CLI. */

export const RefInput = z.object({ name: Name, namespace: Name.optional() }).loose();
export const ClientMessageId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, _ or -');
export const TaskId = z.uuid();

export const TASK_STATUS_VALUES = ['PENDING', 'RUNNING', 'CANCELLING', 'PENDING_CONFIRMATION', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export const TaskStatusValue = z.enum(TASK_STATUS_VALUES);
export const TURN_STATUS_VALUES = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export const TurnStatusValue = z.enum(TURN_STATUS_VALUES);

/** `chat:send` (§5.1); also the body of POST /api/v1/tasks/{id}/messages and, with team, POST /api/v1/tasks. */
export const ChatSendPayload = z
  .object({
    clientMessageId: ClientMessageId,
    taskId: TaskId.optional(),
    team: z.string().min(1).max(200).optional(),
    teamRef: RefInput.optional(),
    message: z.string().optional(),
    title: z.string().max(256).optional(),
    workspaceRef: RefInput.optional(),
    modelOverride: RefInput.optional(),
    action: z.literal('pipeline:confirm').optional(),
    /** Where the message comes from (resources.md §17.1): the web app sends `chat`, the CLI `cli`. */
    source: z.enum(['chat', 'cli']).optional(),
  })
  .loose();
export type ChatSendPayload = z.infer<typeof ChatSendPayload>;

export const ChatCancelPayload = z.object({ taskId: TaskId, subtaskId: z.uuid().optional() }).loose();
export const ChatResumePayload = z
  .object({ taskId: TaskId, subtaskId: z.uuid(), offset: z.number().int().min(0), reasoningOffset: z.number().int().min(0).optional() })
  .loose();
export const ChatRetryPayload = z.object({ taskId: TaskId, subtaskId: z.uuid(), modelOverride: RefInput.optional(), clientMessageId: ClientMessageId }).loose();
export const TaskJoinPayload = z.object({ taskId: TaskId, afterSeq: z.number().int().min(0).optional() }).loose();
export const TaskLeavePayload = z.object({ taskId: TaskId }).loose();
export const HistorySyncPayload = z
  .object({
    taskId: TaskId,
    afterSeq: z.number().int().min(0).optional(),
    beforeSeq: z.number().int().min(0).optional(),
    limit: z.number().int().min(1).max(200).optional(),
    includeHidden: z.boolean().optional(),
  })
  .loose();
export const AuthRefreshPayload = z.object({ token: z.string().min(1) }).loose();

export const ACK_ERROR_CODES = [
  'UNAUTHENTICATED',
  'NOT_FOUND',
  'VALIDATION_FAILED',
  'TASK_BUSY',
  'TEAM_DELETED',
  'CONFLICT',
  'RATE_LIMITED',
  'PAYLOAD_TOO_LARGE',
  'UNKNOWN_EVENT',
  'INTERNAL',
] as const;
export const AckErrorCode = z.enum(ACK_ERROR_CODES);
export type AckErrorCode = z.infer<typeof AckErrorCode>;
export const AckError = z.object({ ok: z.literal(false), error: z.object({ code: AckErrorCode, message: z.string(), details: z.record(z.string(), z.unknown()).optional() }) });
export type AckError = z.infer<typeof AckError>;

export const QueueInfo = z.object({ position: z.number().int(), reason: z.enum(['user_limit', 'global_limit', 'sandbox']) });
export type QueueInfo = z.infer<typeof QueueInfo>;

/** The success part of a `chat:send` / `chat:retry` ack. */
export const SendResult = z.object({
  taskId: z.string(),
  runId: z.string(),
  runSeq: z.number().int(),
  messageId: z.string().optional(),
  subtaskId: z.string(),
  status: TaskStatusValue,
  created: z.boolean(),
  duplicate: z.boolean(),
  queue: QueueInfo.optional(),
});
export type SendResult = z.infer<typeof SendResult>;

export const Sender = z.union([
  z.object({ type: z.literal('user'), userId: z.string(), username: z.string() }),
  z.object({ type: z.literal('bot'), bot: z.object({ name: z.string(), namespace: z.string() }), memberIndex: z.number().int(), memberRole: z.string().nullable(), memberName: z.string() }),
  /** An assistant message brought in as history by the OpenAI-compatible API (api.md §8.2, §8.3). */
  z.object({ type: z.literal('imported') }),
]);

/** A stored message; assistant messages are turns (api.md §5.1). */
export const Message = z
  .object({
    id: z.string(),
    taskId: z.string(),
    seq: z.number().int(),
    runId: z.string(),
    runSeq: z.number().int(),
    role: z.enum(['user', 'assistant', 'system']),
    purpose: z.string().nullable(),
    visible: z.boolean(),
    content: z.string(),
    reasoning: z.string(),
    status: TurnStatusValue.nullable(),
    statusReason: z.string().nullable(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    sender: Sender,
    supersededByRunSeq: z.number().int().nullable(),
    blocks: z.array(z.record(z.string(), z.unknown())),
    model: z.record(z.string(), z.unknown()).nullable(),
    usage: z.array(z.record(z.string(), z.unknown())).nullable(),
    clientMessageId: z.string().nullable(),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    completedAt: z.string().nullable(),
    timeToFirstTokenMs: z.number().nullable(),
    durationMs: z.number().nullable(),
  })
  .meta({ id: 'Message' });
export type Message = z.infer<typeof Message>;

/** Cheap run-time state of a task (api.md §5.1). */
export const TaskRuntime = z
  .object({
    taskId: z.string(),
    status: TaskStatusValue,
    runId: z.string().nullable(),
    runSeq: z.number().int(),
    statusVersion: z.number().int(),
    statusUpdatedAt: z.string(),
    activeStreams: z.array(
      z.object({
        subtaskId: z.string(),
        status: TurnStatusValue,
        offset: z.number().int(),
        reasoningOffset: z.number().int(),
        bot: z.object({ name: z.string(), namespace: z.string() }).nullable(),
        memberIndex: z.number().int().nullable(),
        lastActivityAt: z.string().nullable(),
      }),
    ),
    pendingConfirmation: z.record(z.string(), z.unknown()).nullable(),
    queue: QueueInfo.nullable(),
    /** The task's live sandbox, else its latest one (api.md §5.1); null when it never had one. */
    sandbox: z.object({ id: z.string(), state: SandboxState }).nullable(),
  })
  .meta({ id: 'TaskRuntime' });
export type TaskRuntime = z.infer<typeof TaskRuntime>;
