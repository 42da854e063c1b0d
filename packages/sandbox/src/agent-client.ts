/**
 * The host side of the sandbox agent (sandbox.md §9, §10, §14.1): HTTP/1.1 over `<run>/agent.sock`.
 */
import { randomUUID } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A sandbox as the client sees it: its agent socket, or the run folder holding `agent.sock`. */
export type AgentTarget = string | { socketPath: string } | { runDir: string };

export function agentSocketPath(t: AgentTarget): string {
  if (typeof t === 'string') return t;
  return 'socketPath' in t ? t.socketPath : join(t.runDir, 'agent.sock');
}

export interface ExecRequest {
  command: string | string[];
  cwd?: string;
  env?: Record<string, string>;
  /** Default 120, at most 600. */
  timeoutSeconds?: number;
}

export interface ExecResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  durationMs: number;
  stdout: string;
  stderr: string;
  /** Output bytes beyond the per-stream cap (1 MiB), counted and dropped. */
  droppedBytes: number;
  truncated: { stdout: boolean; stderr: boolean };
  /**
   * The kernel's OOM killer killed a process of the sandbox while the command ran (the sandbox's
   * cgroup `oom_kill` counter rose, read on the host, §9). Always false from the bare client: the
   * pool's handle fills it in.
   */
  oomKilled: boolean;
}

export interface ExecOptions {
  signal?: AbortSignal;
  onOutput?(stream: 'stdout' | 'stderr', text: string): void;
}

export interface ReadFileRequest { path: string; offset?: number; limit?: number; maxBytes?: number }
export interface ReadFileResult { path: string; content: string; encoding: 'utf8' | 'base64'; binary: boolean; size: number; truncated: boolean; totalLines: number | null }
export interface WriteFileRequest { path: string; content: string; encoding?: 'utf8' | 'base64'; append?: boolean }
export interface WriteFileResult { path: string; bytesWritten: number }
export interface ListFilesRequest { path: string; recursive?: boolean; maxEntries?: number }
export interface ListFilesResult { path: string; entries: { path: string; type: 'file' | 'dir' | 'symlink' | 'other'; size: number }[]; truncated: boolean }

/** An error answer of the agent (`{error: {code, message}}`), or a transport failure. */
export class AgentCallError extends Error {
  constructor(readonly code: string, message: string, readonly status?: number) {
    super(message);
    this.name = 'AgentCallError';
  }
}

/** Thrown by `exec` when its signal aborts; `confirmed` tells whether the agent reported the group gone. */
export class ExecCancelledError extends Error {
  readonly code = 'CANCELLED';
  constructor(readonly confirmed: boolean) {
    super(confirmed ? 'the command was cancelled' : 'the command was cancelled but the agent did not confirm it was gone');
    this.name = 'AbortError';
  }
}

const TRUNCATION_MARKER = (stream: string, limit: number) => `\n[wegent: ${stream} truncated at ${limit} bytes; the rest was dropped]\n`;
/** How long the agent has to confirm a kill (§10). */
const KILL_CONFIRM_MS = 2000;
/** The pool's outer guard ends a command this long after its own timeout. */
const OUTER_GUARD_MS = 5000;

function call(target: AgentTarget, method: string, path: string, body: unknown, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = httpRequest({
      socketPath: agentSocketPath(target), method, path, agent: false, signal: opts.signal, timeout: opts.timeoutMs,
      headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
    }, resolve);
    req.on('timeout', () => req.destroy(new AgentCallError('AGENT_TIMEOUT', `the sandbox agent did not answer ${method} ${path} in time`)));
    req.on('error', (err) => reject(err instanceof AgentCallError || (err as Error).name === 'AbortError' ? err : new AgentCallError('AGENT_UNREACHABLE', `the sandbox agent is not reachable: ${(err as Error).message}`)));
    req.end(data);
  });
}

async function readAll(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function callJson<T>(target: AgentTarget, method: string, path: string, body?: unknown, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
  const res = await call(target, method, path, body, { timeoutMs: opts.timeoutMs ?? 30_000, signal: opts.signal });
  const text = await readAll(res);
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch { throw new AgentCallError('BAD_ANSWER', `the sandbox agent answered ${res.statusCode} with something other than JSON`, res.statusCode); }
  if ((res.statusCode ?? 500) >= 400) {
    const e = (parsed as { error?: { code?: string; message?: string } }).error;
    throw new AgentCallError(e?.code ?? 'AGENT_ERROR', e?.message ?? `the sandbox agent answered ${res.statusCode}`, res.statusCode);
  }
  return parsed as T;
}

export function health(target: AgentTarget, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ ok: true; version: string; uptimeMs: number }> {
  return callJson(target, 'GET', '/v1/health', undefined, { timeoutMs: opts.timeoutMs ?? 2000, signal: opts.signal });
}

/**
 * Readiness (§9): `GET /v1/health` every 20 ms until it answers. `stillRunning` ends the wait early
 * when the sandbox's main process is gone. Resolves true when healthy, false on timeout or exit.
 */
export async function waitForAgent(target: AgentTarget, opts: { timeoutMs: number; signal?: AbortSignal; stillRunning?: () => Promise<boolean> }): Promise<boolean> {
  const deadline = Date.now() + opts.timeoutMs;
  for (let i = 0; Date.now() < deadline; i++) {
    if (opts.signal?.aborted) return false;
    try { await health(target, { timeoutMs: 1000 }); return true; } catch { /* not yet */ }
    if (opts.stillRunning && i % 5 === 4 && !(await opts.stillRunning())) return false;
    await sleep(20);
  }
  return false;
}

/** Asks the agent to kill a command's process group; resolves true once it confirms the group is gone. */
export async function killExec(target: AgentTarget, execId: string, timeoutMs = KILL_CONFIRM_MS): Promise<boolean> {
  try {
    const r = await callJson<{ ok: boolean }>(target, 'POST', `/v1/exec/${encodeURIComponent(execId)}/kill`, {}, { timeoutMs });
    return r.ok === true;
  } catch { return false; }
}

/**
 * Runs a command in the sandbox, streaming its output to `onOutput`. Aborting the signal kills the
 * command's process group (the kill endpoint, and closing the stream) and rejects with
 * `ExecCancelledError`.
 */
export function exec(target: AgentTarget, request: ExecRequest, opts: ExecOptions = {}): Promise<ExecResult> {
  const execId = randomUUID();
  const timeoutSeconds = request.timeoutSeconds ?? 120;
  return new Promise<ExecResult>((resolve, reject) => {
    if (opts.signal?.aborted) { reject(new ExecCancelledError(true)); return; }
    const out = { stdout: '', stderr: '' };
    const truncated = { stdout: false, stderr: false };
    let settled = false;
    let res: IncomingMessage | undefined;
    const data = Buffer.from(JSON.stringify({ execId, ...request, timeoutSeconds }));
    const req = httpRequest({
      socketPath: agentSocketPath(target), method: 'POST', path: '/v1/exec', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': data.length },
    });
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      void killExec(target, execId).then((confirmed) => {
        req.destroy(); res?.destroy();
        reject(new ExecCancelledError(confirmed));
      });
    };
    const guard = setTimeout(() => finish(() => {
      req.destroy(); res?.destroy();
      reject(new AgentCallError('AGENT_UNRESPONSIVE', `the command did not end within ${OUTER_GUARD_MS / 1000} s of its ${timeoutSeconds} s timeout`));
    }), timeoutSeconds * 1000 + OUTER_GUARD_MS);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => finish(() => reject(new AgentCallError('AGENT_UNREACHABLE', `the sandbox agent is not reachable: ${err.message}`))));
    req.on('response', (r) => {
      res = r;
      if ((r.statusCode ?? 500) >= 400) {
        void readAll(r).then((text) => finish(() => {
          let e: { code?: string; message?: string } | undefined;
          try { e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error; } catch { /* not JSON */ }
          reject(new AgentCallError(e?.code ?? 'AGENT_ERROR', e?.message ?? `the sandbox agent answered ${r.statusCode}`, r.statusCode));
        }), (err: Error) => finish(() => reject(err)));
        return;
      }
      let buffered = '';
      let exited = false;
      r.setEncoding('utf8');
      r.on('data', (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (!line || settled) continue;
          let ev: { type: string; data?: string; stream?: 'stdout' | 'stderr'; limitBytes?: number; exitCode?: number | null; signal?: string | null; timedOut?: boolean; durationMs?: number; droppedBytes?: number; message?: string };
          try { ev = JSON.parse(line) as typeof ev; } catch { continue; }
          if (ev.type === 'stdout' || ev.type === 'stderr') {
            out[ev.type] += ev.data ?? '';
            opts.onOutput?.(ev.type, ev.data ?? '');
          } else if (ev.type === 'truncated' && ev.stream) {
            truncated[ev.stream] = true;
            const marker = TRUNCATION_MARKER(ev.stream, ev.limitBytes ?? 0);
            out[ev.stream] += marker;
            opts.onOutput?.(ev.stream, marker);
          } else if (ev.type === 'error') {
            // The command could not start (a missing program or cwd): the reason goes to stderr.
            const text = `${ev.message ?? 'the command could not start'}\n`;
            out.stderr += text;
            opts.onOutput?.('stderr', text);
          } else if (ev.type === 'exit') {
            exited = true;
            finish(() => resolve({
              exitCode: ev.exitCode ?? null, signal: ev.signal ?? null, timedOut: ev.timedOut === true, durationMs: ev.durationMs ?? 0,
              stdout: out.stdout, stderr: out.stderr, droppedBytes: ev.droppedBytes ?? 0, truncated, oomKilled: false,
            }));
          }
        }
      });
      r.on('end', () => { if (!exited) finish(() => reject(new AgentCallError('AGENT_UNRESPONSIVE', 'the sandbox agent closed the command stream without an exit'))); });
      r.on('error', (err) => finish(() => reject(new AgentCallError('AGENT_UNREACHABLE', `the command stream broke: ${err.message}`))));
    });
    req.end(data);
  });
}

export function readFile(target: AgentTarget, request: ReadFileRequest, opts: { signal?: AbortSignal } = {}): Promise<ReadFileResult> {
  return callJson(target, 'POST', '/v1/files/read', request, opts);
}

export function writeFile(target: AgentTarget, request: WriteFileRequest, opts: { signal?: AbortSignal } = {}): Promise<WriteFileResult> {
  return callJson(target, 'POST', '/v1/files/write', request, opts);
}

export function listFiles(target: AgentTarget, request: ListFilesRequest, opts: { signal?: AbortSignal } = {}): Promise<ListFilesResult> {
  return callJson(target, 'POST', '/v1/files/list', request, opts);
}

/** A stdio program started by the agent (§14.3), reached through a Unix socket. */
export interface StdioConfig { command: string; args?: string[]; env?: Record<string, string> }
export interface StdioStarted {
  name: string;
  /** The socket inside the sandbox (`/run/wegent/mcp-<n>.sock`). */
  socket: string;
  /** The same socket on the host (`<run>/mcp-<n>.sock`): connect here. */
  hostSocketPath: string;
}
export interface StdioStatus { running: boolean; exitCode: number | null; signal: string | null; stderr: string; message?: string }

function runDirOf(target: AgentTarget): string {
  if (typeof target !== 'string' && 'runDir' in target) return target.runDir;
  return agentSocketPath(target).replace(/\/[^/]+$/, '');
}

/** Starts `cfg.command` in its own process group inside the sandbox with a socket relaying its stdio. */
export async function startStdio(target: AgentTarget, name: string, cfg: StdioConfig, opts: { signal?: AbortSignal } = {}): Promise<StdioStarted> {
  const r = await callJson<{ socket: string }>(target, 'POST', `/v1/mcp/${encodeURIComponent(name)}/start`, { command: cfg.command, args: cfg.args ?? [], env: cfg.env ?? {} }, opts);
  return { name, socket: r.socket, hostSocketPath: join(runDirOf(target), basename(r.socket)) };
}

/** Stops the program's process group (SIGTERM, SIGKILL 1 s later) and removes its socket. */
export async function stopStdio(target: AgentTarget, name: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
  await callJson<{ ok: true }>(target, 'POST', `/v1/mcp/${encodeURIComponent(name)}/stop`, {}, opts);
}

/** Whether the program still runs, and the tail of its stderr (64 KiB) for error messages. */
export function stdioStatus(target: AgentTarget, name: string, opts: { signal?: AbortSignal } = {}): Promise<StdioStatus> {
  return callJson(target, 'GET', `/v1/mcp/${encodeURIComponent(name)}`, undefined, opts);
}
