import path from 'node:path';
import { availableParallelism, tmpdir } from 'node:os';
import { z } from 'zod';

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const duration = z
  .string()
  .regex(/^\d+(s|m|h|d)?$/, "must be seconds or a number followed by s, m, h or d (e.g. '30m', '24h', '7d')")
  .transform((v) => {
    const n = Number.parseInt(v, 10);
    const unit = v.replace(/^\d+/, '') || 's';
    return n * ({ s: 1, m: 60, h: 3600, d: 86400 } as const)[unit as 's' | 'm' | 'h' | 'd'];
  })
  .refine((s) => s >= 60, 'must be at least one minute');

/** Environment variables of the server process (api.md §10); every value is validated at start. */
const EnvSchema = z.object({
  PORT: int(0, 65535).default(8000),
  HOST: z.string().min(1).default('127.0.0.1'),
  WEGENT_DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z.string().regex(/^(sqlite:|mysql:\/\/|mariadb:\/\/|postgres:\/\/|postgresql:\/\/)/, 'must start with sqlite:, mysql://, mariadb:// or postgres://').optional(),
  WEGENT_ADMIN_PASSWORD: z.string().optional(),
  WEGENT_ADMIN_EMAIL: z.string().email().default('admin@localhost'),
  WEGENT_JWT_SECRET: z.string().min(32, 'must be at least 32 bytes').optional(),
  WEGENT_JWT_EXPIRES_IN: duration.default(24 * 3600),
  WEGENT_ENCRYPTION_KEY: z
    .string()
    .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be 32 bytes, base64-encoded')
    .optional(),
  WEGENT_REGISTRATION: z.enum(['open', 'closed']).default('closed'),
  WEGENT_DEFAULT_MODEL: z.string().regex(/^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/, "must be 'namespace/name'").default('default/demo-offline'),
  WEGENT_SEED: bool.default(true),
  WEGENT_SEED_DIR: z.string().optional(),
  WEGENT_MAX_BODY_BYTES: int(1024, 100 * 1024 * 1024).default(1024 * 1024),
  WEGENT_APPLY_MAX_DOCUMENTS: int(1, 100_000).default(2000),
  WEGENT_MAX_MESSAGE_CHARS: int(1, 10_000_000).default(100_000),
  WEGENT_SKILL_MAX_BYTES: int(1024, 1024 * 1024 * 1024).default(10 * 1024 * 1024),
  WEGENT_RATE_LOGIN: int(0, 1_000_000).default(10),
  WEGENT_RATE_DEFAULT: int(0, 10_000_000).default(600),
  WEGENT_RATE_SEND: int(0, 1_000_000).default(30),
  WEGENT_RATE_AI_CREATE: int(0, 1_000_000).default(60),
  WEGENT_DELETED_RETENTION_DAYS: int(0, 3650).default(30),
  WEGENT_CORS_ORIGINS: z.string().optional(),
  WEGENT_TRUST_PROXY: bool.default(false),
  WEGENT_METRICS_TOKEN: z.string().min(16).optional(),
  WEGENT_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  WEGENT_GIT_ALLOW_LOCAL: bool.default(false),
  WEGENT_SHUTDOWN_GRACE_SECONDS: int(0, 3600).default(30),
  WEGENT_PRIVATE_HOSTS_ALLOW: z.string().optional(),
  WEGENT_MODEL_ALLOW_PRIVATE: bool.default(false),
  WEGENT_MAX_TOOL_ROUNDS: int(1, 30).default(30),
  WEGENT_TOOL_OUTPUT_MAX_TOKENS: int(100, 1_000_000).default(15_000),
  WEGENT_DEFAULT_CONTEXT_WINDOW: int(1000, 10_000_000).default(128_000),
  WEGENT_COMPACTION_TRIGGER: z.coerce.number().gt(0).lte(1).default(0.9),
  WEGENT_COMPACTION_TARGET: z.coerce.number().gt(0).lte(1).default(0.7),
  WEGENT_MODEL_IDLE_TIMEOUT_SECONDS: int(1, 3600).default(120),
  WEGENT_TURN_TIMEOUT_SECONDS: int(1, 86_400).default(1800),
  WEGENT_FETCH_ENABLED: bool.default(true),
  WEGENT_FETCH_DENY_HOSTS: z.string().optional(),
  WEGENT_FETCH_MAX_BYTES: int(1024, 100 * 1024 * 1024).default(2 * 1024 * 1024),
  WEGENT_RUNTIME_THREADS: int(0, 64).optional(),
  WEGENT_SOCKET_TRANSPORTS: z.string().regex(/^(websocket|polling)(,(websocket|polling))*$/, "must be 'websocket', 'polling' or both, comma-separated").default('websocket,polling'),
  WEGENT_SOCKET_MAX_PER_USER: int(1, 100_000).default(20),
  WEGENT_MAX_RUNNING_PER_USER: int(1, 10_000).default(5),
  WEGENT_WORKER_CONCURRENCY: int(1, 10_000).default(50),
  WEGENT_QUEUE_TIMEOUT_SECONDS: int(1, 86_400).default(1800),
  WEGENT_CANCEL_TIMEOUT_SECONDS: int(1, 3600).default(10),
  // Sandboxes (sandbox.md §15).
  WEGENT_SANDBOX_DRIVER: z.enum(['auto', 'docker', 'bwrap', 'none']).default('auto'),
  WEGENT_SANDBOX_MAX_RUNNING: int(1, 10_000).default(5),
  WEGENT_SANDBOX_MAX_PER_USER: int(1, 10_000).default(3),
  WEGENT_SANDBOX_QUEUE_TIMEOUT_SECONDS: int(1, 86_400).default(600),
  WEGENT_SANDBOX_WARM_POOL: int(0, 100).default(1),
  WEGENT_SANDBOX_START_CONCURRENCY: int(1, 256).optional(),
  WEGENT_SANDBOX_MAX_MEMORY_MB: int(64, 1_048_576).default(8192),
  WEGENT_SANDBOX_MAX_CPUS: z.coerce.number().positive().max(1024).default(4),
  WEGENT_SANDBOX_MAX_PIDS: int(16, 4_194_304).default(4096),
  WEGENT_SANDBOX_MAX_DISK_MB: int(16, 16_777_216).default(20_480),
  WEGENT_SANDBOX_ALLOW_EGRESS: bool.default(false),
  WEGENT_SANDBOX_WORKSPACE_MODE: z.enum(['dir', 'tmpfs']).default('dir'),
  WEGENT_SANDBOX_WORKSPACE_RETENTION_HOURS: int(0, 87_600).default(24),
  WEGENT_SANDBOX_RUN_DIR: z.string().min(1).max(80, 'must be at most 80 characters (Unix socket paths are limited to 107 bytes)').optional(),
  WEGENT_SANDBOX_PORT_MIN: int(1, 65535).default(10001),
  WEGENT_SANDBOX_PORT_MAX: int(1, 65535).default(10100),
  WEGENT_SANDBOX_PUBLISH_HOST: z.string().min(1).default('127.0.0.1'),
  WEGENT_SANDBOX_ALLOW_WEAK_LIMITS: bool.default(false),
  WEGENT_SANDBOX_REAP_UNLABELLED: bool.default(true),
  WEGENT_SANDBOX_HOST_UID: int(1, 2_147_483_647).default(1000),
  WEGENT_SANDBOX_HOST_GID: int(1, 2_147_483_647).default(1000),
  WEGENT_GIT_CLONE_DEPTH: int(0, 1_000_000).default(50),
  WEGENT_GIT_ALLOW_SSH: bool.default(false),
  WEGENT_CLAUDE_CLI_DIR: z.string().min(1).optional(),
  WEGENT_RESPONSES_SYNC_TIMEOUT_SECONDS: int(1, 86_400).default(600),
});

export type ServerConfig = {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string;
  adminPassword?: string;
  adminEmail: string;
  jwtSecret?: string;
  jwtExpiresInSeconds: number;
  encryptionKey?: Buffer;
  registration: 'open' | 'closed';
  defaultModel: { namespace: string; name: string };
  seed: boolean;
  seedDir?: string;
  maxBodyBytes: number;
  applyMaxDocuments: number;
  maxMessageChars: number;
  skillMaxBytes: number;
  rate: { login: number; default: number; send: number; aiCreate: number };
  deletedRetentionDays: number;
  corsOrigins: string[];
  trustProxy: boolean;
  metricsToken?: string;
  logLevel: string;
  gitAllowLocal: boolean;
  shutdownGraceSeconds: number;
  /** Private hosts that Models, web_fetch and MCP servers may reach (runtime.md §3.5, §6.2). */
  privateHostsAllow: string[];
  modelAllowPrivate: boolean;
  /** Runtime limits (runtime.md §16), passed to every run. */
  runtimeLimits: { maxToolRounds: number; toolOutputMaxTokens: number; defaultContextWindow: number; compactionTrigger?: number; compactionTarget?: number; modelIdleTimeoutSeconds: number; turnTimeoutSeconds: number; fetch: { enabled: boolean; denyHosts: string[]; maxBytes: number } };
  socketTransports: Array<'websocket' | 'polling'>;
  socketMaxPerUser: number;
  /** Worker threads that execute run steps (0: on the main thread). */
  runtimeThreads: number;
  maxRunningPerUser: number;
  workerConcurrency: number;
  queueTimeoutSeconds: number;
  cancelTimeoutSeconds: number;
  /** Sandboxes (sandbox.md §15). */
  sandbox: {
    driver: 'auto' | 'docker' | 'bwrap' | 'none';
    maxRunning: number;
    maxPerUser: number;
    queueTimeoutSeconds: number;
    warmPool: number;
    /** Sandboxes started at once; unset: twice the number of cores. */
    startConcurrency?: number;
    maxima: { memoryMB: number; cpus: number; pids: number; diskMB: number };
    allowEgress: boolean;
    workspaceMode: 'dir' | 'tmpfs';
    workspaceRetentionHours: number;
    runDir: string;
    portMin: number;
    portMax: number;
    publishHost: string;
    allowWeakLimits: boolean;
    /** WEGENT_SANDBOX_REAP_UNLABELLED: reaping also removes sandboxes no state names (sandbox.md §13). */
    reapUnlabelled: boolean;
    hostUid: number;
    hostGid: number;
    gitCloneDepth: number;
    gitAllowSsh: boolean;
    claudeCliDir?: string;
  };
  /** How long a non-streaming Responses / chat completions request waits for its run (api.md §8.2). */
  responsesSyncTimeoutSeconds: number;
};

export class ConfigError extends Error {}

/** Reads and validates the configuration; a bad value throws a ConfigError naming the variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): ServerConfig {
  const clean: Record<string, string> = {};
  for (const key of Object.keys(EnvSchema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== '') clean[key] = v;
  }
  const parsed = EnvSchema.safeParse(clean);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`invalid configuration: ${String(issue.path[0])}: ${issue.message}`);
  }
  const e = parsed.data;
  if (e.WEGENT_SANDBOX_PORT_MIN > e.WEGENT_SANDBOX_PORT_MAX) throw new ConfigError('invalid configuration: WEGENT_SANDBOX_PORT_MIN: must not be above WEGENT_SANDBOX_PORT_MAX');
  const dataDir = path.resolve(e.WEGENT_DATA_DIR);
  const [ns, name] = e.WEGENT_DEFAULT_MODEL.split('/') as [string, string];
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir,
    databaseUrl: e.DATABASE_URL ?? `sqlite:${path.join(dataDir, 'wegent.db')}`,
    adminPassword: e.WEGENT_ADMIN_PASSWORD,
    adminEmail: e.WEGENT_ADMIN_EMAIL,
    jwtSecret: e.WEGENT_JWT_SECRET,
    jwtExpiresInSeconds: e.WEGENT_JWT_EXPIRES_IN,
    encryptionKey: e.WEGENT_ENCRYPTION_KEY ? Buffer.from(e.WEGENT_ENCRYPTION_KEY, 'base64') : undefined,
    registration: e.WEGENT_REGISTRATION,
    defaultModel: { namespace: ns, name },
    seed: e.WEGENT_SEED,
    seedDir: e.WEGENT_SEED_DIR,
    maxBodyBytes: e.WEGENT_MAX_BODY_BYTES,
    applyMaxDocuments: e.WEGENT_APPLY_MAX_DOCUMENTS,
    maxMessageChars: e.WEGENT_MAX_MESSAGE_CHARS,
    skillMaxBytes: e.WEGENT_SKILL_MAX_BYTES,
    rate: { login: e.WEGENT_RATE_LOGIN, default: e.WEGENT_RATE_DEFAULT, send: e.WEGENT_RATE_SEND, aiCreate: e.WEGENT_RATE_AI_CREATE },
    deletedRetentionDays: e.WEGENT_DELETED_RETENTION_DAYS,
    corsOrigins: e.WEGENT_CORS_ORIGINS ? e.WEGENT_CORS_ORIGINS.split(',').map((s) => s.trim()).filter(Boolean) : [],
    trustProxy: e.WEGENT_TRUST_PROXY,
    metricsToken: e.WEGENT_METRICS_TOKEN,
    logLevel: e.WEGENT_LOG_LEVEL,
    gitAllowLocal: e.WEGENT_GIT_ALLOW_LOCAL,
    shutdownGraceSeconds: e.WEGENT_SHUTDOWN_GRACE_SECONDS,
    privateHostsAllow: e.WEGENT_PRIVATE_HOSTS_ALLOW ? e.WEGENT_PRIVATE_HOSTS_ALLOW.split(',').map((h) => h.trim()).filter(Boolean) : [],
    modelAllowPrivate: e.WEGENT_MODEL_ALLOW_PRIVATE,
    runtimeLimits: {
      maxToolRounds: e.WEGENT_MAX_TOOL_ROUNDS,
      toolOutputMaxTokens: e.WEGENT_TOOL_OUTPUT_MAX_TOKENS,
      defaultContextWindow: e.WEGENT_DEFAULT_CONTEXT_WINDOW,
      compactionTrigger: e.WEGENT_COMPACTION_TRIGGER,
      compactionTarget: e.WEGENT_COMPACTION_TARGET,
      modelIdleTimeoutSeconds: e.WEGENT_MODEL_IDLE_TIMEOUT_SECONDS,
      turnTimeoutSeconds: e.WEGENT_TURN_TIMEOUT_SECONDS,
      fetch: { enabled: e.WEGENT_FETCH_ENABLED, denyHosts: e.WEGENT_FETCH_DENY_HOSTS ? e.WEGENT_FETCH_DENY_HOSTS.split(',').map((h) => h.trim()).filter(Boolean) : [], maxBytes: e.WEGENT_FETCH_MAX_BYTES },
    },
    socketTransports: e.WEGENT_SOCKET_TRANSPORTS.split(',') as Array<'websocket' | 'polling'>,
    socketMaxPerUser: e.WEGENT_SOCKET_MAX_PER_USER,
    runtimeThreads: e.WEGENT_RUNTIME_THREADS ?? Math.max(1, availableParallelism() - 1),
    maxRunningPerUser: e.WEGENT_MAX_RUNNING_PER_USER,
    workerConcurrency: e.WEGENT_WORKER_CONCURRENCY,
    queueTimeoutSeconds: e.WEGENT_QUEUE_TIMEOUT_SECONDS,
    cancelTimeoutSeconds: e.WEGENT_CANCEL_TIMEOUT_SECONDS,
    sandbox: {
      driver: e.WEGENT_SANDBOX_DRIVER,
      maxRunning: e.WEGENT_SANDBOX_MAX_RUNNING,
      maxPerUser: e.WEGENT_SANDBOX_MAX_PER_USER,
      queueTimeoutSeconds: e.WEGENT_SANDBOX_QUEUE_TIMEOUT_SECONDS,
      warmPool: e.WEGENT_SANDBOX_WARM_POOL,
      startConcurrency: e.WEGENT_SANDBOX_START_CONCURRENCY,
      maxima: { memoryMB: e.WEGENT_SANDBOX_MAX_MEMORY_MB, cpus: e.WEGENT_SANDBOX_MAX_CPUS, pids: e.WEGENT_SANDBOX_MAX_PIDS, diskMB: e.WEGENT_SANDBOX_MAX_DISK_MB },
      allowEgress: e.WEGENT_SANDBOX_ALLOW_EGRESS,
      workspaceMode: e.WEGENT_SANDBOX_WORKSPACE_MODE,
      workspaceRetentionHours: e.WEGENT_SANDBOX_WORKSPACE_RETENTION_HOURS,
      runDir: path.resolve(e.WEGENT_SANDBOX_RUN_DIR ?? path.join(tmpdir(), `wegent-${process.getuid?.() ?? 0}`)),
      portMin: e.WEGENT_SANDBOX_PORT_MIN,
      portMax: e.WEGENT_SANDBOX_PORT_MAX,
      publishHost: e.WEGENT_SANDBOX_PUBLISH_HOST,
      allowWeakLimits: e.WEGENT_SANDBOX_ALLOW_WEAK_LIMITS,
      reapUnlabelled: e.WEGENT_SANDBOX_REAP_UNLABELLED,
      hostUid: e.WEGENT_SANDBOX_HOST_UID,
      hostGid: e.WEGENT_SANDBOX_HOST_GID,
      gitCloneDepth: e.WEGENT_GIT_CLONE_DEPTH,
      gitAllowSsh: e.WEGENT_GIT_ALLOW_SSH,
      claudeCliDir: e.WEGENT_CLAUDE_CLI_DIR,
    },
    responsesSyncTimeoutSeconds: e.WEGENT_RESPONSES_SYNC_TIMEOUT_SECONDS,
  };
}
