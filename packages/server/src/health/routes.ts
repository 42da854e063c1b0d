import type { App } from "../app.js";
import { z } from 'zod';
import type { AppContext } from '../app.js';

/** Liveness and readiness (api.md §9). */
export async function registerHealthRoutes(app: App, ctx: AppContext): Promise<void> {
  app.get(
    '/healthz',
    {
      config: { auth: 'anon' },
      schema: { tags: ['health'], response: { 200: z.object({ status: z.literal('ok'), version: z.string(), uptimeSeconds: z.number() }) } },
    },
    async () => ({ status: 'ok' as const, version: ctx.version, uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000) }),
  );
}
