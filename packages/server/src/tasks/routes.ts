import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ChatSendPayload, Message, matchesSelector, RefInput, ResourceDocument, StatusBody, TaskRuntime, TaskStatusValue, ClientMessageId } from '@wegent/core';
import type { App, AppContext } from '../app.js';
import { labelSelectorParam } from '../http/selectors.js';
import { ApiError, BadRequestError, NotFoundError } from '../errors.js';
import { taskStore, toMessage } from './store.js';

const errors = { 400: StatusBody, 401: StatusBody, 404: StatusBody, 409: StatusBody, 413: StatusBody, 415: StatusBody, 422: StatusBody, 429: StatusBody };
const tags = ['tasks'];
const IdParams = z.object({ id: z.uuid() });

const CreateTaskBody = z.strictObject({
  team: z.string().min(1).max(200).optional(),
  teamRef: RefInput.optional(),
  message: z.string(),
  title: z.string().max(256).optional(),
  workspaceRef: RefInput.optional(),
  modelRef: RefInput.optional(),
  modelOverride: RefInput.optional(),
  clientMessageId: ClientMessageId.optional(),
  labels: z.record(z.string(), z.string()).optional(),
  source: z.enum(['chat', 'cli', 'api']).optional(),
});
const SendBody = z.strictObject({ message: z.string().optional(), clientMessageId: ClientMessageId.optional(), action: z.literal('pipeline:confirm').optional(), modelOverride: RefInput.optional() });
const SendAnswer = z.object({ taskId: z.string(), runId: z.string(), runSeq: z.number(), messageId: z.string().optional(), subtaskId: z.string(), status: TaskStatusValue });
const ListQuery = z.object({
  status: z.string().max(200).optional(),
  team: z.string().max(200).optional(),
  source: z.string().max(40).optional(),
  q: z.string().max(200).optional(),
  labelSelector: z.string().max(4096).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  continue: z.string().max(1024).optional(),
  sort: z.enum(['-updatedAt', '-createdAt']).default('-updatedAt'),
});

function principal(req: FastifyRequest) {
  const p = req.principal!;
  return { userId: p.userId, isAdmin: p.role === 'admin', username: p.username };
}

/** An Idempotency-Key header and a body clientMessageId are one key space (api.md §2.11). */
function idempotencyKey(req: FastifyRequest, bodyKey: string | undefined): string {
  const header = req.headers['idempotency-key'];
  const key = bodyKey ?? (typeof header === 'string' ? header : undefined);
  if (key !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(key)) throw new BadRequestError('Idempotency-Key must be 1-64 letters, digits, _ or -');
  return key ?? `auto-${crypto.randomUUID()}`;
}

/** The task API of api.md §5.2. */
export async function registerTaskRoutes(app: App, ctx: AppContext): Promise<void> {
  const tasks = ctx.tasks;

  // Another user's task is not found, whatever the body says: ownership is checked before validation.
  app.addHook('preValidation', async (req) => {
    if (!req.routeOptions.url?.startsWith('/api/v1/tasks/:id') || !req.principal) return;
    const id = (req.params as { id?: string }).id ?? '';
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) throw new NotFoundError('task not found', { kind: 'Task' });
    await tasks.ownedState(req.principal.userId, id);
  });

  app.post('/api/v1/tasks', { config: { auth: 'user' }, schema: { tags, summary: 'Create a task with its first message', body: CreateTaskBody, response: { 201: z.object({ task: ResourceDocument, runId: z.string(), runSeq: z.number(), messageId: z.string().optional(), subtaskId: z.string() }), 200: z.unknown(), ...errors } } }, async (req, reply) => {
    const b = req.body;
    if ((b.team === undefined) === (b.teamRef === undefined)) throw new BadRequestError('give exactly one of team and teamRef');
    const payload = ChatSendPayload.parse({ clientMessageId: idempotencyKey(req, b.clientMessageId), team: b.team, teamRef: b.teamRef, message: b.message, title: b.title, workspaceRef: b.workspaceRef, modelOverride: b.modelOverride ?? b.modelRef });
    const result = await tasks.send(principal(req), payload, { source: b.source ?? 'api', labels: b.labels });
    const task = await tasks.taskDocument(req.principal!.userId, result.taskId);
    reply.code(result.duplicate ? 200 : 201);
    return { task: task as ResourceDocument, runId: result.runId, runSeq: result.runSeq, messageId: result.messageId, subtaskId: result.subtaskId };
  });

  app.get('/api/v1/tasks', { config: { auth: 'user' }, schema: { tags, summary: "List the caller's tasks", querystring: ListQuery, response: { 200: z.object({ apiVersion: z.string(), kind: z.literal('TaskList'), metadata: z.object({ continue: z.string().optional() }), items: z.array(ResourceDocument) }), ...errors } } }, async (req) => {
    const q = req.query;
    const selector = labelSelectorParam(q.labelSelector);
    const statuses = q.status ? q.status.split(',').map((s) => s.trim()) : undefined;
    const column = q.sort === '-createdAt' ? 'created_at' : 'updated_at';
    let after: { at: string; id: string } | undefined;
    if (q.continue) {
      try {
        after = JSON.parse(Buffer.from(q.continue, 'base64url').toString('utf8'));
        if (typeof after?.at !== 'string' || typeof after.id !== 'string') throw new Error('bad');
      } catch {
        throw new BadRequestError('invalid continue token');
      }
    }
    const items: Record<string, unknown>[] = [];
    let last: { at: string; id: string } | undefined;
    let more = false;
    for (;;) {
      let query = ctx.storage.db.selectFrom('task_state').select(['task_id', column]).where('owner_id', '=', req.principal!.userId).where('deleted_at', 'is', null);
      if (statuses) query = query.where('status', 'in', statuses);
      if (after) {
        const a = after;
        query = query.where((eb) => eb.or([eb(column, '<', a.at), eb.and([eb(column, '=', a.at), eb('task_id', '<', a.id)])]));
      }
      const rows = await query.orderBy(column, 'desc').orderBy('task_id', 'desc').limit(100).execute();
      if (!rows.length) break;
      const docs = await Promise.all(rows.map((r) => tasks.taskDocument(req.principal!.userId, r.task_id)));
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]! as Record<string, string>;
        after = { at: row[column]!, id: row.task_id! };
        const doc = docs[i]! as { metadata: { labels: Record<string, string> }; spec: { title?: string; teamRef?: { name: string; namespace?: string }; source?: string } };
        if (selector && !matchesSelector(doc.metadata.labels, selector)) continue;
        if (q.q && !(doc.spec.title ?? '').toLowerCase().includes(q.q.toLowerCase())) continue;
        if (q.source && doc.metadata.labels['wegent.io/source'] !== q.source) continue;
        if (q.team && `${doc.spec.teamRef?.namespace ?? 'default'}#${doc.spec.teamRef?.name}` !== q.team) continue;
        if (items.length === q.limit) {
          more = true;
          break;
        }
        items.push(docs[i]!);
        last = after;
      }
      if (more || rows.length < 100) break;
    }
    const metadata: { continue?: string } = {};
    if (more && last) metadata.continue = Buffer.from(JSON.stringify(last)).toString('base64url');
    return { apiVersion: 'agent.wecode.io/v1', kind: 'TaskList' as const, metadata, items: items as ResourceDocument[] };
  });

  app.get('/api/v1/tasks/:id', { config: { auth: 'user' }, schema: { tags, summary: 'Read a task', params: IdParams, response: { 200: ResourceDocument, ...errors } } }, async (req) => {
    await tasks.ownedState(req.principal!.userId, req.params.id);
    return (await tasks.taskDocument(req.principal!.userId, req.params.id)) as ResourceDocument;
  });

  app.patch('/api/v1/tasks/:id', { config: { auth: 'user' }, schema: { tags, summary: 'Change the title, model override or labels of a task (merge patch)', params: IdParams, body: z.strictObject({ spec: z.strictObject({ title: z.string().max(256).optional(), modelRef: RefInput.nullable().optional() }).optional(), metadata: z.strictObject({ labels: z.record(z.string(), z.string().nullable()).optional() }).optional() }), response: { 200: ResourceDocument, ...errors } } }, async (req) => {
    const ct = req.headers['content-type'] ?? '';
    if (!/^application\/(merge-patch\+)?json/.test(ct)) throw new ApiError(415, 'UnsupportedMediaType', 'PATCH takes application/merge-patch+json (or application/json)');
    const record = (await ctx.resources.store.findLiveByUid(req.params.id))!;
    const actor = { userId: req.principal!.userId, isAdmin: req.principal!.role === 'admin' };
    await ctx.resources.patch(actor, 'Task', record.namespace, record.name, req.body, { public: false, dryRun: false });
    const task = (await tasks.taskDocument(req.principal!.userId, req.params.id)) as { spec: { title?: string }; metadata: { labels: Record<string, string> }; status: { updatedAt?: string } };
    tasks.notifier.emit({ name: 'task:updated', userId: req.principal!.userId, payload: { taskId: req.params.id, title: task.spec.title ?? null, labels: task.metadata.labels, updatedAt: new Date().toISOString() } });
    return task as ResourceDocument;
  });

  app.delete('/api/v1/tasks/:id', { config: { auth: 'user' }, schema: { tags, summary: 'Delete a task (an active run is cancelled first)', params: IdParams, response: { 204: z.null(), ...errors } } }, async (req, reply) => {
    await tasks.delete(req.principal!.userId, req.params.id);
    return reply.code(204).send(null);
  });

  app.post('/api/v1/tasks/:id/messages', { config: { auth: 'user' }, schema: { tags, summary: 'Send a message to a task', params: IdParams, body: SendBody, response: { 202: SendAnswer, 200: SendAnswer, ...errors } } }, async (req, reply) => {
    const b = req.body;
    const result = await tasks.send(principal(req), ChatSendPayload.parse({ clientMessageId: idempotencyKey(req, b.clientMessageId), taskId: req.params.id, message: b.message, action: b.action, modelOverride: b.modelOverride }), { source: 'api' });
    reply.code(result.duplicate ? 200 : 202);
    return { taskId: result.taskId, runId: result.runId, runSeq: result.runSeq, messageId: result.messageId, subtaskId: result.subtaskId, status: result.status };
  });

  // The REST form of `chat:send {action: "pipeline:confirm"}`: the paused pipeline stage goes on, optionally
  // with edited text in place of the stage's answer (api.md §5).
  app.post('/api/v1/tasks/:id/confirm', { config: { auth: 'user' }, schema: { tags, summary: 'Confirm a pipeline stage that waits for confirmation', params: IdParams, body: z.strictObject({ message: z.string().optional(), clientMessageId: ClientMessageId.optional() }).nullish(), response: { 202: SendAnswer, 200: SendAnswer, ...errors } } }, async (req, reply) => {
    const b = req.body ?? {};
    const result = await tasks.send(principal(req), ChatSendPayload.parse({ clientMessageId: idempotencyKey(req, b.clientMessageId), taskId: req.params.id, message: b.message, action: 'pipeline:confirm' }), { source: 'api' });
    reply.code(result.duplicate ? 200 : 202);
    return { taskId: result.taskId, runId: result.runId, runSeq: result.runSeq, messageId: result.messageId, subtaskId: result.subtaskId, status: result.status };
  });

  const MessagesQuery = z.object({ limit: z.coerce.number().int().min(1).max(200).default(50), beforeSeq: z.coerce.number().int().min(0).optional(), afterSeq: z.coerce.number().int().min(0).optional(), includeHidden: z.enum(['true', 'false']).optional() });
  app.get('/api/v1/tasks/:id/messages', { config: { auth: 'user' }, schema: { tags, summary: 'Messages of a task, ascending seq', params: IdParams, querystring: MessagesQuery, response: { 200: z.object({ items: z.array(Message), hasMoreBefore: z.boolean(), hasMoreAfter: z.boolean() }), ...errors } } }, async (req) => {
    const q = req.query;
    if (q.beforeSeq !== undefined && q.afterSeq !== undefined) throw new BadRequestError('give at most one of beforeSeq and afterSeq');
    return tasks.messages(req.principal!.userId, req.params.id, { limit: q.limit, beforeSeq: q.beforeSeq, afterSeq: q.afterSeq, includeHidden: q.includeHidden === 'true' });
  });

  app.get('/api/v1/tasks/:id/messages/:messageId', { config: { auth: 'user' }, schema: { tags, summary: 'One message', params: IdParams.extend({ messageId: z.uuid() }), response: { 200: Message, ...errors } } }, async (req) => {
    await tasks.ownedState(req.principal!.userId, req.params.id);
    const row = await taskStore.message(ctx.storage.db, req.params.messageId);
    if (!row || row.task_id !== req.params.id) throw new NotFoundError('message not found');
    return toMessage(row);
  });

  app.get('/api/v1/tasks/:id/subtasks', { config: { auth: 'user' }, schema: { tags, summary: 'Turns of a task, compact', params: IdParams, querystring: z.object({ runSeq: z.coerce.number().int().min(1).optional() }), response: { 200: z.object({ items: z.array(z.record(z.string(), z.unknown())) }), ...errors } } }, async (req) => {
    await tasks.ownedState(req.principal!.userId, req.params.id);
    // Imported history (run sequence 0, OpenAI-compatible input) holds messages, not turns.
    let query = ctx.storage.db.selectFrom('messages').selectAll().where('task_id', '=', req.params.id).where('role', '=', 'assistant').where('run_seq', '>', 0);
    if (req.query.runSeq !== undefined) query = query.where('run_seq', '=', req.query.runSeq);
    const rows = await query.orderBy('seq').execute();
    return {
      items: rows.map((r) => {
        const m = toMessage(r);
        const sender = m.sender as { bot?: unknown };
        return { id: m.id, taskId: m.taskId, runSeq: m.runSeq, seq: m.seq, memberIndex: r.member_index, bot: sender.bot ?? null, purpose: m.purpose, status: m.status, statusReason: m.statusReason, model: m.model, attempt: r.attempt, createdAt: m.createdAt, startedAt: m.startedAt, completedAt: m.completedAt, timeToFirstTokenMs: m.timeToFirstTokenMs, durationMs: m.durationMs, usage: m.usage };
      }),
    };
  });

  app.get('/api/v1/tasks/:id/runtime', { config: { auth: 'user' }, schema: { tags, summary: 'Status and active stream cursors (no message bodies)', params: IdParams, response: { 200: TaskRuntime, ...errors } } }, async (req) => tasks.runtime(req.principal!.userId, req.params.id, tasks.streamCursor));

  app.post('/api/v1/tasks/:id/retry', { config: { auth: 'user' }, schema: { tags, summary: 'Run the latest answer again (a new run with the same input)', params: IdParams, body: z.strictObject({ subtaskId: z.uuid(), modelOverride: RefInput.optional(), clientMessageId: ClientMessageId.optional() }), response: { 202: SendAnswer, 200: SendAnswer, ...errors } } }, async (req, reply) => {
    const result = await tasks.retry(principal(req), { taskId: req.params.id, subtaskId: req.body.subtaskId, modelOverride: req.body.modelOverride, clientMessageId: idempotencyKey(req, req.body.clientMessageId) });
    reply.code(result.duplicate ? 200 : 202);
    return { taskId: result.taskId, runId: result.runId, runSeq: result.runSeq, subtaskId: result.subtaskId, status: result.status };
  });

  app.post('/api/v1/tasks/:id/cancel', { config: { auth: 'user' }, schema: { tags, summary: "Cancel the task's current run", params: IdParams, body: z.strictObject({ subtaskId: z.uuid().optional() }).nullish(), response: { 202: z.object({ taskId: z.string(), status: TaskStatusValue, changed: z.boolean() }), ...errors } } }, async (req, reply) => {
    const result = await tasks.cancel(req.principal!.userId, req.params.id, { subtaskId: req.body?.subtaskId });
    reply.code(202);
    return result;
  });
}
