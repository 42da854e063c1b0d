import type { App, AppContext } from '../app.js';
import { isLoopbackRequest } from '../auth/loopback.js';
import { ForbiddenError } from '../errors.js';

/**
 * GET /metrics (api.md §9): with WEGENT_METRICS_TOKEN set, that bearer token is required; without
 * it, only loopback clients and admins may read.
 */
export async function registerMetricsRoute(app: App, ctx: AppContext): Promise<void> {
  app.get('/metrics', { config: { auth: 'anon' }, schema: { tags: ['health'], summary: 'Prometheus metrics (the metrics token, loopback, or an admin)' } }, async (request, reply) => {
    const header = request.headers.authorization;
    const bearer = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : undefined;
    let allowed = false;
    if (ctx.config.metricsToken) allowed = bearer === ctx.config.metricsToken;
    else if (isLoopbackRequest(request)) allowed = true;
    if (!allowed && bearer && bearer !== ctx.config.metricsToken) {
      const principal = await ctx.accounts.authenticateCredential(bearer).catch(() => null);
      allowed = principal?.role === 'admin';
    }
    if (!allowed) throw new ForbiddenError('metrics are readable with the metrics token, from this machine, or by admins');
    reply.type(ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });
}
