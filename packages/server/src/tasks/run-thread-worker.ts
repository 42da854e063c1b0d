import { parentPort } from 'node:worker_threads';
import type { RuntimeEvent } from '@wegent/core';
import { executeRun, type RunHost, type RunRequest, type TurnSpec } from '@wegent/runtime';

/**
 * The runtime side of a run thread (run-threads.ts): executes run steps off the server's event loop,
 * so that model streams are parsed on another core, and relays the host calls to the main thread.
 */
type Inbound = { type: 'run'; id: number; request: RunRequest } | { type: 'abort'; id: number; reason: string } | { type: 'turn'; callId: number; turnId?: string; error?: string };

const port = parentPort!;
const controllers = new Map<number, AbortController>();
const pendingTurns = new Map<number, { resolve: (id: string) => void; reject: (e: Error) => void }>();
let nextCall = 1;

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
        port.postMessage({ type: 'createTurn', id, callId, spec });
      }),
    emit: (event: RuntimeEvent) => port.postMessage({ type: 'emit', id, event }),
  };
  try {
    const outcome = await executeRun(request, host, controller.signal);
    port.postMessage({ type: 'done', id, outcome });
  } catch (err) {
    port.postMessage({ type: 'done', id, outcome: { status: 'failed', error: { code: 'INTERNAL', message: (err as Error).message } } });
  } finally {
    controllers.delete(id);
  }
}
