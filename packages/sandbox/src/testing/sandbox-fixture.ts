/** Test support: folders, specs and leftover checks for driver and pool tests. */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildExecutorRootfs, type ExecutorRootfs } from '../image/rootfs.js';
import { DEFAULT_LIMITS } from '../limits.js';
import type { SandboxLimits, SandboxSpec, WorkspaceMode } from '../types.js';

/** The rootfs cache shared by test runs (the content hash makes reuse safe). */
export const TEST_IMAGE_DATA_DIR = join(tmpdir(), 'wegent-sandbox-test-image');

export async function testRootfs(): Promise<ExecutorRootfs> {
  await mkdir(TEST_IMAGE_DATA_DIR, { recursive: true, mode: 0o755 });
  await chmod(TEST_IMAGE_DATA_DIR, 0o755);
  return buildExecutorRootfs({ dataDir: TEST_IMAGE_DATA_DIR });
}

/** A throw-away data dir and run dir for one test file; `dispose()` removes them. */
export class SandboxFolders {
  readonly root = join(tmpdir(), `wegent-sbx-test-${randomUUID().slice(0, 8)}`);
  readonly dataDir = join(this.root, 'data');
  readonly runBase = join(this.root, 'run');
  readonly stateDir = join(this.dataDir, 'sandbox', 'state');

  async init(): Promise<this> {
    // 0711: the unprivileged sandbox host user may pass through to its own folders, never list them.
    for (const d of [this.root, this.dataDir, join(this.dataDir, 'sandboxes'), this.runBase]) {
      await mkdir(d, { recursive: true });
      await chmod(d, 0o711);
    }
    return this;
  }

  async spec(over: { limits?: Partial<SandboxLimits>; command?: string[]; workspaceMode?: WorkspaceMode; env?: Record<string, string>; image?: string } = {}): Promise<SandboxSpec> {
    const id = randomUUID();
    const workspaceDir = join(this.dataDir, 'sandboxes', id, 'workspace');
    const runDir = join(this.runBase, id);
    await mkdir(workspaceDir, { recursive: true });
    await chmod(join(this.dataDir, 'sandboxes', id), 0o711);
    await mkdir(runDir, { recursive: true });
    return {
      id,
      labels: { taskId: `task-${id.slice(0, 8)}`, ownerId: 'user-1', hostId: 'test-host', instanceId: 'test-instance' },
      limits: { ...DEFAULT_LIMITS, ...over.limits },
      network: 'none',
      workspaceMode: over.workspaceMode ?? 'dir',
      workspaceDir,
      runDir,
      command: over.command,
      env: over.env,
      image: over.image,
    };
  }

  /** Folders left under the run base (each sandbox's run folder must be gone after clean-up). */
  async leftoverRunDirs(): Promise<string[]> {
    return readdir(this.runBase).catch(() => []);
  }

  async dispose(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}

/** `sh -c` as the sandbox's main process. */
export function sh(script: string): string[] {
  return ['/bin/sh', '-c', script];
}
