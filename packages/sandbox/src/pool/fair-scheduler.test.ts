import { describe, expect, it } from 'vitest';
import { FairScheduler, type Slot } from './fair-scheduler.js';

describe('FairScheduler', () => {
  it('grants at most the global cap and queues the rest', async () => {
    const s = new FairScheduler({ maxRunning: 2, maxPerUser: 5, queueTimeoutMs: 60_000 });
    const a = await s.acquire('alice');
    const b = await s.acquire('bob');
    let third: Slot | undefined;
    void s.acquire('carol').then((x) => { third = x; });
    await Promise.resolve();
    expect(third).toBeUndefined();
    expect(s.queued()).toEqual([{ ownerId: 'carol', label: '', position: 1 }]);
    a.release();
    await new Promise((r) => setImmediate(r));
    expect(third?.ownerId).toBe('carol');
    b.release(); third?.release();
    expect(s.usage().total).toBe(0);
  });

  it('serves the waiting user with the fewest sandboxes first, and each user in FIFO order', async () => {
    const s = new FairScheduler({ maxRunning: 2, maxPerUser: 5, queueTimeoutMs: 60_000 });
    await s.acquire('alice'); // held throughout: alice always has more running than bob
    const first = await s.acquire('alice');
    const granted: string[] = [];
    const slots: Slot[] = [];
    for (const [who, label] of [['alice', 'a1'], ['alice', 'a2'], ['alice', 'a3'], ['bob', 'b1'], ['bob', 'b2']] as const) {
      void s.acquire(who, { label }).then((slot) => { granted.push(label); slots.push(slot); });
    }
    // bob has none running, alice has two: bob's requests go first, each user's in order.
    expect(s.queued().map((q) => q.label)).toEqual(['b1', 'b2', 'a1', 'a2', 'a3']);
    first.release();
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r));
      slots.shift()?.release();
    }
    await new Promise((r) => setImmediate(r));
    expect(granted).toEqual(['b1', 'b2', 'a1', 'a2', 'a3']);
  });

  it('skips a user who is at the per-user share', async () => {
    const s = new FairScheduler({ maxRunning: 3, maxPerUser: 1, queueTimeoutMs: 60_000 });
    await s.acquire('alice');
    let aliceSecond = false;
    void s.acquire('alice').then(() => { aliceSecond = true; });
    const bob = await s.acquire('bob');
    expect(bob.ownerId).toBe('bob');
    expect(aliceSecond).toBe(false);
  });

  it('reports queue positions as the queue moves', async () => {
    const s = new FairScheduler({ maxRunning: 1, maxPerUser: 5, queueTimeoutMs: 60_000 });
    const held = await s.acquire('alice');
    const positions: number[] = [];
    void s.acquire('bob', { label: 'b1' });
    void s.acquire('carol', { label: 'c1', onQueued: (p) => positions.push(p) });
    held.release();
    await new Promise((r) => setImmediate(r));
    expect(positions).toEqual([2, 1]);
  });

  it('removes a cancelled request at once, without granting it', async () => {
    const s = new FairScheduler({ maxRunning: 1, maxPerUser: 5, queueTimeoutMs: 60_000 });
    await s.acquire('alice');
    const ac = new AbortController();
    const p = s.acquire('bob', { signal: ac.signal });
    expect(s.queued()).toHaveLength(1);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(s.queued()).toHaveLength(0);
  });

  it('fails a request that waits past the queue timeout', async () => {
    const s = new FairScheduler({ maxRunning: 1, maxPerUser: 5, queueTimeoutMs: 50 });
    await s.acquire('alice');
    await expect(s.acquire('bob')).rejects.toMatchObject({ code: 'SANDBOX_QUEUE_TIMEOUT' });
  });
});
