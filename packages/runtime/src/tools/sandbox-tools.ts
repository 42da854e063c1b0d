/**
 * The sandbox tools `exec`, `read_file`, `write_file`, `list_files` (runtime.md §6.4): they work in the
 * task's sandbox through `RunHost.acquireSandbox`, which the server implements (sandbox.md §2).
 */
import { SandboxAcquireError, SandboxCallError, type SandboxExecResult, type SandboxSession, type ShellSandboxSettings, type TurnErrorCode } from '@wegent/core';
import { z } from 'zod';
import { BLOCK_OUTPUT_MAX_BYTES } from '../context/tool-output-cap.js';
import { turnError, type TurnError } from '../models/model-errors.js';
import type { ModelConnection, ResolvedMember, RunHost } from '../run/types.js';
import { ToolError, type RuntimeTool } from './tool.js';

/** The names `sandbox` in a Ghost's `tools` expands to (resources.md §10.1). */
export const SANDBOX_TOOL_NAMES = ['exec', 'read_file', 'write_file', 'list_files'] as const;

/** Sandbox note of a Chat turn with sandbox tools (runtime.md §6.4). */
export function sandboxNote(network: 'none' | 'egress' | undefined): string {
  const last = network === 'egress' ? 'The sandbox can reach the network.' : 'The sandbox has no network access.';
  return `You can run commands in a Linux sandbox with the exec, read_file, write_file and list_files tools. Your working folder is /workspace; files you create there stay for this conversation. ${last}`;
}

/** The note of the built-in coding agent, in place of the plain sandbox note (runtime.md §12.2). */
export function codingAgentNote(network: 'none' | 'egress' | undefined): string {
  const last = network === 'egress' ? 'The sandbox can reach the network.' : 'There is no network access.';
  return `You work in a Linux sandbox. The project is in /workspace (a git repository when the task has a workspace). Use the tools to read files, edit them and run commands. Make focused changes, run the project's tests when there are any, and end with a short summary of what you changed and why. ${last}`;
}

/** Whether a member's turns work in a sandbox: Code and ClaudeCode always, Chat when the Ghost lists `sandbox` (resources.md §12.1). */
export function usesSandbox(shellType: string, ghostTools: readonly string[] | undefined): boolean {
  const type = shellType.toLowerCase();
  if (type === 'code' || type === 'claudecode') return true;
  return type === 'chat' && (ghostTools ?? []).some((t) => t.toLowerCase() === 'sandbox');
}

/**
 * One turn's hold on the task's sandbox: acquired on first use (or at turn start for Code turns),
 * released when the turn ends. An acquisition failure or a sandbox that ends under the turn is the
 * turn's error (`failure()`), not a tool result.
 */
export class SandboxLease {
  #session?: Promise<SandboxSession>;
  #acquired?: SandboxSession;
  #error?: { code: TurnErrorCode; message: string };
  readonly #onAcquired: ((session: SandboxSession, signal: AbortSignal) => Promise<void>)[] = [];

  constructor(
    private readonly host: RunHost,
    private readonly turnId: string,
    readonly shell: ShellSandboxSettings | undefined,
    private readonly signal: AbortSignal,
    /** The turn's Model, granted to the sandbox's model gateway for the turn (sandbox.md §11). */
    private readonly model?: ModelConnection,
  ) {}

  /** The session, acquiring it on first call. */
  session(): Promise<SandboxSession> {
    this.#session ??= (async () => {
      if (!this.host.acquireSandbox) {
        throw new SandboxAcquireError('SANDBOX_UNAVAILABLE', 'no sandbox driver is available on this server: sandboxes are not configured');
      }
      try {
        const s = await this.host.acquireSandbox({ turnId: this.turnId, shell: this.shell, signal: this.signal, ...(this.model ? { model: this.model } : {}) });
        this.#acquired = s;
        // Preparation the turn asked for (preloaded skills' files) is in place before the first tool uses it.
        await this.prepare(s, this.#onAcquired);
        return s;
      } catch (err) {
        if (this.signal.aborted) throw err;
        const code = err instanceof SandboxAcquireError ? err.code : 'SANDBOX_UNAVAILABLE';
        this.#error ??= { code, message: err instanceof Error ? err.message : String(err) };
        throw err;
      }
    })();
    return this.#session;
  }

  /**
   * Work to do in the sandbox once it is acquired, before `session()` resolves (e.g. copying preloaded
   * skills' files). It must not call `session()` itself. A failure fails the acquisition.
   */
  onAcquired(prepare: (session: SandboxSession, signal: AbortSignal) => Promise<void>): void {
    // Asked for already (a Code turn takes its sandbox at the start): the next `session()` waits for it.
    if (this.#session) this.#session = this.#session.then(async (s) => { await this.prepare(s, [prepare]); return s; });
    else this.#onAcquired.push(prepare);
  }

  /** Runs preparations; one that fails ends the turn like a sandbox that could not be had. */
  private async prepare(s: SandboxSession, steps: readonly ((session: SandboxSession, signal: AbortSignal) => Promise<void>)[]): Promise<void> {
    try {
      for (const step of steps) await step(s, this.signal);
    } catch (err) {
      if (!this.signal.aborted) this.#error ??= { code: 'SANDBOX_UNAVAILABLE', message: `the sandbox could not be prepared: ${err instanceof Error ? err.message : String(err)}` };
      throw err;
    }
  }

  /** Why the turn must end: the sandbox could not be had, or ended while the turn held it. */
  failure(): { code: TurnErrorCode; message: string } | undefined {
    return this.#error ?? this.#acquired?.failure();
  }

  release(): void {
    this.#acquired?.release();
  }
}

/** Keeps a stream's first 16 KiB and last 48 KiB for the model, marked as in runtime.md §10.1. */
export function modelView(text: string, limitBytes = 64 * 1024): { text: string; cut: boolean } {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= limitBytes) return { text, cut: false };
  const cont = (b: number) => (b & 0xc0) === 0x80;
  let headEnd = limitBytes / 4;
  while (headEnd > 0 && cont(bytes[headEnd]!)) headEnd--;
  let tailStart = bytes.length - (limitBytes * 3) / 4;
  while (tailStart < bytes.length && cont(bytes[tailStart]!)) tailStart++;
  return { text: `${bytes.subarray(0, headEnd).toString('utf8')}\n[… ${tailStart - headEnd} bytes omitted …]\n${bytes.subarray(tailStart).toString('utf8')}`, cut: true };
}

/** Agent errors as the tool errors runtime.md §6.4 names. */
function toolError(err: unknown): never {
  if (err instanceof ToolError) throw err;
  if (err instanceof SandboxAcquireError) throw err;
  if (err instanceof SandboxCallError || (err instanceof Error && typeof (err as { code?: unknown }).code === 'string')) {
    const code = (err as unknown as { code: string }).code;
    if (code === 'PATH_OUTSIDE_WORKSPACE') throw new ToolError('path outside the workspace');
    throw new ToolError(err.message);
  }
  throw err;
}

const Path = z.string().min(1).max(4096);
const ExecInput = z.object({
  command: z.string().min(1).refine((s) => Buffer.byteLength(s, 'utf8') <= 16 * 1024, 'must be at most 16 KiB'),
  cwd: Path.optional(),
  timeoutSeconds: z.number().int().min(1).max(600).optional(),
  env: z.record(z.string(), z.string()).refine((e) => Object.keys(e).length <= 50, 'at most 50 entries').optional(),
});
const ReadInput = z.object({ path: Path, offset: z.number().int().min(1).optional(), limit: z.number().int().min(1).optional() });
const WriteInput = z.object({
  path: Path,
  content: z.string().refine((s) => Buffer.byteLength(s, 'utf8') <= 1024 * 1024, 'must be at most 1 MiB'),
  append: z.boolean().optional(),
});
const ListInput = z.object({ path: Path.optional(), recursive: z.boolean().optional(), maxEntries: z.number().int().min(1).max(5000).optional() });

/** Room for a queued acquisition (sandbox.md §7.1: 600 s) and the longest command (600 s) in one call. */
const SANDBOX_TOOL_TIMEOUT_MS = (600 + 600 + 30) * 1000;
const READ_MAX_BYTES = 256 * 1024;

/** The four sandbox tools of one turn, working through its lease. */
export function sandboxTools(lease: SandboxLease): RuntimeTool[] {
  const maxExec = lease.shell?.execTimeoutSeconds ?? 600;
  const exec: RuntimeTool<z.infer<typeof ExecInput>> = {
    name: 'exec',
    description:
      'Run a shell command (/bin/sh -c) in the Linux sandbox and return its exit code, stdout and stderr. The working folder defaults to /workspace; timeoutSeconds defaults to 120 (max 600).',
    source: 'sandbox',
    inputSchema: ExecInput,
    timeoutMs: SANDBOX_TOOL_TIMEOUT_MS,
    sequential: true,
    async execute(input, ctx) {
      const session = await lease.session();
      // A Shell's execTimeoutSeconds is the most a call may ask for; without a value a call gets min(120, it) (sandbox.md §5).
      const timeoutSeconds = Math.min(input.timeoutSeconds ?? Math.min(120, maxExec), maxExec);
      let shown = 0;
      let result: SandboxExecResult;
      try {
        result = await session.exec(
          { command: input.command, cwd: input.cwd ?? '/workspace', env: input.env, timeoutSeconds },
          {
            signal: ctx.signal,
            onOutput: (_stream, text) => {
              // The block keeps 64 KiB for display; the rest still reaches the result.
              if (shown >= BLOCK_OUTPUT_MAX_BYTES || !ctx.output) return;
              shown += Buffer.byteLength(text, 'utf8');
              ctx.output(text);
            },
          },
        );
      } catch (err) {
        toolError(err);
      }
      const stdout = modelView(result.stdout);
      const stderr = modelView(result.stderr);
      if (result.oomKilled) ctx.output?.(`\nThe command was killed because the sandbox ran out of memory (limit ${session.memoryMB} MiB).\n`);
      return {
        exitCode: result.exitCode,
        signal: result.signal,
        timedOut: result.timedOut,
        oomKilled: result.oomKilled,
        durationMs: result.durationMs,
        stdout: stdout.text,
        stderr: stderr.text,
        truncated: stdout.cut || stderr.cut || result.truncated.stdout || result.truncated.stderr,
      };
    },
  };
  const readFile: RuntimeTool<z.infer<typeof ReadInput>> = {
    name: 'read_file',
    description: 'Read a text file in the sandbox. Relative paths are resolved against /workspace. offset is the first line (1-based), limit the number of lines (default 2000).',
    source: 'sandbox',
    inputSchema: ReadInput,
    timeoutMs: SANDBOX_TOOL_TIMEOUT_MS,
    sequential: true,
    async execute(input, ctx) {
      const session = await lease.session();
      try {
        const r = await session.readFile({ path: input.path, offset: input.offset, limit: input.limit ?? 2000, maxBytes: READ_MAX_BYTES }, { signal: ctx.signal });
        if (r.binary) throw new ToolError(`binary file (${r.size} bytes); use exec to inspect it`);
        return { path: r.path, content: r.content, totalLines: r.totalLines, truncated: r.truncated };
      } catch (err) {
        toolError(err);
      }
    },
  };
  const writeFile: RuntimeTool<z.infer<typeof WriteInput>> = {
    name: 'write_file',
    description: 'Write a text file in the sandbox (parent folders are created). Relative paths are resolved against /workspace. append: true adds to the end instead of replacing.',
    source: 'sandbox',
    inputSchema: WriteInput,
    timeoutMs: SANDBOX_TOOL_TIMEOUT_MS,
    sequential: true,
    async execute(input, ctx) {
      const session = await lease.session();
      try {
        const r = await session.writeFile({ path: input.path, content: input.content, append: input.append ?? false }, { signal: ctx.signal });
        return { path: r.path, bytesWritten: r.bytesWritten };
      } catch (err) {
        toolError(err);
      }
    },
  };
  const listFiles: RuntimeTool<z.infer<typeof ListInput>> = {
    name: 'list_files',
    description: 'List files in a sandbox folder (default /workspace). recursive: true walks sub-folders (skipping .git contents); maxEntries defaults to 500 (max 5000).',
    source: 'sandbox',
    inputSchema: ListInput,
    timeoutMs: SANDBOX_TOOL_TIMEOUT_MS,
    sequential: true,
    async execute(input, ctx) {
      const session = await lease.session();
      try {
        const r = await session.listFiles({ path: input.path ?? '/workspace', recursive: input.recursive ?? false, maxEntries: input.maxEntries ?? 500 }, { signal: ctx.signal });
        // `.git` contents are noise to a model walking a repository (runtime.md §6.4).
        const entries = input.recursive ? r.entries.filter((e) => !/(^|\/)\.git\/./.test(e.path)) : r.entries;
        return { entries: entries.map((e) => ({ path: e.path, type: e.type, size: e.size, ...(e.modifiedAt ? { modifiedAt: e.modifiedAt } : {}) })), truncated: r.truncated };
      } catch (err) {
        toolError(err);
      }
    },
  };
  return [exec, readFile, writeFile, listFiles] as RuntimeTool[];
}

/** A member turn's sandbox: the lease, the system-prompt note, and how the turn fails when it does. */
export interface TurnSandbox {
  lease: SandboxLease;
  note: string;
  /** The turn's error once its sandbox could not be had or ended under it. */
  halt(): TurnError | undefined;
}

/**
 * Opens a member turn's sandbox (runtime.md §6.4, §12): none for turns without sandbox tools; a lazy
 * lease for Chat turns (the first sandbox tool call acquires); for Code turns the sandbox is acquired
 * now, before the turn starts, and a failure is returned as the turn's error.
 */
export async function openTurnSandbox(host: RunHost, turnId: string, member: ResolvedMember, signal: AbortSignal): Promise<{ sandbox?: TurnSandbox; error?: TurnError }> {
  if (!usesSandbox(member.shell.shellType, member.ghost.tools)) return {};
  // The Claude Code CLI engine is not part of this build: `auto` falls back to the built-in agent (runtime.md §12.1).
  if (member.shell.shellType.toLowerCase() === 'claudecode' && member.shell.engine === 'claude-cli') {
    return { error: turnError('ENGINE_UNAVAILABLE', `Shell '${member.shell.name}' (namespace ${member.shell.namespace}) asks for the claude-cli engine, but the Claude Code CLI is not available on this server.`) };
  }
  const settings = member.shell.sandbox;
  const coding = member.shell.shellType.toLowerCase() !== 'chat';
  const lease = new SandboxLease(host, turnId, settings, signal, member.model ?? undefined);
  const sandbox: TurnSandbox = {
    lease,
    note: coding ? codingAgentNote(settings?.network) : sandboxNote(settings?.network),
    halt: () => {
      const f = lease.failure();
      return f ? turnError(f.code, f.message) : undefined;
    },
  };
  if (coding) {
    try {
      await lease.session();
    } catch {
      if (signal.aborted) return { sandbox };
      return { sandbox, error: sandbox.halt() ?? turnError('SANDBOX_UNAVAILABLE', 'the sandbox could not start') };
    }
  }
  return { sandbox };
}
