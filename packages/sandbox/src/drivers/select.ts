import Docker from 'dockerode';
import { buildExecutorRootfs } from '../image/rootfs.js';
import { ensureExecutorImage } from '../image/docker-image.js';
import type { DriverProbe, SandboxDriver } from '../types.js';
import { BwrapDriver } from './bwrap.js';
import { DockerDriver } from './docker.js';
import { join } from 'node:path';

export type DriverChoice = { driver: SandboxDriver; probe: DriverProbe } | { driver: undefined; reason: string };

/**
 * WEGENT_SANDBOX_DRIVER (sandbox.md §4.3): `auto` takes docker when its API answers within 1 s, else
 * bwrap when a probe sandbox starts, else none (with the reason). Builds the executor image as needed.
 */
export async function selectSandboxDriver(opts: { mode: 'auto' | 'docker' | 'bwrap' | 'none'; dataDir: string; hostId: string; allowWeakLimits?: boolean; hostUid?: number; hostGid?: number }): Promise<DriverChoice> {
  if (opts.mode === 'none') return { driver: undefined, reason: 'WEGENT_SANDBOX_DRIVER is none' };
  const reasons: string[] = [];
  const rootfs = await buildExecutorRootfs({ dataDir: opts.dataDir });
  if (opts.mode === 'auto' || opts.mode === 'docker') {
    const docker = new Docker();
    const probeDriver = new DockerDriver({ docker, hostId: opts.hostId, defaultImage: '' });
    const probe = await probeDriver.probe();
    if (probe.available) {
      const image = await ensureExecutorImage(docker, rootfs);
      return { driver: new DockerDriver({ docker, hostId: opts.hostId, defaultImage: image }), probe };
    }
    reasons.push(`docker: ${probe.reason}`);
  }
  if (opts.mode === 'auto' || opts.mode === 'bwrap') {
    const driver = new BwrapDriver({ stateDir: join(opts.dataDir, 'sandbox', 'bwrap'), rootfsDir: rootfs.dir, allowWeakLimits: opts.allowWeakLimits, hostUid: opts.hostUid, hostGid: opts.hostGid });
    const probe = await driver.probe();
    if (probe.available) return { driver, probe };
    reasons.push(`bwrap: ${probe.reason}`);
  }
  return { driver: undefined, reason: `no sandbox driver is available on this server: ${reasons.join('; ')}` };
}
