/**
 * A driver's `start()` returns once the sandbox agent has bound `<run>/agent.sock`, seen through an
 * inotify watch on the run folder (bind-mounted, so the host sees the agent's bind at once). The
 * pool's first readiness check (sandbox.md §9) then answers at once instead of on its next 20 ms
 * tick. The wait is bounded and never decides anything: a sandbox whose agent does not come up is
 * still judged by the pool's readiness timeout.
 */
import { watch, existsSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';

export const AGENT_SOCKET = 'agent.sock';
/** The longest a start waits for the socket; past it the pool's 20 ms polling takes over. */
export const AGENT_SOCKET_WAIT_MS = 3000;

export interface SocketWaitOptions {
  maxMs?: number;
  /** Settles when the sandbox's main process is gone (the wait ends at once). */
  exited?: Promise<unknown>;
  /** Asked every `checkEveryMs` when there is no exit promise: false ends the wait. */
  stillRunning?: () => Promise<boolean>;
  checkEveryMs?: number;
}

/** Resolves true once `<runDir>/agent.sock` exists, false when the process is gone or the wait timed out. */
export function waitForAgentSocket(runDir: string, opts: SocketWaitOptions = {}): Promise<boolean> {
  const socket = join(runDir, AGENT_SOCKET);
  return new Promise<boolean>((resolve) => {
    let watcher: FSWatcher | undefined;
    const timers: { limit?: NodeJS.Timeout; poll?: NodeJS.Timeout } = {};
    let done = false;
    const finish = (found: boolean) => {
      if (done) return;
      done = true;
      watcher?.close();
      clearTimeout(timers.limit);
      clearTimeout(timers.poll);
      resolve(found);
    };
    try {
      // Watch first, then look: a socket bound in between is seen by the look.
      watcher = watch(runDir, { persistent: false }, (_event, name) => {
        if ((name === null || name === AGENT_SOCKET) && existsSync(socket)) finish(true);
      });
      watcher.on('error', () => finish(existsSync(socket)));
    } catch {
      resolve(existsSync(socket));
      return;
    }
    if (existsSync(socket)) { finish(true); return; }
    timers.limit = setTimeout(() => finish(false), opts.maxMs ?? AGENT_SOCKET_WAIT_MS);
    void opts.exited?.then(() => finish(existsSync(socket)), () => finish(false));
    if (!opts.exited && opts.stillRunning) {
      const check = () => {
        timers.poll = setTimeout(() => {
          void opts.stillRunning!().then((running) => { if (!running) finish(false); else if (!done) check(); }, () => { if (!done) check(); });
        }, opts.checkEveryMs ?? 250);
      };
      check();
    }
  });
}
