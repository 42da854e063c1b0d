/**
 * Behaviour every implementation of the infrastructure seams must show (DESIGN.md §4): the in-process
 * ones now, the Redis ones later, each run through these suites unchanged. Test helpers for vitest.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Cache } from './cache.js';
import type { BusMessage, EventBus, Subscription } from './event-bus.js';
import type { ClaimedJob, Job, JobQueue } from './job-queue.js';

/**
 * A backing service the suite can connect to several times, like several processes would: what one
 * connection writes or publishes, another sees. An in-process backend may hand out one shared object.
 */
export interface SharedBackend<T> {
  connect(): Promise<T>;
  /** Closes every connection handed out and drops the backing store. */
  dispose(): Promise<void>;
}

/** A job queue backend; `clear` empties it between tests. */
export interface JobQueueBackend {
  connect(options?: { leaseMs?: number }): Promise<JobQueue>;
  clear(): Promise<void>;
  dispose(): Promise<void>;
}

export interface JobQueueContractOptions {
  /**
   * `round-robin`: waiting users are served in rotation (the embedded queue, chat-protocol.md §10).
   * `per-user-cap`: FIFO across users, fairness from the cap alone (as the spec allows for BullMQ).
   */
  fairness?: 'round-robin' | 'per-user-cap';
  /** Runs of the concurrent-claims property; databases are slower than memory. Default 10. */
  propertyRuns?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Retries an assertion until it holds or `timeoutMs` passes (delivery is asynchronous). */
async function eventually(assertion: () => void, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      assertion();
      return;
    } catch (error) {
      if (Date.now() > until) throw error;
      await sleep(5);
    }
  }
}

const unique = (prefix: string) => `${prefix}-${randomBytes(5).toString('hex')}`;

/** The EventBus contract (event-bus.ts). */
export function describeEventBusContract(name: string, factory: () => Promise<SharedBackend<EventBus>>): void {
  describe(`EventBus contract: ${name}`, () => {
    let backend: SharedBackend<EventBus>;
    let publisher: EventBus;
    let subscriber: EventBus;
    const subscriptions: Subscription[] = [];
    const keep = (s: Subscription) => (subscriptions.push(s), s);

    beforeAll(async () => {
      backend = await factory();
      publisher = await backend.connect();
      subscriber = await backend.connect();
    });
    afterEach(async () => {
      await Promise.all(subscriptions.splice(0).map((s) => s.unsubscribe()));
    });
    afterAll(async () => {
      await backend?.dispose();
    });

    it('delivers one channel’s messages in publish order, each once, even when publishes are not awaited', async () => {
      const channel = unique('task');
      const got: number[] = [];
      keep(await subscriber.subscribe(channel, (m) => void got.push(m.n as number)));
      await Promise.all(Array.from({ length: 200 }, (_, n) => publisher.publish(channel, { n })));
      await eventually(() => expect(got).toHaveLength(200));
      await sleep(50);
      expect(got).toEqual(Array.from({ length: 200 }, (_, n) => n));
    });

    it('gives each subscription each message exactly once, also a channel and a pattern subscription side by side', async () => {
      const channel = unique('task');
      const got: Record<string, number[]> = { first: [], second: [], pattern: [] };
      keep(await subscriber.subscribe(channel, (m) => void got.first!.push(m.n as number)));
      keep(await subscriber.subscribe(channel, (m) => void got.second!.push(m.n as number)));
      keep(await subscriber.subscribePattern(`${channel.slice(0, -3)}*`, (m) => void got.pattern!.push(m.n as number)));
      for (let n = 0; n < 20; n++) await publisher.publish(channel, { n });
      const all = Array.from({ length: 20 }, (_, n) => n);
      await eventually(() => expect(got).toEqual({ first: all, second: all, pattern: all }));
      await sleep(50);
      expect(got).toEqual({ first: all, second: all, pattern: all });
    });

    it('keeps channels apart', async () => {
      const one = unique('task');
      const two = unique('task');
      const got: string[] = [];
      keep(await subscriber.subscribe(one, (m, channel) => void got.push(`${channel}:${String(m.n)}`)));
      await publisher.publish(two, { n: 1 });
      await publisher.publish(one, { n: 2 });
      await eventually(() => expect(got).toEqual([`${one}:2`]));
      await sleep(50);
      expect(got).toEqual([`${one}:2`]);
    });

    it('lets a pattern subscription follow every matching channel in each one’s order, and nothing else', async () => {
      const prefix = unique('gw');
      const got: Array<[string, number]> = [];
      keep(await subscriber.subscribePattern(`${prefix}:task:*`, (m, channel) => void got.push([channel, m.n as number])));
      const publishes: Array<Promise<void>> = [];
      for (let n = 0; n < 30; n++) {
        publishes.push(publisher.publish(`${prefix}:task:${n % 3}`, { n }));
        publishes.push(publisher.publish(`${prefix}:cancel`, { n }));
        publishes.push(publisher.publish(`other:${prefix}:task:1`, { n }));
      }
      await Promise.all(publishes);
      await eventually(() => expect(got).toHaveLength(30));
      await sleep(50);
      expect(got).toHaveLength(30);
      for (const task of [0, 1, 2]) {
        const order = got.filter(([channel]) => channel === `${prefix}:task:${task}`).map(([, n]) => n);
        expect(order).toEqual(Array.from({ length: 10 }, (_, i) => i * 3 + task));
      }
    });

    it('stops delivery once unsubscribed, leaving other subscriptions alone', async () => {
      const channel = unique('task');
      const gone: number[] = [];
      const stays: number[] = [];
      const leaving = await subscriber.subscribe(channel, (m) => void gone.push(m.n as number));
      keep(await subscriber.subscribe(channel, (m) => void stays.push(m.n as number)));
      await publisher.publish(channel, { n: 1 });
      await eventually(() => expect(gone).toEqual([1]));
      await leaving.unsubscribe();
      await leaving.unsubscribe();
      await publisher.publish(channel, { n: 2 });
      await eventually(() => expect(stays).toEqual([1, 2]));
      await sleep(50);
      expect(gone).toEqual([1]);
    });

    it('does not replay messages published before the subscription', async () => {
      const channel = unique('task');
      await publisher.publish(channel, { n: 0 });
      const got: number[] = [];
      keep(await subscriber.subscribe(channel, (m) => void got.push(m.n as number)));
      await publisher.publish(channel, { n: 1 });
      await eventually(() => expect(got).toEqual([1]));
      await sleep(50);
      expect(got).toEqual([1]);
    });

    it('delivers JSON copies: no reference is shared with the publisher or another subscriber', async () => {
      const channel = unique('task');
      const received: BusMessage[] = [];
      const mutate = (m: BusMessage) => {
        (m.nested as { list: number[] }).list.push(99);
        received.push(m);
      };
      keep(await subscriber.subscribe(channel, mutate));
      keep(await subscriber.subscribe(channel, (m) => void received.push(m)));
      const message: BusMessage = { nested: { list: [1] }, when: new Date(0), gone: undefined, text: 'héllo 😀' };
      await publisher.publish(channel, message);
      (message.nested as { list: number[] }).list.push(2);
      await eventually(() => expect(received).toHaveLength(2));
      expect(received[0]).toEqual({ nested: { list: [1, 99] }, when: '1970-01-01T00:00:00.000Z', text: 'héllo 😀' });
      expect(received[1]).toEqual({ nested: { list: [1] }, when: '1970-01-01T00:00:00.000Z', text: 'héllo 😀' });
      expect('gone' in received[1]!).toBe(false);
    });

    it('keeps delivering to everyone after a handler throws or rejects', async () => {
      const channel = unique('task');
      const healthy: number[] = [];
      const faulty: number[] = [];
      keep(
        await subscriber.subscribe(channel, (m) => {
          faulty.push(m.n as number);
          if (m.n === 1) throw new Error('handler bug');
        }),
      );
      keep(await subscriber.subscribe(channel, async (m) => {
        if (m.n === 2) throw new Error('async handler bug');
      }));
      keep(await subscriber.subscribe(channel, (m) => void healthy.push(m.n as number)));
      for (const n of [1, 2, 3]) await publisher.publish(channel, { n });
      await eventually(() => expect({ healthy, faulty }).toEqual({ healthy: [1, 2, 3], faulty: [1, 2, 3] }));
    });

    it('refuses to publish what is not a JSON object', async () => {
      const channel = unique('task');
      await expect(publisher.publish(channel, 5 as unknown as BusMessage)).rejects.toThrow();
      await expect(publisher.publish(channel, { big: 1n })).rejects.toThrow();
    });
  });
}

/** The Cache contract (cache.ts). TTLs are short real times, so that a Redis server can pass too. */
export function describeCacheContract(name: string, factory: () => Promise<SharedBackend<Cache>>): void {
  describe(`Cache contract: ${name}`, () => {
    let backend: SharedBackend<Cache>;
    let cache: Cache;
    let other: Cache;

    beforeAll(async () => {
      backend = await factory();
      cache = await backend.connect();
      other = await backend.connect();
    });
    afterAll(async () => {
      await backend?.dispose();
    });

    it('stores JSON values and hands out copies, visible from another connection', async () => {
      const key = unique('session');
      const value = { user: { id: 'u1', roles: ['admin'] }, n: 1, text: 'héllo 😀' };
      expect(await cache.get(key)).toBeUndefined();
      await cache.set(key, value);
      value.user.roles.push('changed');
      const read = await other.get<typeof value>(key);
      expect(read).toEqual({ user: { id: 'u1', roles: ['admin'] }, n: 1, text: 'héllo 😀' });
      read!.user.roles.push('mutated');
      expect(await cache.get(key)).toEqual({ user: { id: 'u1', roles: ['admin'] }, n: 1, text: 'héllo 😀' });
      await cache.set(key, 'replaced');
      expect(await cache.get(key)).toBe('replaced');
    });

    it('expires a value after its TTL; setting again without a TTL keeps it', async () => {
      const short = unique('v');
      const kept = unique('v');
      await cache.set(short, 1, { ttlMs: 150 });
      await cache.set(kept, 1, { ttlMs: 150 });
      await cache.set(kept, 2);
      expect(await cache.get(short)).toBe(1);
      await sleep(300);
      expect(await cache.get(short)).toBeUndefined();
      expect(await cache.get(kept)).toBe(2);
    });

    it('deletes, saying whether a live entry was there', async () => {
      const key = unique('v');
      expect(await cache.delete(key)).toBe(false);
      await cache.set(key, { a: 1 });
      expect(await cache.delete(key)).toBe(true);
      expect(await cache.get(key)).toBeUndefined();
      await cache.set(key, 1, { ttlMs: 50 });
      await sleep(150);
      expect(await cache.delete(key)).toBe(false);
    });

    it('sets a value only when the key is free, once per expiry', async () => {
      const key = unique('lock');
      expect(await cache.setIfAbsent(key, 'a', { ttlMs: 150 })).toBe(true);
      expect(await other.setIfAbsent(key, 'b', { ttlMs: 150 })).toBe(false);
      expect(await cache.get(key)).toBe('a');
      await sleep(300);
      const winners = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? cache : other).setIfAbsent(key, i)));
      expect(winners.filter(Boolean)).toHaveLength(1);
    });

    it('sets a TTL on an existing entry, and says when there is none', async () => {
      const key = unique('v');
      expect(await cache.expire(key, 100)).toBe(false);
      await cache.set(key, 'x');
      expect(await cache.expire(key, 100)).toBe(true);
      await sleep(250);
      expect(await cache.get(key)).toBeUndefined();
    });

    it('increments a fixed-window counter atomically; the window does not slide', async () => {
      const key = unique('rate');
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? cache : other).increment(key, 400)));
      expect(results.map((r) => r.value).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
      for (const r of results) {
        expect(r.ttlMs).toBeGreaterThan(0);
        expect(r.ttlMs).toBeLessThanOrEqual(400);
      }
      await sleep(200);
      const later = await cache.increment(key, 400, 5);
      expect(later.value).toBe(105);
      expect(later.ttlMs).toBeLessThanOrEqual(250);
      await sleep(350);
      expect((await cache.increment(key, 400)).value).toBe(1);
    });

    it('reads a counter with get, and counts on from an integer stored with set', async () => {
      const counter = unique('seq');
      await cache.increment(counter, 10_000);
      await cache.increment(counter, 10_000);
      expect(await other.get(counter)).toBe(2);
      const stored = unique('seq');
      await cache.set(stored, 41, { ttlMs: 10_000 });
      expect(await cache.increment(stored, 10_000)).toMatchObject({ value: 42 });
      expect(await cache.get(stored)).toBe(42);
    });

    it('appends to a stream buffer, returning lengths in UTF-16 code units', async () => {
      const key = unique('stream');
      expect(await cache.getRange(key, 0)).toBeNull();
      expect(await cache.append(key, 'Hel')).toBe(3);
      expect(await cache.append(key, 'lo 😀')).toBe(8);
      expect(await cache.append(key, ' é中文')).toBe(12);
      expect(await other.getRange(key, 0)).toEqual({ text: 'Hello 😀 é中文', length: 12 });
      expect(await cache.getRange(key, 6)).toEqual({ text: '😀 é中文', length: 12 });
      expect(await cache.getRange(key, 8)).toEqual({ text: ' é中文', length: 12 });
      expect(await cache.getRange(key, 12)).toEqual({ text: '', length: 12 });
      expect(await cache.getRange(key, 40)).toEqual({ text: '', length: 12 });
    });

    it('appends atomically: concurrent appends each land whole at the offset their returned length implies', async () => {
      const key = unique('stream');
      const pieces = Array.from({ length: 60 }, (_, i) => `<${i}:${'😀é'.repeat(i % 4)}>`);
      const lengths = await Promise.all(pieces.map((piece, i) => (i % 2 ? cache : other).append(key, piece)));
      const whole = await cache.getRange(key, 0);
      const total = pieces.reduce((sum, p) => sum + p.length, 0);
      expect(whole?.length).toBe(total);
      expect(new Set(lengths).size).toBe(pieces.length);
      pieces.forEach((piece, i) => expect(whole!.text.slice(lengths[i]! - piece.length, lengths[i])).toBe(piece));
    });

    it('expires a stream buffer: an append with a TTL restarts it, one without keeps it', async () => {
      const key = unique('stream');
      await cache.append(key, 'a', { ttlMs: 400 });
      await sleep(200);
      await cache.append(key, 'b');
      expect(await cache.getRange(key, 0)).toEqual({ text: 'ab', length: 2 });
      await sleep(300);
      expect(await cache.getRange(key, 0)).toBeNull();

      const ended = unique('stream');
      await cache.append(ended, 'done');
      expect(await cache.expire(ended, 150)).toBe(true);
      await sleep(300);
      expect(await cache.getRange(ended, 0)).toBeNull();
      expect(await cache.append(ended, 'x')).toBe(1);
    });
  });
}

/** The JobQueue contract (job-queue.ts, chat-protocol.md §10, §13). */
export function describeJobQueueContract(name: string, factory: () => Promise<JobQueueBackend>, options: JobQueueContractOptions = {}): void {
  const fairness = options.fairness ?? 'round-robin';
  const propertyRuns = options.propertyRuns ?? 10;

  describe(`JobQueue contract: ${name}`, () => {
    let backend: JobQueueBackend;
    const opened: JobQueue[] = [];
    const prefix = randomBytes(4).toString('hex');
    let counter = 0;
    const open = async (leaseMs?: number) => {
      const queue = await backend.connect(leaseMs === undefined ? {} : { leaseMs });
      opened.push(queue);
      return queue;
    };
    /** A job of `userId`; ids follow the `<runId>-<step>` rule. */
    const job = (userId: string, payload: Record<string, unknown> = {}): Job => {
      const n = ++counter;
      const runId = `r-${prefix}-${n}`;
      return { id: `${runId}-0`, userId, taskId: `t-${prefix}-${n}`, runId, runSeq: 1, step: 0, payload: { n, ...payload } };
    };
    const enqueueAll = async (queue: JobQueue, jobs: Job[]) => {
      for (const j of jobs) expect(await queue.enqueue(j)).toBe(true);
      return jobs;
    };
    const roomy = { maxRunningPerUser: 100, capacity: 100 };

    beforeAll(async () => {
      backend = await factory();
    });
    beforeEach(async () => {
      await backend.clear();
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((q) => q.close()));
    });
    afterAll(async () => {
      await backend?.dispose();
    });

    it('returns nothing when nothing waits', async () => {
      const queue = await open();
      expect(await queue.claim('w1', roomy)).toBeNull();
      expect(await queue.waiting({ maxRunningPerUser: 5 })).toEqual([]);
    });

    it('enqueues idempotently on the job id, waiting or claimed', async () => {
      const queue = await open();
      const j = job('alice');
      expect(await queue.enqueue(j)).toBe(true);
      expect(await queue.enqueue({ ...j, payload: { other: true } })).toBe(false);
      expect(await queue.get(j.id)).toMatchObject({ id: j.id, state: 'waiting', attempts: 0, payload: j.payload });
      const claimed = await queue.claim('w1', roomy);
      expect(claimed?.id).toBe(j.id);
      expect(await queue.enqueue(j)).toBe(false);
      expect(await queue.claim('w2', roomy)).toBeNull();
    });

    it('hands out a claimed job with its payload, worker, attempt and lease', async () => {
      const queue = await open(10_000);
      const j = job('alice', { nested: { text: 'héllo 😀', list: [1, 2] } });
      await queue.enqueue(j);
      const before = Date.now();
      const claimed = (await queue.claim('worker-1', roomy))!;
      expect(claimed).toMatchObject({ ...j, state: 'claimed', workerId: 'worker-1', attempts: 1 });
      expect(claimed.leaseExpiresAt).toBeGreaterThanOrEqual(before + 10_000 - 1000);
      expect(claimed.leaseExpiresAt).toBeLessThanOrEqual(Date.now() + 10_000 + 1000);
      (claimed.payload.nested as { list: number[] }).list.push(3);
      expect((await queue.get(j.id))?.payload).toEqual(j.payload);
    });

    it('serves one user’s jobs oldest first', async () => {
      const queue = await open();
      const jobs = await enqueueAll(queue, Array.from({ length: 6 }, () => job('alice')));
      const order: string[] = [];
      for (let c = await queue.claim('w1', roomy); c; c = await queue.claim('w1', roomy)) order.push(c.id);
      expect(order).toEqual(jobs.map((j) => j.id));
    });

    it('does not let a user with ten waiting jobs starve another user’s one', async () => {
      const queue = await open();
      const alice = await enqueueAll(queue, Array.from({ length: 10 }, () => job('alice')));
      const [bob] = await enqueueAll(queue, [job('bob')]);
      const firstThree = [];
      for (let i = 0; i < 3; i++) firstThree.push((await queue.claim('w1', { maxRunningPerUser: 2, capacity: 10 }))?.id);
      expect(firstThree).toContain(bob!.id);
      expect(firstThree.filter((id) => alice.some((a) => a.id === id))).toHaveLength(2);
    });

    if (fairness === 'round-robin') {
      it('serves waiting users in rotation, FIFO within each user', async () => {
        const queue = await open();
        const byUser: Record<string, Job[]> = { alice: [], bob: [], carol: [] };
        for (const [user, count] of [['alice', 4], ['bob', 4], ['carol', 2]] as const) {
          for (let i = 0; i < count; i++) byUser[user]!.push(job(user));
        }
        for (const user of ['alice', 'bob', 'carol']) await enqueueAll(queue, byUser[user]!);
        const order: string[] = [];
        for (let c = await queue.claim('w1', roomy); c; c = await queue.claim('w1', roomy)) order.push(c.id);
        const [a, b, c] = [byUser.alice!, byUser.bob!, byUser.carol!];
        expect(order).toEqual([a[0], b[0], c[0], a[1], b[1], c[1], a[2], b[2], a[3], b[3]].map((j) => j!.id));
      });

      it('gives a freed slot to the user who waited longest for service, not to the one just served', async () => {
        const queue = await open();
        const alice = await enqueueAll(queue, Array.from({ length: 10 }, () => job('alice')));
        const [bob] = await enqueueAll(queue, [job('bob')]);
        const one = { maxRunningPerUser: 5, capacity: 1 };
        const first = (await queue.claim('w1', one))!;
        expect(first.id).toBe(alice[0]!.id);
        expect(await queue.claim('w1', one)).toBeNull();
        expect(await queue.complete(first.id, 'w1')).toBe(true);
        expect((await queue.claim('w1', one))?.id).toBe(bob!.id);
      });
    }

    it('never admits more than the per-user cap, and frees a slot on completion', async () => {
      const queue = await open();
      const jobs = await enqueueAll(queue, Array.from({ length: 5 }, () => job('alice')));
      const limits = { maxRunningPerUser: 2, capacity: 10 };
      const first = (await queue.claim('w1', limits))!;
      expect((await queue.claim('w2', limits))?.id).toBe(jobs[1]!.id);
      expect(await queue.claim('w3', limits)).toBeNull();
      expect(await queue.waiting({ maxRunningPerUser: 2, userId: 'alice' })).toEqual(
        jobs.slice(2).map((j, i) => ({ jobId: j.id, userId: 'alice', taskId: j.taskId, runId: j.runId, runSeq: 1, position: i + 1, reason: 'user_limit' })),
      );
      expect(await queue.complete(first.id, 'w1')).toBe(true);
      expect((await queue.claim('w3', limits))?.id).toBe(jobs[2]!.id);
      expect(await queue.claim('w3', limits)).toBeNull();
    });

    it('never gives a worker more jobs than its capacity', async () => {
      const queue = await open();
      await enqueueAll(queue, [job('alice'), job('bob'), job('carol')]);
      const limits = { maxRunningPerUser: 5, capacity: 2 };
      expect(await queue.claim('w1', limits)).not.toBeNull();
      expect(await queue.claim('w1', limits)).not.toBeNull();
      expect(await queue.claim('w1', limits)).toBeNull();
      expect(await queue.claim('w2', limits)).not.toBeNull();
    });

    it('keeps every user within the cap under 50 concurrent claims from two instances, filling every free slot', async () => {
      const first = await open();
      const second = await open();
      await fc.assert(
        fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 5 }), async (jobsPerUser, cap) => {
          await backend.clear();
          const users = jobsPerUser.map((_, u) => `user-${u}`);
          const all: Job[] = [];
          for (let i = 0; i < 12; i++) users.forEach((user, u) => i < jobsPerUser[u]! && all.push(job(user)));
          await Promise.all(all.map((j) => first.enqueue(j)));
          const claims = await Promise.all(
            Array.from({ length: 50 }, (_, w) => (w % 2 ? first : second).claim(`worker-${w}`, { maxRunningPerUser: cap, capacity: 1 })),
          );
          const taken = claims.filter((c): c is ClaimedJob => c !== null);
          expect(new Set(taken.map((c) => c.id)).size).toBe(taken.length);
          users.forEach((user, u) => {
            expect(taken.filter((c) => c.userId === user)).toHaveLength(Math.min(cap, jobsPerUser[u]!));
          });
          const waiting = await second.waiting({ maxRunningPerUser: cap });
          expect(waiting).toHaveLength(all.length - taken.length);
          for (const w of waiting) expect(w.reason).toBe('user_limit');
        }),
        { numRuns: propertyRuns },
      );
    });

    it('renews a lease only for its holder and before it lapses; a lapsed job is listed, handed on and re-claimed', async () => {
      const leaseMs = 400;
      const queue = await open(leaseMs);
      const j = job('alice');
      await queue.enqueue(j);
      const claimed = (await queue.claim('w1', roomy))!;
      await sleep(100);
      expect(await queue.renew(j.id, 'w2')).toBe(false);
      expect(await queue.renew(j.id, 'w1')).toBe(true);
      const renewed = (await queue.get(j.id))!;
      expect(renewed.leaseExpiresAt!).toBeGreaterThan(claimed.leaseExpiresAt);
      expect(await queue.expired()).toEqual([]);
      await sleep(leaseMs + 150);
      expect((await queue.expired()).map((e) => [e.id, e.workerId])).toEqual([[j.id, 'w1']]);
      expect(await queue.renew(j.id, 'w1')).toBe(false);
      // The sweeper hands the step on by releasing it for the lost worker.
      expect(await queue.release(j.id, 'w1')).toBe(true);
      const again = (await queue.claim('w2', roomy))!;
      expect(again).toMatchObject({ id: j.id, workerId: 'w2', attempts: 2 });
      expect(await queue.complete(j.id, 'w1')).toBe(false);
      expect(await queue.complete(j.id, 'w2')).toBe(true);
      expect(await queue.get(j.id)).toBeNull();
      expect(await queue.expired(Number.POSITIVE_INFINITY)).toEqual([]);
    });

    it('puts a released job back at the head of its user’s line', async () => {
      const queue = await open();
      const jobs = await enqueueAll(queue, [job('alice'), job('alice')]);
      const claimed = (await queue.claim('w1', roomy))!;
      expect(await queue.release(claimed.id, 'w2')).toBe(false);
      expect(await queue.release(claimed.id, 'w1')).toBe(true);
      expect(await queue.get(claimed.id)).toMatchObject({ state: 'waiting', workerId: null, leaseExpiresAt: null });
      expect((await queue.waiting({ maxRunningPerUser: 5 })).map((w) => [w.jobId, w.position])).toEqual([
        [jobs[0]!.id, 1],
        [jobs[1]!.id, 2],
      ]);
      expect((await queue.claim('w1', roomy))?.id).toBe(jobs[0]!.id);
    });

    it('removes a job before it starts, but not one a worker holds', async () => {
      const queue = await open();
      const [held, waiting] = await enqueueAll(queue, [job('alice'), job('alice')]);
      await queue.claim('w1', roomy);
      expect(await queue.remove(waiting!.id)).toBe('removed');
      expect(await queue.remove(waiting!.id)).toBe('missing');
      expect(await queue.remove(held!.id)).toBe('claimed');
      expect(await queue.get(held!.id)).toMatchObject({ state: 'claimed', workerId: 'w1' });
      expect(await queue.claim('w2', roomy)).toBeNull();
    });

    it('reports waiting positions per user, oldest first, with the reason', async () => {
      const queue = await open();
      const [a1, a2, a3] = await enqueueAll(queue, [job('alice'), job('alice'), job('alice')]);
      const [b1, b2] = await enqueueAll(queue, [job('bob'), job('bob')]);
      expect((await queue.claim('w1', { maxRunningPerUser: 1, capacity: 1 }))?.id).toBe(a1!.id);
      const all = await queue.waiting({ maxRunningPerUser: 1 });
      expect(all.map((w) => [w.jobId, w.position, w.reason]).sort()).toEqual(
        [
          [a2!.id, 1, 'user_limit'],
          [a3!.id, 2, 'user_limit'],
          [b1!.id, 1, 'global_limit'],
          [b2!.id, 2, 'global_limit'],
        ].sort(),
      );
      expect(await queue.waiting({ maxRunningPerUser: 1, taskId: a3!.taskId })).toEqual([
        { jobId: a3!.id, userId: 'alice', taskId: a3!.taskId, runId: a3!.runId, runSeq: 1, position: 2, reason: 'user_limit' },
      ]);
      expect((await queue.waiting({ maxRunningPerUser: 1, userId: 'bob' })).map((w) => w.jobId)).toEqual([b1!.id, b2!.id]);
      expect(await queue.waiting({ maxRunningPerUser: 1, taskId: a1!.taskId })).toEqual([]);
    });

    it('wakes listeners when a job is enqueued, released or completed, until they stop listening', async () => {
      const queue = await open();
      let wakes = 0;
      const stop = queue.onWork(() => void wakes++);
      const [a, b] = [job('alice'), job('alice')];
      await queue.enqueue(a);
      await eventually(() => expect(wakes).toBeGreaterThanOrEqual(1));
      let seen = wakes;
      await queue.claim('w1', roomy);
      await queue.release(a.id, 'w1');
      await eventually(() => expect(wakes).toBeGreaterThan(seen));
      seen = wakes;
      await queue.claim('w1', roomy);
      await queue.complete(a.id, 'w1');
      await eventually(() => expect(wakes).toBeGreaterThan(seen));
      stop();
      await sleep(50);
      seen = wakes;
      await queue.enqueue(b);
      await sleep(100);
      expect(wakes).toBe(seen);
    });

    it('keeps jobs across instances: a new instance sees waiting jobs and the claims of a lost one', async () => {
      const leaseMs = 300;
      const lost = await open(leaseMs);
      const jobs = await enqueueAll(lost, [job('alice'), job('alice'), job('bob')]);
      const held = (await lost.claim('dead-worker', roomy))!;
      await lost.close();
      const fresh = await open(leaseMs);
      expect((await fresh.waiting({ maxRunningPerUser: 5 })).map((w) => w.jobId).sort()).toEqual(jobs.filter((j) => j.id !== held.id).map((j) => j.id).sort());
      expect((await fresh.expired(Number.POSITIVE_INFINITY)).map((e) => e.id)).toEqual([held.id]);
      await sleep(leaseMs + 150);
      expect((await fresh.expired()).map((e) => [e.id, e.workerId])).toEqual([[held.id, 'dead-worker']]);
      expect(await fresh.release(held.id, 'dead-worker')).toBe(true);
      const taken: string[] = [];
      for (let c = await fresh.claim('w2', roomy); c; c = await fresh.claim('w2', roomy)) taken.push(c.id);
      expect(taken.sort()).toEqual(jobs.map((j) => j.id).sort());
    });
  });
}
