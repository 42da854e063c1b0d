import Docker from 'dockerode';
import { DockerDriver } from './docker.js';
import { ensureExecutorImage } from '../image/docker-image.js';
import { defineIsolationBattery } from '../testing/isolation-battery.js';
import { testRootfs } from '../testing/sandbox-fixture.js';

defineIsolationBattery('docker', async () => {
  const docker = new Docker();
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(`dockerd is not answering (run .ci/sandbox-setup.sh): ${(err as Error).message}`);
  }
  const image = await ensureExecutorImage(docker, await testRootfs());
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
