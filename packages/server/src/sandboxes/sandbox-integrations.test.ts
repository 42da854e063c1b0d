/**
 * What reaches into a turn's sandbox besides the sandbox tools, end to end through the real server and a
 * bwrap sandbox: a Ghost's stdio MCP server (sandbox.md §14.3), a skill's files (runtime.md §8) and the
 * model gateway's usage on the turn (sandbox.md §11, runtime.md §14).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../testing/server.js';
import { until } from '../testing/wait.js';
import { zip } from '../testing/zip.js';
import { bareRepository, connected, disconnectAll, seenBy, send } from './e2e-support.js';

/** A hand-written MCP server speaking newline-delimited JSON-RPC on stdio: it tells where it runs. */
const MCP_SERVER = String.raw`const os = require('node:os');
const readline = require('node:readline');
const reply = (m) => process.stdout.write(JSON.stringify({ jsonrpc: '2.0', ...m }) + '\n');
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  if (msg.id === undefined) return;
  if (msg.method === 'initialize') reply({ id: msg.id, result: { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'whereami', version: '1.0.0' } } });
  else if (msg.method === 'tools/list') reply({ id: msg.id, result: { tools: [{ name: 'whereami', description: 'Tells where this server runs', inputSchema: { type: 'object', properties: { greeting: { type: 'string' } } } }] } });
  else if (msg.method === 'tools/call') reply({ id: msg.id, result: { content: [{ type: 'text', text: JSON.stringify({ greeting: msg.params.arguments.greeting, hostname: os.hostname(), uid: process.getuid(), cwd: process.cwd(), mode: process.env.PROBE_MODE }) }] } });
  else reply({ id: msg.id, error: { code: -32601, message: 'method not found' } });
});
`;

const SKILL_MD = `---
name: probe-kit
description: Scripts that probe things.
bindShells: [Code]
---

# Probe kit

Run \`sh /workspace/.skills/probe-kit/scripts/hello.sh\`.
`;
const HELLO_SH = '#!/bin/sh\necho "hello from the skill"\n';
/** Every byte value, so that a text round trip anywhere would show. */
const BLOB = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

const manifest = (baseUrl: string) => `kind: Model
metadata: {name: fake}
spec: {protocol: openai-compatible, modelId: fake-model, baseUrl: "${baseUrl}", apiKey: sk-test-0123456789}
---
kind: Ghost
metadata: {name: prober}
spec:
  systemPrompt: You probe.
  tools: []
  skills: [probe-kit]
  mcpServers:
    probe:
      type: stdio
      command: node
      args: [tools/whereami-mcp.cjs]
      env: {PROBE_MODE: sandboxed}
---
kind: Bot
metadata: {name: prober}
spec: {ghostRef: {name: prober}, shellRef: {name: Code}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: probers}
spec: {members: [{botRef: {name: prober}, role: leader}]}
---
kind: Workspace
metadata: {name: repo}
spec: {repository: {gitUrl: "GIT_URL", branchName: main}}
`;

/** Host processes whose command line mentions the MCP script. */
function mcpProcessesOnHost(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('whereami-mcp.cjs')) pids.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

// The runtime works in a run thread in production (calls cross sandboxes/thread-relay.ts) and on the main thread with WEGENT_RUNTIME_THREADS=0.
describe.each([
  { where: 'in a run thread', runtimeThreads: 1 },
  { where: 'on the main thread', runtimeThreads: 0 },
])('a Code turn’s sandbox beyond the sandbox tools (bwrap, runtime $where)', ({ runtimeThreads }) => {
  let server: TestServer;
  let fake: FakeModelServer;
  let erin: { id: string; token: string };
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'wegent-sbx-int-'));
    chmodSync(root, 0o711); // the run folder below is reached by the unprivileged sandbox host user
    const gitUrl = bareRepository(root, { 'tools/whereami-mcp.cjs': MCP_SERVER });
    fake = await startFakeModelServer();
    server = await startTestServer(
      { privateHostsAllow: ['127.0.0.1'], runtimeThreads },
      { WEGENT_SANDBOX_DRIVER: 'bwrap', WEGENT_GIT_ALLOW_LOCAL: 'true', WEGENT_SANDBOX_WARM_POOL: '0', WEGENT_SANDBOX_REAP_UNLABELLED: 'false', WEGENT_SANDBOX_RUN_DIR: path.join(root, 'run') },
    );
    erin = await server.createUser('erin');
    const archive = zip([
      { name: 'SKILL.md', data: SKILL_MD },
      { name: 'scripts/hello.sh', data: HELLO_SH, mode: 0o100755 },
      { name: 'data/blob.bin', data: BLOB },
    ]);
    const up = await fetch(`${server.url}/api/v1/namespaces/default/skills/probe-kit/package`, { method: 'PUT', headers: { authorization: `Bearer ${erin.token}`, 'content-type': 'application/zip' }, body: archive });
    expect(up.status, await up.text()).toBe(201);
    const res = await server.request('POST', '/api/v1/apply', { token: erin.token, raw: manifest(fake.openaiBaseUrl).replace('GIT_URL', gitUrl), headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(200);
    expect((await server.request('GET', '/readyz')).body.checks.sandbox, server.ctx.sandboxes!.unavailableReason).toBe('ok');
  }, 180_000);
  afterAll(async () => {
    disconnectAll();
    await server?.stop();
    await fake?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  async function turn(clientMessageId: string, message: string, team = 'probers') {
    const socket = await connected(server, erin.token);
    const seen = seenBy(socket);
    const ack = await send(socket, 'chat:send', { clientMessageId, team, message, workspaceRef: { name: 'repo' } });
    expect(ack.ok, JSON.stringify(ack)).toBe(true);
    const done = await until(() => seen.find(([n, p]) => (n === 'chat:done' || n === 'chat:error') && p.subtaskId === ack.subtaskId), 120_000, 'the turn to end');
    expect(done[0], JSON.stringify(done[1])).toBe('chat:done');
    return { ack, done: done[1], seen };
  }

  it('offers the tools of a Ghost’s stdio MCP server that runs inside the sandbox, and stops it with the turn', async () => {
    fake.script([
      { match: { lastUserText: 'where are you' }, steps: [{ toolCall: { id: 'w1', name: 'mcp__probe__whereami', arguments: { greeting: 'hi' } } }] },
      { match: { lastUserText: 'where are you' }, steps: [{ toolCall: { id: 'w2', name: 'exec', arguments: { command: 'id -u; cat /proc/sys/kernel/hostname' } } }] },
      { match: { lastUserText: 'where are you' }, steps: [{ text: 'Found it.' }] },
    ]);
    const before = fake.requests.length;
    const { ack, seen } = await turn('mcp-1', 'where are you');
    const first = fake.requests[before]!.body;
    expect(first.tools.map((t: any) => t.function.name)).toContain('mcp__probe__whereami');
    expect(seen.filter(([n, p]) => n === 'chat:block_created' && p.subtaskId === ack.subtaskId && p.block.type === 'warning')).toEqual([]);
    const results = new Map<string, string>(fake.requests.at(-1)!.body.messages.filter((m: any) => m.role === 'tool').map((m: any) => [m.tool_call_id, m.content]));
    const where = JSON.parse(results.get('w1')!);
    const [uid, host] = JSON.parse(results.get('w2')!).stdout.trim().split('\n');
    // The server ran where the sandbox's commands run: its hostname, its user, its workspace, not this host.
    expect(where).toEqual({ greeting: 'hi', hostname: host, uid: Number(uid), cwd: '/workspace', mode: 'sandboxed' });
    expect(where.hostname).toBe('sandbox');
    expect(where.hostname).not.toBe(hostname());
    const block = seen.find(([n, p]) => n === 'chat:block_created' && p.subtaskId === ack.subtaskId && p.block.toolName === 'mcp__probe__whereami')![1].block;
    expect(block).toMatchObject({ toolSource: 'mcp', mcpServer: 'probe' });
    // The program's process group ends with the turn.
    await until(() => mcpProcessesOnHost().length === 0 || undefined, 10_000, 'the MCP server to stop');
  }, 150_000);

  it('copies a loaded skill’s files byte for byte into /workspace/.skills/<name>/ for exec to use', async () => {
    fake.script([
      { match: { lastUserText: 'use the kit' }, steps: [{ toolCall: { id: 's1', name: 'load_skill', arguments: { name: 'probe-kit' } } }] },
      { match: { lastUserText: 'use the kit' }, steps: [{ toolCall: { id: 's2', name: 'exec', arguments: { command: 'cat .skills/probe-kit/scripts/hello.sh && sh .skills/probe-kit/scripts/hello.sh && sha256sum .skills/probe-kit/data/blob.bin' } } }] },
      { match: { lastUserText: 'use the kit' }, steps: [{ text: 'Used it.' }] },
    ]);
    await turn('skill-1', 'use the kit');
    const results = new Map<string, string>(fake.requests.at(-1)!.body.messages.filter((m: any) => m.role === 'tool').map((m: any) => [m.tool_call_id, m.content]));
    expect(results.get('s1')).toBe(
      '# Skill: probe-kit\n\n# Probe kit\n\nRun `sh /workspace/.skills/probe-kit/scripts/hello.sh`.\n\n\nFiles of this skill are in /workspace/.skills/probe-kit/:\nSKILL.md\ndata/blob.bin\nscripts/hello.sh',
    );
    const ran = JSON.parse(results.get('s2')!);
    expect(ran.stdout).toBe(`${HELLO_SH}hello from the skill\n${createHash('sha256').update(BLOB).digest('hex')}  .skills/probe-kit/data/blob.bin\n`);
  }, 150_000);

  it('copies a preloaded skill’s files into the sandbox before the turn’s first tool runs', async () => {
    const preloading = `kind: Ghost
metadata: {name: preloader}
spec: {systemPrompt: You probe., tools: [], skills: [probe-kit], preload_skills: [probe-kit]}
---
kind: Bot
metadata: {name: preloader}
spec: {ghostRef: {name: preloader}, shellRef: {name: Code}, modelRef: {name: fake}}
---
kind: Team
metadata: {name: preloaders}
spec: {members: [{botRef: {name: preloader}, role: leader}]}
`;
    const res = await server.request('POST', '/api/v1/apply', { token: erin.token, raw: preloading, headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(200);
    fake.script([
      { match: { lastUserText: 'run the preloaded kit' }, steps: [{ toolCall: { id: 'p1', name: 'exec', arguments: { command: 'sh .skills/probe-kit/scripts/hello.sh && sha256sum .skills/probe-kit/data/blob.bin' } } }] },
      { match: { lastUserText: 'run the preloaded kit' }, steps: [{ text: 'Ran it.' }] },
    ]);
    const before = fake.requests.length;
    await turn('preload-1', 'run the preloaded kit', 'preloaders');
    // The body was in the system prompt (no load_skill offered), and the files were there for the first exec.
    expect(fake.requests[before]!.body.messages[0].content).toContain('## Skill: probe-kit\n# Probe kit');
    expect(fake.requests[before]!.body.tools.map((t: any) => t.function.name)).not.toContain('load_skill');
    const ran = JSON.parse(fake.requests.at(-1)!.body.messages.at(-1).content);
    expect(ran.stdout, ran.stderr).toBe(`hello from the skill\n${createHash('sha256').update(BLOB).digest('hex')}  .skills/probe-kit/data/blob.bin\n`);
  }, 150_000);

  it('adds the tokens of a sandboxed program’s model calls through the gateway to the turn’s usage', async () => {
    const script = "fetch('http://127.0.0.1:4000/v1/chat/completions',{method:'POST',headers:{'content-type':'application/json',authorization:'Bearer wegent-sandbox'},body:JSON.stringify({model:'anything',messages:[{role:'user',content:'count me from the sandbox'}]})}).then(r=>r.json()).then(j=>console.log(j.choices[0].message.content))";
    fake.script([
      { match: { lastUserText: 'spend tokens' }, steps: [{ toolCall: { id: 'u1', name: 'exec', arguments: { command: `node -e "${script.replace(/"/g, '\\"')}"` } } }, { usage: { inputTokens: 100, outputTokens: 10 } }] },
      { match: { lastUserText: 'count me from the sandbox' }, steps: [{ text: 'counted' }, { usage: { inputTokens: 1000, outputTokens: 200, reasoningTokens: 50, cachedInputTokens: 300 } }] },
      { match: { lastUserText: 'spend tokens' }, steps: [{ text: 'Spent.' }, { usage: { inputTokens: 120, outputTokens: 5 } }] },
    ]);
    const { ack, done } = await turn('usage-1', 'spend tokens');
    const ran = JSON.parse(fake.requests.at(-1)!.body.messages.at(-1).content);
    expect(ran.stdout, ran.stderr).toBe('counted\n');
    const row = { turnId: ack.subtaskId, model: { uid: expect.any(String), name: 'fake', namespace: 'default', protocol: 'openai-compatible', modelId: 'fake-model' }, inputTokens: 1220, outputTokens: 215, reasoningTokens: 50, cachedInputTokens: 300, calls: 3, estimated: false };
    expect(done.result.usage).toEqual([row]);
    const stored = await server.ctx.storage.db.selectFrom('messages').select('usage').where('id', '=', ack.subtaskId).executeTakeFirstOrThrow();
    expect(JSON.parse(stored.usage!)).toEqual([row]);
    // The task's total is written once the run has finished, just after chat:done.
    const usage = await until(async () => {
      const task = await server.request('GET', `/api/v1/tasks/${ack.taskId}`, { token: erin.token });
      return task.body.status?.usage?.totalTokens > 0 ? task.body.status.usage : undefined;
    }, 10_000, 'the task usage');
    expect(usage).toMatchObject({ inputTokens: 1220, outputTokens: 215, reasoningTokens: 50, cachedInputTokens: 300 });
  }, 150_000);
});
