/** What one counted attempt learned about its window. */
export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the window resets (also the Retry-After of a refusal). */
  resetSeconds: number;
}

/**
 * A fixed-window counter per key (api.md §2.10), held in this process. With several server instances
 * each counts on its own; the Redis-backed cache will replace this store when REDIS_URL is set.
 */
export class FixedWindowCounter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();
  private nextSweep = 0;

  /** `limit` attempts per `windowMs` per key; a limit of 0 turns the counter off. */
  constructor(
    public limit: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one attempt for `key` and says whether it is within the limit. */
  hit(key: string): RateDecision {
    const now = this.now();
    if (this.limit <= 0) return { allowed: true, limit: 0, remaining: 0, resetSeconds: 0 };
    this.sweep(now);
    let w = this.windows.get(key);
    if (!w || w.resetAt <= now) {
      w = { count: 0, resetAt: now + this.windowMs };
      this.windows.set(key, w);
    }
    w.count++;
    const resetSeconds = Math.max(1, Math.ceil((w.resetAt - now) / 1000));
    return { allowed: w.count <= this.limit, limit: this.limit, remaining: Math.max(0, this.limit - w.count), resetSeconds };
  }

  /** Forgets every window (tests, and an admin changing limits). */
  reset(): void {
    this.windows.clear();
  }

  /** Drops expired windows now and then, so that the map does not grow with every client ever seen. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + Math.min(this.windowMs, 60_000);
    for (const [key, w] of this.windows) if (w.resetAt <= now) this.windows.delete(key);
  }
}
