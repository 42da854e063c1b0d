import { describe, expect, it } from 'vitest';
import { openStorage, type Storage } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrations.js';
import { createTestDatabase, DATABASE_ENGINES } from '../testing/databases.js';
import { MemoryCache } from './cache.js';
import { describeCacheContract, describeEventBusContract, describeJobQueueContract } from './contract.js';
import { BusChannels, InProcessEventBus, globToRegExp } from './event-bus.js';
import { StorageJobQueue } from './storage-job-queue.js';

describeEventBusContract('InProcessEventBus', async () => {
  // The contract makes handlers fail on purpose; keep the test output clean.
  const bus = new InProcessEventBus({ onHandlerError: () => undefined });
  return { connect: async () => bus, dispose: () => bus.close() };
});

describeCacheContract('MemoryCache', async () => {
  const cache = new MemoryCache();
  return { connect: async () => cache, dispose: () => cache.close() };
});

async function migratedStorage(url: string): Promise<Storage> {
  const storage = await openStorage(url);
  await migrateToLatest(storage.db as never, storage.dialect);
  return storage;
}

for (const engine of DATABASE_ENGINES) {
  describeJobQueueContract(`StorageJobQueue on ${engine}`, async () => {
    const database = await createTestDatabase(engine);
    const storage = await migratedStorage(database.url);
    return {
      connect: async (options) => new StorageJobQueue(storage, options),
      clear: async () => {
        await storage.db.deleteFrom('jobs').execute();
      },
      dispose: async () => {
        await storage.close();
        await database.drop();
      },
    };
  });
}

describe('InProcessEventBus', () => {
  it('delivers after the publisher’s own code has run, never inside publish', async () => {
    const bus = new InProcessEventBus();
    const log: string[] = [];
    await bus.subscribe('c', () => void log.push('delivered'));
    void bus.publish('c', {});
    log.push('after publish');
    await Promise.resolve();
    await Promise.resolve();
    expect(log).toEqual(['after publish', 'delivered']);
    await bus.close();
  });

  it('keeps per-channel order for messages that handlers publish while a delivery runs', async () => {
    const bus = new InProcessEventBus();
    const got: number[] = [];
    await bus.subscribe('relay', (m) => {
      if (m.n === 0) void bus.publish('relay', { n: 2 });
    });
    await bus.subscribe('relay', (m) => void got.push(m.n as number));
    void bus.publish('relay', { n: 0 });
    void bus.publish('relay', { n: 1 });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(got).toEqual([0, 1, 2]);
    await bus.close();
  });

  it('reports handler failures to its error hook with the channel', async () => {
    const failures: Array<[string, string]> = [];
    const bus = new InProcessEventBus({ onHandlerError: (error, channel) => failures.push([channel, (error as Error).message]) });
    await bus.subscribe('c', () => {
      throw new Error('sync');
    });
    await bus.subscribe('c', async () => {
      throw new Error('async');
    });
    await bus.publish('c', {});
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(failures).toEqual([
      ['c', 'sync'],
      ['c', 'async'],
    ]);
    await bus.close();
  });

  it('accepts only the glob wildcards Redis shares: * and ?', () => {
    expect(globToRegExp('task:*').test('task:1b2c')).toBe(true);
    expect(globToRegExp('task:*').test('tasks:1')).toBe(false);
    expect(globToRegExp('run.?').test('run.7')).toBe(true);
    expect(globToRegExp('run.?').test('runx7')).toBe(false);
    expect(() => globToRegExp('task:[ab]')).toThrow(/only \* and \?/);
    expect(() => globToRegExp('task:\\*')).toThrow(/only \* and \?/);
  });

  it('routes every task channel to the gateway pattern and nothing else', () => {
    const all = globToRegExp(BusChannels.allTaskEvents);
    expect(all.test(BusChannels.taskEvents('0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'))).toBe(true);
    expect(all.test(BusChannels.runCancel)).toBe(false);
  });

  it('refuses to work once closed, and delivers nothing after close', async () => {
    const bus = new InProcessEventBus();
    const got: unknown[] = [];
    await bus.subscribe('c', (m) => void got.push(m));
    void bus.publish('c', { n: 1 });
    await bus.close();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(got).toEqual([]);
    await expect(bus.publish('c', {})).rejects.toThrow(/closed/);
    await expect(bus.subscribe('c', () => undefined)).rejects.toThrow(/closed/);
  });
});

describe('MemoryCache', () => {
  it('expires entries exactly on its clock', async () => {
    let now = 1_000;
    const cache = new MemoryCache({ now: () => now });
    await cache.set('v', 1, { ttlMs: 1000 });
    await cache.append('s', 'abc', { ttlMs: 1000 });
    expect((await cache.increment('n', 1000)).ttlMs).toBe(1000);
    now += 999;
    expect(await cache.get('v')).toBe(1);
    expect((await cache.increment('n', 1000)).ttlMs).toBe(1);
    now += 2;
    expect(await cache.get('v')).toBeUndefined();
    expect(await cache.getRange('s', 0)).toBeNull();
    expect(await cache.increment('n', 1000)).toEqual({ value: 1, ttlMs: 1000 });
  });

  it('forgets the least recently used entries beyond its entry limit', async () => {
    const cache = new MemoryCache({ maxEntries: 3 });
    for (const key of ['a', 'b', 'c']) await cache.set(key, key);
    await cache.get('a');
    await cache.set('d', 'd');
    expect(await Promise.all(['a', 'b', 'c', 'd'].map((k) => cache.get(k)))).toEqual(['a', undefined, 'c', 'd']);
  });

  it('bounds memory by the characters it holds', async () => {
    const cache = new MemoryCache({ maxChars: 1000 });
    for (let i = 0; i < 10; i++) await cache.append(`stream-${i}`, 'x'.repeat(200));
    let kept = 0;
    for (let i = 0; i < 10; i++) if (await cache.getRange(`stream-${i}`, 0)) kept++;
    expect(kept).toBeLessThanOrEqual(4);
    expect(await cache.getRange('stream-9', 0)).toEqual({ text: 'x'.repeat(200), length: 200 });
  });

  it('refuses to read one kind of entry as another, and TTLs that are not positive', async () => {
    const cache = new MemoryCache();
    await cache.append('s', 'text');
    await expect(cache.increment('s', 1000)).rejects.toThrow(/holds a stream/);
    await cache.set('text', 'five');
    await expect(cache.increment('text', 1000)).rejects.toThrow(/holds a json/);
    await cache.increment('n', 1000);
    await expect(cache.append('n', 'x')).rejects.toThrow(/holds a counter/);
    await expect(cache.get('s')).rejects.toThrow(/holds a stream/);
    await expect(cache.set('v', 1, { ttlMs: 0 })).rejects.toThrow(RangeError);
    await expect(cache.set('v', undefined)).rejects.toThrow(/JSON/);
  });
});

describe.each(DATABASE_ENGINES)('StorageJobQueue on %s, beyond the contract', (engine) => {
  it('keeps its jobs across a restart of the database connection', async () => {
    const database = await createTestDatabase(engine);
    let storage = await migratedStorage(database.url);
    try {
      const before = new StorageJobQueue(storage);
      const job = { id: 'run-1-0', userId: 'alice', taskId: 'task-1', runId: 'run-1', runSeq: 1, step: 0, payload: { subtaskId: 's-1' } };
      await before.enqueue(job);
      await before.enqueue({ ...job, id: 'run-2-0', runId: 'run-2' });
      await before.claim('worker-a', { maxRunningPerUser: 5, capacity: 5 });
      await storage.close();

      storage = await migratedStorage(database.url);
      const after = new StorageJobQueue(storage);
      expect(await after.expired(Number.POSITIVE_INFINITY)).toMatchObject([{ id: 'run-1-0', workerId: 'worker-a', payload: { subtaskId: 's-1' } }]);
      expect((await after.claim('worker-b', { maxRunningPerUser: 5, capacity: 5 }))?.id).toBe('run-2-0');
    } finally {
      await storage.close();
      await database.drop();
    }
  });

  it('writes a job with the caller’s transaction: rolled back, it was never queued', async () => {
    const database = await createTestDatabase(engine);
    const storage = await migratedStorage(database.url);
    try {
      const queue = new StorageJobQueue(storage);
      const job = { id: 'run-1-0', userId: 'alice', taskId: 'task-1', runId: 'run-1', runSeq: 1, step: 0, payload: {} };
      await expect(
        storage.db.transaction().execute(async (trx) => {
          expect(await queue.enqueueIn(trx, job)).toBe(true);
          expect(await queue.enqueueIn(trx, job)).toBe(false);
          throw new Error('send failed');
        }),
      ).rejects.toThrow('send failed');
      expect(await queue.get(job.id)).toBeNull();
      await storage.db.transaction().execute((trx) => queue.enqueueIn(trx, job));
      queue.wake();
      expect(await queue.get(job.id)).toMatchObject({ state: 'waiting' });
    } finally {
      await storage.close();
      await database.drop();
    }
  });

  it('measures leases on its clock', async () => {
    const database = await createTestDatabase(engine);
    const storage = await migratedStorage(database.url);
    try {
      let now = Date.parse('2030-01-01T00:00:00.000Z');
      const queue = new StorageJobQueue(storage, { now: () => now });
      await queue.enqueue({ id: 'run-1-0', userId: 'alice', taskId: 'task-1', runId: 'run-1', runSeq: 1, step: 0, payload: {} });
      const claimed = (await queue.claim('w1', { maxRunningPerUser: 5, capacity: 5 }))!;
      expect(claimed.leaseExpiresAt).toBe(now + 30_000);
      now += 20_000;
      expect(await queue.renew('run-1-0', 'w1')).toBe(true);
      now += 29_999;
      expect(await queue.expired()).toEqual([]);
      now += 1;
      expect((await queue.expired()).map((j) => j.id)).toEqual(['run-1-0']);
      expect(await queue.renew('run-1-0', 'w1')).toBe(false);
    } finally {
      await storage.close();
      await database.drop();
    }
  });

  it('refuses ids wider than the jobs table’s columns', async () => {
    const database = await createTestDatabase(engine);
    const storage = await migratedStorage(database.url);
    try {
      const queue = new StorageJobQueue(storage);
      await expect(queue.enqueue({ id: 'x'.repeat(81), userId: 'alice', taskId: 't', runId: 'r', runSeq: 1, step: 0, payload: {} })).rejects.toThrow(/job.id/);
      await expect(queue.enqueue({ id: 'r-0', userId: 'alice', taskId: 't', runId: 'r', runSeq: 1, step: 0, payload: [] as never })).rejects.toThrow(/payload/);
    } finally {
      await storage.close();
      await database.drop();
    }
  });
});
