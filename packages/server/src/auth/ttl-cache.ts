/**
 * A small in-process cache of loads with a time to live, bounded in size. Concurrent loads of one key
 * share a single promise; a failed load is not kept.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: Promise<V>; until: number }>();

  constructor(
    readonly ttlMs: number,
    readonly maxEntries = 10_000,
  ) {}

  /** The cached value of `key`, or the result of `load` (then cached for the TTL). */
  get(key: string, load: () => Promise<V>): Promise<V> {
    const now = Date.now();
    const hit = this.entries.get(key);
    if (hit && hit.until > now) return hit.value;
    if (hit) this.entries.delete(key);
    const value = load();
    this.store(key, value, now);
    value.catch(() => {
      if (this.entries.get(key)?.value === value) this.entries.delete(key);
    });
    return value;
  }

  /** Puts a known value (for example right after this process changed it). */
  set(key: string, value: V): void {
    this.entries.delete(key);
    this.store(key, Promise.resolve(value), Date.now());
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  private store(key: string, value: Promise<V>, now: number): void {
    if (this.entries.size >= this.maxEntries) {
      for (const [k, e] of this.entries) if (e.until <= now) this.entries.delete(k);
      if (this.entries.size >= this.maxEntries) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.entries.delete(oldest);
      }
    }
    this.entries.set(key, { value, until: now + this.ttlMs });
  }
}
