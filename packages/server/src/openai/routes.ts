import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { StatusBody } from '@wegent/core';
import type { App, AppContext } from '../app.js';
import { ApiError, BadRequestError, TooManyRequestsError } from '../errors.js';
import { FixedWindowCounter } from '../auth/rate-window.js';
import { documentOnly } from '../http/plumbing.js';
import { OpenAIError, OpenAIService, openaiErrorMember, outputItem, type Caller, type ChatRequest, type ResponseRequest } from './service.js';
import { RunFollower, type FollowEvent, type FollowedItem } from './run-follower.js';

type Obj = Record<string, unknown>;
const tags = ['openai'];
const errors = { 400: StatusBody, 401: StatusBody, 404: StatusBody, 409: StatusBody, 422: StatusBody, 429: StatusBody };
const IdParams = z.object({ id: z.string().max(200) });
const KEEPALIVE_MS = 15_000;
const CANCEL_WAIT_MS = 5_000;

// Request bodies are checked by the service, which names the offending OpenAI parameter (api.md §8.5);
// these schemas only document them. Unknown fields are ignored on these routes (api.md §2.2).
const ResponsesBody = documentOnly(
  z
    .object({
      model: z.string().describe("'ns#team', 'ns#team#model' or 'team'"),
      input: z.union([z.string(), z.array(z.object({ type: z.literal('message').optional(), role: z.enum(['user', 'assistant', 'system', 'developer']), content: z.unknown() }).loose())]),
      instructions: z.string().optional(),
      previous_response_id: z.string().optional(),
      stream: z.boolean().optional(),
      background: z.boolean().optional(),
      metadata: z.record(z.string(), z.string()).optional(),
      temperature: z.number().optional(),
      top_p: z.number().optional(),
      max_output_tokens: z.number().int().optional(),
    })
    .loose(),
);
const ChatBody = documentOnly(
  z
    .object({
      model: z.string(),
      messages: z.array(z.object({ role: z.enum(['system', 'developer', 'user', 'assistant']), content: z.unknown() }).loose()),
      stream: z.boolean().optional(),
      stream_options: z.object({ include_usage: z.boolean().optional() }).loose().optional(),
      temperature: z.number().optional(),
      top_p: z.number().optional(),
      max_tokens: z.number().int().optional(),
      max_completion_tokens: z.number().int().optional(),
    })
    .loose(),
);
// The response object of api.md §8.2 (documented by its key members; built by the service).
const ResponseObject = z.record(z.string(), z.unknown()).describe('response object: id, object "response", created_at, status, model, output[], usage, …');
type ModelObject = z.infer<typeof ModelObject>;
const ModelObject = z.object({ id: z.string(), object: z.literal('model'), created: z.number(), owned_by: z.enum(['system', 'user']) });

function callerOf(req: FastifyRequest): Caller {
  const p = req.principal!;
  return { userId: p.userId, isAdmin: p.role === 'admin', username: p.username };
}

/** `Idempotency-Key` (api.md §2.11), or a fresh key. */
function idempotencyKey(req: FastifyRequest): string {
  const header = req.headers['idempotency-key'];
  if (header === undefined) return OpenAIService.autoKey();
  if (typeof header !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(header)) throw new BadRequestError('Idempotency-Key must be 1-64 letters, digits, _ or -');
  return header;
}

/** A server-sent event stream on a hijacked reply, with a keepalive comment after 15 s of silence. */
class EventStream {
  private timer?: NodeJS.Timeout;
  closed = false;

  constructor(private readonly reply: FastifyReply) {
    reply.hijack();
    const headers = { ...reply.getHeaders(), 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' };
    delete (headers as Obj)['content-length'];
    reply.raw.writeHead(200, headers as Record<string, string>);
    reply.raw.on('close', () => {
      this.closed = true;
      clearTimeout(this.timer);
    });
    this.arm();
  }

  private arm(): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    this.timer = setTimeout(() => this.write(': keepalive\n\n'), KEEPALIVE_MS);
    this.timer.unref();
  }

  write(text: string): void {
    if (this.closed) return;
    this.reply.raw.write(text);
    this.arm();
  }

  end(): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    this.closed = true;
    this.reply.raw.end();
  }

  /** Called when the client goes away. */
  onClose(fn: () => void): void {
    this.reply.raw.on('close', fn);
  }
}

/** The OpenAI-compatible API (api.md §8): Responses, chat completions and models. */
export async function registerOpenAIRoutes(app: App, ctx: AppContext): Promise<void> {
  const service = new OpenAIService(ctx);
  const createLimit = new FixedWindowCounter(ctx.config.rate.aiCreate, 60_000);
  const syncTimeoutMs = () => ctx.config.responsesSyncTimeoutSeconds * 1000;

  const limitCreate = (req: FastifyRequest, reply: FastifyReply) => {
    const d = createLimit.hit(req.principal!.userId);
    if (!d.allowed) {
      reply.header('RateLimit-Limit', String(d.limit)).header('RateLimit-Remaining', '0').header('RateLimit-Reset', String(d.resetSeconds));
      throw new TooManyRequestsError(d.resetSeconds);
    }
  };

  /** Starts a run with a follower subscribed before it can begin; a refused start leaves nothing behind. */
  const startFollowed = async (caller: Caller, req: ResponseRequest | ChatRequest, key: string, onEvent: (e: FollowEvent) => void) => {
    const follower = new RunFollower(ctx, onEvent);
    const previous = 'previous' in req ? req.previous : undefined;
    if (previous) follower.attach(previous.taskId);
    try {
      const result = await service.start(caller, req, key, (taskId) => follower.attach(taskId));
      return { follower, result };
    } catch (e) {
      await follower.close();
      throw e;
    }
  };

  await app.register(async (plugin) => {
    const scope = plugin.withTypeProvider<ZodTypeProvider>();
    // Every error body on these routes also carries OpenAI's `error` member (api.md §8.5): service
    // errors get it here (before compression); what the shared plumbing answers (authentication,
    // rate limits, malformed bodies) gets it in onSend.
    scope.setErrorHandler((err) => {
      if (err instanceof ApiError) throw OpenAIError.from(err);
      throw err;
    });
    scope.addHook('onSend', async (_req, reply, payload) => {
      if (reply.statusCode < 400 || typeof payload !== 'string' || !payload.startsWith('{"kind":"Status"')) return payload;
      const body = JSON.parse(payload) as Obj;
      if (body.error) return payload;
      return JSON.stringify({ ...body, error: openaiErrorMember(reply.statusCode, String(body.message ?? '')) });
    });

    scope.post('/api/v1/responses', { config: { auth: 'user' }, schema: { tags, summary: 'Create a response (run a Team)', body: ResponsesBody, response: { 200: ResponseObject, ...errors } } }, async (req, reply) => {
      limitCreate(req, reply);
      const caller = callerOf(req);
      const parsed = await service.parseResponseRequest(caller, req.body);
      const key = idempotencyKey(req);
      if (!parsed.stream) {
        if (parsed.background) {
          const result = await service.start(caller, parsed, key);
          return service.responseObject(caller.userId, `resp_${result.runId}`);
        }
        const { follower, result } = await startFollowed(caller, parsed, key, () => undefined);
        try {
          await follower.follow(result);
          await follower.settled(syncTimeoutMs());
        } finally {
          await follower.close();
        }
        return service.responseObject(caller.userId, `resp_${result.runId}`);
      }
      return streamResponse(req, reply, caller, parsed, key);
    });

    /** Streams a response with the event sequence of api.md §8.2. */
    const streamResponse = async (req: FastifyRequest, reply: FastifyReply, caller: Caller, parsed: ResponseRequest, key: string) => {
      let seq = 0;
      let chain: Promise<void> = Promise.resolve();
      let stream: EventStream | undefined;
      let responseId = '';
      const send = (type: string, data: Obj) => stream!.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
      const itemScope = (item: FollowedItem) => ({ item_id: `msg_${item.turnId}`, output_index: item.index, content_index: 0 });
      const handle = async (e: FollowEvent) => {
        if (!stream || stream.closed) return;
        switch (e.type) {
          case 'started':
            send('response.in_progress', { response: await service.responseObject(caller.userId, responseId, { status: 'RUNNING', items: [] }) });
            return;
          case 'item.added':
            send('response.output_item.added', { output_index: e.item.index, item: { type: 'message', id: `msg_${e.item.turnId}`, status: 'in_progress', role: 'assistant', content: [] } });
            send('response.content_part.added', { item_id: `msg_${e.item.turnId}`, output_index: e.item.index, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
            return;
          case 'item.delta':
            send('response.output_text.delta', { ...itemScope(e.item), delta: e.delta, logprobs: [] });
            return;
          case 'item.done': {
            const text = e.item.text;
            send('response.output_text.done', { ...itemScope(e.item), text, logprobs: [] });
            send('response.content_part.done', { ...itemScope(e.item), part: { type: 'output_text', text, annotations: [] } });
            send('response.output_item.done', { output_index: e.item.index, item: outputItem(e.item) });
            return;
          }
          case 'settled': {
            const response = await service.responseObject(caller.userId, responseId, { status: e.status, items: follower.items });
            const type = e.status === 'COMPLETED' ? 'response.completed' : e.status === 'FAILED' ? 'response.failed' : 'response.incomplete';
            send(type, { response });
            stream.end();
          }
        }
      };
      // Events are written one at a time, in the order the follower reports them.
      const onEvent = (e: FollowEvent) => {
        chain = chain.then(() => handle(e)).catch((err) => {
          req.log.error({ err }, 'streaming a response failed');
          stream?.end();
        });
      };
      const { follower, result } = await startFollowed(caller, parsed, key, onEvent);
      responseId = `resp_${result.runId}`;
      try {
        const created = await service.responseObject(caller.userId, responseId, { status: 'PENDING', items: [] });
        stream = new EventStream(reply);
        // A client that goes away stops the stream, never the run (api.md §8.2).
        stream.onClose(() => void follower.close());
        send('response.created', { response: created });
        if (result.queue) send('response.queued', { response: created });
        await follower.follow(result);
      } catch (err) {
        await follower.close();
        if (!stream) throw err;
        req.log.error({ err }, 'streaming a response failed');
        stream.end();
      }
    };

    scope.get('/api/v1/responses/:id', { config: { auth: 'user' }, schema: { tags, summary: 'Read a response', params: IdParams, response: { 200: ResponseObject, ...errors } } }, async (req) =>
      service.responseObject(req.principal!.userId, req.params.id),
    );

    scope.post('/api/v1/responses/:id/cancel', { config: { auth: 'user' }, schema: { tags, summary: 'Cancel a response; answers once the run settled (at most 5 s)', params: IdParams, response: { 200: ResponseObject, ...errors } } }, async (req) => {
      const userId = req.principal!.userId;
      const view = await service.ownedRun(userId, req.params.id);
      const follower = new RunFollower(ctx, () => undefined);
      try {
        await follower.follow({ taskId: view.run.task_id, runId: view.run.id, runSeq: view.run.run_seq });
        const c = await service.cancel(userId, req.params.id);
        if (c.active) {
          // A run that had not started settles without bus events: look at storage at once.
          follower.check();
          await follower.settled(CANCEL_WAIT_MS);
        }
      } finally {
        await follower.close();
      }
      return service.responseObject(userId, req.params.id);
    });

    scope.delete('/api/v1/responses/:id', { config: { auth: 'user' }, schema: { tags, summary: 'Delete the task a response belongs to', params: IdParams, response: { 200: z.object({ id: z.string(), object: z.literal('response.deleted'), deleted: z.literal(true) }), ...errors } } }, async (req) => {
      await service.delete(req.principal!.userId, req.params.id);
      return { id: req.params.id, object: 'response.deleted' as const, deleted: true as const };
    });

    scope.post('/api/v1/chat/completions', { config: { auth: 'user' }, schema: { tags, summary: 'Chat completion (a new task per request)', body: ChatBody, response: { 200: z.object({ id: z.string(), object: z.literal('chat.completion') }).loose(), ...errors } } }, async (req, reply) => {
      limitCreate(req, reply);
      const caller = callerOf(req);
      const parsed = await service.parseChatRequest(caller, req.body);
      const key = idempotencyKey(req);
      if (parsed.stream) return streamChat(req, reply, caller, parsed, key);
      const { follower, result } = await startFollowed(caller, parsed, key, () => undefined);
      let status;
      try {
        await follower.follow(result);
        status = await follower.settled(syncTimeoutMs());
      } finally {
        await follower.close();
      }
      if (!status) throw new ApiError(504, 'Timeout', `the run did not finish within ${ctx.config.responsesSyncTimeoutSeconds} s; it goes on as task ${result.taskId}`);
      const responseId = `resp_${result.runId}`;
      const view = await service.ownedRun(caller.userId, responseId);
      if (status === 'FAILED') throw new OpenAIError(502, 'BadGateway', view.error?.message || 'the run failed', { code: view.error?.code ?? 'internal', param: null });
      if (status === 'CANCELLED') throw new OpenAIError(409, 'Conflict', 'the run was cancelled', { code: 'cancelled', param: null });
      const items = await service.storedItems(result.runId);
      const usage = await service.runUsage(result.runId);
      return {
        id: `chatcmpl-${result.runId}`,
        object: 'chat.completion' as const,
        created: Math.floor(Date.parse(view.run.created_at) / 1000),
        model: parsed.meta.model,
        choices: [{ index: 0, message: { role: 'assistant', content: answerText(items) }, finish_reason: finishReason(items), logprobs: null }],
        usage: { prompt_tokens: usage.input, completion_tokens: usage.output, total_tokens: usage.input + usage.output },
      };
    });

    /** Streams a chat completion as `data:` chunks ending with `data: [DONE]` (api.md §8.3). */
    const streamChat = async (req: FastifyRequest, reply: FastifyReply, caller: Caller, parsed: ChatRequest, key: string) => {
      let chain: Promise<void> = Promise.resolve();
      let stream: EventStream | undefined;
      let base: Obj = {};
      let wroteText = false;
      let separatorDue = false;
      const chunk = (choices: Obj[], extra: Obj = {}) => stream!.write(`data: ${JSON.stringify({ ...base, choices, ...extra })}\n\n`);
      const delta = (d: Obj, finish: string | null = null) => chunk([{ index: 0, delta: d, finish_reason: finish, logprobs: null }]);
      const handle = async (e: FollowEvent) => {
        if (!stream || stream.closed) return;
        if (e.type === 'item.added') separatorDue = wroteText;
        else if (e.type === 'item.delta') {
          // Visible answer turns are joined with a blank line.
          delta({ content: (separatorDue ? '\n\n' : '') + e.delta });
          separatorDue = false;
          wroteText = true;
        } else if (e.type === 'settled') {
          const runId = String(base.id).slice('chatcmpl-'.length);
          if (e.status === 'COMPLETED' || e.status === 'PENDING_CONFIRMATION') {
            delta({}, finishReason(follower.items));
            if (parsed.includeUsage) {
              const u = await service.runUsage(runId);
              chunk([], { usage: { prompt_tokens: u.input, completion_tokens: u.output, total_tokens: u.input + u.output } });
            }
            stream.write('data: [DONE]\n\n');
          } else {
            const view = await service.ownedRun(caller.userId, `resp_${runId}`);
            const error = e.status === 'FAILED' ? { message: view.error?.message || 'the run failed', type: 'server_error', code: view.error?.code ?? 'internal' } : { message: 'the run was cancelled', type: 'server_error', code: 'cancelled' };
            stream.write(`data: ${JSON.stringify({ error })}\n\n`);
          }
          stream.end();
        }
      };
      const onEvent = (e: FollowEvent) => {
        chain = chain.then(() => handle(e)).catch((err) => {
          req.log.error({ err }, 'streaming a chat completion failed');
          stream?.end();
        });
      };
      const { follower, result } = await startFollowed(caller, parsed, key, onEvent);
      try {
        const view = await service.ownedRun(caller.userId, `resp_${result.runId}`);
        base = { id: `chatcmpl-${result.runId}`, object: 'chat.completion.chunk', created: Math.floor(Date.parse(view.run.created_at) / 1000), model: parsed.meta.model };
        stream = new EventStream(reply);
        stream.onClose(() => void follower.close());
        delta({ role: 'assistant', content: '' });
        await follower.follow(result);
      } catch (err) {
        await follower.close();
        if (!stream) throw err;
        req.log.error({ err }, 'streaming a chat completion failed');
        stream.end();
      }
    };

    scope.get('/api/v1/models', { config: { auth: 'user' }, schema: { tags, summary: 'Teams as OpenAI models (own and public)', response: { 200: z.object({ object: z.literal('list'), data: z.array(ModelObject) }), ...errors } } }, async (req) => ({
      object: 'list' as const,
      data: (await service.models(callerOf(req))) as ModelObject[],
    }));

    scope.get('/api/v1/models/:id', { config: { auth: 'user' }, schema: { tags, summary: "One Team as an OpenAI model ('ns#team', URL-encoded)", params: IdParams, response: { 200: ModelObject, ...errors } } }, async (req) =>
      service.model(callerOf(req), req.params.id) as Promise<ModelObject>,
    );
  });
}

/** The run's visible answers joined with a blank line (api.md §8.3). */
function answerText(items: FollowedItem[]): string {
  return items
    .map((i) => i.text)
    .filter((t) => t !== '')
    .join('\n\n');
}

/** OpenAI's finish reason from the last answer's. */
function finishReason(items: FollowedItem[]): string {
  const reason = items[items.length - 1]?.finishReason;
  return reason === 'length' || reason === 'content_filter' ? reason : 'stop';
}
