import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type RawServerDefault } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { validatorCompiler, jsonSchemaTransform, type ZodTypeProvider } from 'fastify-type-provider-zod';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import helmet from 'helmet';
import compress from '@fastify/compress';
import cors from '@fastify/cors';
import type { ServerConfig } from './config.js';
import type { Storage } from './storage/database.js';
import type { SecretBox } from './secrets/keyring.js';
import { frameworkErrors, isDocumentOnly, registerBodyParsers, registerErrorHandling, sendStatus } from './http/plumbing.js';
import { BadRequestError, ForbiddenError, TooManyRequestsError, UnauthorizedError } from './errors.js';
import { FixedWindowCounter } from './auth/rate-window.js';
import type { AccountService } from './auth/service.js';
import type { ResourceService } from './resources/service.js';
import type { TaskService } from './tasks/service.js';
import type { ServerMetrics } from './metrics/metrics.js';
import { registerMetricsRoute } from './metrics/routes.js';
import { registerTaskRoutes } from './tasks/routes.js';
import { registerSandboxRoutes } from './sandboxes/routes.js';
import { registerOpenAIRoutes } from './openai/routes.js';
import { registerAuthRoutes } from './auth/routes.js';
import { registerResourceRoutes } from './resources/routes.js';
import { registerSkillRoutes } from './skills/routes.js';
import { registerHealthRoutes } from './health/routes.js';
import type { Logger } from 'pino';
import './auth/principal.js';

/** Everything the routes need, built once at start (server.ts). */
export interface AppContext {
  config: ServerConfig;
  storage: Storage;
  secretBox: SecretBox;
  accounts: AccountService;
  resources: ResourceService;
  tasks: TaskService;
  metrics: ServerMetrics;
  log: Logger;
  startedAt: number;
  version: string;
  /** The running machinery of conversations (set at start; tests reach in through it). */
  runtime?: {
    bus: import('./infra/event-bus.js').EventBus;
    cache: import('./infra/cache.js').Cache;
    queue: import('./infra/job-queue.js').JobQueue;
    worker: import('./tasks/worker.js').RunWorker;
    gateway: import('./chat/gateway.js').ChatGateway;
  };
  /** Sandboxes (sandbox.md): set at start, before the server listens. */
  sandboxes?: import('./sandboxes/service.js').SandboxService;
  /** Set on SIGTERM/SIGINT: /readyz answers 503 while running work drains. */
  draining?: boolean;
}

/** The application type every route module registers on (zod type provider). */
export type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, ZodTypeProvider>;

/** The headers helmet's defaults set, captured once. */
function helmetDefaultHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  const res = {
    setHeader: (k: string, v: unknown) => void (headers[k.toLowerCase()] = String(v)),
    removeHeader: (k: string) => void delete headers[k.toLowerCase()],
    getHeader: (k: string) => headers[k.toLowerCase()],
  };
  helmet()({} as never, res as never, () => undefined);
  return headers;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds the Fastify application with every route registered. */
export async function buildApp(ctx: AppContext): Promise<App> {
  const app = Fastify({
    loggerInstance: ctx.log as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: ctx.config.maxBodyBytes,
    trustProxy: ctx.config.trustProxy,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    routerOptions: { maxParamLength: 200, ignoreTrailingSlash: true },
    frameworkErrors,
  }).withTypeProvider<ZodTypeProvider>();

  // Resource bodies (JSON or YAML, unknown spec fields kept) are validated by the resource service.
  app.setValidatorCompiler((route) => (route.httpPart === 'body' && isDocumentOnly(route.schema) ? (data: unknown) => ({ value: data }) : validatorCompiler(route as Parameters<typeof validatorCompiler>[0])));
  // Responses are built by our own code from the same schemas; they are serialised, not re-validated.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  registerBodyParsers(app);
  registerErrorHandling(app);

  // Per-user limit for authenticated routes (api.md §2.10); sign-in routes count on their own.
  const defaultLimit = new FixedWindowCounter(ctx.config.rate.default, 60_000);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Request-Id', request.id);
    const url = request.url;
    if (url.length > 8192 + 1024 || (url.indexOf('?') >= 0 && url.length - url.indexOf('?') > 8192)) {
      throw new BadRequestError('query string is longer than 8 KiB');
    }
    const auth = request.routeOptions.config?.auth ?? (request.routeOptions.url?.startsWith('/api/v1/') ? 'user' : 'anon');
    if (auth === 'anon') return;
    const principal = await ctx.accounts.authenticate(request);
    if (!principal) return sendStatus(reply, new UnauthorizedError());
    request.principal = principal;
    if (auth === 'admin' && principal.role !== 'admin') return sendStatus(reply, new ForbiddenError('this route is for administrators'));
    const decision = defaultLimit.hit(principal.userId);
    if (!decision.allowed) {
      reply.header('RateLimit-Limit', String(decision.limit)).header('RateLimit-Remaining', '0').header('RateLimit-Reset', String(decision.resetSeconds));
      return sendStatus(reply, new TooManyRequestsError(decision.resetSeconds));
    }
  });

  // Helmet's default headers, computed once (its Fastify plugin rebuilds them on every request).
  const securityHeaders = helmetDefaultHeaders();
  app.addHook('onRequest', async (_request, reply) => {
    reply.headers(securityHeaders);
  });
  // Request metrics by route pattern, never by concrete URL (ids stay out of labels).
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    if (route === '/metrics') return;
    ctx.metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    ctx.metrics.httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  await app.register(compress, { threshold: 1024 });
  if (ctx.config.corsOrigins.length) await app.register(cors, { origin: ctx.config.corsOrigins, credentials: true });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Wegent API', version: ctx.version, description: 'Teams of AI agents, as Kubernetes-style resources.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs', uiConfig: { persistAuthorization: true }, staticCSP: true });
  app.get('/api/openapi.json', { config: { auth: 'anon' }, schema: { hide: true } }, async () => app.swagger());

  await registerHealthRoutes(app, ctx);
  await registerMetricsRoute(app, ctx);
  await registerAuthRoutes(app, ctx);
  await registerResourceRoutes(app, ctx);
  await registerSkillRoutes(app, ctx);
  await registerTaskRoutes(app, ctx);
  await registerSandboxRoutes(app, ctx);
  await registerOpenAIRoutes(app, ctx);
  return app;
}
