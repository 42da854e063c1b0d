/**
 * How many sandboxes start at once. Starting is CPU-bound (the agent's Node start-up, runc or bwrap, the
 * cgroup), so on a burst, starting all together makes every one of them late; letting a few through at a
 * time, first come first served, hands the first ones out early and the last ones no later.
 */
import { SandboxError } from '../types.js';

export class StartGate {
  private running = 0;
  private readonly waiting: { go: () => void; fail: (err: Error) => void }[] = [];
  private closed = false;

  constructor(readonly limit: number) {}

  /** Resolves with a release function once the caller may start; rejects when `signal` aborts first or the gate closes. */
  async enter(signal?: AbortSignal): Promise<() => void> {
    if (this.closed) throw new SandboxError('SANDBOX_UNAVAILABLE', 'the sandbox pool is shut down');
    if (this.running < this.limit) {
      this.running++;
      return this.releaser();
    }
    if (signal?.aborted) throw new SandboxError('CANCELLED', 'the request was cancelled while its sandbox waited to start');
    await new Promise<void>((resolve, reject) => {
      const entry = {
        go: () => { signal?.removeEventListener('abort', onAbort); resolve(); },
        fail: (err: Error) => { signal?.removeEventListener('abort', onAbort); reject(err); },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new SandboxError('CANCELLED', 'the request was cancelled while its sandbox waited to start'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
    return this.releaser();
  }

  /** No caller enters any more; those waiting are refused. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.fail(new SandboxError('SANDBOX_UNAVAILABLE', 'the sandbox pool is shut down'));
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // The place passes straight to the next caller, so `running` stays as it is.
      const next = this.waiting.shift();
      if (next) next.go();
      else this.running--;
    };
  }
}
