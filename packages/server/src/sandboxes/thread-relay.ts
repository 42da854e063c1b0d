/**
 * `RunHost.acquireSandbox` and `loadSkillPackage` across the run-thread boundary (tasks/run-threads.ts):
 * the runtime runs in a worker thread, the pool on the main thread. Calls go out as messages with a call
 * id; command output streams back; an aborted signal on the thread side aborts the call on the main side.
 * A stdio relay's socket is a host path, so the thread connects to it directly.
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import { SandboxAcquireError, SandboxCallError, type SandboxSession } from '@wegent/core';
import type { RunHost } from '@wegent/runtime';

type Op = 'acquire' | 'exec' | 'readFile' | 'writeFile' | 'listFiles' | 'startStdio' | 'stopStdio' | 'release' | 'loadSkillPackage';
type Failure = ReturnType<SandboxSession['failure']>;

/** Thread → main. */
export type SandboxOutbound =
  | { type: 'sandbox'; id: number; callId: number; op: Op; session?: number; req?: unknown }
  | { type: 'sandboxAbort'; id: number; callId: number };

/** Main → thread. */
export type SandboxInbound =
  | { type: 'sandbox'; callId: number; ok: true; value: unknown; failure?: Failure }
  | { type: 'sandbox'; callId: number; ok: false; error: { name: string; code?: string; message: string }; failure?: Failure }
  | { type: 'sandboxOutput'; callId: number; stream: 'stdout' | 'stderr'; text: string };

export function isSandboxOutbound(m: { type: string }): m is SandboxOutbound {
  return m.type === 'sandbox' || m.type === 'sandboxAbort';
}

export function isSandboxInbound(m: { type: string }): m is SandboxInbound {
  return m.type === 'sandbox' || m.type === 'sandboxOutput';
}

/** The main-thread half, one per run thread: runs each call against the run's host. */
export class SandboxRelayMain {
  private readonly calls = new Map<number, AbortController>();
  private readonly sessions = new Map<number, SandboxSession>();
  private nextSession = 1;

  constructor(private readonly worker: Worker) {}

  handle(host: RunHost, m: SandboxOutbound): void {
    if (m.type === 'sandboxAbort') {
      this.calls.get(m.callId)?.abort();
      return;
    }
    const controller = new AbortController();
    this.calls.set(m.callId, controller);
    const signal = controller.signal;
    const session = m.session !== undefined ? this.sessions.get(m.session) : undefined;
    const reply = (r: { ok: true; value: unknown } | { ok: false; error: { name: string; code?: string; message: string } }) => {
      this.calls.delete(m.callId);
      this.worker.postMessage({ type: 'sandbox', callId: m.callId, ...r, failure: session?.failure() } satisfies SandboxInbound);
    };
    const run = async (): Promise<unknown> => {
      if (m.op === 'acquire') {
        if (!host.acquireSandbox) throw new SandboxAcquireError('SANDBOX_UNAVAILABLE', 'no sandbox driver is available on this server');
        const req = m.req as Omit<Parameters<NonNullable<RunHost['acquireSandbox']>>[0], 'signal'>;
        const s = await host.acquireSandbox({ ...req, signal });
        const key = this.nextSession++;
        this.sessions.set(key, s);
        return { session: key, id: s.id, memoryMB: s.memoryMB, stdio: typeof s.startStdio === 'function' };
      }
      if (m.op === 'loadSkillPackage') {
        if (!host.loadSkillPackage) return [];
        return host.loadSkillPackage(m.req as Parameters<NonNullable<RunHost['loadSkillPackage']>>[0]);
      }
      if (!session) throw new SandboxCallError('SANDBOX_GONE', 'the sandbox session is not known');
      switch (m.op) {
        case 'exec':
          return session.exec(m.req as Parameters<SandboxSession['exec']>[0], {
            signal,
            onOutput: (stream, text) => this.worker.postMessage({ type: 'sandboxOutput', callId: m.callId, stream, text } satisfies SandboxInbound),
          });
        case 'readFile':
          return session.readFile(m.req as Parameters<SandboxSession['readFile']>[0], { signal });
        case 'writeFile':
          return session.writeFile(m.req as Parameters<SandboxSession['writeFile']>[0], { signal });
        case 'listFiles':
          return session.listFiles(m.req as Parameters<SandboxSession['listFiles']>[0], { signal });
        case 'startStdio': {
          if (!session.startStdio) throw new SandboxCallError('NOT_SUPPORTED', 'this sandbox cannot run stdio programs');
          const r = m.req as { name: string; cfg: Parameters<NonNullable<SandboxSession['startStdio']>>[1] };
          return session.startStdio(r.name, r.cfg, { signal });
        }
        case 'stopStdio':
          return session.stopStdio?.((m.req as { name: string }).name, { signal }) ?? null;
        default:
          session.release();
          this.sessions.delete(m.session!);
          return null;
      }
    };
    run().then(
      (value) => reply({ ok: true, value }),
      (err: Error & { code?: string }) => reply({ ok: false, error: { name: err.name, code: err.code, message: err.message } }),
    );
  }
}

/** The thread half, one per run thread: gives each run an `acquireSandbox` and a `loadSkillPackage` that relay to the main thread. */
export function threadSandboxRelay(port: MessagePort, nextCall: () => number): (runId: number) => Required<Pick<RunHost, 'acquireSandbox' | 'loadSkillPackage'>> {
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; onOutput?: (stream: 'stdout' | 'stderr', text: string) => void; onFailure(f: Failure): void }>();
  port.on('message', (m: { type: string }) => {
    if (!isSandboxInbound(m)) return;
    const p = pending.get(m.callId);
    if (!p) return;
    if (m.type === 'sandboxOutput') {
      p.onOutput?.(m.stream, m.text);
      return;
    }
    pending.delete(m.callId);
    p.onFailure(m.failure);
    if (m.ok) p.resolve(m.value);
    else {
      const e = m.error;
      if (e.name === 'AbortError') p.reject(Object.assign(new Error(e.message), { name: 'AbortError' }));
      else if (e.name === 'SandboxAcquireError') p.reject(new SandboxAcquireError(e.code as SandboxAcquireError['code'], e.message));
      else p.reject(new SandboxCallError(e.code ?? 'SANDBOX_ERROR', e.message));
    }
  });

  const call = <T>(runId: number, op: Op, req: unknown, signal: AbortSignal | undefined, extra: { session?: number; onOutput?: (stream: 'stdout' | 'stderr', text: string) => void; onFailure?: (f: Failure) => void } = {}): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (signal?.aborted) {
        reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
        return;
      }
      const callId = nextCall();
      const onAbort = () => port.postMessage({ type: 'sandboxAbort', id: runId, callId } satisfies SandboxOutbound);
      signal?.addEventListener('abort', onAbort, { once: true });
      pending.set(callId, {
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v as T);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        onOutput: extra.onOutput,
        onFailure: extra.onFailure ?? (() => undefined),
      });
      port.postMessage({ type: 'sandbox', id: runId, callId, op, session: extra.session, req } satisfies SandboxOutbound);
    });

  const acquire = (runId: number): NonNullable<RunHost['acquireSandbox']> => async (req) => {
    const got = await call<{ session: number; id: string; memoryMB: number; stdio: boolean }>(runId, 'acquire', { turnId: req.turnId, shell: req.shell, model: req.model }, req.signal);
    let failure: Failure;
    const onFailure = (f: Failure) => {
      if (f) failure = f;
    };
    const withSession = { session: got.session, onFailure };
    const session: SandboxSession = {
      id: got.id,
      memoryMB: got.memoryMB,
      exec: (r, opts) => call(runId, 'exec', r, opts.signal, { ...withSession, onOutput: opts.onOutput }),
      readFile: (r, opts) => call(runId, 'readFile', r, opts.signal, withSession),
      writeFile: (r, opts) => call(runId, 'writeFile', r, opts.signal, withSession),
      listFiles: (r, opts) => call(runId, 'listFiles', r, opts.signal, withSession),
      ...(got.stdio
        ? {
            startStdio: (name, cfg, opts) => call<{ hostSocketPath: string }>(runId, 'startStdio', { name, cfg }, opts.signal, withSession),
            stopStdio: async (name, opts) => {
              await call(runId, 'stopStdio', { name }, opts?.signal, withSession);
            },
          }
        : {}),
      failure: () => failure,
      release: () => void call(runId, 'release', null, undefined, withSession).catch(() => undefined),
    };
    return session;
  };
  return (runId) => ({
    acquireSandbox: acquire(runId),
    loadSkillPackage: (skill) => call(runId, 'loadSkillPackage', skill, undefined),
  });
}
