import { readdir } from 'node:fs/promises';
import { BwrapDriver } from './bwrap.js';
import { detectCgroupLayout } from './cgroup.js';
import { defineIsolationBattery } from '../testing/isolation-battery.js';
import { testRootfs } from '../testing/sandbox-fixture.js';

defineIsolationBattery('bwrap', async (folders) => {
  const rootfs = await testRootfs();
  const driver = new BwrapDriver({ stateDir: folders.stateDir, rootfsDir: rootfs.dir });
  return {
    driver,
    async leftovers(ids) {
      const layout = detectCgroupLayout();
      const left: string[] = [];
      for (const parent of Object.values(layout?.parents ?? {})) {
        for (const name of await readdir(parent).catch(() => [] as string[])) if (ids.includes(name)) left.push(`${parent}/${name}`);
      }
      return left;
    },
  };
});
