import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentCallError } from '../agent-client.js';
import { InMemorySandboxRecordStore } from '../pool/records.js';
import { SandboxPool, type SandboxAgentHandle } from '../pool/sandbox-pool.js';
import { SandboxFolders } from '../testing/sandbox-fixture.js';
import { DRIVER_NAMES, isAlive, setupPoolDriver, until, type PoolDriverSetup } from '../testing/pool-drivers.js';
import { STDERR_RING_BYTES } from './stdio.js';

/** A connection to a relay socket that collects what it reads. */
async function open(path: string): Promise<{ sock: Socket; text: () => string; closed: Promise<void> }> {
  const sock = connect(path);
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => { buf += d; });
  const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
  sock.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  return { sock, text: () => buf, closed };
}

describe.each(DRIVER_NAMES)('the stdio relay (%s driver)', (name) => {
  const folders = new SandboxFolders();
  let env: PoolDriverSetup;
  let pool: SandboxPool;
  let sbx: SandboxAgentHandle;
  let sandboxId = '';

  beforeAll(async () => {
    await folders.init();
    env = await setupPoolDriver(name, folders);
    pool = new SandboxPool({ driver: env.driver, image: env.image, records: new InMemorySandboxRecordStore(), hostId: env.hostId, instanceId: 'i-stdio', dataDir: folders.dataDir, runDir: folders.runBase });
    const rec = await pool.acquire({ taskId: 'task-stdio', turnId: 't1', ownerId: 'alice', signal: new AbortController().signal });
    sandboxId = rec.id;
    sbx = pool.handle(rec.id);
  }, 180_000);

  afterAll(async () => {
    await pool?.close();
    expect(await env.leftovers([sandboxId])).toEqual([]);
    expect(await folders.leftoverRunDirs()).toEqual([]);
    await folders.dispose();
  });

  it('relays bytes both ways between a socket connection and the program, with its env and cwd /workspace', async () => {
    const started = await sbx.startStdio('echo', { command: '/bin/sh', args: ['-c', 'echo "cwd=$(pwd) greeting=$GREETING home=$HOME" >&2; while read l; do echo "got:$l"; done'], env: { GREETING: 'hi' } });
    expect(started.socket).toMatch(/^\/run\/wegent\/mcp-\d+\.sock$/);
    expect(existsSync(started.hostSocketPath)).toBe(true);
    const c = await open(started.hostSocketPath);
    c.sock.write('{"jsonrpc":"2.0","id":1}\nsecond line\n');
    await until(() => c.text().includes('got:second line\n'), 5000);
    expect(c.text()).toBe('got:{"jsonrpc":"2.0","id":1}\ngot:second line\n');
    const status = await sbx.stdioStatus('echo');
    expect(status).toMatchObject({ running: true, exitCode: null });
    expect(status.stderr).toBe('cwd=/workspace greeting=hi home=/workspace/.home\n');
    c.sock.destroy();
    await sbx.stopStdio('echo');
    expect(existsSync(started.hostSocketPath)).toBe(false);
  });

  it('takes one connection at a time; the program keeps its state across connections', async () => {
    const started = await sbx.startStdio('counter', { command: '/bin/sh', args: ['-c', 'n=0; while read l; do n=$((n+1)); echo "$n:$l"; done'] });
    const first = await open(started.hostSocketPath);
    first.sock.write('a\n');
    await until(() => first.text() === '1:a\n', 5000);
    // A second connection while the first is open is closed at once.
    const second = await open(started.hostSocketPath);
    second.sock.write('ignored\n');
    await second.closed;
    expect(second.text()).toBe('');
    first.sock.destroy();
    await first.closed;
    await new Promise((r) => setTimeout(r, 50));
    const third = await open(started.hostSocketPath);
    third.sock.write('b\n');
    await until(() => third.text() === '2:b\n', 5000);
    third.sock.destroy();
    await sbx.stopStdio('counter');
  });

  it('keeps the last 64 KiB of stderr and reports how the program ended', async () => {
    const started = await sbx.startStdio('noisy', { command: '/bin/sh', args: ['-c', `head -c 70000 /dev/zero | tr '\\0' e >&2; echo last-line >&2; exit 3`] });
    const status = await until(async () => { const s = await sbx.stdioStatus('noisy'); return s.running ? undefined : s; }, 5000);
    expect(status.exitCode).toBe(3);
    expect(Buffer.byteLength(status.stderr)).toBe(STDERR_RING_BYTES);
    expect(status.stderr.endsWith('eeeelast-line\n')).toBe(true);
    expect(status.message).toMatch(/^the stdio server 'noisy' exited with code 3; its stderr: e+last-line$/);
    expect(existsSync(started.hostSocketPath)).toBe(false);
    await sbx.stopStdio('noisy');
  });

  it('stopping kills the whole process group within 2 s, children that ignore SIGTERM included', async () => {
    const baseline = await pool.hostPids(sandboxId);
    await sbx.startStdio('stubborn', { command: '/bin/sh', args: ['-c', 'trap "" TERM; (trap "" TERM; sleep 100) & sleep 100'] });
    const pids = await until(async () => { const p = (await pool.hostPids(sandboxId)).filter((x) => !baseline.includes(x)); return p.length >= 3 ? p : undefined; }, 5000);
    const t0 = Date.now();
    await sbx.stopStdio('stubborn');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(pids.filter(isAlive)).toEqual([]);
  });

  it('a turn that releases the sandbox stops the relays it started', async () => {
    await pool.acquire({ taskId: 'task-stdio', turnId: 't2', ownerId: 'alice', signal: new AbortController().signal });
    const baseline = await pool.hostPids(sandboxId);
    const started = await sbx.startStdio('turn-scoped', { command: '/bin/sh', args: ['-c', 'while read l; do echo "$l"; done'] }, { turnId: 't2' });
    const pids = await until(async () => { const p = (await pool.hostPids(sandboxId)).filter((x) => !baseline.includes(x)); return p.length >= 1 ? p : undefined; }, 5000);
    pool.release('task-stdio', 't2');
    await until(() => pids.every((p) => !isAlive(p)) && !existsSync(started.hostSocketPath), 3000);
    await expect(sbx.stdioStatus('turn-scoped')).rejects.toMatchObject({ status: 404 });
  });

  it('refuses a program that cannot start, a second start of a running name, and bad names', async () => {
    const missing = await sbx.startStdio('missing', { command: '/no/such/program' }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(AgentCallError);
    expect(missing).toMatchObject({ code: 'START_FAILED', status: 400 });
    expect((missing as Error).message).toContain("the stdio server 'missing' could not start");
    await sbx.startStdio('twice', { command: '/bin/sleep', args: ['100'] });
    await expect(sbx.startStdio('twice', { command: '/bin/sleep', args: ['100'] })).rejects.toMatchObject({ code: 'CONFLICT', status: 409 });
    await sbx.stopStdio('twice');
    await expect(sbx.startStdio('x'.repeat(64), { command: '/bin/true' })).rejects.toMatchObject({ code: 'BAD_REQUEST', status: 400 });
  });
});
