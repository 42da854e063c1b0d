import type { SandboxLimits } from './types.js';

/**
 * Default limits (sandbox.md §5): memory 1024 MiB (no swap), 1 CPU, 256 processes, /tmp 256 MiB,
 * workspace 2048 MiB, 1024 open files. Memory applied to the cgroup/container is memory + /tmp
 * (+ workspace in tmpfs mode), because tmpfs pages are charged to the sandbox (§5.1).
 */
export const DEFAULT_LIMITS: Readonly<SandboxLimits> = Object.freeze({
  memoryMB: 1024,
  cpus: 1,
  pids: 256,
  tmpMB: 256,
  diskMB: 2048,
  nofile: 1024,
});

/** Maxima a Shell may ask for (WEGENT_SANDBOX_MAX_*). */
export interface LimitMaxima { memoryMB: number; cpus: number; pids: number; diskMB: number }
export const DEFAULT_MAXIMA: Readonly<LimitMaxima> = Object.freeze({ memoryMB: 8192, cpus: 4, pids: 4096, diskMB: 20480 });

/** Applies a Shell's `spec.sandbox` overrides on the defaults, clamped to the maxima. */
export function resolveLimits(overrides: Partial<Pick<SandboxLimits, 'memoryMB' | 'cpus' | 'pids' | 'diskMB'>> = {}, maxima: LimitMaxima = DEFAULT_MAXIMA): SandboxLimits {
  return {
    ...DEFAULT_LIMITS,
    memoryMB: Math.min(overrides.memoryMB ?? DEFAULT_LIMITS.memoryMB, maxima.memoryMB),
    cpus: Math.min(overrides.cpus ?? DEFAULT_LIMITS.cpus, maxima.cpus),
    pids: Math.min(overrides.pids ?? DEFAULT_LIMITS.pids, maxima.pids),
    diskMB: Math.min(overrides.diskMB ?? DEFAULT_LIMITS.diskMB, maxima.diskMB),
  };
}

/** Memory charged to the sandbox's cgroup: tmpfs pages count against it (§5.1). */
export function chargedMemoryBytes(limits: SandboxLimits, workspaceInTmpfs: boolean): number {
  const mb = limits.memoryMB + limits.tmpMB + (workspaceInTmpfs ? limits.diskMB : 0);
  return mb * 1024 * 1024;
}

/** The base environment of every sandbox process: nothing from the host (§4.1). */
export function baseEnvironment(sandboxId: string): Record<string, string> {
  return {
    HOME: '/workspace/.home',
    PATH: '/opt/wegent/bin:/usr/local/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    TZ: 'UTC',
    WEGENT_SANDBOX_ID: sandboxId,
  };
}
