import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startTestServer, type TestServer } from '../../server/src/testing/server.js';
import { freePort } from '../../server/src/testing/ports.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = 'packages/cli/src/main.ts';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** Runs `wegent` as a child process with its own config dir; WEGENT_* of the outer environment never leak in. */
function cli(args: string[], opts: { input?: string; env?: Record<string, string>; configHome?: string } = {}): Promise<CliResult> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('WEGENT_')) env[k] = v;
  const configHome = opts.configHome ?? tempDir('wegent-cli-cfg-');
  Object.assign(env, { XDG_CONFIG_HOME: configHome, HOME: configHome, NO_COLOR: '1' }, opts.env ?? {});
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}


const TEAM_MANIFEST = `apiVersion: agent.wecode.io/v1
kind: Ghost
metadata:
  name: reviewer-ghost
  namespace: default
spec:
  systemPrompt: You review code carefully.
---
apiVersion: agent.wecode.io/v1
kind: Shell
metadata:
  name: review-shell
  namespace: default
spec:
  shellType: Chat
---
apiVersion: agent.wecode.io/v1
kind: Bot
metadata:
  name: reviewer-bot
  namespace: default
spec:
  ghostRef: { name: reviewer-ghost, namespace: default }
  shellRef: { name: review-shell, namespace: default }
---
apiVersion: agent.wecode.io/v1
kind: Team
metadata:
  name: review-team
  namespace: default
spec:
  collaborationModel: solo
  members:
    - botRef: { name: reviewer-bot, namespace: default }
`;

const ghostDoc = (name: string, extra = '') => `apiVersion: agent.wecode.io/v1
kind: Ghost
metadata:
  name: ${name}
${extra}spec:
  systemPrompt: I am ${name}.
`;

describe('wegent --help', { timeout: 60_000 }, () => {
  it('documents every command and exits 0', async () => {
    const results = await Promise.all(
      [[], ['login'], ['apply'], ['get'], ['describe'], ['delete']].map((cmd) => cli([...cmd, '--help'])),
    );
    for (const [i, cmd] of ['', 'login', 'apply', 'get', 'describe', 'delete'].entries()) {
      const r = results[i]!;
      expect(r.code, cmd).toBe(0);
      expect(r.stdout).toContain(`Usage: wegent${cmd ? ' ' + cmd : ''}`);
    }
    expect(results[0]!.stdout).toMatch(/login[\s\S]*apply[\s\S]*get[\s\S]*describe[\s\S]*delete/);
    expect(results[1]!.stdout).toContain('--password-stdin');
    expect(results[2]!.stdout).toContain('--dry-run');
    expect(results[3]!.stdout).toMatch(/NAME, SCOPE/);
  });

  it('treats an unknown kind, a bad -o value and a missing -f as usage errors (exit 2)', async () => {
    const [kind, output, noFile, noArgs] = await Promise.all([
      cli(['get', 'gadgets'], { env: { WEGENT_TOKEN: 'x' } }),
      cli(['get', 'ghosts', '-o', 'xml'], { env: { WEGENT_TOKEN: 'x' } }),
      cli(['apply'], { env: { WEGENT_TOKEN: 'x' } }),
      cli([]),
    ]);
    expect(kind.code).toBe(2);
    expect(kind.stderr).toContain("unknown resource type 'gadgets'");
    expect(output.code).toBe(2);
    expect(noFile.code).toBe(2);
    expect(noArgs.code).toBe(2);
  });
});

describe('wegent against a real server', { timeout: 120_000 }, () => {
  let server: TestServer;
  let userCount = 0;

  beforeAll(async () => {
    server = await startTestServer();
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  });

  /** A fresh user, and the environment that makes the CLI act as that user. */
  async function freshUser() {
    const username = `cli-user-${++userCount}-${process.pid}`;
    const user = await server.createUser(username);
    return { ...user, username, env: { WEGENT_SERVER: server.url, WEGENT_TOKEN: user.token } };
  }

  function writeManifest(text: string, name = 'manifest.yaml'): string {
    const file = path.join(tempDir('wegent-cli-manifest-'), name);
    writeFileSync(file, text);
    return file;
  }

  it('logs in with --password-stdin, stores the token with mode 0600 and uses it afterwards', async () => {
    const user = await freshUser();
    const configHome = tempDir('wegent-cli-login-');
    const login = await cli(['--server', server.url, 'login', '--username', user.username, '--password-stdin'], { input: user.password + '\n', configHome });
    expect(login.stderr).not.toMatch(/Error/);
    expect(login.code).toBe(0);
    expect(login.stdout).toContain(`Logged in to ${server.url} as ${user.username}`);

    const file = path.join(configHome, 'wegent', 'config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    expect(stored.server).toBe(server.url);
    expect(stored.token).toEqual(expect.any(String));

    // No --server, no WEGENT_*: the stored server and token are used.
    const get = await cli(['get', 'ghosts'], { configHome });
    expect(get.stderr).toBe('');
    expect(get.code).toBe(0);
    expect(get.stdout).toContain('wegent-assistant');
  });

  it('asks for the username and, without echo, the password on a terminal', async () => {
    const user = await freshUser();
    const configHome = tempDir('wegent-cli-tty-');
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('WEGENT_')) env[k] = v;
    Object.assign(env, { XDG_CONFIG_HOME: configHome, HOME: configHome });
    // `script` gives the CLI a pseudo-terminal; answers are typed only once each prompt shows.
    const child = spawn('/usr/bin/script', ['-qec', `${process.execPath} --import tsx ${MAIN} --server ${server.url} login`, '/dev/null'], { cwd: ROOT, env });
    let out = '';
    let answered = 0;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (answered === 0 && out.includes('Username:')) {
        answered = 1;
        child.stdin.write(user.username + '\r');
      } else if (answered === 1 && out.includes('Password:')) {
        answered = 2;
        child.stdin.write(user.password + '\r');
      }
    });
    const watchdog = setTimeout(() => child.kill(), 30_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(watchdog);
    expect(out).toContain(`Logged in to ${server.url} as ${user.username}`);
    expect(code).toBe(0);
    expect(out).not.toContain(user.password);
    expect(JSON.parse(readFileSync(path.join(configHome, 'wegent', 'config.json'), 'utf8')).server).toBe(server.url);
  });

  it('reports a wrong password as a refusal (exit 1) and missing values without a terminal as usage errors (exit 2)', async () => {
    const user = await freshUser();
    const [wrong, noUser, noPassword] = await Promise.all([
      cli(['--server', server.url, 'login', '--username', user.username, '--password-stdin'], { input: 'not-the-password1\n' }),
      cli(['--server', server.url, 'login', '--password-stdin'], { input: user.password }),
      cli(['--server', server.url, 'login', '--username', user.username]),
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe('Error from server (Unauthorized): incorrect username or password\n');
    expect(noUser.code).toBe(2);
    expect(noPassword.code).toBe(2);
    expect(noPassword.stderr).toContain('--password-stdin');
  });

  it('applies a Ghost, Shell, Bot and Team from one multi-document file, then reports them unchanged', async () => {
    const user = await freshUser();
    const file = writeManifest(TEAM_MANIFEST);
    const first = await cli(['apply', '-f', file], { env: user.env });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(
      'ghost/reviewer-ghost created\nshell/review-shell created\nbot/reviewer-bot created\nteam/review-team created\n',
    );
    const again = await cli(['apply', '-f', file], { env: user.env });
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(
      'ghost/reviewer-ghost unchanged\nshell/review-shell unchanged\nbot/reviewer-bot unchanged\nteam/review-team unchanged\n',
    );
    const changed = await cli(['apply', '-f', '-'], { env: user.env, input: ghostDoc('reviewer-ghost') });
    expect(changed.stdout).toBe('ghost/reviewer-ghost configured\n');
  });

  it('prints warnings on stderr and skips kinds this server does not implement', async () => {
    const user = await freshUser();
    const manifest =
      ghostDoc('warned-ghost').replace('spec:\n', 'spec:\n  skills: [no-such-skill]\n') +
      '---\napiVersion: agent.wecode.io/v1\nkind: KnowledgeBase\nmetadata: { name: docs }\nspec: {}\n';
    const r = await cli(['apply', '-f', '-'], { env: user.env, input: manifest });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ghost/warned-ghost created\nknowledgebase/docs skipped\n');
    expect(r.stderr).toMatch(/^Warning: .*no-such-skill/m);
    expect(r.stderr).toMatch(/^Warning: kind KnowledgeBase is not supported/m);
  });

  it('applies a folder: its *.yaml, *.yml and *.json files in name order, not its subfolders', async () => {
    const user = await freshUser();
    const dir = tempDir('wegent-cli-dir-');
    writeFileSync(
      path.join(dir, '01-ghost.json'),
      JSON.stringify({ apiVersion: 'agent.wecode.io/v1', kind: 'Ghost', metadata: { name: 'dir-ghost' }, spec: { systemPrompt: 'From JSON.' } }),
    );
    writeFileSync(path.join(dir, '02-shell.yml'), 'apiVersion: agent.wecode.io/v1\nkind: Shell\nmetadata: { name: dir-shell }\nspec: { shellType: Chat }');
    writeFileSync(
      path.join(dir, '03-bot.yaml'),
      'apiVersion: agent.wecode.io/v1\nkind: Bot\nmetadata: { name: dir-bot }\nspec:\n  ghostRef: { name: dir-ghost }\n  shellRef: { name: dir-shell }\n',
    );
    writeFileSync(path.join(dir, 'notes.txt'), 'this: [is not a manifest');
    mkdirSync(path.join(dir, 'nested'));
    writeFileSync(path.join(dir, 'nested', 'broken.yaml'), 'kind: Ghost\nmetadata: {name: nested}\nspec: {}\n');

    const r = await cli(['apply', '-f', dir], { env: user.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ghost/dir-ghost created\nshell/dir-shell created\nbot/dir-bot created\n');
  });

  it('applies from stdin, with -n choosing the namespace route', async () => {
    const user = await freshUser();
    const r = await cli(['apply', '-f', '-', '-n', 'team-a'], { env: user.env, input: ghostDoc('stdin-ghost') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ghost/stdin-ghost created\n');
    const get = await cli(['get', 'ghost', 'stdin-ghost', '-n', 'team-a', '-o', 'json'], { env: user.env });
    expect(get.code).toBe(0);
    expect(JSON.parse(get.stdout).metadata.namespace).toBe('team-a');
  });

  it('reports what --dry-run would do and stores nothing', async () => {
    const user = await freshUser();
    const r = await cli(['apply', '-f', writeManifest(TEAM_MANIFEST), '--dry-run'], { env: user.env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'ghost/reviewer-ghost created (dry run)\nshell/review-shell created (dry run)\nbot/reviewer-bot created (dry run)\nteam/review-team created (dry run)\n',
    );
    const get = await cli(['get', 'ghost', 'reviewer-ghost'], { env: user.env });
    expect(get.code).toBe(1);
    expect(get.stderr).toMatch(/^Error from server \(NotFound\): /);
  });

  it('fails the whole apply when one document is invalid: exit 1, "error:" for it, nothing written', async () => {
    const user = await freshUser();
    const manifest =
      ghostDoc('good-ghost') +
      '---\napiVersion: agent.wecode.io/v1\nkind: Bot\nmetadata: { name: broken-bot }\nspec:\n  ghostRef: { name: no-such-ghost }\n  shellRef: { name: Chat }\n';
    const r = await cli(['apply', '-f', writeManifest(manifest)], { env: user.env });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^bot\/broken-bot error: .*no-such-ghost/m);
    expect(r.stdout).toMatch(/^ghost\/good-ghost not applied$/m);
    expect(r.stderr).toMatch(/Error from server \(Invalid\): .*nothing was applied/);
    const get = await cli(['get', 'ghost', 'good-ghost'], { env: user.env });
    expect(get.code).toBe(1);
  });

  it('prints the server’s syntax error for malformed YAML (exit 1)', async () => {
    const user = await freshUser();
    const r = await cli(['apply', '-f', '-'], { env: user.env, input: ghostDoc('a') + '---\nkind: Ghost\nmetadata: [oops\n' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error from server \(BadRequest\): .*document 2, line \d+, column \d+/);
  });

  it('lists ghosts as a NAME/SCOPE/STATE/AGE table with own and public resources, for any spelling of the kind', async () => {
    const user = await freshUser();
    await cli(['apply', '-f', writeManifest(TEAM_MANIFEST)], { env: user.env });
    const [plural, capital, singular] = (await Promise.all(['ghosts', 'Ghosts', 'ghost'].map((k) => cli(['get', k], { env: user.env })))) as [CliResult, CliResult, CliResult];
    expect(plural.stderr).toBe('');
    expect(plural.code).toBe(0);
    const lines = plural.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+SCOPE\s+STATE\s+AGE$/);
    expect(plural.stdout).toMatch(/^reviewer-ghost\s+user\s+Available\s+\d+[sm]$/m);
    expect(plural.stdout).toMatch(/^wegent-assistant\s+public\s+Available\s+\d+[smhd]$/m);
    const withoutAge = (out: string) => out.replace(/\s+\S+$/gm, '');
    expect(withoutAge(capital.stdout)).toBe(withoutAge(plural.stdout));
    expect(withoutAge(singular.stdout)).toBe(withoutAge(plural.stdout));

    const shells = await cli(['get', 'shells'], { env: user.env });
    for (const name of ['Chat', 'Code', 'ClaudeCode', 'Dify', 'review-shell']) expect(shells.stdout).toMatch(new RegExp(`^${name}\\s`, 'm'));
    const teams = await cli(['get', 'TEAMS'], { env: user.env });
    expect(teams.stdout).toMatch(/^wegent-chat\s+public\s/m);
    const models = await cli(['get', 'model', 'demo-offline'], { env: user.env });
    expect(models.code).toBe(0);
    expect(models.stdout).toMatch(/^demo-offline\s+public\s/m);
  });

  it('prints YAML that applies again unchanged, and JSON lists holding every item', async () => {
    const user = await freshUser();
    await cli(['apply', '-f', writeManifest(TEAM_MANIFEST)], { env: user.env });

    const one = await cli(['get', 'ghost', 'reviewer-ghost', '-o', 'yaml'], { env: user.env });
    expect(one.code).toBe(0);
    const docs = parseAllDocuments(one.stdout).map((d) => d.toJS());
    expect(docs).toHaveLength(1);
    expect(docs[0]).toMatchObject({ kind: 'Ghost', metadata: { name: 'reviewer-ghost', scope: 'user' }, spec: { systemPrompt: 'You review code carefully.' } });
    const reapply = await cli(['apply', '-f', '-'], { env: user.env, input: one.stdout });
    expect(reapply.stdout).toBe('ghost/reviewer-ghost unchanged\n');

    const list = await cli(['get', 'ghosts', '-o', 'yaml'], { env: user.env });
    const names = parseAllDocuments(list.stdout).map((d) => (d.toJS() as { metadata: { name: string } }).metadata.name);
    expect(names).toEqual(expect.arrayContaining(['reviewer-ghost', 'wegent-assistant']));

    const json = await cli(['get', 'bots', '-o', 'json'], { env: user.env });
    expect(json.code).toBe(0);
    const body = JSON.parse(json.stdout);
    expect(body.kind).toBe('BotList');
    expect(body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(expect.arrayContaining(['reviewer-bot', 'wegent-assistant']));
  });

  it('filters with -l and follows continue tokens to list more than one page', async () => {
    const user = await freshUser();
    const many = Array.from({ length: 130 }, (_, i) => ghostDoc(`bulk-${String(i).padStart(3, '0')}`, i % 10 === 0 ? '  labels: { tier: gold }\n' : '')).join('---\n');
    const applied = await cli(['apply', '-f', '-'], { env: user.env, input: many });
    expect(applied.code).toBe(0);

    const all = await cli(['get', 'ghosts', '-o', 'json'], { env: user.env });
    const names: string[] = JSON.parse(all.stdout).items.map((i: { metadata: { name: string } }) => i.metadata.name);
    expect(names.filter((n) => n.startsWith('bulk-'))).toHaveLength(130);
    expect(new Set(names).size).toBe(names.length);

    const gold = await cli(['get', 'ghosts', '-l', 'tier=gold'], { env: user.env });
    expect(gold.code).toBe(0);
    const rows = gold.stdout.trimEnd().split('\n').slice(1);
    expect(rows).toHaveLength(13);
    expect(rows.every((r) => /^bulk-\d\d0\s+user\s/.test(r))).toBe(true);

    const none = await cli(['get', 'ghosts', '-l', 'tier=platinum'], { env: user.env });
    expect(none.code).toBe(0);
    expect(none.stdout).toBe('');
    expect(none.stderr).toContain('No resources found in default namespace');
  });

  it('describes a resource: its YAML, then Status and Warnings', async () => {
    const user = await freshUser();
    await cli(['apply', '-f', writeManifest(TEAM_MANIFEST)], { env: user.env });
    const r = await cli(['describe', 'team', 'review-team'], { env: user.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^apiVersion: agent.wecode.io\/v1\nkind: Team\n/);
    expect(r.stdout).toContain('name: review-team');
    expect(r.stdout).toContain('collaborationModel: solo');
    expect(r.stdout).toMatch(/\nStatus:\n {2}State: +Available\n {2}Message: /);
    expect(r.stdout).toMatch(/\nWarnings:/);
    expect(r.stdout.indexOf('Status:')).toBeGreaterThan(r.stdout.indexOf('collaborationModel'));

    const missing = await cli(['describe', 'team', 'nope'], { env: user.env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^Error from server \(NotFound\)/);
  });

  it('deletes by KIND NAME, and refuses to delete a Ghost that a Bot references', async () => {
    const user = await freshUser();
    await cli(['apply', '-f', writeManifest(TEAM_MANIFEST)], { env: user.env });

    const referenced = await cli(['delete', 'ghost', 'reviewer-ghost'], { env: user.env });
    expect(referenced.code).toBe(1);
    expect(referenced.stderr).toMatch(/^Error from server \(Conflict\): /);

    const del = await cli(['delete', 'Teams', 'review-team'], { env: user.env });
    expect(del.stderr).toBe('');
    expect(del.code).toBe(0);
    expect(del.stdout).toBe('team/review-team deleted\n');
    const gone = await cli(['get', 'team', 'review-team'], { env: user.env });
    expect(gone.code).toBe(1);
    const again = await cli(['delete', 'team', 'review-team'], { env: user.env });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^Error from server \(NotFound\)/);
  });

  it('deletes everything a manifest names with delete -f, then reports it not found', async () => {
    const user = await freshUser();
    const file = writeManifest(TEAM_MANIFEST);
    await cli(['apply', '-f', file], { env: user.env });
    const del = await cli(['delete', '-f', file], { env: user.env });
    expect(del.stderr).toBe('');
    expect(del.code).toBe(0);
    expect(del.stdout.split('\n').filter(Boolean).sort()).toEqual(
      ['bot/reviewer-bot deleted', 'ghost/reviewer-ghost deleted', 'shell/review-shell deleted', 'team/review-team deleted'].sort(),
    );
    const again = await cli(['delete', '-f', file], { env: user.env });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('ghost/reviewer-ghost not found');
    const list = await cli(['get', 'bots'], { env: user.env });
    expect(list.stdout).not.toContain('reviewer-bot');
  });

  it('uses an API key from WEGENT_TOKEN', async () => {
    const user = await freshUser();
    const created = await server.request('POST', '/api/v1/auth/api-keys', { token: user.token, body: { name: 'cli test' } });
    expect(created.status).toBe(201);
    const key = created.body.key as string;
    expect(key).toMatch(/^wgt_/);
    const applied = await cli(['apply', '-f', '-'], { env: { WEGENT_SERVER: server.url, WEGENT_TOKEN: key }, input: ghostDoc('key-ghost') });
    expect(applied.code).toBe(0);
    expect(applied.stdout).toBe('ghost/key-ghost created\n');
    // The resource belongs to the key's user.
    const get = await cli(['get', 'ghost', 'key-ghost'], { env: user.env });
    expect(get.stdout).toMatch(/^key-ghost\s+user\s/m);

    const bad = await cli(['get', 'ghosts'], { env: { WEGENT_SERVER: server.url, WEGENT_TOKEN: 'wgt_nonsense' } });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^Error from server \(Unauthorized\)/);
  });

  it('exits 3 when the server cannot be reached', async () => {
    const port = await freePort();
    const r = await cli(['--server', `http://127.0.0.1:${port}`, 'get', 'ghosts'], { env: { WEGENT_TOKEN: 'anything' } });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(new RegExp(`^cannot reach the Wegent server at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  });

  it('exits 2 without credentials and tells the user to log in', async () => {
    const r = await cli(['--server', server.url, 'get', 'ghosts']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('wegent login');
  });

  it('prefers --server over WEGENT_SERVER, and never sends a stored token to another server', async () => {
    const user = await freshUser();
    const port = await freePort();
    const viaFlag = await cli(['--server', server.url, 'get', 'ghosts'], { env: { WEGENT_SERVER: `http://127.0.0.1:${port}`, WEGENT_TOKEN: user.token } });
    expect(viaFlag.code).toBe(0);

    const configHome = tempDir('wegent-cli-login-');
    const login = await cli(['--server', server.url, 'login', '--username', user.username, '--password-stdin'], { input: user.password, configHome });
    expect(login.code).toBe(0);
    const elsewhere = await cli(['--server', `http://127.0.0.1:${port}`, 'get', 'ghosts'], { configHome });
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toContain('wegent login');
  });
});
