import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InMemoryPortClaimStore, PortAllocator } from './port-allocator.js';

describe('PortAllocator', () => {
  it('never hands out one port twice, whatever the number of concurrent requests (up to 200)', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 30 }), async (n, preTaken) => {
      const store = new InMemoryPortClaimStore();
      const ports = new PortAllocator(store, { hostId: 'h1' });
      for (let i = 0; i < preTaken; i++) await ports.allocate(`pre-${i}`);
      const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => ports.allocate(`sbx-${i}`)));
      const won = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
      const lost = results.filter((r) => r.status === 'rejected');
      expect(new Set(won).size).toBe(won.length);
      expect(won.every((p) => p >= 10001 && p <= 10100)).toBe(true);
      expect(won.length).toBe(Math.min(n, 100 - preTaken));
      for (const r of lost) expect((r as PromiseRejectedResult).reason.message).toBe('no free port in 10001–10100');
    }), { numRuns: 60 });
  });

  it('gives the 101st concurrent holder a clear error', async () => {
    const ports = new PortAllocator(new InMemoryPortClaimStore(), { hostId: 'h1' });
    const results = await Promise.allSettled(Array.from({ length: 101 }, (_, i) => ports.allocate(`sbx-${i}`)));
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.message)).toEqual(['no free port in 10001–10100']);
  });

  it('releases a sandbox\'s ports on clean-up so that they are handed out again', async () => {
    const ports = new PortAllocator(new InMemoryPortClaimStore(), { hostId: 'h1', min: 10001, max: 10002 });
    expect(await ports.allocate('a', 2)).toEqual([10001, 10002]);
    await expect(ports.allocate('b')).rejects.toThrow('no free port in 10001–10002');
    await ports.release('a');
    expect(await ports.allocate('b')).toEqual([10001]);
  });

  it('reclaims the ports of sandboxes that are no longer alive', async () => {
    const ports = new PortAllocator(new InMemoryPortClaimStore(), { hostId: 'h1' });
    await ports.allocate('alive');
    await ports.allocate('dead', 2);
    expect(await ports.reclaim((id) => id === 'alive')).toEqual([10002, 10003]);
    expect(await ports.allocate('next')).toEqual([10002]);
  });

  it('keeps hosts apart: the same port may be claimed on two hosts', async () => {
    const store = new InMemoryPortClaimStore();
    expect(await new PortAllocator(store, { hostId: 'h1' }).allocate('a')).toEqual([10001]);
    expect(await new PortAllocator(store, { hostId: 'h2' }).allocate('b')).toEqual([10001]);
  });
});
