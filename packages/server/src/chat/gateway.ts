import { Server, type Namespace, type Socket } from 'socket.io';
import { decodeJwt } from 'jose';
import { z } from 'zod';
import {
  AuthRefreshPayload,
  ChatCancelPayload,
  ChatResumePayload,
  ChatRetryPayload,
  ChatSendPayload,
  HistorySyncPayload,
  TaskJoinPayload,
  TaskLeavePayload,
  type AckErrorCode,
} from '@wegent/core';
import type { AppContext } from '../app.js';
import type { Principal } from '../auth/principal.js';
import { ApiError } from '../errors.js';
import type { Cache } from '../infra/cache.js';
import { BusChannels, type EventBus, type Subscription } from '../infra/event-bus.js';
import { SendError, type ClientEvent } from '../tasks/service.js';
import { taskStore, toMessage } from '../tasks/store.js';
import { seqKey, streamKey, type BusClientEvent } from '../tasks/turn-recorder.js';

type Ack = (answer: Record<string, unknown>) => void;
const MAX_BUFFER_BYTES = 8 * 1024 * 1024;

class AckFailure extends Error {
  constructor(
    readonly code: AckErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** Maps service errors to the ack error codes of chat-protocol.md §4.2. */
function toAckError(err: unknown): { code: AckErrorCode; message: string; details?: Record<string, unknown> } {
  if (err instanceof AckFailure) return { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) };
  if (err instanceof SendError) return { code: err.ackCode, message: err.message, ...(err.details.status ? { details: { status: err.details.status } } : {}) };
  if (err instanceof z.ZodError) return { code: 'VALIDATION_FAILED', message: 'invalid payload', details: { causes: err.issues.map((i) => ({ field: i.path.join('.'), reason: 'FieldValueInvalid', message: i.message })) } };
  if (err instanceof ApiError) {
    if (err.code === 404) return { code: 'NOT_FOUND', message: err.message };
    if (err.code === 422 || err.code === 400) {
      const tooLong = err.details.causes?.some((c) => c.reason === 'FieldValueTooLong' && c.field === 'message');
      return { code: tooLong ? 'PAYLOAD_TOO_LARGE' : 'VALIDATION_FAILED', message: err.message, details: { causes: err.details.causes ?? [] } };
    }
    if (err.code === 429) return { code: 'RATE_LIMITED', message: err.message, details: { retryAfterSeconds: err.details.retryAfterSeconds } };
    if (err.code === 409) return { code: 'CONFLICT', message: err.message };
  }
  return { code: 'INTERNAL', message: 'internal error' };
}

/**
 * The Socket.IO `/chat` namespace (chat-protocol.md): handshake authentication, rooms
 * `user:{id}` / `task:{id}`, every client event with its ack, and the forwarding of run events from
 * the event bus to this instance's own sockets.
 */
export class ChatGateway {
  readonly io: Server;
  readonly nsp: Namespace;
  private busSub?: Subscription;
  private readonly perUser = new Map<string, number>();

  constructor(
    private readonly ctx: AppContext,
    httpServer: import('node:http').Server,
    private readonly bus: EventBus,
    private readonly cache: Cache,
  ) {
    this.io = new Server(httpServer, {
      path: '/socket.io',
      transports: ctx.config.socketTransports,
      maxHttpBufferSize: 1024 * 1024,
      pingInterval: 25_000,
      pingTimeout: 20_000,
      cors: ctx.config.corsOrigins.length ? { origin: ctx.config.corsOrigins, credentials: true } : undefined,
      serveClient: false,
    });
    this.nsp = this.io.of('/chat');
    this.nsp.use((socket, next) => void this.authenticate(socket).then(() => next(), (err: Error) => next(err)));
    this.nsp.on('connection', (socket) => this.onConnection(socket));
  }

  async start(): Promise<void> {
    this.busSub = await this.bus.subscribePattern(BusChannels.allTaskEvents, (m) => this.forward(m as BusClientEvent));
  }

  async close(): Promise<void> {
    await this.busSub?.unsubscribe();
    await new Promise<void>((resolve) => this.io.close(() => resolve()));
  }

  /** Events this instance produced (send, cancel, delete) go to the rooms directly (§14). */
  emit(event: ClientEvent): void {
    const rooms = [event.userId ? `user:${event.userId}` : undefined, event.taskId ? `task:${event.taskId}` : undefined].filter((r): r is string => !!r);
    if (rooms.length) this.nsp.to(rooms).emit(event.name, event.payload);
  }

  /** Worker events from the bus go to this instance's own sockets only (§8.1). */
  private forward(m: BusClientEvent): void {
    const rooms = [m.userId ? `user:${m.userId}` : undefined, `task:${m.taskId}`].filter((r): r is string => !!r);
    this.nsp.local.to(rooms).emit(m.name, m.payload);
  }

  private async authenticate(socket: Socket): Promise<void> {
    const fail = (code: string, message: string) => Object.assign(new Error('unauthorized'), { data: { code, message } });
    const fromAuth = typeof socket.handshake.auth?.token === 'string' ? (socket.handshake.auth.token as string) : undefined;
    const header = socket.handshake.headers.authorization;
    const fromHeader = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : undefined;
    const credential = fromAuth ?? fromHeader;
    if (!credential) {
      if (socket.handshake.query.token !== undefined) throw fail('INVALID_TOKEN', 'a token in the query string is not accepted');
      throw fail('MISSING_TOKEN', 'no credential');
    }
    const principal = await this.ctx.accounts.authenticateCredential(credential).catch(() => null);
    if (!principal) {
      let code = 'INVALID_TOKEN';
      try {
        const claims = decodeJwt(credential);
        if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) code = 'TOKEN_EXPIRED';
        else if (typeof claims.sub === 'string') {
          const user = await this.ctx.storage.db.selectFrom('users').select('is_active').where('id', '=', claims.sub).executeTakeFirst();
          if (user && !user.is_active) code = 'ACCOUNT_DISABLED';
        }
      } catch {
        /* not a JWT */
      }
      throw fail(code, code === 'TOKEN_EXPIRED' ? 'the token has expired' : code === 'ACCOUNT_DISABLED' ? 'this account is disabled' : 'invalid credential');
    }
    const max = this.ctx.config.socketMaxPerUser;
    const count = this.perUser.get(principal.userId) ?? 0;
    if (count >= max) throw fail('TOO_MANY_CONNECTIONS', `at most ${max} connections per user`);
    socket.data.principal = principal;
  }

  private onConnection(socket: Socket): void {
    const principal = socket.data.principal as Principal;
    this.perUser.set(principal.userId, (this.perUser.get(principal.userId) ?? 0) + 1);
    this.ctx.metrics.socketConnections.inc();
    socket.on('disconnect', () => this.ctx.metrics.socketConnections.dec());
    void socket.join(`user:${principal.userId}`);
    // A JWT that reaches its expiry: auth:error, then 30 s to send auth:refresh (§2).
    let expiryTimer: NodeJS.Timeout | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    const watchExpiry = (p: Principal) => {
      clearTimeout(expiryTimer);
      clearTimeout(graceTimer);
      if (p.via !== 'jwt' || !p.exp) return;
      expiryTimer = setTimeout(() => {
        socket.emit('auth:error', { code: 'TOKEN_EXPIRED', message: 'the token has expired; send auth:refresh with a new one within 30 seconds' });
        graceTimer = setTimeout(() => socket.disconnect(true), 30_000);
      }, Math.max(0, p.exp * 1000 - Date.now()));
    };
    watchExpiry(principal);
    socket.data.watchExpiry = watchExpiry;
    socket.on('disconnect', () => {
      clearTimeout(expiryTimer);
      clearTimeout(graceTimer);
    });
    const stopWatching = this.ctx.accounts.onCredentialsChanged((change) => {
      if (change.userId !== principal.userId) return;
      if (change.jti && change.jti !== principal.jti) return;
      if (change.apiKeyId && change.apiKeyId !== principal.apiKeyId) return;
      socket.emit('auth:error', { code: change.code, message: change.code === 'ACCOUNT_DISABLED' ? 'this account is disabled' : 'the credential was revoked' });
      socket.disconnect(true);
    });
    socket.on('disconnect', () => {
      stopWatching();
      const n = (this.perUser.get(principal.userId) ?? 1) - 1;
      if (n <= 0) this.perUser.delete(principal.userId);
      else this.perUser.set(principal.userId, n);
    });
    // A consumer too slow to drain its buffer reconnects and resumes instead of growing memory (§1).
    const conn = socket.conn as unknown as { transport?: { socket?: { bufferedAmount?: number } } };
    const watchdog = setInterval(() => {
      if ((conn.transport?.socket?.bufferedAmount ?? 0) > MAX_BUFFER_BYTES) socket.disconnect(true);
    }, 1000);
    watchdog.unref();
    socket.on('disconnect', () => clearInterval(watchdog));

    const handlers: Record<string, (payload: unknown) => Promise<Record<string, unknown>>> = {
      'chat:send': (p) => this.onSend(socket, principal, p),
      'chat:cancel': async (p) => {
        const body = ChatCancelPayload.parse(p);
        return this.ctx.tasks.cancel(principal.userId, body.taskId, { subtaskId: body.subtaskId });
      },
      'chat:resume': (p) => this.onResume(socket, principal, p),
      'chat:retry': async (p) => {
        const body = ChatRetryPayload.parse(p);
        const result = await this.ctx.tasks.retry({ userId: principal.userId, isAdmin: principal.role === 'admin', username: principal.username }, { taskId: body.taskId, subtaskId: body.subtaskId, modelOverride: body.modelOverride, clientMessageId: body.clientMessageId });
        await socket.join(`task:${body.taskId}`);
        return result;
      },
      'task:join': (p) => this.onJoin(socket, principal, p),
      'task:leave': async (p) => {
        const body = TaskLeavePayload.parse(p);
        await socket.leave(`task:${body.taskId}`);
        return {};
      },
      'history:sync': async (p) => {
        const body = HistorySyncPayload.parse(p);
        if (body.afterSeq !== undefined && body.beforeSeq !== undefined) throw new AckFailure('VALIDATION_FAILED', 'give at most one of afterSeq and beforeSeq');
        const page = await this.ctx.tasks.messages(principal.userId, body.taskId, { afterSeq: body.afterSeq, beforeSeq: body.beforeSeq, limit: body.limit ?? 50, includeHidden: body.includeHidden ?? false });
        return { messages: page.items, hasMoreBefore: page.hasMoreBefore, hasMoreAfter: page.hasMoreAfter };
      },
      'auth:refresh': async (p) => {
        const body = AuthRefreshPayload.parse(p);
        const next = await this.ctx.accounts.authenticateCredential(body.token).catch(() => null);
        if (!next || next.userId !== principal.userId) throw new AckFailure('UNAUTHENTICATED', 'invalid token');
        socket.data.principal = next;
        (socket.data.watchExpiry as (p: Principal) => void)(next);
        return { expiresAt: next.exp ? new Date(next.exp * 1000).toISOString() : null };
      },
    };

    socket.onAny((event: string, ...args: unknown[]) => {
      const ack = typeof args[args.length - 1] === 'function' ? (args[args.length - 1] as Ack) : undefined;
      const handler = handlers[event];
      if (!handler) {
        ack?.({ ok: false, error: { code: 'UNKNOWN_EVENT', message: `unknown event '${event}'` } });
        return;
      }
      const payload = args.length > (ack ? 1 : 0) ? args[0] : undefined;
      void (async () => {
        try {
          const check = await this.ctx.accounts.recheckPrincipal(socket.data.principal as Principal);
          if (check !== 'ok' && event !== 'auth:refresh') throw new AckFailure('UNAUTHENTICATED', 'the credential is no longer valid');
          const result = await handler(payload ?? {});
          ack?.({ ok: true, ...result });
        } catch (err) {
          const error = toAckError(err);
          if (error.code === 'INTERNAL') this.ctx.log.error({ err, event }, 'socket event failed');
          ack?.({ ok: false, error });
        }
      })();
    });
  }

  private async onSend(socket: Socket, principal: Principal, raw: unknown): Promise<Record<string, unknown>> {
    const payload = ChatSendPayload.parse(raw);
    const result = await this.ctx.tasks.send({ userId: principal.userId, isAdmin: principal.role === 'admin', username: principal.username }, payload, {
      source: payload.source ?? 'chat',
      // Join before commit so that no event of the run can precede the sender's membership (§5.1 step 4).
      beforeCommit: (taskId) => void socket.join(`task:${taskId}`),
    });
    await socket.join(`task:${result.taskId}`);
    return result;
  }

  private async onJoin(socket: Socket, principal: Principal, raw: unknown): Promise<Record<string, unknown>> {
    const body = TaskJoinPayload.parse(raw);
    await this.ctx.tasks.ownedState(principal.userId, body.taskId);
    await socket.join(`task:${body.taskId}`);
    const task = await this.ctx.tasks.taskDocument(principal.userId, body.taskId);
    const runtime = await this.ctx.tasks.runtime(principal.userId, body.taskId, this.ctx.tasks.streamCursor);
    const answer: Record<string, unknown> = { task, runtime };
    if (body.afterSeq !== undefined) {
      const page = await this.ctx.tasks.messages(principal.userId, body.taskId, { afterSeq: body.afterSeq, limit: 200, includeHidden: false });
      answer.messages = page.items;
      answer.messagesTruncated = page.hasMoreAfter;
    }
    return answer;
  }

  /** `chat:resume` (§5.3): join first, then read — the order that makes resume exact. */
  private async onResume(socket: Socket, principal: Principal, raw: unknown): Promise<Record<string, unknown>> {
    const body = ChatResumePayload.parse(raw);
    await this.ctx.tasks.ownedState(principal.userId, body.taskId);
    const first = await taskStore.message(this.ctx.storage.db, body.subtaskId);
    if (!first || first.task_id !== body.taskId || first.role !== 'assistant') throw new AckFailure('NOT_FOUND', 'turn not found');
    await socket.join(`task:${body.taskId}`);
    const turn = (await taskStore.message(this.ctx.storage.db, body.subtaskId))!;
    const ended = turn.status === 'COMPLETED' || turn.status === 'FAILED' || turn.status === 'CANCELLED';
    const seq = (await this.cache.get<number>(seqKey(turn.id))) ?? 0;
    const read = async (kind: 'text' | 'reasoning', offset: number, stored: string) => {
      const live = ended ? null : await this.cache.getRange(streamKey(turn.id, kind), 0);
      const full = live ? live.text : stored;
      if (offset > full.length) return { reset: true, offset: 0, text: full, cursor: full.length };
      return { reset: false, offset, text: full.slice(offset), cursor: full.length };
    };
    const text = await read('text', body.offset, turn.content);
    const answer: Record<string, unknown> = { subtaskId: turn.id, status: turn.status, seq, offset: text.offset, text: text.text, cursor: text.cursor, reset: text.reset, blocks: JSON.parse(turn.blocks) };
    if (body.reasoningOffset !== undefined) {
      const r = await read('reasoning', body.reasoningOffset, turn.reasoning);
      Object.assign(answer, { reasoningOffset: r.offset, reasoningText: r.text, reasoningCursor: r.cursor });
    }
    if (ended) answer.terminal = terminalPayload(turn);
    return answer;
  }
}

/** The payload of an ended turn's terminal event, rebuilt from storage (§5.3, §7.4). */
function terminalPayload(turn: import('../storage/schema.js').MessagesTable): Record<string, unknown> {
  const m = toMessage(turn);
  const sender = m.sender as { bot?: unknown; memberIndex?: number; memberName?: string };
  const base = { taskId: m.taskId, subtaskId: m.id, runSeq: m.runSeq, offset: m.content.length, completedAt: m.completedAt, bot: sender.bot ?? null, memberIndex: sender.memberIndex ?? null, memberName: sender.memberName ?? null };
  if (m.status === 'COMPLETED') return { ...base, status: 'COMPLETED', result: { value: m.content, reasoning: m.reasoning || undefined, blocks: m.blocks, usage: m.usage ?? [], model: m.model, finishReason: m.statusReason ?? 'stop' }, messageId: m.id };
  if (m.status === 'FAILED') return { ...base, status: 'FAILED', code: m.statusReason, message: m.error?.message ?? '', retryable: true, partialText: m.content };
  return { ...base, status: 'CANCELLED', reason: m.statusReason, partialText: m.content };
}
