/** The isolation battery of sandbox.md §6, run against one driver (each test names it). */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runToCompletion } from '../drivers/run-to-completion.js';
import type { SandboxDriver, SandboxLimits, WorkspaceMode } from '../types.js';
import { SandboxFolders, sh } from './sandbox-fixture.js';

export interface BatteryTarget {
  driver: SandboxDriver;
  /** Docker image reference (docker driver). */
  image?: string;
  /** What the driver may leave behind, checked after the battery: cgroup folders, containers. */
  leftovers(ids: string[]): Promise<string[]>;
}

/** Registers the battery for the driver `setup()` returns; fails (never skips) when it is unavailable. */
export function defineIsolationBattery(name: 'docker' | 'bwrap', setup: (folders: SandboxFolders) => Promise<BatteryTarget>): void {
  describe(`isolation battery on the ${name} driver`, () => {
    const folders = new SandboxFolders();
    const ids: string[] = [];
    let target: BatteryTarget;
    const secret = `wegent-secret-${Math.random().toString(36).slice(2)}`;

    beforeAll(async () => {
      await folders.init();
      target = await setup(folders);
      const probe = await target.driver.probe();
      if (!probe.available) throw new Error(`the ${name} driver is not available on this machine: ${probe.reason}`);
      process.env.WEGENT_TEST_SECRET = secret;
      await writeFile(join(folders.dataDir, 'jwt-secret'), secret, { mode: 0o600 });
    }, 180_000);

    afterAll(async () => {
      delete process.env.WEGENT_TEST_SECRET;
      await folders.dispose();
    });

    async function runCase(script: string, opts: { limits?: Partial<SandboxLimits>; workspaceMode?: WorkspaceMode; timeoutMs?: number } = {}) {
      const spec = await folders.spec({ command: sh(script), limits: opts.limits, workspaceMode: opts.workspaceMode, image: target.image });
      ids.push(spec.id);
      return runToCompletion(target.driver, spec, { timeoutMs: opts.timeoutMs ?? 15_000 });
    }

    it(`[${name}] an outbound connection fails, to the outside and to the host's own services`, async () => {
      const accepted: number[] = [];
      const server: Server = createServer((s) => { accepted.push(1); s.destroy(); });
      await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
      const port = (server.address() as { port: number }).port;
      const hostIps = Object.values(networkInterfaces()).flat().filter((i) => i && i.family === 'IPv4').map((i) => i!.address);
      const targets = [...new Set(['127.0.0.1', ...hostIps])].map((ip) => `${ip}:${port}`).concat(['8.8.8.8:53', '1.1.1.1:443']);
      const script = targets.map((t) => {
        const [ip, p] = t.split(':');
        return `if timeout 3 bash -c 'echo > /dev/tcp/${ip}/${p}' 2>/dev/null; then echo "CONNECTED ${t}"; else echo "refused ${t}"; fi`;
      }).join('; ');
      try {
        const r = await runCase(script);
        expect(r.stdout).not.toContain('CONNECTED');
        expect(r.stdout.match(/refused/g)?.length).toBe(targets.length);
        expect(accepted).toHaveLength(0);
      } finally {
        server.close();
      }
    });

    it(`[${name}] the server's data folder, /root, /home, /etc/shadow and host secrets are invisible`, async () => {
      const r = await runCase([
        `ls ${folders.dataDir} >/dev/null 2>&1 && echo SEEN-DATA`,
        `cat ${join(folders.dataDir, 'jwt-secret')} 2>/dev/null && echo SEEN-SECRET-FILE`,
        'ls /root >/dev/null 2>&1 && echo SEEN-ROOT',
        'ls /home >/dev/null 2>&1 && echo SEEN-HOME',
        'cat /etc/shadow >/dev/null 2>&1 && echo SEEN-SHADOW',
        `grep -rl ${secret} /proc/[0-9]*/environ /workspace /tmp /run/wegent 2>/dev/null && echo FOUND-SECRET`,
        'env | sort',
        'echo PROCS $(ls -d /proc/[0-9]* | wc -l)',
      ].join('; '));
      expect(r.stdout).not.toMatch(/SEEN-|FOUND-SECRET/);
      expect(r.stdout).not.toContain(secret);
      const envNames = r.stdout.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=')[0]);
      expect(envNames.filter((n) => !['HOME', 'PATH', 'LANG', 'TZ', 'WEGENT_SANDBOX_ID', 'PWD', 'SHLVL', '_', 'OLDPWD', 'HOSTNAME'].includes(n as string))).toEqual([]);
      // Only the sandbox's own few processes exist in its /proc.
      expect(Number(/PROCS (\d+)/.exec(r.stdout)?.[1])).toBeLessThan(10);
    });

    it(`[${name}] a fork bomb is contained by the process limit and ends at its time limit`, async () => {
      // The bomb runs in a background subshell, forked while the pid table still has room; the main
      // shell then becomes `sleep` (exec needs no new process). A shell that itself meets a failed fork
      // exits (dash does), which would end the sandbox early and prove nothing.
      const r = await runCase('(bomb() { bomb | bomb & }; bomb) & exec sleep 60', { limits: { pids: 64 }, timeoutMs: 4_000 });
      expect(r.timedOut, `the sandbox ended early (exit ${r.exitCode}): ${r.stderr.slice(-300)}`).toBe(true);
      expect(r.maxProcesses).toBeLessThanOrEqual(64 + 2);
      const after = await runCase('echo still-works');
      expect(after.stdout).toContain('still-works');
    });

    it(`[${name}] a memory bomb is killed and reported as out of memory`, async () => {
      const r = await runCase('tail /dev/zero', { limits: { memoryMB: 64, tmpMB: 16 }, timeoutMs: 20_000 });
      expect(r.timedOut).toBe(false);
      expect(r.oomKilled).toBe(true);
      expect(r.exitCode).toBe(137);
    });

    it(`[${name}] a CPU spin is stopped at the time limit and held to about one core`, async () => {
      const r = await runCase('while :; do :; done & while :; do :; done', { limits: { cpus: 1 }, timeoutMs: 3_000 });
      expect(r.timedOut).toBe(true);
      expect(r.durationMs).toBeGreaterThanOrEqual(3_000);
      expect(r.durationMs).toBeLessThan(5_000);
      expect(r.cpuNs).toBeDefined();
      expect((r.cpuNs as number) / 1e6 / r.durationMs).toBeLessThan(1.25);
    });

    it(`[${name}] writing past the /tmp quota fails with "No space left on device"`, async () => {
      const r = await runCase('dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; echo rc=$?', { limits: { tmpMB: 32 } });
      expect(r.stdout).toContain('No space left on device');
      expect(r.stdout).toContain('rc=1');
      expect(r.oomKilled).toBe(false);
    });

    it(`[${name}] writing past the workspace quota fails in tmpfs mode (dir mode has no hard quota on this driver)`, async () => {
      const probe = await target.driver.probe();
      expect(probe.enforces.hardDiskQuota).toBe(false);
      const r = await runCase('dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>&1; echo rc=$?', { limits: { diskMB: 32 }, workspaceMode: 'tmpfs' });
      expect(r.stdout).toContain('No space left on device');
    });

    it(`[${name}] the Docker socket is absent`, async () => {
      const r = await runCase('ls /var/run/docker.sock /run/docker.sock 2>&1; echo done');
      expect(r.stdout).toMatch(/docker\.sock'?: No such file or directory[\s\S]*docker\.sock'?: No such file or directory/);
    });

    it(`[${name}] the sandbox user is uid 1000 with no capabilities, and never host root`, async () => {
      const spec = await folders.spec({ command: sh('id -u; grep CapEff /proc/self/status; sleep 30'), image: target.image });
      ids.push(spec.id);
      const h = await target.driver.create(spec);
      try {
        await target.driver.start(h);
        let pids: number[] = [];
        for (let i = 0; i < 100 && pids.length < 2; i++) { pids = await target.driver.hostPids(h); await new Promise((r) => setTimeout(r, 50)); }
        expect(pids.length).toBeGreaterThan(0);
        for (const pid of pids) {
          const status = await readFile(`/proc/${pid}/status`, 'utf8');
          const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [0];
          expect(uids.every((u) => u !== 0), `host process ${pid} runs as ${uids.join(',')}`).toBe(true);
        }
        let logs = { stdout: '' };
        for (let i = 0; i < 100 && !logs.stdout.includes('CapEff'); i++) { logs = await target.driver.logs(h); await new Promise((r) => setTimeout(r, 50)); }
        expect(logs.stdout).toMatch(/^1000$/m);
        expect(logs.stdout).toMatch(/CapEff:\s+0000000000000000/);
      } finally {
        await target.driver.remove(h);
      }
    });

    it(`[${name}] the root file system is read-only and /workspace is writable`, async () => {
      const r = await runCase('for d in / /usr /etc /opt/wegent; do touch $d/x 2>&1; done; touch /workspace/ok && echo WS-OK; touch /tmp/ok && echo TMP-OK');
      expect(r.stdout.match(/Read-only file system/g)?.length).toBe(4);
      expect(r.stdout).toContain('WS-OK');
      expect(r.stdout).toContain('TMP-OK');
    });

    it(`[${name}] nothing of the battery is left behind: no sandbox, process, cgroup or state`, async () => {
      expect(ids.length).toBeGreaterThan(5);
      const owned = (await target.driver.listOwned()).filter((h) => ids.includes(h.sandboxId));
      expect(owned).toEqual([]);
      expect(await target.leftovers(ids)).toEqual([]);
      const ps = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
      expect(ps.split('\n').filter((l) => ids.some((id) => l.includes(id)) || l.includes(folders.root))).toEqual([]);
      // listOwned() also records other test files' running sandboxes here; only the battery's count.
      expect((await readdir(folders.stateDir).catch(() => [] as string[])).filter((f) => ids.some((id) => f.startsWith(id)))).toEqual([]);
    });
  });
}
