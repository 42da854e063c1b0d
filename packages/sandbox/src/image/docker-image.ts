/**
 * The docker executor image `wegent-executor:<first 12 hex of the hash>` (sandbox.md §14.2 step 4):
 * `FROM scratch` + the rootfs folder, built by the local daemon. Nothing is pulled.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type Docker from 'dockerode';
import type { ExecutorRootfs } from './rootfs.js';

export const EXECUTOR_REPOSITORY = 'wegent-executor';

/** The image reference for a rootfs hash. */
export function executorImageRef(hash: string): string {
  return `${EXECUTOR_REPOSITORY}:${hash.slice(0, 12)}`;
}

function dockerfile(hash: string): string {
  return [
    'FROM scratch',
    'COPY rootfs/ /',
    'USER 1000:1000',
    'WORKDIR /workspace',
    'ENTRYPOINT ["/opt/wegent/bin/node", "/opt/wegent/agent/main.js"]',
    `LABEL wegent.image.hash="${hash}" wegent.image.claude-cli="false"`,
    '',
  ].join('\n');
}

/** Builds the executor image unless an image with this hash exists; returns its reference. */
export async function ensureExecutorImage(docker: Docker, rootfs: ExecutorRootfs): Promise<string> {
  const ref = executorImageRef(rootfs.hash);
  try {
    const info = await docker.getImage(ref).inspect();
    if (info.Config?.Labels?.['wegent.image.hash'] === rootfs.hash) return ref;
  } catch { /* not present: build it */ }

  const ctx = await mkdtemp(join(tmpdir(), 'wegent-image-'));
  try {
    await writeFile(join(ctx, 'Dockerfile'), dockerfile(rootfs.hash));
    // The context is streamed by GNU tar: the rootfs folder is renamed to `rootfs/` on the way.
    const tar = spawn('tar', ['-c', '-C', ctx, 'Dockerfile', '-C', dirname(rootfs.dir), `--transform=s,^${basename(rootfs.dir)},rootfs,`, basename(rootfs.dir)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tarErr = '';
    tar.stderr.on('data', (d: Buffer) => { tarErr += d.toString(); });
    const stream = await docker.buildImage(tar.stdout, { t: ref, rm: true, forcerm: true, pull: false } as Docker.ImageBuildOptions);
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, output: { error?: string }[]) => {
        const failed = err?.message ?? output.find((o) => o.error)?.error;
        if (failed) reject(new Error(`building ${ref} failed: ${failed}${tarErr ? ` (${tarErr.trim()})` : ''}`));
        else resolve();
      });
    });
    return ref;
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}

/** Removes executor images of other hashes that no container uses (§14.2 step 5). */
export async function pruneExecutorImages(docker: Docker, keepHash: string): Promise<string[]> {
  const removed: string[] = [];
  const images = await docker.listImages({ filters: { label: ['wegent.image.hash'] } });
  for (const img of images) {
    if (img.Labels?.['wegent.image.hash'] === keepHash) continue;
    try {
      await docker.getImage(img.Id).remove();
      removed.push(img.Id);
    } catch { /* in use by a container: kept until it is gone */ }
  }
  return removed;
}
