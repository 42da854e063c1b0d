/**
 * The cap on sandboxes in Created/Running and the fair queue in front of it (sandbox.md §7.1): a free
 * slot goes to the waiting user with the fewest sandboxes (users at their share skipped), and among
 * that user's requests to the oldest.
 */
import { SandboxError } from '../types.js';

export interface SchedulerLimits { maxRunning: number; maxPerUser: number; queueTimeoutMs: number }

export const DEFAULT_SCHEDULER_LIMITS: SchedulerLimits = { maxRunning: 5, maxPerUser: 3, queueTimeoutMs: 600_000 };

/** A granted place under the cap; `release()` once the sandbox has left Created/Running. */
export interface Slot { readonly ownerId: string; release(): void }

interface Waiting {
  seq: number;
  ownerId: string;
  label: string;
  grant(slot: Slot): void;
  fail(err: Error): void;
  onQueued?: (position: number) => void;
  lastPosition?: number;
}

export interface QueuedEntry { ownerId: string; label: string; position: number }

export class FairScheduler {
  private readonly running = new Map<string, number>();
  private readonly waiting: Waiting[] = [];
  private total = 0;
  private seq = 0;

  constructor(readonly limits: SchedulerLimits = DEFAULT_SCHEDULER_LIMITS) {}

  /** Waits for a slot; rejects with CANCELLED on abort and SANDBOX_QUEUE_TIMEOUT after the queue timeout. */
  acquire(ownerId: string, opts: { signal?: AbortSignal; label?: string; onQueued?(position: number): void } = {}): Promise<Slot> {
    if (opts.signal?.aborted) return Promise.reject(new SandboxError('CANCELLED', 'the request was cancelled'));
    return new Promise<Slot>((resolve, reject) => {
      const cleanup = () => { clearTimeout(timer); opts.signal?.removeEventListener('abort', onAbort); };
      const entry: Waiting = {
        seq: this.seq++, ownerId, label: opts.label ?? '', onQueued: opts.onQueued,
        grant: (slot) => { cleanup(); resolve(slot); },
        fail: (err) => { cleanup(); reject(err); },
      };
      const leave = (err: Error) => {
        const i = this.waiting.indexOf(entry);
        if (i < 0) return;
        this.waiting.splice(i, 1);
        entry.fail(err);
        this.reportPositions();
      };
      const onAbort = () => leave(new SandboxError('CANCELLED', 'the request was cancelled while it waited for a sandbox'));
      const timer = setTimeout(() => leave(new SandboxError('SANDBOX_QUEUE_TIMEOUT', `no sandbox became free within ${Math.round(this.limits.queueTimeoutMs / 1000)} s`)), this.limits.queueTimeoutMs);
      timer.unref?.();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
      this.dispatch();
    });
  }

  /** Requests waiting, in the order they would be granted. */
  queued(): QueuedEntry[] {
    return this.grantOrder().map((w, i) => ({ ownerId: w.ownerId, label: w.label, position: i + 1 }));
  }

  /** Sandboxes counted against the cap, in total and per user. */
  usage(): { total: number; perUser: Record<string, number> } {
    return { total: this.total, perUser: Object.fromEntries(this.running) };
  }

  /** The order in which waiting requests would be granted if slots freed one by one. */
  private grantOrder(): Waiting[] {
    const counts = new Map(this.running);
    const left = [...this.waiting];
    const order: Waiting[] = [];
    while (left.length > 0) {
      let best: Waiting | undefined;
      for (const w of left) {
        const n = counts.get(w.ownerId) ?? 0;
        if (!best) { best = w; continue; }
        const bn = counts.get(best.ownerId) ?? 0;
        if (n < bn || (n === bn && w.seq < best.seq)) best = w;
      }
      const chosen = best as Waiting;
      order.push(chosen);
      left.splice(left.indexOf(chosen), 1);
      counts.set(chosen.ownerId, (counts.get(chosen.ownerId) ?? 0) + 1);
    }
    return order;
  }

  private next(): Waiting | undefined {
    let best: Waiting | undefined;
    for (const w of this.waiting) {
      const n = this.running.get(w.ownerId) ?? 0;
      if (n >= this.limits.maxPerUser) continue;
      if (!best) { best = w; continue; }
      const bn = this.running.get(best.ownerId) ?? 0;
      if (n < bn || (n === bn && w.seq < best.seq)) best = w;
    }
    return best;
  }

  private dispatch(): void {
    while (this.total < this.limits.maxRunning) {
      const w = this.next();
      if (!w) break;
      this.waiting.splice(this.waiting.indexOf(w), 1);
      this.total++;
      this.running.set(w.ownerId, (this.running.get(w.ownerId) ?? 0) + 1);
      let released = false;
      w.grant({
        ownerId: w.ownerId,
        release: () => {
          if (released) return;
          released = true;
          this.total--;
          const n = (this.running.get(w.ownerId) ?? 1) - 1;
          if (n === 0) this.running.delete(w.ownerId); else this.running.set(w.ownerId, n);
          this.dispatch();
        },
      });
    }
    this.reportPositions();
  }

  private reportPositions(): void {
    this.grantOrder().forEach((w, i) => {
      if (w.lastPosition !== i + 1) { w.lastPosition = i + 1; w.onQueued?.(i + 1); }
    });
  }
}
