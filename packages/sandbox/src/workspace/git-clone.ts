/**
 * The workspace git clone (sandbox.md §12), run on the host into `<dir>/workspace` before the agent
 * starts (or into a warm sandbox's empty workspace when it is taken). Credentials travel only through
 * environment-based git configuration scoped to the repository URL; never on the command line and
 * never into `.git/config`.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, lstat, rm } from 'node:fs/promises';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkAddress } from '../gateway/address.js';
import { SandboxError } from '../types.js';

/** What a task's Workspace asks for (the server maps `workspaceRef` onto it). */
export interface WorkspaceSpec {
  gitUrl: string;
  branchName?: string;
  credentials?: { username?: string; token?: string; password?: string };
  /** The task owner's display name and email, set as the repository's `user.name` / `user.email`. */
  userName?: string;
  userEmail?: string;
}

export interface CloneOptions {
  /** WEGENT_GIT_CLONE_DEPTH (default 50; 0 = full history). */
  depth?: number;
  /** WEGENT_GIT_ALLOW_LOCAL: file:// URLs (tests with a local bare repository). */
  allowLocal?: boolean;
  /** WEGENT_GIT_ALLOW_SSH: ssh:// and scp-like URLs (they use the server's own SSH identity). */
  allowSsh?: boolean;
  /** Loopback/private hosts allowed (runtime.md §3.5: admins' Workspaces, trusted installs, tests). */
  allowPrivate?: boolean;
  privateHostsAllow?: readonly string[];
  /** Default 300 s. */
  timeoutMs?: number;
  /** The clone is stopped when the folder grows past this many bytes (the workspace disk limit). */
  maxBytes?: number;
  /** Owner of the cloned tree: the sandbox user's host uid/gid (§1). */
  owner?: { uid: number; gid: number };
  signal?: AbortSignal;
}

const SCP_LIKE = /^[^/@:\s]+@[^/:\s]+:/;

/** The URL with any user-info removed (what is shown and stored). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) { u.username = ''; u.password = ''; }
    return u.href;
  } catch { return url.replace(/\/\/[^/@]*@/, '//'); }
}

function refuse(url: string, why: string): never {
  throw new SandboxError('CLONE_FAILED', `Could not clone ${redactUrl(url)}: ${why}`);
}

/**
 * Checks a git URL against the rules of §12; resolves with the URL to clone (user-info removed) and
 * credentials taken from the URL's user-info when the Workspace gave none.
 */
export async function checkGitUrl(spec: WorkspaceSpec, opts: CloneOptions): Promise<{ url: string; credentials?: WorkspaceSpec['credentials'] }> {
  const raw = spec.gitUrl.trim();
  if (!raw || raw.startsWith('-')) refuse(raw, 'the repository URL is not valid');
  if (SCP_LIKE.test(raw)) {
    if (!opts.allowSsh) refuse(raw, 'ssh URLs are not allowed on this server (WEGENT_GIT_ALLOW_SSH)');
    return { url: raw, credentials: spec.credentials };
  }
  let u: URL;
  try { u = new URL(raw); } catch { refuse(raw, 'the repository URL is not valid'); }
  const scheme = u.protocol.replace(/:$/, '');
  if (scheme === 'file') {
    if (!opts.allowLocal) refuse(raw, 'file:// URLs are not allowed on this server (WEGENT_GIT_ALLOW_LOCAL)');
    return { url: u.href, credentials: spec.credentials };
  }
  if (scheme === 'ssh' || scheme === 'git+ssh' || scheme === 'ssh+git') {
    if (!opts.allowSsh) refuse(raw, 'ssh URLs are not allowed on this server (WEGENT_GIT_ALLOW_SSH)');
    return { url: raw, credentials: spec.credentials };
  }
  if (scheme !== 'https' && scheme !== 'http') refuse(raw, `the ${scheme}:// scheme is not allowed; use https`);
  let credentials = spec.credentials;
  if (u.username || u.password) {
    credentials ??= { username: decodeURIComponent(u.username) || undefined, password: decodeURIComponent(u.password) || undefined };
    u.username = ''; u.password = '';
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(host) ? [host] : await lookup(host, { all: true }).then((a) => a.map((x) => x.address), () => [] as string[]);
  try {
    for (const ip of addresses) checkAddress(host, ip, { allowPrivate: opts.allowPrivate === true, privateHostsAllow: opts.privateHostsAllow });
  } catch (err) {
    refuse(u.href, (err as Error).message === 'this address is not allowed' ? 'this address is not allowed' : 'private address not allowed for this Workspace; ask an admin to allow the host');
  }
  return { url: u.href, credentials };
}

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await treeBytes(p);
    else total += (await lstat(p).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, opts: { timeoutMs: number; signal?: AbortSignal; watch?: () => Promise<string | undefined> }): Promise<{ code: number | null; stderr: string; stopped?: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    let stopped: string | undefined;
    let closed = false;
    // Never signal a process group that is gone: its number may already belong to someone else.
    const kill = (why: string) => { if (closed || child.pid === undefined) return; stopped ??= why; try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } };
    child.stderr.on('data', (d: Buffer) => { if (stderr.length < 64 * 1024) stderr += d.toString('utf8'); });
    const timer = setTimeout(() => kill(`the clone took longer than ${Math.round(opts.timeoutMs / 1000)} s`), opts.timeoutMs);
    const onAbort = () => kill('the clone was cancelled');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const poll = opts.watch ? setInterval(() => { void opts.watch?.().then((why) => { if (why) kill(why); }); }, 500) : undefined;
    child.on('error', (err) => { stderr += `fatal: ${err.message}\n`; });
    child.on('close', (code) => {
      closed = true;
      clearTimeout(timer);
      if (poll) clearInterval(poll);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ code, stderr, stopped });
    });
  });
}

/** git's first error line (its first `fatal:` line, else `error:` line, else the first line), with every secret removed. */
function firstErrorLine(stderr: string, secrets: string[]): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  let line = lines.find((l) => /^fatal:/i.test(l)) ?? lines.find((l) => /^error:/i.test(l)) ?? lines[0] ?? 'git failed without a message';
  for (const s of secrets) if (s) line = line.split(s).join('***');
  return line;
}

/**
 * Clones the Workspace's repository into `dir` (an empty folder). Throws SandboxError CLONE_FAILED
 * "Could not clone <url>: <git's first error line>" and leaves the folder empty on failure.
 */
export async function cloneWorkspace(spec: WorkspaceSpec, dir: string, opts: CloneOptions = {}): Promise<void> {
  const { url, credentials } = await checkGitUrl(spec, opts);
  const shown = redactUrl(url);
  const secret = credentials?.token ?? credentials?.password;
  const username = credentials?.username ?? (secret ? 'x-access-token' : undefined);
  const basic = secret ? Buffer.from(`${username}:${secret}`).toString('base64') : undefined;
  const template = await mkdtemp(join(tmpdir(), 'wegent-git-template-'));
  const config: [string, string][] = [
    ['protocol.file.allow', opts.allowLocal ? 'always' : 'never'],
    ['protocol.ext.allow', 'never'],
    ['credential.helper', ''],
  ];
  // Scoped to this URL: a redirect to another host never receives the header (§12).
  if (basic) config.push([`http.${url}.extraHeader`, `Authorization: Basic ${basic}`]);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', HOME: template,
    GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_SSH_COMMAND: 'ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new',
    GIT_CONFIG_COUNT: String(config.length),
  };
  config.forEach(([k, v], i) => { env[`GIT_CONFIG_KEY_${i}`] = k; env[`GIT_CONFIG_VALUE_${i}`] = v; });
  const depth = opts.depth ?? 50;
  const args = ['clone', '--no-tags', '--single-branch', `--template=${template}`];
  if (depth > 0) args.push('--depth', String(depth));
  if (spec.branchName) args.push('--branch', spec.branchName);
  args.push('--', url, dir);
  const secrets = [secret, basic, credentials?.password, credentials?.token].filter((s): s is string => !!s);
  try {
    const maxBytes = opts.maxBytes;
    const r = await run('git', args, env, {
      timeoutMs: opts.timeoutMs ?? 300_000, signal: opts.signal,
      watch: maxBytes ? async () => ((await treeBytes(dir)) > maxBytes ? tooLargeMessage(maxBytes) : undefined) : undefined,
    });
    // A clone quicker than the watch is measured once more at the end.
    const tooLarge = r.code === 0 && !r.stopped && maxBytes && (await treeBytes(dir)) > maxBytes ? tooLargeMessage(maxBytes) : undefined;
    if (r.code !== 0 || r.stopped || tooLarge) {
      await emptyDir(dir);
      throw new SandboxError('CLONE_FAILED', `Could not clone ${shown}: ${r.stopped ?? tooLarge ?? firstErrorLine(r.stderr, secrets)}`);
    }
    const setConfig = async (key: string, value: string) => {
      const c = await run('git', ['-C', dir, 'config', key, value], env, { timeoutMs: 10_000 });
      if (c.code !== 0) throw new SandboxError('CLONE_FAILED', `Could not clone ${shown}: ${firstErrorLine(c.stderr, secrets)}`);
    };
    if (spec.userName) await setConfig('user.name', spec.userName);
    if (spec.userEmail) await setConfig('user.email', spec.userEmail);
    if (opts.owner) {
      const c = await run('chown', ['-R', '--no-dereference', `${opts.owner.uid}:${opts.owner.gid}`, dir], env, { timeoutMs: 120_000 });
      if (c.code !== 0) throw new SandboxError('CLONE_FAILED', `Could not clone ${shown}: ${firstErrorLine(c.stderr, [])}`);
    }
  } finally {
    await rm(template, { recursive: true, force: true });
  }
}

function tooLargeMessage(maxBytes: number): string {
  return `the repository is larger than the workspace limit of ${Math.round(maxBytes / 1048576)} MiB`;
}

async function emptyDir(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, name), { recursive: true, force: true });
}
