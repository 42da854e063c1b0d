/** Test support: both drivers, set up for pool-level tests, with what each may leave behind. */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import Docker from 'dockerode';
import { BwrapDriver } from '../drivers/bwrap.js';
import { detectCgroupLayout } from '../drivers/cgroup.js';
import { DockerDriver } from '../drivers/docker.js';
import { ensureExecutorImage } from '../image/docker-image.js';
import type { SandboxDriver } from '../types.js';
import { type SandboxFolders, testRootfs } from './sandbox-fixture.js';

export interface PoolDriverSetup {
  driver: SandboxDriver;
  /** Unique per setup: docker lists, reaps and reports events by host label, so test files stay apart. */
  hostId: string;
  image?: string;
  /** Containers, cgroups or state files of these sandboxes still present. */
  leftovers(ids: string[]): Promise<string[]>;
}

export type DriverName = 'bwrap' | 'docker';

/** Sets a driver up for a test file; throws (never skips) when it is unavailable. */
export async function setupPoolDriver(name: DriverName, folders: SandboxFolders): Promise<PoolDriverSetup> {
  const hostId = `test-host-${randomUUID().slice(0, 8)}`;
  if (name === 'bwrap') {
    const driver = new BwrapDriver({ stateDir: folders.stateDir, rootfsDir: (await testRootfs()).dir });
    const probe = await driver.probe();
    if (!probe.available) throw new Error(`the bwrap driver is not available on this machine: ${probe.reason}`);
    return {
      driver, hostId,
      async leftovers(ids) {
        const left = (await readdir(folders.stateDir).catch(() => [] as string[])).filter((f) => ids.some((id) => f.startsWith(id)));
        for (const parent of Object.values(detectCgroupLayout()?.parents ?? {})) {
          for (const n of await readdir(parent).catch(() => [] as string[])) if (ids.includes(n)) left.push(`${parent}/${n}`);
        }
        return left;
      },
    };
  }
  const docker = new Docker();
  try { await docker.ping(); } catch (err) { throw new Error(`dockerd is not answering (run .ci/sandbox-setup.sh): ${(err as Error).message}`); }
  const image = await ensureExecutorImage(docker, await testRootfs());
  return {
    driver: new DockerDriver({ docker, hostId, defaultImage: image }), image, hostId,
    async leftovers(ids) {
      const all = await docker.listContainers({ all: true, filters: { label: ['wegent.sandbox=1'] } });
      return all.filter((c) => ids.includes(c.Labels['wegent.sandbox.id'] ?? '')).map((c) => c.Id);
    },
  };
}

export const DRIVER_NAMES: DriverName[] = ['bwrap', 'docker'];

/** A process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

/** The host pid of the sandbox agent among a sandbox's host pids. */
export function agentPid(pids: number[]): number | undefined {
  return pids.find((p) => { try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('/opt/wegent/bin/node\0/opt/wegent/agent/main.js'); } catch { return false; } });
}

/** Polls until `fn` returns a truthy value or the time is up. */
export async function until<T>(fn: () => Promise<T> | T, timeoutMs = 10_000, stepMs = 25): Promise<Exclude<T, undefined | null | false | 0 | ''>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as Exclude<T, undefined | null | false | 0 | ''>;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
