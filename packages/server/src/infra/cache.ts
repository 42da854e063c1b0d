import { LRUCache } from 'lru-cache';

/**
 * The cache (DESIGN.md §4): sessions, task runtime state, fixed-window rate limits and the per-turn
 * stream buffers of chat-protocol.md §12. In process it is a bounded LRU with TTLs; scaled, Redis.
 *
 * Keys form one keyspace, as on Redis; a key holds one kind of entry (a JSON value, a counter or a
 * stream buffer) and callers do not mix kinds on one key. TTLs are in milliseconds; an entry without
 * a TTL lives until deleted (or, in process, evicted as least recently used).
 */
export interface Cache {
  /** The JSON value (a fresh copy) or counter stored under `key`, or undefined when absent or expired. */
  get<T = unknown>(key: string): Promise<T | undefined>;
  /** Stores a JSON-serialisable value, replacing any entry and its TTL. */
  set(key: string, value: unknown, options?: { ttlMs?: number }): Promise<void>;
  /** Stores the value only if `key` holds nothing; true when it was stored (a lease-like lock). */
  setIfAbsent(key: string, value: unknown, options?: { ttlMs?: number }): Promise<boolean>;
  /** Removes the entry; true when a live entry was removed. */
  delete(key: string): Promise<boolean>;
  /** Sets the time to live of an existing entry; false when there is none. */
  expire(key: string, ttlMs: number): Promise<boolean>;
  /**
   * Adds `by` (default 1) to a counter atomically. A counter that does not exist starts at 0 and gets
   * `ttlMs` as its lifetime; later increments keep that expiry (a fixed window).
   */
  increment(key: string, ttlMs: number, by?: number): Promise<CounterValue>;
  /**
   * Appends to the stream buffer at `key` atomically and returns its length afterwards in UTF-16 code
   * units (chat-protocol.md §7.1). With `ttlMs` the buffer's lifetime restarts; without, it is kept.
   */
  append(key: string, text: string, options?: { ttlMs?: number }): Promise<number>;
  /** The stream buffer from UTF-16 offset `start` to its end, with its full length; null when absent. */
  getRange(key: string, start: number): Promise<StreamSlice | null>;
  /** Releases connections; the in-process cache forgets everything. */
  close(): Promise<void>;
}

/** A counter after an increment. */
export interface CounterValue {
  value: number;
  /** Milliseconds until the counter expires (the window resets). */
  ttlMs: number;
}

/** Part of a stream buffer. */
export interface StreamSlice {
  /** The text from the requested offset (empty when the offset is at or past the end). */
  text: string;
  /** The whole buffer's length in UTF-16 code units. */
  length: number;
}

/** Options of the in-process cache. */
export interface MemoryCacheOptions {
  /** Most entries held at once; the least recently used go first. Default 100,000. */
  maxEntries?: number;
  /** Most UTF-16 code units held (JSON text, stream text and keys). Default 64 Mi (about 128 MB). */
  maxChars?: number;
  /** The clock TTLs are measured on (tests pass a fake one). Default: a monotonic clock. */
  now?: () => number;
}

type Entry = { kind: 'json'; json: string } | { kind: 'counter'; value: number } | { kind: 'stream'; text: string };

/** The embedded cache: an LRU bounded by entry count and size, with per-entry TTLs (lru-cache). */
export class MemoryCache implements Cache {
  private readonly entries: LRUCache<string, Entry>;

  constructor(options: MemoryCacheOptions = {}) {
    const maxChars = options.maxChars ?? 64 * 1024 * 1024;
    this.entries = new LRUCache<string, Entry>({
      max: options.maxEntries ?? 100_000,
      maxSize: maxChars,
      sizeCalculation: (entry, key) => key.length + (entry.kind === 'json' ? entry.json.length : entry.kind === 'stream' ? entry.text.length : 8) || 1,
      // A read never extends a TTL; only writes that ask for it do.
      updateAgeOnGet: false,
      allowStale: false,
      // lru-cache otherwise reuses a clock reading until a timer clears it, which a busy event loop
      // delays: entries would outlive their TTL by as long as the loop is blocked.
      ttlResolution: 0,
      ...(options.now ? { perf: { now: options.now } } : {}),
    });
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    // A counter reads as its number, as a Redis GET of an INCR'd key parses to one.
    if (entry.kind === 'counter') return entry.value as T;
    return JSON.parse(this.expect(key, entry, 'json').json) as T;
  }

  async set(key: string, value: unknown, options: { ttlMs?: number } = {}): Promise<void> {
    this.entries.set(key, { kind: 'json', json: toJson(value) }, { ttl: ttlOf(options.ttlMs) });
  }

  async setIfAbsent(key: string, value: unknown, options: { ttlMs?: number } = {}): Promise<boolean> {
    const json = toJson(value);
    if (this.entries.has(key)) return false;
    this.entries.set(key, { kind: 'json', json }, { ttl: ttlOf(options.ttlMs) });
    return true;
  }

  async delete(key: string): Promise<boolean> {
    // An expired entry may still sit in the LRU; it does not count as removed (as Redis DEL says 0).
    const live = this.entries.has(key);
    this.entries.delete(key);
    return live;
  }

  async expire(key: string, ttlMs: number): Promise<boolean> {
    const entry = this.entries.get(key);
    if (entry === undefined) return false;
    this.entries.set(key, entry, { ttl: ttlOf(ttlMs) });
    return true;
  }

  async increment(key: string, ttlMs: number, by = 1): Promise<CounterValue> {
    if (!Number.isSafeInteger(by)) throw new TypeError('increment: `by` must be a safe integer');
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.entries.set(key, { kind: 'counter', value: by }, { ttl: ttlOf(ttlMs) });
      return { value: by, ttlMs: this.remaining(key) };
    }
    const value = this.counterOf(key, entry) + by;
    this.entries.set(key, { kind: 'counter', value }, { noUpdateTTL: true });
    return { value, ttlMs: this.remaining(key) };
  }

  async append(key: string, text: string, options: { ttlMs?: number } = {}): Promise<number> {
    if (typeof text !== 'string') throw new TypeError('append: text must be a string');
    const entry = this.entries.get(key);
    const before = entry === undefined ? '' : this.expect(key, entry, 'stream').text;
    // V8 concatenates into ropes, so a growing buffer is not copied on every delta.
    const next: Entry = { kind: 'stream', text: before + text };
    if (options.ttlMs !== undefined) this.entries.set(key, next, { ttl: ttlOf(options.ttlMs) });
    else this.entries.set(key, next, entry === undefined ? { ttl: 0 } : { noUpdateTTL: true });
    return next.text.length;
  }

  async getRange(key: string, start: number): Promise<StreamSlice | null> {
    if (!Number.isInteger(start) || start < 0) throw new RangeError('getRange: start must be a non-negative integer');
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    const text = this.expect(key, entry, 'stream').text;
    return { text: text.slice(start), length: text.length };
  }

  async close(): Promise<void> {
    this.entries.clear();
  }

  private remaining(key: string): number {
    const ms = this.entries.getRemainingTTL(key);
    return Number.isFinite(ms) ? Math.max(0, Math.ceil(ms)) : -1;
  }

  /** A counter's value; an integer stored with `set` counts too, as Redis INCR accepts it. */
  private counterOf(key: string, entry: Entry): number {
    if (entry.kind === 'json') {
      const value: unknown = JSON.parse(entry.json);
      if (Number.isSafeInteger(value)) return value as number;
    }
    return this.expect(key, entry, 'counter').value;
  }

  private expect<K extends Entry['kind']>(key: string, entry: Entry, kind: K): Extract<Entry, { kind: K }> {
    if (entry.kind !== kind) throw new TypeError(`cache key ${JSON.stringify(key)} holds a ${entry.kind}, not a ${kind}`);
    return entry as Extract<Entry, { kind: K }>;
  }
}

function toJson(value: unknown): string {
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError('a cache value must be JSON-serialisable');
  return json;
}

/** lru-cache reads a TTL of 0 as "no expiry"; a non-positive TTL asked for by a caller must not mean that. */
function ttlOf(ttlMs: number | undefined): number {
  if (ttlMs === undefined) return 0;
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new RangeError('a TTL must be a positive number of milliseconds');
  return Math.ceil(ttlMs);
}
