import { z } from 'zod';

/** Sandbox lifecycle states (sandbox.md §3); `Queued` exists only in `sandbox:status`, never on a record. */
export const SANDBOX_STATES = ['Created', 'Running', 'Completed', 'Failed', 'Cleanup', 'Deleted'] as const;
export const SandboxState = z.enum(SANDBOX_STATES);

/** The Sandbox object of the REST API (api.md §6). */
export const SandboxView = z
  .object({
    id: z.string(),
    taskId: z.string(),
    driver: z.enum(['docker', 'bwrap']),
    state: SandboxState,
    stateReason: z.string().nullable(),
    message: z.string().nullable(),
    image: z.string().nullable(),
    limits: z.object({ memoryMB: z.number(), cpus: z.number(), pids: z.number(), diskMB: z.number(), execTimeoutSeconds: z.number(), network: z.enum(['none', 'egress']) }),
    ports: z.array(z.object({ container: z.number().int(), host: z.number().int(), url: z.string() })),
    createdAt: z.string(),
    readyAt: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
    endedAt: z.string().nullable(),
  })
  .meta({ id: 'Sandbox' });
export type SandboxView = z.infer<typeof SandboxView>;

/** `sandbox:status` (chat-protocol.md §6.2). */
export const SandboxStatusPayload = z.object({
  taskId: z.string(),
  sandboxId: z.string().nullable(),
  state: z.enum(['Queued', ...SANDBOX_STATES]),
  message: z.string().optional(),
  queue: z.object({ position: z.number().int() }).optional(),
});
export type SandboxStatusPayload = z.infer<typeof SandboxStatusPayload>;

/** A Shell's `spec.sandbox` overrides as the runtime and the pool receive them (resources.md §12.1). */
export interface ShellSandboxSettings {
  network?: 'none' | 'egress';
  memoryMB?: number;
  cpus?: number;
  pids?: number;
  diskMB?: number;
  execTimeoutSeconds?: number;
  idleTimeoutSeconds?: number;
  publishPorts?: number[];
}

/** `exec` in a sandbox (runtime.md §6.4, sandbox.md §10). */
export interface SandboxExecRequest {
  command: string;
  cwd?: string;
  env?: Record<string, string>;
  timeoutSeconds?: number;
}
export interface SandboxExecResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  oomKilled: boolean;
  durationMs: number;
  stdout: string;
  stderr: string;
  truncated: { stdout: boolean; stderr: boolean };
}
export interface SandboxReadResult { path: string; content: string; encoding: 'utf8' | 'base64'; binary: boolean; size: number; truncated: boolean; totalLines: number | null }
export interface SandboxWriteResult { path: string; bytesWritten: number }
export interface SandboxListResult { path: string; entries: { path: string; type: 'file' | 'dir' | 'symlink' | 'other'; size: number; modifiedAt?: string }[]; truncated: boolean }

/** A stdio program to run inside a sandbox (a Ghost's stdio MCP server, resources.md §10.2). */
export interface SandboxStdioConfig {
  command: string;
  args?: string[];
  env?: Record<string, string>;
}

/** How a sandbox call failed: the agent's code (`PATH_OUTSIDE_WORKSPACE`, `NOT_FOUND`, ...) and its message. */
export class SandboxCallError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'SandboxCallError';
  }
}

/**
 * What a turn works with once its task's sandbox is acquired (sandbox.md §2). The type lives in `core` so
 * that `runtime` uses sandboxes without importing `sandbox`; the server implements it.
 */
export interface SandboxSession {
  readonly id: string;
  /** The sandbox's memory limit, for the out-of-memory sentence (runtime.md §6.4). */
  readonly memoryMB: number;
  exec(req: SandboxExecRequest, opts: { signal: AbortSignal; onOutput(stream: 'stdout' | 'stderr', text: string): void }): Promise<SandboxExecResult>;
  readFile(req: { path: string; offset?: number; limit?: number; maxBytes?: number }, opts: { signal: AbortSignal }): Promise<SandboxReadResult>;
  /** `encoding: 'base64'` writes bytes (skill packages, runtime.md §8); utf8 by default. */
  writeFile(req: { path: string; content: string; encoding?: 'utf8' | 'base64'; append?: boolean }, opts: { signal: AbortSignal }): Promise<SandboxWriteResult>;
  listFiles(req: { path: string; recursive?: boolean; maxEntries?: number }, opts: { signal: AbortSignal }): Promise<SandboxListResult>;
  /**
   * Starts a stdio program (an MCP server) inside the sandbox behind the agent's relay (sandbox.md §14.3)
   * and returns the host-side path of the Unix socket that carries its stdin/stdout. It stops at
   * `stopStdio` or when the turn releases the sandbox. Absent: this server's sandboxes cannot run one.
   */
  startStdio?(name: string, cfg: SandboxStdioConfig, opts: { signal?: AbortSignal }): Promise<{ hostSocketPath: string }>;
  /** Stops a program `startStdio` started (its whole process group). */
  stopStdio?(name: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Set once the sandbox ended while the turn held it: the turn fails with this (SANDBOX_FAILED). */
  failure(): { code: 'SANDBOX_FAILED'; message: string } | undefined;
  /** The turn is done with the sandbox (its idle timer may start). */
  release(): void;
}

/** A failed acquisition: the turn fails with this code and message (runtime.md §15). */
export class SandboxAcquireError extends Error {
  constructor(readonly code: 'SANDBOX_UNAVAILABLE' | 'SANDBOX_QUEUE_TIMEOUT' | 'SANDBOX_FAILED', message: string) {
    super(message);
    this.name = 'SandboxAcquireError';
  }
}
