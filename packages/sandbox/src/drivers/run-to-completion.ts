import { setTimeout as sleep } from 'node:timers/promises';
import type { SandboxDriver, SandboxSpec } from '../types.js';

export interface CompletedRun {
  exitCode: number | undefined;
  timedOut: boolean;
  cancelled: boolean;
  oomKilled: boolean;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** CPU time used, read just before the sandbox was stopped (when the driver can tell). */
  cpuNs: number | undefined;
  /** Most processes seen at once (sampled from the host). */
  maxProcesses: number;
}

/**
 * Runs `spec.command` as a one-shot sandbox: create, start, wait for the exit or the wall-time limit
 * (or the signal), stop with a 1 s grace period, collect output, remove. Nothing is left behind.
 */
export async function runToCompletion(driver: SandboxDriver, spec: SandboxSpec, opts: { timeoutMs: number; signal?: AbortSignal; onStarted?(): void }): Promise<CompletedRun> {
  const h = await driver.create(spec);
  const started = Date.now();
  let timedOut = false;
  let cancelled = false;
  let cpuNs: number | undefined;
  let maxProcesses = 0;
  try {
    await driver.start(h);
    opts.onStarted?.();
    for (let i = 0; ; i++) {
      const st = await driver.inspect(h);
      if (!st.running) break;
      if (i % 4 === 0) maxProcesses = Math.max(maxProcesses, (await driver.hostPids(h)).length);
      if (opts.signal?.aborted) { cancelled = true; break; }
      if (Date.now() - started >= opts.timeoutMs) { timedOut = true; break; }
      await sleep(25);
    }
    cpuNs = (await driver.stats(h)).cpuNs;
    await driver.stop(h, 1000);
    const st = await driver.inspect(h);
    const logs = await driver.logs(h);
    return { exitCode: st.exitCode, timedOut, cancelled, oomKilled: st.oomKilled, stdout: logs.stdout, stderr: logs.stderr, durationMs: Date.now() - started, cpuNs, maxProcesses };
  } finally {
    await driver.remove(h);
  }
}
