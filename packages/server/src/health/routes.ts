import { sql } from 'kysely';
import { z } from 'zod';
import { StatusBody } from '@wegent/core';
import type { App, AppContext } from '../app.js';
import { ApiError } from '../errors.js';

const Checks = z.object({ storage: z.enum(['ok', 'failed']), redis: z.enum(['ok', 'failed', 'disabled']), queue: z.enum(['ok', 'failed']), sandbox: z.enum(['ok', 'unavailable', 'disabled']) });
type Checks = z.infer<typeof Checks>;

/** Pings storage with a deadline. */
async function pingStorage(ctx: AppContext): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 1000)));
    const ping = sql`select 1`.execute(ctx.storage.db).then(() => true);
    return await Promise.race([ping, deadline]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** Liveness and readiness (api.md §9). */
export async function registerHealthRoutes(app: App, ctx: AppContext): Promise<void> {
  let cached: { at: number; checks: Checks } | undefined;

  app.get(
    '/healthz',
    {
      config: { auth: 'anon' },
      schema: { tags: ['health'], summary: 'Liveness', response: { 200: z.object({ status: z.literal('ok'), version: z.string(), uptimeSeconds: z.number() }) } },
    },
    async () => ({ status: 'ok' as const, version: ctx.version, uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000) }),
  );

  app.get(
    '/readyz',
    {
      config: { auth: 'anon' },
      schema: { tags: ['health'], summary: 'Readiness: storage answers and the server is not draining', response: { 200: z.object({ status: z.literal('ready'), checks: Checks }), 503: StatusBody } },
    },
    async (_req, reply) => {
      if (!cached || Date.now() - cached.at > 2000) {
        const storage = (await pingStorage(ctx)) ? 'ok' : 'failed';
        cached = { at: Date.now(), checks: { storage, redis: 'disabled', queue: 'ok', sandbox: ctx.sandboxes?.readiness ?? 'disabled' } };
      }
      const { checks } = cached;
      if (checks.storage !== 'ok' || ctx.draining) {
        reply.header('Retry-After', '5');
        throw new ApiError(503, 'ServiceUnavailable', ctx.draining ? 'the server is shutting down' : 'storage is not answering', { checks, retryAfterSeconds: 5 });
      }
      return { status: 'ready' as const, checks };
    },
  );
}
