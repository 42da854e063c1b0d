import { Worker } from 'node:worker_threads';
import type { RuntimeEvent } from '@wegent/core';
import type { RunHost, RunOutcome, RunRequest, TurnSpec } from '@wegent/runtime';
import type { ExecuteRun } from './worker.js';
import { isSandboxOutbound, SandboxRelayMain, type SandboxOutbound } from '../sandboxes/thread-relay.js';

interface ThreadRun {
  host: RunHost;
  resolve: (o: RunOutcome) => void;
  /** Host calls of one run stay in order (the recorder depends on it). */
  chain: Promise<unknown>;
}

type Outbound =
  | { type: 'createTurn'; id: number; callId: number; spec: TurnSpec }
  | { type: 'emits'; batch: Array<{ id: number; event: RuntimeEvent }> }
  | { type: 'done'; id: number; outcome: RunOutcome }
  | { type: 'saveCompaction'; id: number; summary: string; coversUpToSeq: number; turnId: string }
  | SandboxOutbound;

/**
 * Runs steps in worker threads: the runtime (model streams, SSE parsing, the tool loop) works on
 * other cores while this thread records, checkpoints and delivers. The RunRequest is plain data by
 * design (runtime.md §1), so it crosses the thread boundary as it is.
 */
export class RunThreads {
  private readonly threads: Array<{ worker: Worker; active: number }> = [];
  private readonly runs = new Map<number, ThreadRun & { thread: { worker: Worker; active: number } }>();
  private nextId = 1;
  /** Sandbox calls of each thread's runs (sandboxes/thread-relay.ts). */
  private readonly sandboxRelays = new Map<Worker, SandboxRelayMain>();

  constructor(count: number) {
    for (let i = 0; i < count; i++) {
      // A larger young generation: streaming allocates many short-lived objects per chunk, and fewer
      // scavenges cut the thread's GC share from about 22% to 16% under load (bench/stream).
      const worker = new Worker(new URL('./run-thread-bootstrap.mjs', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 64 } });
      const thread = { worker, active: 0 };
      this.sandboxRelays.set(worker, new SandboxRelayMain(worker));
      worker.on('message', (m: Outbound) => this.onMessage(thread, m));
      worker.on('error', (err) => this.failAll(thread, err));
      worker.on('exit', (code) => this.failAll(thread, new Error(`exit code ${code}`)));
      worker.unref(); // referenced only while it runs steps (executeRun)
      this.threads.push(thread);
    }
  }

  /** The ExecuteRun the run worker calls. */
  readonly executeRun: ExecuteRun = (request, host, signal) =>
    new Promise<RunOutcome>((resolve) => {
      const thread = this.threads.reduce((a, b) => (b.active < a.active ? b : a));
      const id = this.nextId++;
      if (thread.active++ === 0) thread.worker.ref();
      this.runs.set(id, { host, resolve, chain: Promise.resolve(), thread });
      const abort = () => thread.worker.postMessage({ type: 'abort', id, reason: String(signal.reason ?? 'USER_CANCELLED') });
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort, { once: true });
      thread.worker.postMessage({ type: 'run', id, request: request as RunRequest });
    });

  private onMessage(thread: { worker: Worker; active: number }, m: Outbound): void {
    if (m.type === 'emits') {
      for (const { id, event } of m.batch) {
        const run = this.runs.get(id);
        if (run) run.chain = run.chain.then(() => run.host.emit(event)).catch(() => undefined);
      }
      return;
    }
    const run = this.runs.get(m.id);
    if (!run) return;
    if (isSandboxOutbound(m)) this.sandboxRelays.get(thread.worker)?.handle(run.host, m);
    else if (m.type === 'createTurn') {
      run.chain = run.chain
        .then(() => run.host.createTurn(m.spec))
        .then(
          (turnId) => thread.worker.postMessage({ type: 'turn', callId: m.callId, turnId }),
          (err: Error) => thread.worker.postMessage({ type: 'turn', callId: m.callId, error: err.message }),
        );
    } else if (m.type === 'saveCompaction') {
      run.chain = run.chain.then(() => run.host.saveCompaction?.(m.summary, m.coversUpToSeq, m.turnId)).catch(() => undefined);
    } else {
      run.chain.then(
        () => this.finish(m.id, m.outcome),
        () => this.finish(m.id, m.outcome),
      );
    }
  }

  private finish(id: number, outcome: RunOutcome): void {
    const run = this.runs.get(id);
    if (!run) return;
    this.runs.delete(id);
    if (--run.thread.active === 0) run.thread.worker.unref();
    run.resolve(outcome);
  }

  private failAll(thread: { worker: Worker; active: number }, err: Error): void {
    for (const [id, run] of this.runs) if (run.thread === thread) this.finish(id, { status: 'failed', error: { code: 'INTERNAL', message: `the run thread stopped: ${err.message}` } });
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }
}
