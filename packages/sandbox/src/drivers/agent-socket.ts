/**
 * A driver's `start()` returns once the sandbox agent listens on `<run>/agent.sock`: an inotify watch
 * on the run folder (bind-mounted, so the host sees the agent's bind at once) tells when the socket
 * file is there, and a connect tells that it listens (bind and listen are two steps: a connect in
 * between is refused). The pool's first readiness check (sandbox.md §9) then answers at once instead
 * of on its next 20 ms tick. The wait is bounded and never decides anything: a sandbox whose agent
 * does not come up is still judged by the pool's readiness timeout.
 */
import { watch, existsSync, type FSWatcher } from 'node:fs';
import { createConnection } from 'node:net';
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

/** Whether something accepts connections on the Unix socket `path` (the connection is closed at once). */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ path });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => { c.destroy(); resolve(false); });
  });
}

/** Resolves true once the agent listens on `<runDir>/agent.sock`, false when the process is gone or the wait timed out. */
export function waitForAgentSocket(runDir: string, opts: SocketWaitOptions = {}): Promise<boolean> {
  const socket = join(runDir, AGENT_SOCKET);
  return new Promise<boolean>((resolve) => {
    let watcher: FSWatcher | undefined;
    const timers: { limit?: NodeJS.Timeout; poll?: NodeJS.Timeout; retry?: NodeJS.Timeout } = {};
    let done = false;
    let connecting = false;
    const finish = (found: boolean) => {
      if (done) return;
      done = true;
      watcher?.close();
      clearTimeout(timers.limit);
      clearTimeout(timers.poll);
      clearTimeout(timers.retry);
      resolve(found);
    };
    // The file is there: connect until the agent listens (it does within microseconds of its bind).
    const connect = () => {
      if (done || connecting) return;
      connecting = true;
      void listening(socket).then((ok) => {
        connecting = false;
        if (ok) finish(true);
        else if (!done) timers.retry = setTimeout(connect, 1);
      });
    };
    try {
      // Watch first, then look: a socket bound in between is seen by the look.
      watcher = watch(runDir, { persistent: false }, (_event, name) => {
        if ((name === null || name === AGENT_SOCKET) && existsSync(socket)) connect();
      });
      watcher.on('error', () => finish(false));
    } catch {
      resolve(false);
      return;
    }
    if (existsSync(socket)) connect();
    timers.limit = setTimeout(() => finish(false), opts.maxMs ?? AGENT_SOCKET_WAIT_MS);
    void opts.exited?.then(() => finish(false), () => finish(false));
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
