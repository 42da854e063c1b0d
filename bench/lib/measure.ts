/**
 * Measurement helpers shared by benchmarks: environment knobs, percentiles, and the CPU used over an
 * interval by the server under test, by this process (the load generator) and by everything else.
 */
import os from 'node:os';
import type { ChildServer } from './servers.js';

/** A numeric environment knob: `fallback` when unset, an error naming the variable when invalid. */
export function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min) throw new Error(`${name} must be a number ≥ ${min}, got '${raw}'`);
  return v;
}

/** The scenarios an environment variable selects (comma list; all when unset); unknown ids are an error. */
export function selectedScenarios(name: string, all: readonly string[]): Set<string> {
  const raw = process.env[name];
  const selected = new Set<string>(raw ? raw.split(',').map((x) => x.trim()) : all);
  const unknown = [...selected].filter((x) => !all.includes(x));
  if (unknown.length) throw new Error(`${name}: unknown scenario(s) ${unknown.join(', ')}; known: ${all.join(', ')}`);
  return selected;
}

/** Nearest-rank percentiles (q in 0…1) of `values`, sorted once; NaN for an empty set. */
export function percentiles(values: ArrayLike<number>, qs: readonly number[]): number[] {
  const s = Float64Array.from(values).sort();
  return qs.map((q) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]! : Number.NaN));
}

/** CPU time (ms) used by the whole machine so far, from os.cpus(). */
export function machineBusyMs(): number {
  return os.cpus().reduce((sum, c) => sum + c.times.user + c.times.nice + c.times.sys + c.times.irq, 0);
}

/** CPU used over an interval, as shares of one core (1 = one core busy for the whole interval). */
export interface CpuShares {
  /** The interval on this process's clock. */
  wallMs: number;
  server: number;
  /** This process: the load generator (and whatever else the benchmark runs in it). */
  self: number;
  /** Everything else on the machine, including the kernel's loopback network work billed to no process. */
  other: number;
  /** Server CPU time between the two readings, in ms. */
  serverMs: number;
  /**
   * How late the server answered the closing reading (ms): its event-loop lag at the end. The server's
   * share is measured between its own reading times, so a late answer does not distort it.
   */
  serverLagMs: number;
}

/** Starts measuring now; `stop()` returns the shares since then. */
export async function cpuWindow(server: ChildServer): Promise<{ stop(): Promise<CpuShares> }> {
  const before = await server.usage();
  const selfBefore = process.cpuUsage();
  const busyBefore = machineBusyMs();
  const t0 = performance.now();
  return {
    async stop() {
      const wallMs = performance.now() - t0;
      const busy = (machineBusyMs() - busyBefore) / wallMs;
      const self = process.cpuUsage(selfBefore);
      const asked = performance.timeOrigin + performance.now();
      const after = await server.usage();
      const serverMs = (after.cpuMicros - before.cpuMicros) / 1000;
      const serverShare = serverMs / Math.max(1, after.at - before.at);
      const selfShare = (self.user + self.system) / 1000 / wallMs;
      return { wallMs, serverMs, server: serverShare, self: selfShare, other: Math.max(0, busy - serverShare - selfShare), serverLagMs: Math.max(0, after.at - asked) };
    },
  };
}
