/**
 * Host ports for sandboxes that publish one (sandbox.md §8). Atomicity comes from the store: a
 * claim is an insert under a unique key (hostId, port); losing a race means trying the next port.
 */
import { SandboxError } from '../types.js';

/** Storage of port claims; the server backs it with the `sandbox_ports` table (unique (hostId, port)). */
export interface PortClaimStore {
  /** Inserts the claim; false when (hostId, port) is already claimed. Must be atomic. */
  tryClaim(hostId: string, port: number, sandboxId: string): Promise<boolean>;
  releaseSandbox(hostId: string, sandboxId: string): Promise<void>;
  list(hostId: string): Promise<{ port: number; sandboxId: string }[]>;
}

/** In-process claims (tests, and the embedded home before the server wires storage). */
export class InMemoryPortClaimStore implements PortClaimStore {
  private readonly claims = new Map<string, string>();

  async tryClaim(hostId: string, port: number, sandboxId: string): Promise<boolean> {
    await Promise.resolve(); // a real store answers asynchronously; keep the interleaving honest
    const key = `${hostId}:${port}`;
    if (this.claims.has(key)) return false;
    this.claims.set(key, sandboxId);
    return true;
  }

  async releaseSandbox(hostId: string, sandboxId: string): Promise<void> {
    for (const [k, v] of this.claims) if (v === sandboxId && k.startsWith(`${hostId}:`)) this.claims.delete(k);
  }

  async list(hostId: string): Promise<{ port: number; sandboxId: string }[]> {
    const out: { port: number; sandboxId: string }[] = [];
    for (const [k, v] of this.claims) if (k.startsWith(`${hostId}:`)) out.push({ port: Number(k.slice(hostId.length + 1)), sandboxId: v });
    return out.sort((a, b) => a.port - b.port);
  }
}

/** Allocates host ports from WEGENT_SANDBOX_PORT_MIN..MAX (10001–10100) for one host. */
export class PortAllocator {
  readonly min: number;
  readonly max: number;

  constructor(private readonly store: PortClaimStore, private readonly opts: { hostId: string; min?: number; max?: number }) {
    this.min = opts.min ?? 10001;
    this.max = opts.max ?? 10100;
  }

  /** Claims `count` ports for the sandbox, lowest free first; all or nothing. */
  async allocate(sandboxId: string, count = 1): Promise<number[]> {
    const got: number[] = [];
    try {
      const taken = new Set((await this.store.list(this.opts.hostId)).map((c) => c.port));
      for (let port = this.min; port <= this.max && got.length < count; port++) {
        if (taken.has(port)) continue;
        if (await this.store.tryClaim(this.opts.hostId, port, sandboxId)) got.push(port);
      }
      if (got.length < count) throw new SandboxError('NO_FREE_PORT', `no free port in ${this.min}–${this.max}`);
      return got;
    } catch (err) {
      if (got.length > 0) await this.store.releaseSandbox(this.opts.hostId, sandboxId);
      throw err;
    }
  }

  /** Releases every port of the sandbox (it entered Cleanup). */
  async release(sandboxId: string): Promise<void> {
    await this.store.releaseSandbox(this.opts.hostId, sandboxId);
  }

  /** Releases ports whose sandbox is not alive (Deleted, unknown, or of a dead instance). */
  async reclaim(isAlive: (sandboxId: string) => boolean | Promise<boolean>): Promise<number[]> {
    const freed: number[] = [];
    const dead = new Set<string>();
    for (const c of await this.store.list(this.opts.hostId)) {
      if (!(await isAlive(c.sandboxId))) { dead.add(c.sandboxId); freed.push(c.port); }
    }
    for (const id of dead) await this.store.releaseSandbox(this.opts.hostId, id);
    return freed;
  }
}
