import { mkdirSync, chmodSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { buildApp, type AppContext } from './app.js';
import { loadConfig, type ServerConfig } from './config.js';
import { openStorage } from './storage/database.js';
import { migrateToLatest } from './storage/migrations.js';
import { loadOrCreateSecretFile, SecretBox } from './secrets/keyring.js';
import { AccountService } from './auth/service.js';
import { ResourceService } from './resources/service.js';
import { seedPublicResources } from './seed/seed.js';
import { TaskService } from './tasks/service.js';
import { taskStore } from './tasks/store.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { executeRun } from '@wegent/runtime';
import { InProcessEventBus, BusChannels } from './infra/event-bus.js';
import { MemoryCache } from './infra/cache.js';
import { StorageJobQueue } from './infra/storage-job-queue.js';
import { RunWorker, type ExecuteRun } from './tasks/worker.js';
import { RunThreads } from './tasks/run-threads.js';
import { recoverRuns, sweepRuns } from './tasks/recovery.js';
import { streamKey } from './tasks/turn-recorder.js';
import { ChatGateway } from './chat/gateway.js';
import { ServerMetrics } from './metrics/metrics.js';
import { SandboxService } from './sandboxes/service.js';

export const VERSION = '0.1.0';

export interface RunningServer {
  url: string;
  port: number;
  app: FastifyInstance;
  ctx: AppContext;
  close(): Promise<void>;
}

export class StartupError extends Error {}

/** Purges soft-deleted resources past the retention period, at start and then hourly. */
function startPurgeJob(ctx: AppContext): NodeJS.Timeout {
  const run = async () => {
    try {
      const before = new Date(Date.now() - ctx.config.deletedRetentionDays * 86_400_000).toISOString();
      const n = await ctx.resources.store.purgeDeleted(before);
      if (n) ctx.log.info({ count: n }, 'purged deleted resources past their retention');
    } catch (e) {
      ctx.log.warn({ err: e }, 'purging deleted resources failed');
    }
  };
  void run();
  const timer = setInterval(() => void run(), 3_600_000);
  timer.unref();
  return timer;
}

/** Gives every run's host the sandbox seam (`RunHost.acquireSandbox`, runtime.md §1). */
function withSandboxes(sandboxes: SandboxService, run: ExecuteRun): ExecuteRun {
  return (request, host, signal) => run(request, sandboxes.attach(host, request), signal);
}

/** Creates the logger with secret redaction (api.md §10). */
export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: {
      paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie', '*.apiKey', '*.password', '*.token', '*.accessToken', '*.key'],
      censor: '[redacted]',
    },
  });
}

/**
 * Starts Wegent: opens storage, migrates, loads or generates secrets, seeds public resources,
 * creates the admin when configured, and listens. `overrides` lets tests replace config values.
 */
export async function startServer(overrides: Partial<ServerConfig> & { executeRun?: ExecuteRun } = {}, env: Record<string, string | undefined> = process.env, logger?: Logger): Promise<RunningServer> {
  const config: ServerConfig = { ...loadConfig(env), ...overrides };
  const log = logger ?? createLogger(config.logLevel);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(config.dataDir, 0o700);
  const storage = await openStorage(config.databaseUrl);
  let startedSandboxes: SandboxService | undefined;
  try {
    await migrateToLatest(storage.db as never, storage.dialect);
    const encryptionKey = config.encryptionKey ?? loadOrCreateSecretFile(config.dataDir, 'encryption.key', 32);
    const jwtSecret = config.jwtSecret ? Buffer.from(config.jwtSecret) : loadOrCreateSecretFile(config.dataDir, 'jwt.key', 64);
    const secretBox = new SecretBox(encryptionKey);
    const check = await storage.db.selectFrom('settings').select('value').where('key', '=', 'encryption_key_check').executeTakeFirst();
    if (!check) await storage.db.insertInto('settings').values({ key: 'encryption_key_check', value: secretBox.keyCheck() }).execute();
    else if (!secretBox.matches(check.value)) throw new StartupError('the encryption key does not match the one this database was written with');

    const resources = new ResourceService(storage, secretBox, config, log);
    const accounts = new AccountService(storage, config, jwtSecret, log, resources);
    const tasks = new TaskService(storage, resources, config, log);
    resources.taskStatusSource = async (uids) => {
      const states = await taskStore.states(storage.db, uids);
      return new Map([...states].map(([id, state]) => [id, TaskService.statusOf(state)]));
    };
    resources.onTaskCreated = async (trx, record, actor) => {
      const user = await trx.selectFrom('users').select('username').where('id', '=', record.ownerId).executeTakeFirst();
      await tasks.onTaskApplied(trx, record, { ...actor, username: user?.username ?? 'unknown' });
    };
    const ctx: AppContext = { config, storage, secretBox, accounts, resources, tasks, metrics: new ServerMetrics(), log, startedAt: Date.now(), version: VERSION };
    if (config.seed) await seedPublicResources(ctx);
    await accounts.prepareFirstRun();
    const purge = startPurgeJob(ctx);
    // Embedded infrastructure (DESIGN.md §4): in-process bus and cache, the job queue in storage.
    const bus = new InProcessEventBus({ onHandlerError: (err) => log.error({ err }, 'event handler failed') });
    const cache = new MemoryCache();
    const queue = new StorageJobQueue(storage);
    // Sandboxes: driver chosen and leftovers reaped before the server reports ready (sandbox.md §4.3, §13).
    const sandboxes = new SandboxService(ctx, bus, log);
    ctx.sandboxes = startedSandboxes = sandboxes;
    await sandboxes.start();
    tasks.scheduler = {
      enqueue: async (trx, job) => void (await queue.enqueueIn(trx, job)),
      removeWaiting: async (jobId) => (await queue.remove(jobId)) === 'removed',
      queuePosition: async (taskId) => {
        const [w] = await queue.waiting({ maxRunningPerUser: config.maxRunningPerUser, taskId });
        return w ? { position: w.position, reason: w.reason } : null;
      },
      wake: () => queue.wake(),
    };
    tasks.cancelRunning = (taskId, runSeq, reason) => void bus.publish(BusChannels.runCancel, { taskId, runSeq, reason });
    tasks.streamCursor = async (subtaskId) => {
      const text = await cache.getRange(streamKey(subtaskId, 'text'), Number.MAX_SAFE_INTEGER);
      const reasoning = await cache.getRange(streamKey(subtaskId, 'reasoning'), Number.MAX_SAFE_INTEGER);
      return text || reasoning ? { offset: text?.length ?? 0, reasoningOffset: reasoning?.length ?? 0 } : undefined;
    };
    // Runs a previous process left are settled before the server reports ready (chat-protocol.md §13).
    const recovered = await recoverRuns(ctx, queue, bus);
    if (recovered.requeued + recovered.failed + recovered.cancelled + recovered.jobsRestored) log.info(recovered, 'recovered runs left by the previous process');
    const runThreads = !overrides.executeRun && config.runtimeThreads > 0 ? new RunThreads(config.runtimeThreads) : undefined;
    const worker = new RunWorker(ctx, queue, bus, cache, {
      workerId: `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
      capacity: config.workerConcurrency,
      maxRunningPerUser: config.maxRunningPerUser,
      executeRun: withSandboxes(sandboxes, overrides.executeRun ?? runThreads?.executeRun ?? (executeRun as ExecuteRun)),
    });
    const sweeper = setInterval(() => void sweepRuns(ctx, queue, bus, { cancelTimeoutMs: config.cancelTimeoutSeconds * 1000, queueTimeoutMs: config.queueTimeoutSeconds * 1000 }).catch((err) => log.warn({ err }, 'sweep failed')), 2000);
    sweeper.unref();
    const app = await buildApp(ctx);
    const gateway = new ChatGateway(ctx, app.server, bus, cache);
    // A deleted task's sandbox ends at once (sandbox.md §13, TASK_DELETED).
    tasks.notifier = { emit: (e) => { gateway.emit(e); if (e.name === 'task:deleted' && e.taskId) void sandboxes.onTaskDeleted(e.taskId).catch((err) => log.warn({ err }, 'ending a deleted task\'s sandbox failed')); } };
    await gateway.start();
    await worker.start();
    ctx.runtime = { bus, cache, queue, worker, gateway };
    // Sockets and runs end before the HTTP server closes, or open connections would keep it waiting.
    app.addHook('preClose', async () => {
      clearInterval(purge);
      clearInterval(sweeper);
      await worker.stop(config.shutdownGraceSeconds * 1000);
      await sandboxes.close();
      await runThreads?.close();
      await gateway.close();
    });
    app.addHook('onClose', async () => {
      await queue.close();
      await bus.close();
      await cache.close();
    });
    await app.listen({ port: config.port, host: config.host });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    return {
      url,
      port,
      app,
      ctx,
      async close() {
        await app.close();
        await storage.close();
      },
    };
  } catch (e) {
    await startedSandboxes?.close().catch(() => undefined);
    await storage.close();
    throw e;
  }
}
