import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../../server/src/testing/server.js';
import { freePort } from '../../server/src/testing/ports.js';

// `wegent chat` end to end: the CLI as a child process, a real server in this process, and the fake
// model server behind a Team — nothing mocked between the keyboard and the model.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = 'packages/cli/src/main.ts';

interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface RunningCli {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  result: Promise<CliResult>;
}

let server: TestServer;
let fake: FakeModelServer;
let user: { id: string; token: string };
const tempDirs: string[] = [];

/** Starts `wegent` with its own config dir; WEGENT_* of the outer environment never leak in. */
function startCli(args: string[], opts: { env?: Record<string, string>; input?: string; keepStdinOpen?: boolean } = {}): RunningCli {
  const configHome = mkdtempSync(path.join(tmpdir(), 'wegent-chat-cfg-'));
  tempDirs.push(configHome);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('WEGENT_')) env[k] = v;
  Object.assign(env, { XDG_CONFIG_HOME: configHome, HOME: configHome, NO_COLOR: '1' }, opts.env ?? {});
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  if (opts.input !== undefined) child.stdin.write(opts.input);
  if (!opts.keepStdinOpen) child.stdin.end();
  return { child, stdout: () => stdout, stderr: () => stderr, result };
}

/** Runs `wegent chat …` as `user` against the test server and waits for it to exit. */
function chat(args: string[], opts: { token?: string; server?: string; input?: string } = {}): Promise<CliResult> {
  return startCli(['chat', ...args], { env: { WEGENT_SERVER: opts.server ?? server.url, WEGENT_TOKEN: opts.token ?? user.token }, input: opts.input }).result;
}

async function until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Applies a Model on the fake model server, a Ghost, a Bot per member and a Team `name` for `token`'s user. */
async function applyTeam(token: string, name: string, members: string[] = ['solo-bot']): Promise<void> {
  const docs = [
    `kind: Model
metadata: {name: fake-model}
spec: {protocol: openai-compatible, modelId: m, baseUrl: "${fake.openaiBaseUrl}", apiKey: sk-test-0123456789}`,
    `kind: Ghost
metadata: {name: chat-ghost}
spec: {systemPrompt: hi, tools: []}`,
    ...members.map(
      (bot) => `kind: Bot
metadata: {name: ${bot}}
spec: {ghostRef: {name: chat-ghost}, shellRef: {name: Chat}, modelRef: {name: fake-model}}`,
    ),
    `kind: Team
metadata: {name: ${name}}
spec:
  members:
${members.map((bot, i) => `    - {botRef: {name: ${bot}}${i === 0 ? ', role: leader' : ''}}`).join('\n')}`,
  ];
  const res = await server.request('POST', '/api/v1/apply', { token, raw: docs.join('\n---\n') + '\n', headers: { 'content-type': 'application/yaml' } });
  expect(res.status, res.text).toBe(200);
}

/** The task id the CLI names on stderr for continuing. */
function taskIdOf(stderr: string): string {
  const m = /\(task ([0-9a-f-]{36}); continue with --task \1\)/.exec(stderr);
  expect(m, stderr).not.toBeNull();
  return m![1]!;
}


/** A TCP proxy in front of the server whose connections a test can cut, to force a reconnect. */
async function startProxy(target: string): Promise<{ url: string; cut(): void; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const open = new Set<Socket>();
  const proxy: Server = createServer((client) => {
    const upstream = tcpConnect(Number(port), hostname);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      open.add(a);
      a.on('close', () => open.delete(a));
      a.on('error', () => b.destroy());
      a.pipe(b);
    }
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`,
    cut: () => {
      for (const s of open) s.destroy();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy();
        proxy.close(() => r());
      }),
  };
}

beforeAll(async () => {
  fake = await startFakeModelServer();
  server = await startTestServer({ privateHostsAllow: ['127.0.0.1'] });
  user = await server.createUser('chatter');
  await applyTeam(user.token, 'helpers');
});

// Each test scripts its own replies; what an earlier test left unused must not answer a later one.
beforeEach(() => fake.reset());

afterAll(async () => {
  await server?.stop();
  await fake?.close();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('wegent chat -m', { timeout: 60_000 }, () => {
  it('streams the answer to stdout exactly, multi-byte characters included, ends with a newline and exits 0', async () => {
    fake.script([
      {
        steps: [{ text: 'Hel', delayMs: 20 }, { text: 'lo, ' }, { text: '世界 ', splitBytes: true, delayMs: 20 }, { text: '😀🚀 ', splitBytes: true }, { text: 'é!' }, { usage: { inputTokens: 3, outputTokens: 2 } }],
      },
    ]);
    const r = await chat(['helpers', '-m', 'Say hello']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Hello, 世界 😀🚀 é!\n');
    expect(fake.requests.at(-1)!.lastUserText).toBe('Say hello');
    const taskId = taskIdOf(r.stderr);
    const task = await server.request('GET', `/api/v1/tasks/${taskId}`, { token: user.token });
    expect(task.body.status).toMatchObject({ status: 'COMPLETED', runSeq: 1 });
    expect(task.body.spec.teamRef).toMatchObject({ name: 'helpers' });
  });

  it('accepts the team as namespace#name and continues a task with --task', async () => {
    fake.script(['first answer', 'second answer']);
    const first = await chat(['default#helpers', '-m', 'one']);
    expect(first.code, first.stderr).toBe(0);
    const taskId = taskIdOf(first.stderr);
    const second = await chat(['helpers', '--task', taskId, '-m', 'two']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toBe('second answer\n');
    expect(taskIdOf(second.stderr)).toBe(taskId);
    // The second run sees the first exchange as history.
    expect(JSON.stringify(fake.requests.at(-1)!.body.messages)).toContain('first answer');
    const task = await server.request('GET', `/api/v1/tasks/${taskId}`, { token: user.token });
    expect(task.body.status).toMatchObject({ status: 'COMPLETED', runSeq: 2 });
  });

  it('exits 1 with the error code on stderr when the model provider refuses', async () => {
    fake.script([{ steps: [{ error: { status: 401, message: 'bad key' } }] }]);
    const r = await chat(['helpers', '-m', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: MODEL_AUTH_FAILED: /m);
    expect(r.stdout).toBe('');
    const task = await server.request('GET', `/api/v1/tasks/${taskIdOf(r.stderr)}`, { token: user.token });
    expect(task.body.status.status).toBe('FAILED');
  });

  it('prints the member’s name on its own line before the answer when the team has several members', async () => {
    // A solo team answers with its leader only (runtime.md §9.1); the name still says who answers.
    await applyTeam(user.token, 'duo', ['writer', 'editor']);
    fake.script(['a draft']);
    const r = await chat(['duo', '-m', 'write something']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('writer\na draft\n');
  });

  it('exits 1 with the refusal on stderr for a team that does not exist, and creates no task', async () => {
    const before = await server.request('GET', '/api/v1/tasks', { token: user.token });
    const r = await chat(['no-such-team', '-m', 'hello?']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: VALIDATION_FAILED: /m);
    expect(r.stderr).toContain('no-such-team');
    expect(r.stderr).not.toContain('continue with --task');
    const after = await server.request('GET', '/api/v1/tasks', { token: user.token });
    expect(after.body.items.length).toBe(before.body.items.length);
  });

  it('exits 1 for a task id that is not the user’s, and 2 for one that is not an id at all', async () => {
    const [missing, malformed] = await Promise.all([chat(['helpers', '--task', '0198f3c2-7d1e-7a40-9c55-3b2f4e6a1d20', '-m', 'hi']), chat(['helpers', '--task', 'abc', '-m', 'hi'])]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^Error: NOT_FOUND: /m);
    expect(missing.stderr).not.toContain('continue with --task');
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('--task needs a task id');
  });
});

describe('wegent chat, interactive', { timeout: 60_000 }, () => {
  it('sends each line of stdin as a message of one task and streams each answer; end of input exits 0', async () => {
    const solo = await server.createUser('liner');
    await applyTeam(solo.token, 'helpers');
    fake.script([{ steps: [{ text: 'Answer ', delayMs: 20 }, { text: 'one' }] }, { steps: [{ text: 'Answer ', delayMs: 20 }, { text: 'two ✓' }] }]);
    const r = await chat(['helpers'], { token: solo.token, input: 'first question\n\nsecond question\n' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Answer one\nAnswer two ✓\n');
    expect(r.stderr).not.toContain('you>'); // no prompt without a terminal
    const list = await server.request('GET', '/api/v1/tasks', { token: solo.token });
    expect(list.body.items).toHaveLength(1);
    const task = list.body.items[0];
    // Two runs in one task: two user messages and two visible answers.
    expect(task.status).toMatchObject({ status: 'COMPLETED', runSeq: 2, messageCount: 4 });
    expect(task.metadata.labels['wegent.io/source']).toBe('cli');
    expect(taskIdOf(r.stderr)).toBe(task.metadata.uid);
    const messages = await server.request('GET', `/api/v1/tasks/${task.metadata.uid}/messages`, { token: solo.token });
    expect(messages.body.items.map((m: { role: string; content: string }) => `${m.role}: ${m.content}`)).toEqual([
      'user: first question',
      'assistant: Answer one',
      'user: second question',
      'assistant: Answer two ✓',
    ]);
  });
});

describe('wegent chat, Ctrl-C', { timeout: 60_000 }, () => {
  it('cancels the running answer: the model connection closes, the partial text stays on stdout, exit 130', async () => {
    fake.script([{ steps: [{ text: 'Once upon a ti', delayMs: 10 }, { hang: true }] }]);
    const cli = startCli(['chat', 'helpers', '-m', 'tell a story'], { env: { WEGENT_SERVER: server.url, WEGENT_TOKEN: user.token } });
    await until(() => cli.stdout().includes('Once upon a ti'));
    const modelRequest = fake.requests.at(-1)!;
    cli.child.kill('SIGINT');
    const r = await cli.result;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stdout).toBe('Once upon a ti\n');
    expect(r.stderr).toContain('^C cancelled');
    await until(() => modelRequest.closedEarly);
    const task = await server.request('GET', `/api/v1/tasks/${taskIdOf(r.stderr)}`, { token: user.token });
    expect(task.body.status).toMatchObject({ status: 'CANCELLED', statusReason: 'USER_CANCELLED' });
  });

  it('in interactive mode goes back to reading messages after a cancel, and the next message is answered', async () => {
    fake.script([{ steps: [{ text: 'Long answ', delayMs: 10 }, { hang: true }] }, 'Short answer']);
    const cli = startCli(['chat', 'helpers'], { env: { WEGENT_SERVER: server.url, WEGENT_TOKEN: user.token }, input: 'long question\n', keepStdinOpen: true });
    await until(() => cli.stdout().includes('Long answ'));
    cli.child.kill('SIGINT');
    await until(() => cli.stderr().includes('^C cancelled'));
    cli.child.stdin.end('short question\n');
    const r = await cli.result;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Long answ\nShort answer\n');
    const task = await server.request('GET', `/api/v1/tasks/${taskIdOf(r.stderr)}`, { token: user.token });
    expect(task.body.status).toMatchObject({ status: 'COMPLETED', runSeq: 2 });
  });

  it('exits at once on a second Ctrl-C', async () => {
    fake.script([{ steps: [{ text: 'Never ending', delayMs: 10 }, { hang: true }] }]);
    const cli = startCli(['chat', 'helpers', '-m', 'go'], { env: { WEGENT_SERVER: server.url, WEGENT_TOKEN: user.token } });
    await until(() => cli.stdout().includes('Never ending'));
    cli.child.kill('SIGINT');
    cli.child.kill('SIGINT');
    const r = await cli.result;
    expect(r.code).toBe(130);
    expect(r.stdout.startsWith('Never ending')).toBe(true);
  });
});

describe('wegent chat, connection', { timeout: 60_000 }, () => {
  it('resumes after a dropped connection without printing anything twice or losing anything', async () => {
    // 60 pieces 40 ms apart: the answer is still being written when the client is back (≤ 1.5 s).
    const pieces = Array.from({ length: 60 }, (_, i) => ['α', '漢字', '😀', 'ok ', 'é', '🚀x'][i % 6]! + String(i) + ' ');
    fake.script([{ steps: pieces.map((text) => ({ text, delayMs: 40 })) }]);
    const proxy = await startProxy(server.url);
    try {
      const cli = startCli(['chat', 'helpers', '-m', 'stream please'], { env: { WEGENT_SERVER: proxy.url, WEGENT_TOKEN: user.token } });
      await until(() => cli.stdout().includes(pieces[4]!));
      const modelRequest = fake.requests.at(-1)!;
      proxy.cut();
      await until(() => cli.stderr().includes('(reconnected)'));
      expect(modelRequest.finished).toBe(false);
      const r = await cli.result;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('(connection lost; reconnecting...)');
      expect(r.stdout).toBe(pieces.join('') + '\n');
    } finally {
      await proxy.close();
    }
  });

  it('exits 2 without credentials, before connecting', async () => {
    const r = await startCli(['chat', 'helpers', '-m', 'hi'], { env: { WEGENT_SERVER: server.url } }).result;
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not logged in');
  });

  it('exits 1 when the server refuses the token', async () => {
    const r = await chat(['helpers', '-m', 'hi'], { token: 'not-a-real-token' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/INVALID_TOKEN/);
  });

  it('exits 3 when the server cannot be reached', async () => {
    const r = await chat(['helpers', '-m', 'hi'], { server: `http://127.0.0.1:${await freePort()}` });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('cannot reach the Wegent server');
  });

  it('documents the command in --help', async () => {
    const r = await startCli(['chat', '--help']).result;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: wegent chat [options] <team>');
    for (const text of ['--task <id>', '-m, --message <text>', 'Ctrl-C', '^C cancelled', '130']) expect(r.stdout).toContain(text);
  });
});
