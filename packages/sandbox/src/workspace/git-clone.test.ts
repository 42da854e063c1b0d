import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySandboxRecordStore } from '../pool/records.js';
import { SandboxPool } from '../pool/sandbox-pool.js';
import { SandboxFolders } from '../testing/sandbox-fixture.js';
import { DRIVER_NAMES, setupPoolDriver, type PoolDriverSetup } from '../testing/pool-drivers.js';
import { checkGitUrl, cloneWorkspace } from './git-clone.js';

const GIT_ENV = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' };
const git = (args: string[], cwd?: string) => execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' });

/** A bare repository with one pushed commit on `main` (and a `feature` branch). */
async function makeBareRepo(root: string): Promise<string> {
  const bare = join(root, 'origin.git');
  const work = join(root, 'work');
  git(['init', '--bare', '-q', '-b', 'main', bare]);
  git(['init', '-q', '-b', 'main', work]);
  execFileSync('sh', ['-c', 'echo "hello from the repository" > README.md'], { cwd: work });
  git(['add', 'README.md'], work);
  git(['commit', '-q', '-m', 'first commit'], work);
  git(['checkout', '-q', '-b', 'feature'], work);
  execFileSync('sh', ['-c', 'echo feature > FEATURE.md'], { cwd: work });
  git(['add', 'FEATURE.md'], work);
  git(['commit', '-q', '-m', 'feature commit'], work);
  git(['push', '-q', bare, 'main', 'feature'], work);
  git(['--git-dir', bare, 'update-server-info']);
  return bare;
}

describe('the workspace clone on the host', () => {
  const root = join(tmpdir(), `wegent-git-${randomUUID().slice(0, 8)}`);
  let bare: string;
  let server: Server;
  let httpUrl: string;
  const seenAuth: string[] = [];
  const token = `tok-${randomUUID()}`;

  beforeAll(async () => {
    await mkdir(root, { recursive: true });
    bare = await makeBareRepo(root);
    // git's "dumb" HTTP protocol: plain files of the bare repository, behind Basic authentication.
    server = createServer((req, res) => {
      seenAuth.push(req.headers.authorization ?? '');
      if (req.headers.authorization !== `Basic ${Buffer.from(`robot:${token}`).toString('base64')}`) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }); res.end(); return;
      }
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/repo\.git/, '');
      readFile(join(bare, path)).then((data) => { res.writeHead(200); res.end(data); }, () => { res.writeHead(404); res.end(); });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    httpUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/repo.git`;
  });
  afterAll(async () => { server.close(); await rm(root, { recursive: true, force: true }); });

  it('applies the URL rules: file:// and ssh only when allowed, no other schemes, metadata never, private only when allowed', async () => {
    const refused = async (gitUrl: string, opts = {}) => (await checkGitUrl({ gitUrl }, opts).then(() => undefined, (e: Error & { code?: string }) => `${e.code}: ${e.message}`));
    expect(await refused(`file://${bare}`)).toBe(`CLONE_FAILED: Could not clone file://${bare}: file:// URLs are not allowed on this server (WEGENT_GIT_ALLOW_LOCAL)`);
    expect(await refused(`file://${bare}`, { allowLocal: true })).toBeUndefined();
    expect(await refused('ssh://git@example.com/org/repo.git')).toMatch(/ssh URLs are not allowed on this server \(WEGENT_GIT_ALLOW_SSH\)$/);
    expect(await refused('git@example.com:org/repo.git')).toMatch(/ssh URLs are not allowed/);
    expect(await refused('git@example.com:org/repo.git', { allowSsh: true })).toBeUndefined();
    expect(await refused('git://example.com/repo.git')).toMatch(/the git:\/\/ scheme is not allowed; use https$/);
    expect(await refused('ext::sh -c touch% /tmp/pwned')).toMatch(/CLONE_FAILED/);
    expect(await refused('--upload-pack=touch /tmp/x')).toMatch(/the repository URL is not valid/);
    expect(await refused('http://169.254.169.254/latest/repo.git', { allowPrivate: true })).toBe('CLONE_FAILED: Could not clone http://169.254.169.254/latest/repo.git: this address is not allowed');
    expect(await refused(httpUrl)).toMatch(/private address not allowed for this Workspace; ask an admin to allow the host$/);
    expect(await refused(httpUrl, { privateHostsAllow: ['127.0.0.0/8'] })).toBeUndefined();
    const withUserInfo = await checkGitUrl({ gitUrl: 'https://bob:s3cret@example.com/r.git' }, {});
    expect(withUserInfo).toEqual({ url: 'https://example.com/r.git', credentials: { username: 'bob', password: 's3cret' } });
  });

  it('sends the credentials as a header scoped to the URL and never writes them into .git/config', async () => {
    const dir = join(root, 'clone-http');
    await mkdir(dir);
    await cloneWorkspace({ gitUrl: httpUrl, credentials: { username: 'robot', token }, userName: 'Alice Doe', userEmail: 'alice@example.com' }, dir, { depth: 0, allowPrivate: true });
    expect(await readFile(join(dir, 'README.md'), 'utf8')).toBe('hello from the repository\n');
    expect(seenAuth.filter((a) => a.includes(Buffer.from(`robot:${token}`).toString('base64'))).length).toBeGreaterThan(0);
    const config = await readFile(join(dir, '.git/config'), 'utf8');
    expect(config).not.toContain(token);
    expect(config).not.toContain(Buffer.from(`robot:${token}`).toString('base64'));
    expect(config).not.toMatch(/extraHeader/i);
    expect(config).toContain(`url = ${httpUrl}`);
    expect(git(['-C', dir, 'config', 'user.name']).trim()).toBe('Alice Doe');
    expect(git(['-C', dir, 'config', 'user.email']).trim()).toBe('alice@example.com');
    // Only main was fetched (--single-branch, no tags).
    expect(git(['-C', dir, 'for-each-ref', '--format=%(refname)']).trim().split('\n')).toEqual(['refs/heads/main', 'refs/remotes/origin/HEAD', 'refs/remotes/origin/main']);
  });

  it('a failed clone is CLONE_FAILED with the URL and git\'s first error line, without the credentials, and leaves the folder empty', async () => {
    const dir = join(root, 'clone-denied');
    await mkdir(dir);
    const wrong = `wrong-${token}`;
    const err = (await cloneWorkspace({ gitUrl: httpUrl.replace('//', `//robot:${wrong}@`), branchName: 'main' }, dir, { depth: 0, allowPrivate: true }).catch((e: unknown) => e)) as Error & { code: string };
    expect(err).toMatchObject({ code: 'CLONE_FAILED' });
    expect(err.message).toMatch(new RegExp(`^Could not clone ${httpUrl.replace(/[.]/g, '\\.')}: fatal: `));
    expect(err.message).not.toContain(wrong);
    expect(execFileSync('ls', ['-A', dir], { encoding: 'utf8' })).toBe('');
    // Past the workspace disk limit: stopped, emptied, and said so.
    const big = join(root, 'clone-big');
    await mkdir(big);
    const tooBig = (await cloneWorkspace({ gitUrl: `file://${bare}` }, big, { allowLocal: true, maxBytes: 1024 }).catch((e: unknown) => e)) as Error;
    expect(tooBig.message).toBe(`Could not clone file://${bare}: the repository is larger than the workspace limit of 0 MiB`);
    expect(execFileSync('ls', ['-A', big], { encoding: 'utf8' })).toBe('');
    const missing = (await cloneWorkspace({ gitUrl: `file://${root}/nope.git` }, join(root, 'clone-missing'), { allowLocal: true }).catch((e: unknown) => e)) as Error;
    expect(missing.message).toBe(`Could not clone file://${root}/nope.git: fatal: '${root}/nope.git' does not appear to be a git repository`);
  });
});

describe.each(DRIVER_NAMES)('a sandbox created for a task with a repository (%s driver)', (name) => {
  const folders = new SandboxFolders();
  let env: PoolDriverSetup;
  let pool: SandboxPool;
  let bare: string;
  const ids: string[] = [];

  beforeAll(async () => {
    await folders.init();
    env = await setupPoolDriver(name, folders);
    bare = await makeBareRepo(join(folders.root, 'repos'));
    pool = new SandboxPool({
      driver: env.driver, image: env.image, records: new InMemorySandboxRecordStore(), hostId: env.hostId, instanceId: 'i-git',
      dataDir: folders.dataDir, runDir: folders.runBase, git: { allowLocal: true },
    });
  }, 180_000);
  afterAll(async () => {
    await pool?.close();
    expect(await env.leftovers(ids)).toEqual([]);
    expect(await folders.leftoverRunDirs()).toEqual([]);
    await folders.dispose();
  });

  it('clones the branch into /workspace before the agent starts; git works inside, as the sandbox user', async () => {
    const rec = await pool.acquire({
      taskId: 'task-git', turnId: 't1', ownerId: 'alice', signal: new AbortController().signal,
      workspace: { gitUrl: `file://${bare}`, branchName: 'feature', userName: 'Alice Doe', userEmail: 'alice@example.com' },
    });
    ids.push(rec.id);
    const sbx = pool.handle(rec.id);
    const r = await sbx.exec({ command: 'git log --format=%s; cat FEATURE.md; git config user.email; git status --porcelain; echo "$(id -u) $(stat -c %u README.md .git/config)"' }, {});
    expect(r.stderr).toBe('');
    const uid = process.getuid?.() === 0 ? 1000 : process.getuid?.();
    expect(r.stdout).toBe(`feature commit\nfirst commit\nfeature\nalice@example.com\n${uid} ${uid}\n${uid}\n`);
    // The sandbox user can commit in it.
    const commit = await sbx.exec({ command: 'echo change >> README.md && git commit -qam "from the sandbox" && git log -1 --format="%an %s"' }, {});
    expect(commit.stdout).toBe('Alice Doe from the sandbox\n');
    expect((await stat(join(rec.workspaceDir, 'README.md'))).uid).toBe(name === 'docker' ? 1000 : process.getuid?.() === 0 ? 1000 : process.getuid?.());
  });

  it('a later sandbox of the task takes over the workspace the ended one left instead of cloning again', async () => {
    const [first] = await pool.list({ taskId: 'task-git', states: ['Running'] });
    expect(first).toBeDefined();
    pool.release('task-git', 't1');
    await pool.stop(first!.id, 'IDLE_TIMEOUT');
    const again = await pool.acquire({ taskId: 'task-git', turnId: 't2', ownerId: 'alice', signal: new AbortController().signal, workspace: { gitUrl: `file://${bare}`, branchName: 'feature' } });
    ids.push(again.id);
    expect(again.id).not.toBe(first!.id);
    // The commit made inside the first sandbox is there: the working tree was kept, not cloned afresh.
    const r = await pool.handle(again.id).exec({ command: 'git log -1 --format=%s; git status --porcelain; tail -1 README.md' }, {});
    expect(r.stdout).toBe('from the sandbox\nchange\n');
    expect(existsSync(first!.workspaceDir)).toBe(false);
    expect(again.workspaceDir).not.toBe(first!.workspaceDir);
    // Another task of the same owner gets a fresh clone, not this working tree.
    const other = await pool.acquire({ taskId: 'task-git-2', turnId: 't1', ownerId: 'alice', signal: new AbortController().signal, workspace: { gitUrl: `file://${bare}`, branchName: 'feature' } });
    ids.push(other.id);
    expect((await pool.handle(other.id).exec({ command: 'git log -1 --format=%s' }, {})).stdout).toBe('feature commit\n');
    await pool.stop(other.id, 'USER_STOPPED');
  });

  it('a clone that fails ends the sandbox as Failed CLONE_FAILED with the message', async () => {
    const err = await pool.acquire({ taskId: 'task-bad-git', turnId: 't1', ownerId: 'alice', signal: new AbortController().signal, workspace: { gitUrl: `file://${bare}`, branchName: 'no-such-branch' } }).catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ code: 'CLONE_FAILED' });
    const rec = (await pool.list({ taskId: 'task-bad-git' }))[0];
    ids.push(rec?.id ?? '');
    expect(rec).toMatchObject({ state: 'Deleted', stateReason: 'CLONE_FAILED', message: `Could not clone file://${bare}: fatal: Remote branch no-such-branch not found in upstream origin` });
  });
});
