/**
 * `POST /v1/exec` inside the sandbox (sandbox.md §10): `/bin/sh -c` in its own session and process
 * group, output streamed as NDJSON, per-stream output cap, timeout and cancel kill the whole group.
 */
import { spawn } from 'node:child_process';
import type { ServerResponse } from 'node:http';
import { StringDecoder } from 'node:string_decoder';

export const OUTPUT_CAP_BYTES = 1024 * 1024;
export const DEFAULT_TIMEOUT_SECONDS = 120;
export const MAX_TIMEOUT_SECONDS = 600;
const KILL_GRACE_MS = 1000;
const DRAIN_MS = 100;

export interface ExecBody {
  execId?: string;
  command: string | string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutSeconds?: number;
}

interface Running {
  pgid: number;
  /** Resolves once no process of the group remains. */
  kill(): Promise<void>;
}

const running = new Map<string, Running>();
let counter = 0;

function groupAlive(pgid: number): boolean {
  try { process.kill(-pgid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try { process.kill(-pgid, sig); } catch { /* gone */ }
}

/** SIGTERM to the group, SIGKILL 1 s later; resolves when the group is gone (or after 3 s). */
export function killGroup(pgid: number): Promise<void> {
  signalGroup(pgid, 'SIGTERM');
  const started = Date.now();
  return new Promise((resolve) => {
    let killed = false;
    const tick = () => {
      if (!groupAlive(pgid) || Date.now() - started > 3000) { resolve(); return; }
      if (!killed && Date.now() - started >= KILL_GRACE_MS) { killed = true; signalGroup(pgid, 'SIGKILL'); }
      setTimeout(tick, 10);
    };
    setTimeout(tick, 10);
  });
}

export function validateExec(body: unknown): ExecBody | string {
  const b = body as Partial<ExecBody> | null;
  if (!b || typeof b !== 'object') return 'the body must be a JSON object';
  const cmdOk = typeof b.command === 'string' ? b.command.length > 0 : Array.isArray(b.command) && b.command.length > 0 && b.command.every((c) => typeof c === 'string');
  if (!cmdOk) return 'command must be a non-empty string or array of strings';
  if (b.cwd !== undefined && typeof b.cwd !== 'string') return 'cwd must be a string';
  if (b.env !== undefined && (typeof b.env !== 'object' || b.env === null || Object.values(b.env).some((v) => typeof v !== 'string'))) return 'env must map names to strings';
  if (b.timeoutSeconds !== undefined && (typeof b.timeoutSeconds !== 'number' || !(b.timeoutSeconds > 0))) return 'timeoutSeconds must be a positive number';
  if (b.execId !== undefined && (typeof b.execId !== 'string' || !/^[\w.-]{1,100}$/.test(b.execId))) return 'execId must be a short identifier';
  return b as ExecBody;
}

/** Runs one command and streams its events into `res` (already known to be valid). */
export function runExec(body: ExecBody, res: ServerResponse): void {
  const execId = body.execId ?? `x${++counter}`;
  const timeoutMs = Math.min(body.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS) * 1000;
  const argv = typeof body.command === 'string' ? ['/bin/sh', '-c', body.command] : body.command;
  const started = Date.now();
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  const send = (ev: Record<string, unknown>) => { if (!res.destroyed && !res.writableEnded) res.write(JSON.stringify(ev) + '\n'); };

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'WEGENT_AGENT_SOCKET') env[k] = v;
  Object.assign(env, body.env);

  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd: body.cwd ?? '/workspace', env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let timedOut = false;
  let cancelled = false;
  let killing: Promise<void> | undefined;
  const dropped = { stdout: 0, stderr: 0 };
  const forwarded = { stdout: 0, stderr: 0 };

  const kill = (): Promise<void> => {
    if (child.pid === undefined) return Promise.resolve();
    killing ??= killGroup(child.pid);
    return killing;
  };

  for (const stream of ['stdout', 'stderr'] as const) {
    const decoder = new StringDecoder('utf8');
    child[stream].on('data', (chunk: Buffer) => {
      const room = Math.max(0, OUTPUT_CAP_BYTES - forwarded[stream]);
      if (room > 0) {
        const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
        forwarded[stream] += part.length;
        const text = decoder.write(part);
        if (text) send({ type: stream, data: text });
      }
      if (chunk.length > room) {
        // The first dropped byte marks the stream truncated; the rest is only counted.
        if (dropped[stream] === 0) send({ type: 'truncated', stream, limitBytes: OUTPUT_CAP_BYTES });
        dropped[stream] += chunk.length - room;
      }
    });
    child[stream].on('error', () => undefined);
  }

  // Both pipes closed: nothing more can arrive, so the result need not wait the full drain time.
  const pipesClosed = Promise.all(
    (['stdout', 'stderr'] as const).map((s) => new Promise<void>((resolve) => {
      child[s].once('end', resolve);
      child[s].once('close', resolve);
    })),
  );
  const timer = setTimeout(() => { timedOut = true; void kill(); }, timeoutMs);
  // A client that goes away (cancel) takes the command with it.
  res.on('close', () => { if (!res.writableFinished) { cancelled = true; void kill(); } });

  const entry: Running = { pgid: child.pid ?? -1, kill };
  running.set(execId, entry);

  let failed = false;
  child.on('error', (err) => {
    if (failed) return;
    failed = true;
    clearTimeout(timer);
    running.delete(execId);
    send({ type: 'error', message: err.message });
    send({ type: 'exit', exitCode: 127, signal: null, timedOut: false, durationMs: Date.now() - started, droppedBytes: 0 });
    res.end();
  });
  child.on('spawn', () => send({ type: 'started', execId, pid: child.pid }));
  child.on('exit', (code, signal) => {
    clearTimeout(timer);
    if (failed) return;
    void (async () => {
      // Output still arriving shortly after the shell's exit is collected (at most DRAIN_MS: a background
      // process may hold the pipes open); a killed group is awaited.
      let drain: NodeJS.Timeout | undefined;
      await Promise.race([pipesClosed, new Promise((r) => { drain = setTimeout(r, DRAIN_MS); })]);
      clearTimeout(drain);
      if (killing) await killing;
      child.stdout.destroy();
      child.stderr.destroy();
      running.delete(execId);
      if (cancelled) return;
      send({
        type: 'exit', exitCode: code, signal, timedOut, durationMs: Date.now() - started,
        droppedBytes: dropped.stdout + dropped.stderr, dropped,
      });
      res.end();
    })();
  });
}

/** `POST /v1/exec/{id}/kill`: resolves once the group is gone; false when the id is unknown. */
export async function killExec(execId: string): Promise<boolean> {
  const r = running.get(execId);
  if (!r) return false;
  await r.kill();
  return true;
}

/** Agent shutdown: every running command group is killed. */
export async function killAll(): Promise<void> {
  await Promise.all([...running.values()].map((r) => r.kill()));
}
