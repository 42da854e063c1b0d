import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { health } from '../agent-client.js';
import { BwrapDriver } from './bwrap.js';
import { detectCgroupLayout } from './cgroup.js';
import { runToCompletion } from './run-to-completion.js';
import { defineIsolationBattery } from '../testing/isolation-battery.js';
import { SandboxFolders, sh, testRootfs } from '../testing/sandbox-fixture.js';

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

describe('bwrap driver start-up', () => {
  const folders = new SandboxFolders();
  let driver: BwrapDriver;
  beforeAll(async () => {
    await folders.init();
    driver = new BwrapDriver({ stateDir: folders.stateDir, rootfsDir: (await testRootfs()).dir });
  }, 180_000);
  afterAll(async () => { await folders.dispose(); });

  it('[bwrap] start() returns once the agent has bound its socket, and the agent answers at once', async () => {
    const spec = await folders.spec();
    const h = await driver.create(spec);
    try {
      await driver.start(h);
      expect(existsSync(join(spec.runDir, 'agent.sock'))).toBe(true);
      expect(await health({ runDir: spec.runDir })).toMatchObject({ ok: true });
      // Joined before start() returned: the cgroup holds the sandbox's processes.
      expect((await driver.hostPids(h)).length).toBeGreaterThan(0);
    } finally {
      await driver.remove(h);
    }
  });

  it('[bwrap] a main process that exits at once ends the wait for the agent socket', async () => {
    const spec = await folders.spec({ command: sh('exit 3') });
    const h = await driver.create(spec);
    try {
      const t0 = Date.now();
      await driver.start(h);
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      await driver.remove(h);
    }
  });

  it('[bwrap] the launcher sets 1024 open files (soft and hard) and no core dumps', async () => {
    const r = await runToCompletion(driver, await folders.spec({ command: sh('echo "n=$(ulimit -Sn)/$(ulimit -Hn) c=$(ulimit -Sc)/$(ulimit -Hc)"') }), { timeoutMs: 10_000 });
    expect(r.stdout.trim()).toBe('n=1024/1024 c=0/0');
  });
});
