import { parentPort } from 'node:worker_threads';
import type { RuntimeEvent } from '@wegent/core';
import { executeRun, type RunHost, type RunRequest, type TurnSpec } from '@wegent/runtime';
import { threadSandboxRelay } from '../sandboxes/thread-relay.js';

/**
 * The runtime side of a run thread (run-threads.ts): executes run steps off the server's event loop,
 * so that model streams are parsed on another core, and relays the host calls to the main thread.
 */
type Inbound = { type: 'run'; id: number; request: RunRequest } | { type: 'abort'; id: number; reason: string } | { type: 'turn'; callId: number; turnId?: string; error?: string };

const port = parentPort!;
const controllers = new Map<number, AbortController>();
const pendingTurns = new Map<number, { resolve: (id: string) => void; reject: (e: Error) => void }>();
let nextCall = 1;
const sandboxFor = threadSandboxRelay(port, () => nextCall++);

/**
 * Events leave in batches, one message per turn of this thread's event loop: under load the chunks of many
 * streams share one message (a postMessage costs more than the event). Other messages flush the batch first,
 * so the main thread sees everything in the order it happened.
 */
let outbox: Array<{ id: number; event: RuntimeEvent }> = [];
function flushOutbox(): void {
  if (outbox.length === 0) return;
  const batch = outbox;
  outbox = [];
  port.postMessage({ type: 'emits', batch });
}
function post(message: { type: string; id: number } & Record<string, unknown>): void {
  flushOutbox();
  port.postMessage(message);
}

port.on('message', (m: Inbound) => {
  if (m.type === 'run') void run(m.id, m.request);
  else if (m.type === 'abort') controllers.get(m.id)?.abort(m.reason);
  else if (m.type === 'turn') {
    const pending = pendingTurns.get(m.callId);
    pendingTurns.delete(m.callId);
    if (m.turnId) pending?.resolve(m.turnId);
    else pending?.reject(new Error(m.error ?? 'createTurn failed'));
  }
});

async function run(id: number, request: RunRequest): Promise<void> {
  const controller = new AbortController();
  controllers.set(id, controller);
  const host: RunHost = {
    now: () => new Date(),
    createTurn: (spec: TurnSpec) =>
      new Promise<string>((resolve, reject) => {
        const callId = nextCall++;
        pendingTurns.set(callId, { resolve, reject });
        post({ type: 'createTurn', id, callId, spec });
      }),
    // acquireSandbox and loadSkillPackage, relayed to the main thread (sandboxes/thread-relay.ts).
    ...sandboxFor(id),
    // Compaction checkpoints (runtime.md §10.4): posted in order with the events; the main thread stores them.
    saveCompaction: (summary: string, coversUpToSeq: number, turnId: string) => post({ type: 'saveCompaction', id, summary, coversUpToSeq, turnId }),
    emit: (event: RuntimeEvent) => {
      if (outbox.push({ id, event }) === 1) setImmediate(flushOutbox);
    },
  };
  try {
    const outcome = await executeRun(request, host, controller.signal);
    post({ type: 'done', id, outcome });
  } catch (err) {
    post({ type: 'done', id, outcome: { status: 'failed', error: { code: 'INTERNAL', message: (err as Error).message } } });
  } finally {
    controllers.delete(id);
  }
}
