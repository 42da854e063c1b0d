import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { SandboxView, StatusBody } from '@wegent/core';
import type { App, AppContext } from '../app.js';
import { NotFoundError } from '../errors.js';
import { sandboxView, type SandboxCaller } from './service.js';

const errors = { 400: StatusBody, 401: StatusBody, 404: StatusBody, 422: StatusBody, 429: StatusBody };
const tags = ['sandboxes'];
const IdParams = z.object({ id: z.string().max(200) });
const ListQuery = z.object({
  all: z.enum(['true', 'false']).optional(),
  state: z.string().max(200).optional(),
});

function caller(req: FastifyRequest): SandboxCaller {
  const p = req.principal!;
  return { userId: p.userId, isAdmin: p.role === 'admin' };
}

/** The sandbox API of api.md §6: read and stop only; sandboxes are created by the runtime. */
export async function registerSandboxRoutes(app: App, ctx: AppContext): Promise<void> {
  const service = () => {
    if (!ctx.sandboxes) throw new NotFoundError('sandbox not found', { kind: 'Sandbox' });
    return ctx.sandboxes;
  };

  app.get('/api/v1/sandboxes', { config: { auth: 'user' }, schema: { tags, summary: "List the caller's sandboxes (admins: all=true for everyone's)", querystring: ListQuery, response: { 200: z.object({ items: z.array(SandboxView) }), ...errors } } }, async (req) => {
    if (!ctx.sandboxes) return { items: [] };
    return { items: await ctx.sandboxes.list(caller(req), { all: req.query.all === 'true', state: req.query.state }) };
  });

  app.get('/api/v1/sandboxes/:id', { config: { auth: 'user' }, schema: { tags, summary: 'Read a sandbox', params: IdParams, response: { 200: SandboxView, ...errors } } }, async (req) => {
    return sandboxView(await service().get(caller(req), req.params.id));
  });

  app.get('/api/v1/tasks/:id/sandbox', { config: { auth: 'user' }, schema: { tags, summary: "The task's live sandbox, else its latest one", params: IdParams, response: { 200: SandboxView, ...errors } } }, async (req) => {
    if (!ctx.sandboxes) {
      await ctx.tasks.ownedState(req.principal!.userId, req.params.id);
      throw new NotFoundError('the task has no sandbox', { kind: 'Sandbox' });
    }
    return sandboxView(await ctx.sandboxes.ofTask(caller(req), req.params.id));
  });

  app.delete('/api/v1/sandboxes/:id', { config: { auth: 'user' }, schema: { tags, summary: 'Stop a sandbox (a run using it is cancelled first)', params: IdParams, response: { 202: SandboxView, ...errors } } }, async (req, reply) => {
    const record = await service().stop(caller(req), req.params.id);
    reply.code(202);
    return sandboxView(record);
  });
}
