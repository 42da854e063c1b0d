import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { health } from '../agent-client.js';
import { DockerDriver } from './docker.js';
import { runToCompletion } from './run-to-completion.js';
import { ensureExecutorImage } from '../image/docker-image.js';
import { defineIsolationBattery } from '../testing/isolation-battery.js';
import { SandboxFolders, sh, testRootfs } from '../testing/sandbox-fixture.js';

async function dockerAndImage(): Promise<{ docker: Docker; image: string }> {
  const docker = new Docker();
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(`dockerd is not answering (run .ci/sandbox-setup.sh): ${(err as Error).message}`);
  }
  return { docker, image: await ensureExecutorImage(docker, await testRootfs()) };
}

defineIsolationBattery('docker', async () => {
  const { docker, image } = await dockerAndImage();
  const driver = new DockerDriver({ docker, hostId: 'test-host', defaultImage: image });
  return {
    driver,
    image,
    async leftovers(ids) {
      const all = await docker.listContainers({ all: true, filters: { label: ['wegent.sandbox=1'] } });
      return all.filter((c) => ids.includes(c.Labels['wegent.sandbox.id'] ?? '')).map((c) => c.Id);
    },
  };
});

describe('docker driver start-up', () => {
  const folders = new SandboxFolders();
  let docker: Docker;
  let image: string;
  let driver: DockerDriver;
  beforeAll(async () => {
    await folders.init();
    ({ docker, image } = await dockerAndImage());
    driver = new DockerDriver({ docker, hostId: 'test-host', defaultImage: image });
  }, 180_000);
  afterAll(async () => { await folders.dispose(); });

  it('[docker] start() returns once the agent has bound its socket, and the agent answers at once', async () => {
    const spec = await folders.spec({ image });
    const h = await driver.create(spec);
    try {
      await driver.start(h);
      expect(existsSync(join(spec.runDir, 'agent.sock'))).toBe(true);
      expect(await health({ runDir: spec.runDir })).toMatchObject({ ok: true });
    } finally {
      await driver.remove(h);
    }
  });

  it('[docker] an image that is not on this host fails with IMAGE_MISSING and is never pulled', async () => {
    const missing = 'wegent-executor:000000000000';
    const spec = await folders.spec({ image: missing });
    await expect(driver.create(spec)).rejects.toMatchObject({ code: 'IMAGE_MISSING', message: expect.stringContaining(`image '${missing}' is not present on this host; images are never pulled`) });
    await expect(docker.getImage(missing).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('[docker] a sandbox has 1024 open files (soft and hard) and no core dumps', async () => {
    const r = await runToCompletion(driver, await folders.spec({ image, command: sh('echo "n=$(ulimit -Sn)/$(ulimit -Hn) c=$(ulimit -Sc)/$(ulimit -Hc)"') }), { timeoutMs: 10_000 });
    expect(r.stdout.trim()).toBe('n=1024/1024 c=0/0');
  });
});
