import { describe, expect, it } from 'vitest';
import { StartGate } from './start-gate.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('StartGate', () => {
  it('lets `limit` callers in at once and the rest in arrival order as places free', async () => {
    const gate = new StartGate(2);
    const order: string[] = [];
    const a = await gate.enter();
    const b = await gate.enter();
    const waiting = ['c', 'd', 'e'].map((name) => gate.enter().then((leave) => { order.push(name); return leave; }));
    await tick();
    expect(order).toEqual([]);
    a();
    a(); // a second release of the same place changes nothing
    await tick();
    expect(order).toEqual(['c']);
    b();
    await tick();
    expect(order).toEqual(['c', 'd']);
    (await waiting[0]!)();
    await tick();
    expect(order).toEqual(['c', 'd', 'e']);
    (await waiting[1]!)();
    (await waiting[2]!)();
    // All places free again: two enter at once.
    await gate.enter();
    await gate.enter();
  });

  it('drops a waiting caller whose request is cancelled, without using up a place', async () => {
    const gate = new StartGate(1);
    const first = await gate.enter();
    const ac = new AbortController();
    const cancelled = gate.enter(ac.signal);
    const next = gate.enter();
    ac.abort();
    await expect(cancelled).rejects.toMatchObject({ code: 'CANCELLED' });
    first();
    const leave = await next;
    leave();
    await expect(gate.enter(AbortSignal.abort())).resolves.toBeTypeOf('function');
  });

  it('refuses waiting and later callers once closed', async () => {
    const gate = new StartGate(1);
    await gate.enter();
    const waiting = gate.enter();
    gate.close();
    await expect(waiting).rejects.toMatchObject({ code: 'SANDBOX_UNAVAILABLE', message: 'the sandbox pool is shut down' });
    await expect(gate.enter()).rejects.toMatchObject({ code: 'SANDBOX_UNAVAILABLE' });
  });
});
