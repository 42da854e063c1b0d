/**
 * stdio relay (sandbox.md §14.3): `POST /v1/mcp/{name}/start` starts a program in its own process
 * group (base environment + the request's env, cwd /workspace) and listens on
 * `/run/wegent/mcp-<n>.sock`. One connection at a time; bytes are copied both ways between the
 * connection and the program's stdin/stdout; stderr goes to a 64 KiB ring buffer shown in errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { killGroup } from './exec.js';
import { AgentError } from './files.js';

export const STDERR_RING_BYTES = 64 * 1024;
const NAME = /^[A-Za-z0-9_.-]{1,63}$/;

interface Relay {
  name: string;
  socket: string;
  child: ChildProcess;
  server: Server;
  stderr: Buffer[];
  stderrBytes: number;
  conn?: Socket;
  exit?: { code: number | null; signal: string | null };
  stopping?: Promise<void>;
}

const relays = new Map<string, Relay>();
let counter = 0;

function pushStderr(r: Relay, chunk: Buffer): void {
  r.stderr.push(chunk);
  r.stderrBytes += chunk.length;
  while (r.stderrBytes > STDERR_RING_BYTES && r.stderr.length > 0) {
    const first = r.stderr[0] as Buffer;
    const over = r.stderrBytes - STDERR_RING_BYTES;
    if (first.length <= over) { r.stderr.shift(); r.stderrBytes -= first.length; } else { r.stderr[0] = first.subarray(over); r.stderrBytes -= over; }
  }
}

function stderrText(r: Relay): string {
  return Buffer.concat(r.stderr).toString('utf8');
}

function describeExit(r: Relay): string {
  const how = r.exit?.signal ? `was killed by ${r.exit.signal}` : `exited with code ${r.exit?.code}`;
  const err = stderrText(r).trim();
  return `the stdio server '${r.name}' ${how}${err ? `; its stderr: ${err}` : ''}`;
}

function validate(body: Record<string, unknown>): { command: string; args: string[]; env: Record<string, string> } {
  const { command, args, env } = body;
  if (typeof command !== 'string' || command.length === 0) throw new AgentError(400, 'BAD_REQUEST', 'command must be a non-empty string');
  if (args !== undefined && (!Array.isArray(args) || args.some((a) => typeof a !== 'string'))) throw new AgentError(400, 'BAD_REQUEST', 'args must be an array of strings');
  if (env !== undefined && (typeof env !== 'object' || env === null || Array.isArray(env) || Object.values(env).some((v) => typeof v !== 'string'))) throw new AgentError(400, 'BAD_REQUEST', 'env must map names to strings');
  return { command, args: (args as string[] | undefined) ?? [], env: (env as Record<string, string> | undefined) ?? {} };
}

/** Starts the program and its socket; resolves with the socket path inside the sandbox. */
export async function startStdio(name: string, body: Record<string, unknown>, runDir: string): Promise<{ socket: string }> {
  if (!NAME.test(name)) throw new AgentError(400, 'BAD_REQUEST', 'the name must be 1-63 letters, digits, ".", "_" or "-"');
  const cfg = validate(body);
  const existing = relays.get(name);
  if (existing && !existing.exit) throw new AgentError(409, 'CONFLICT', `a stdio server named '${name}' is already running`);
  if (existing) await stopStdio(name);

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'WEGENT_AGENT_SOCKET') env[k] = v;
  Object.assign(env, cfg.env);
  // The socket is named by a counter: a 63-character name would not fit a socket path (§14.1).
  const socket = join(runDir, `mcp-${++counter}.sock`);
  const child = spawn(cfg.command, cfg.args, { cwd: '/workspace', env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  const relay: Relay = { name, socket, child, server: createServer(), stderr: [], stderrBytes: 0 };
  child.stderr?.on('data', (c: Buffer) => pushStderr(relay, c));
  child.stdin?.on('error', () => undefined);
  child.stdout?.pause();

  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (err) => reject(new AgentError(400, 'START_FAILED', `the stdio server '${name}' could not start: ${err.message}`)));
  });
  relays.set(name, relay);
  child.on('exit', (code, signal) => {
    relay.exit = { code, signal };
    child.stdout?.resume();
    relay.server.close();
    rmSync(socket, { force: true });
  });
  // Output still buffered reaches the connection before it closes.
  child.on('close', () => relay.conn?.end());

  relay.server.on('connection', (conn) => {
    if (relay.conn || relay.exit) { conn.destroy(); return; }
    relay.conn = conn;
    conn.on('error', () => undefined);
    conn.pipe(child.stdin as NodeJS.WritableStream, { end: false });
    (child.stdout as NodeJS.ReadableStream).pipe(conn, { end: false });
    conn.on('close', () => {
      conn.unpipe();
      child.stdout?.unpipe(conn);
      child.stdout?.pause();
      if (relay.conn === conn) relay.conn = undefined;
    });
  });
  rmSync(socket, { force: true });
  await new Promise<void>((resolve, reject) => {
    relay.server.once('error', reject);
    relay.server.listen(socket, () => resolve());
  });
  return { socket };
}

/** Stops the program's process group and removes its socket; true when it was known. */
export async function stopStdio(name: string): Promise<boolean> {
  const r = relays.get(name);
  if (!r) return false;
  r.stopping ??= (async () => {
    r.server.close();
    r.conn?.destroy();
    if (!r.exit && r.child.pid !== undefined) await killGroup(r.child.pid);
    rmSync(r.socket, { force: true });
  })();
  await r.stopping;
  relays.delete(name);
  return true;
}

/** The state of a relay: whether its program runs, and its stderr tail. */
export function stdioStatus(name: string): { running: boolean; exitCode: number | null; signal: string | null; stderr: string; message?: string } {
  const r = relays.get(name);
  if (!r) throw new AgentError(404, 'NOT_FOUND', `no stdio server named '${name}'`);
  return { running: !r.exit, exitCode: r.exit?.code ?? null, signal: r.exit?.signal ?? null, stderr: stderrText(r), ...(r.exit ? { message: describeExit(r) } : {}) };
}

export async function stopAllStdio(): Promise<void> {
  await Promise.all([...relays.keys()].map((n) => stopStdio(n)));
}
