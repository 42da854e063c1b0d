import { existsSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer } from '../testing/index.js';
import { executeRun } from '../run/execute-run.js';
import { member, modelConnection, RecordingHost, soloRequest } from '../run/test-fixtures.js';
import type { ResolvedMember, RunRequest } from '../run/types.js';
import { openMcpServers } from './mcp-servers.js';
import { startTestMcpServer, type TestMcpServer } from './test-mcp-server.js';

let fake: FakeModelServer;
let mcp: TestMcpServer;

beforeAll(async () => {
  fake = await startFakeModelServer();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(async () => {
  fake.reset();
  mcp = await startTestMcpServer();
});
afterEach(async () => {
  await mcp.close();
});

type Servers = NonNullable<ResolvedMember['ghost']['mcpServers']>;
const SECRET = 'Bearer mcp-secret-token-0123456789';

function requestWith(servers: Servers, opts: { tools?: string[]; scope?: string; config?: RunRequest['config']; shellType?: string; modelTrusted?: boolean } = {}): RunRequest {
  const base = member();
  return soloRequest({
    members: [
      member({
        model: modelConnection({ baseUrl: fake.openaiBaseUrl, trustedOwner: opts.modelTrusted ?? false }),
        ghost: { ...base.ghost, scope: opts.scope ?? 'user', tools: opts.tools ?? [], mcpServers: servers },
        shell: { ...base.shell, shellType: opts.shellType ?? 'Chat' },
      }),
    ],
    ...(opts.config ? { config: opts.config } : {}),
  });
}

async function run(request: RunRequest, signal = new AbortController().signal) {
  const host = new RecordingHost();
  const outcome = await executeRun(request, host, signal);
  return { host, outcome };
}

const offeredTools = (i = 0) => (fake.requests[i]!.body.tools ?? []) as Array<{ type: string; function: { name: string; description: string; parameters: Record<string, unknown> } }>;
const toolMessages = (i: number) => (fake.requests[i]!.body.messages as Array<{ role: string; content: string }>).filter((m) => m.role === 'tool').map((m) => m.content);
const warnings = (host: RecordingHost) => host.of('block.added').map((e) => (e.block as { message?: string }).message);

describe('MCP tools over Streamable HTTP', () => {
  it('offers the server tools, runs a call on the server and gives the result back to the model', async () => {
    fake.script([{ steps: [{ text: 'Adding.' }, { toolCall: { id: 'call_1', name: 'mcp__calc__add', arguments: { a: 2, b: 3 } } }] }, { steps: [{ text: 'It is 5.' }] }]);
    const { host, outcome } = await run(requestWith({ calc: { url: `${mcp.origin}/mcp`, headers: { Authorization: SECRET } } }));

    expect(outcome).toEqual({ status: 'completed' });
    const offered = offeredTools();
    expect(offered.map((t) => t.function.name)).toEqual(['mcp__calc__add', 'mcp__calc__fail', 'mcp__calc__sleep', 'mcp__calc__mixed']);
    expect(offered[0]!.function.description).toBe('Adds two numbers.');
    expect(offered[0]!.function.parameters).toMatchObject({
      type: 'object',
      properties: { a: { type: 'number', description: 'first' }, b: { type: 'number' } },
      required: ['a', 'b'],
    });
    expect(mcp.calls).toEqual([{ tool: 'add', args: { a: 2, b: 3 }, aborted: false }]);
    expect(toolMessages(1)).toEqual(['5']);
    expect(host.of('tool.started')).toEqual([expect.objectContaining({ toolCallId: 'call_1', toolName: 'mcp__calc__add', toolSource: 'mcp', mcpServer: 'calc', input: { a: 2, b: 3 } })]);
    expect(host.of('tool.finished')).toEqual([expect.objectContaining({ output: '5', isError: false, status: 'completed' })]);
    expect(host.of('turn.done')[0]).toMatchObject({ text: 'Adding.\n\nIt is 5.' });
    // The Ghost's headers go with every request and never into events.
    expect(mcp.requestHeaders.length).toBeGreaterThan(2);
    for (const h of mcp.requestHeaders) expect(h.authorization).toBe(SECRET);
    expect(JSON.stringify(host.events)).not.toContain('mcp-secret-token');
    // The client ends its session when the turn is over.
    await until(() => mcp.requestLines.includes('DELETE /mcp'));
  });

  it('joins text content in order and names other content kinds', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c', name: 'mcp__calc__mixed', arguments: {} } }] }, 'ok']);
    await run(requestWith({ calc: { url: `${mcp.origin}/mcp` } }));
    expect(toolMessages(1)).toEqual(['first\n[image omitted]\nfile:///report.pdf\nthe notes']);
  });

  it('offers only the tools that pass tools.allow and tools.deny, and cuts the list to the per-turn maximum', async () => {
    fake.script(['ok']);
    const { host } = await run(
      requestWith({ calc: { url: `${mcp.origin}/mcp`, tools: { allow: ['add', 'sleep', 'mixed'], deny: ['sleep'] } }, other: { url: `${mcp.origin}/mcp` } }, { tools: ['calculator'], config: { maxToolsPerTurn: 4, network: { privateHostsAllow: ['127.0.0.1'] } } }),
    );
    expect(offeredTools().map((t) => t.function.name)).toEqual(['calculator', 'mcp__calc__add', 'mcp__calc__mixed', 'mcp__other__add']);
    expect(warnings(host)).toEqual(['3 MCP tools were not offered: a turn offers at most 4 tools.']);
  });

  it('turns a tool that throws into a tool error for the model, not a turn error', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c', name: 'mcp__calc__fail', arguments: { why: 'test' } } }] }, 'The tool failed.']);
    const { host, outcome } = await run(requestWith({ calc: { url: `${mcp.origin}/mcp` } }));
    expect(outcome).toEqual({ status: 'completed' });
    expect(mcp.calls).toEqual([expect.objectContaining({ tool: 'fail', args: { why: 'test' } })]);
    expect(toolMessages(1)).toEqual(['{"error":"the database is down"}']);
    expect(host.of('tool.finished')).toEqual([expect.objectContaining({ isError: true, status: 'failed' })]);
  });

  it('leaves argument checks to the server: any JSON object is passed on', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c', name: 'mcp__calc__add', arguments: { a: 'two' } } }, { toolCall: { id: 'd', name: 'mcp__calc__add', arguments: '[1]' } }] }, 'ok']);
    await run(requestWith({ calc: { url: `${mcp.origin}/mcp` } }));
    const [first, second] = toolMessages(1).map((m) => JSON.parse(m) as { error: string });
    expect(first!.error).toMatch(/validation|invalid/i); // the server's own check
    expect(second).toEqual({ error: 'invalid arguments: not a JSON object' });
    expect(mcp.calls).toEqual([]);
  });

  it('times a call out after the server timeoutSeconds and cancels it on the server', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c', name: 'mcp__calc__sleep', arguments: { ms: 10_000 } } }] }, 'It took too long.']);
    const started = Date.now();
    const { host, outcome } = await run(requestWith({ calc: { url: `${mcp.origin}/mcp`, timeoutSeconds: 1 } }));
    expect(outcome).toEqual({ status: 'completed' });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(toolMessages(1)).toEqual(['{"error":"timed out after 1 s"}']);
    expect(host.of('tool.finished')).toEqual([expect.objectContaining({ isError: true, status: 'failed' })]);
    await until(() => mcp.calls[0]?.aborted === true);
  });

  it('cancels during a call: the turn is cancelled within 1 s and the server gets notifications/cancelled', async () => {
    fake.script([{ steps: [{ text: 'Waiting.' }, { toolCall: { id: 'c', name: 'mcp__calc__sleep', arguments: { ms: 30_000 } } }] }]);
    const controller = new AbortController();
    const host = new RecordingHost();
    const pending = executeRun(requestWith({ calc: { url: `${mcp.origin}/mcp` } }), host, controller.signal);
    await host.waitFor((e) => e.type === 'tool.started');
    await until(() => mcp.calls.length === 1);
    const abortedAt = Date.now();
    controller.abort('USER_CANCELLED');
    await expect(pending).resolves.toEqual({ status: 'cancelled' });
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(host.of('turn.cancelled')).toEqual([expect.objectContaining({ reason: 'USER_CANCELLED', text: 'Waiting.' })]);
    expect(host.of('tool.finished')).toEqual([expect.objectContaining({ status: 'cancelled' })]);
    await until(() => mcp.calls[0]!.aborted);
  });
});

describe('MCP tools over SSE', () => {
  it('uses the SSE client for type sse', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c', name: 'mcp__legacy__add', arguments: { a: 20, b: 22 } } }] }, 'It is 42.']);
    const { host, outcome } = await run(requestWith({ legacy: { type: 'sse', url: `${mcp.origin}/sse`, headers: { 'X-Api-Key': 'sse-secret-key-abcdef' } } }));
    expect(outcome).toEqual({ status: 'completed' });
    expect(mcp.calls).toEqual([expect.objectContaining({ tool: 'add', args: { a: 20, b: 22 } })]);
    expect(toolMessages(1)).toEqual(['42']);
    expect(host.of('tool.started')[0]).toMatchObject({ toolSource: 'mcp', mcpServer: 'legacy' });
    expect(mcp.requestHeaders.every((h) => h['x-api-key'] === 'sse-secret-key-abcdef')).toBe(true);
  });

  it('falls back to SSE when a Streamable HTTP initialise gets 405', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c', name: 'mcp__legacy__add', arguments: { a: 1, b: 1 } } }] }, 'ok']);
    const { host } = await run(requestWith({ legacy: { url: `${mcp.origin}/sse` } }));
    expect(warnings(host)).toEqual([]);
    expect(toolMessages(1)).toEqual(['2']);
  });
});

describe('MCP servers that cannot be used', () => {
  it('skips an unreachable server with a warning block and goes on with the others', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    fake.script(['Done without it.']);
    const { host, outcome } = await run(requestWith({ down: { url: `http://127.0.0.1:${port}/mcp` }, calc: { url: `${mcp.origin}/mcp` } }));
    expect(outcome).toEqual({ status: 'completed' });
    expect(warnings(host)).toEqual([`MCP server 'down' could not be reached: connect ECONNREFUSED 127.0.0.1:${port}`]);
    expect(offeredTools().map((t) => t.function.name)).toContain('mcp__calc__add');
    expect(host.types().slice(0, 3)).toEqual(['run.started', 'member.started', 'block.added']);
  });

  it('reports an HTTP error status as HTTP <status>', async () => {
    mcp.failWith = 503;
    fake.script(['ok']);
    const { host } = await run(requestWith({ calc: { url: `${mcp.origin}/mcp` }, legacy: { type: 'sse', url: `${mcp.origin}/sse` } }));
    expect(warnings(host)).toEqual(["MCP server 'calc' could not be reached: HTTP 503", "MCP server 'legacy' could not be reached: HTTP 503"]);
  });

  it('refuses a cloud metadata address even for a public Ghost', async () => {
    const opened = await openMcpServers({
      servers: { meta: { url: 'http://instance-data.test/mcp' } },
      ghostScope: 'public',
      privateHostsAllow: [],
      signal: new AbortController().signal,
      sandboxesAvailable: false,
      takenNames: [],
      resolver: async () => [{ address: '169.254.169.254', family: 4 }],
      version: '0.1.0',
    });
    expect(opened.tools).toEqual([]);
    expect(opened.warnings).toEqual(["MCP server 'meta' could not be reached: this address is not allowed (private or local network)"]);
    await opened.close();
  });

  it('refuses a loopback server of a user-owned Ghost unless the host is allowed; a public Ghost is exempt', async () => {
    fake.script(['ok', 'ok']);
    const noAllow = { network: { privateHostsAllow: [] } };
    const { host } = await run(requestWith({ calc: { url: `${mcp.origin}/mcp` } }, { modelTrusted: true, config: noAllow }));
    expect(warnings(host)).toEqual(["MCP server 'calc' could not be reached: this address is not allowed (private or local network)"]);
    expect(mcp.requestHeaders).toEqual([]);
    const publicRun = await run(requestWith({ calc: { url: `${mcp.origin}/mcp` } }, { modelTrusted: true, config: noAllow, scope: 'public' }));
    expect(warnings(publicRun.host)).toEqual([]);
    expect(offeredTools(1).map((t) => t.function.name)).toContain('mcp__calc__add');
  });

  it('gives up on a server that does not answer within the connect limit', async () => {
    const silent = http.createServer(() => {}); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      fake.script(['ok']);
      const started = Date.now();
      const { host, outcome } = await run(requestWith({ slow: { url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/mcp` } }));
      expect(outcome).toEqual({ status: 'completed' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(9_900);
      expect(warnings(host)).toEqual(["MCP server 'slow' could not be reached: timed out after 10 s"]);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  }, 20_000);

  it('never starts a stdio server on the host: without a sandbox it is skipped with the spec warning', async () => {
    const marker = join(mkdtempSync(join(tmpdir(), 'wegent-mcp-')), 'started');
    const stdio = { local: { command: process.execPath, args: ['-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, 'x')`] } };
    fake.script(['ok', 'ok']);
    const { host, outcome } = await run(requestWith(stdio));
    expect(outcome).toEqual({ status: 'completed' });
    expect(warnings(host)).toEqual([
      "MCP server 'local' is a local command (stdio). Local commands only run inside a sandbox: add the sandbox tool to this Ghost, use a Code shell, or use an HTTP MCP server.",
    ]);
    // A Ghost that lists `sandbox` on a server without sandboxes: refused, saying why.
    const sandboxed = await run(requestWith(stdio, { tools: ['sandbox'] }));
    expect(sandboxed.outcome).toEqual({ status: 'completed' });
    expect(warnings(sandboxed.host)).toEqual(["MCP server 'local' is a local command (stdio). Local commands only run inside a sandbox, and this server has no sandbox driver to run one."]);
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(marker)).toBe(false);
  });
});

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
