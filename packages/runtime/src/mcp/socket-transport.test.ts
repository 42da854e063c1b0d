import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { SandboxSession } from '@wegent/core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { executeRun } from '../run/execute-run.js';
import { member, modelConnection, RecordingHost, soloRequest } from '../run/test-fixtures.js';
import { startFakeModelServer, type FakeModelServer } from '../testing/index.js';
import type { SandboxStdioRelay } from './mcp-servers.js';
import { UnixSocketTransport } from './socket-transport.js';

/**
 * The stdio relay of sandbox.md §14.3 without a sandbox: a real stdio MCP server process (the SDK's
 * StdioServerTransport) whose stdin/stdout are copied to and from one connection at a time on a Unix socket.
 */
interface Relay {
  socketPath: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

const SERVER_SCRIPT = fileURLToPath(new URL('./test-stdio-server.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

async function startRelay(dir: string, name: string): Promise<Relay> {
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER_SCRIPT], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const socketPath = join(dir, `${name}.sock`);
  let busy = false;
  const server = net.createServer((conn) => {
    if (busy) return void conn.destroy();
    busy = true;
    const onData = (chunk: Buffer) => conn.write(chunk);
    child.stdout!.on('data', onData);
    conn.on('data', (chunk) => child.stdin!.write(chunk));
    child.once('exit', () => conn.destroy()); // the relay's connection ends with the process
    conn.on('close', () => {
      child.stdout!.off('data', onData);
      busy = false;
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    child,
    stop: async () => {
      child.kill('SIGKILL');
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'wegent-mcp-sock-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('the Unix socket transport', () => {
  it('talks MCP to a stdio server through the relay: initialise, list tools, call a tool', async () => {
    const relay = await startRelay(dir, 'mcp-1');
    const client = new Client({ name: 'wegent-test', version: '1.0.0' });
    try {
      await client.connect(new UnixSocketTransport(relay.socketPath));
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toEqual(['add', 'fail', 'sleep', 'mixed']);
      const result = await client.callTool({ name: 'add', arguments: { a: 40, b: 2 } });
      expect(result.content).toEqual([{ type: 'text', text: '42' }]);
      // Many messages in flight at once are framed apart correctly.
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => client.callTool({ name: 'add', arguments: { a: i, b: 1000 } })));
      expect(many.map((r) => (r.content as Array<{ text: string }>)[0]!.text)).toEqual(Array.from({ length: 20 }, (_, i) => String(i + 1000)));
    } finally {
      await client.close();
      await relay.stop();
    }
  }, 20_000);

  it('fails to start when nothing listens on the socket, and closes when the server process ends', async () => {
    await expect(new UnixSocketTransport(join(dir, 'nothing.sock')).start()).rejects.toThrow(/ENOENT|ECONNREFUSED/);

    const relay = await startRelay(dir, 'mcp-2');
    const transport = new UnixSocketTransport(relay.socketPath);
    const client = new Client({ name: 'wegent-test', version: '1.0.0' });
    try {
      await client.connect(transport);
      const closed = new Promise<void>((resolve) => (client.onclose = resolve));
      relay.child.kill('SIGKILL');
      await closed;
      await expect(transport.send({ jsonrpc: '2.0', method: 'ping', id: 1 })).rejects.toThrow('the MCP server connection is closed');
      await expect(client.callTool({ name: 'add', arguments: { a: 1, b: 1 } })).rejects.toThrow();
    } finally {
      await relay.stop();
    }
  }, 20_000);
});

describe('stdio MCP servers in a turn with a sandbox', () => {
  let fake: FakeModelServer;
  beforeAll(async () => {
    fake = await startFakeModelServer();
  });
  afterAll(async () => {
    await fake.close();
  });

  it('starts the server through the sandbox stdio relay, offers its tools, calls one and stops it at turn end', async () => {
    const started: Array<{ name: string; command: string; args?: string[]; env?: Record<string, string> }> = [];
    const stopped: string[] = [];
    const relays: Relay[] = [];
    // The sandbox session's stdio seam; a real sandbox runs the command inside it (sandbox.md §14.3).
    const session: SandboxSession & SandboxStdioRelay = {
      id: 'sbx-1',
      memoryMB: 512,
      exec: () => Promise.reject(new Error('not used')),
      readFile: () => Promise.reject(new Error('not used')),
      writeFile: () => Promise.reject(new Error('not used')),
      listFiles: () => Promise.reject(new Error('not used')),
      failure: () => undefined,
      release: () => {},
      async startStdio(name, cfg) {
        started.push({ name, ...cfg });
        const relay = await startRelay(dir, `mcp-${started.length}`);
        relays.push(relay);
        return { hostSocketPath: relay.socketPath };
      },
      async stopStdio(name) {
        stopped.push(name);
        await Promise.all(relays.map((r) => r.stop()));
      },
    };
    const host = new RecordingHost();
    const acquired: string[] = [];
    Object.assign(host, { acquireSandbox: async (req: { turnId: string }) => (acquired.push(req.turnId), session) });
    fake.script([{ steps: [{ toolCall: { id: 'c', name: 'mcp__local__add', arguments: { a: 1, b: 2 } } }] }, 'It is 3.']);
    const base = member();
    const request = soloRequest({
      members: [
        member({
          model: modelConnection({ baseUrl: fake.openaiBaseUrl }),
          ghost: { ...base.ghost, tools: ['sandbox'], mcpServers: { local: { command: 'node', args: ['server.js'], env: { GITHUB_TOKEN: 'ghp_secret_value_1234' } } } },
        }),
      ],
    });
    const outcome = await executeRun(request, host, new AbortController().signal);

    expect(outcome).toEqual({ status: 'completed' });
    expect(acquired).toEqual(['turn-1']); // at turn start, for the stdio server
    expect(started).toEqual([{ name: 'local', command: 'node', args: ['server.js'], env: { GITHUB_TOKEN: 'ghp_secret_value_1234' } }]);
    const tools = (fake.requests[0]!.body.tools as Array<{ function: { name: string } }>).map((t) => t.function.name);
    expect(tools).toEqual(['exec', 'read_file', 'write_file', 'list_files', 'mcp__local__add', 'mcp__local__fail', 'mcp__local__sleep', 'mcp__local__mixed']);
    expect((fake.requests[1]!.body.messages as Array<{ role: string; content: string }>).filter((m) => m.role === 'tool').map((m) => m.content)).toEqual(['3']);
    expect(host.of('tool.started')[0]).toMatchObject({ toolSource: 'mcp', mcpServer: 'local' });
    expect(JSON.stringify(host.events)).not.toContain('ghp_secret_value_1234');
    await until(() => stopped.length === 1);
    expect(stopped).toEqual(['local']);
  }, 30_000);

  it('warns instead of starting anything when the sandbox session has no stdio relay', async () => {
    const host = new RecordingHost();
    const session: SandboxSession = {
      id: 'sbx-2',
      memoryMB: 512,
      exec: () => Promise.reject(new Error('not used')),
      readFile: () => Promise.reject(new Error('not used')),
      writeFile: () => Promise.reject(new Error('not used')),
      listFiles: () => Promise.reject(new Error('not used')),
      failure: () => undefined,
      release: () => {},
    };
    Object.assign(host, { acquireSandbox: async () => session });
    fake.script(['ok']);
    const base = member();
    const request = soloRequest({
      members: [member({ model: modelConnection({ baseUrl: fake.openaiBaseUrl }), ghost: { ...base.ghost, tools: ['sandbox'], mcpServers: { local: { command: 'node' } } } })],
    });
    await expect(executeRun(request, host, new AbortController().signal)).resolves.toEqual({ status: 'completed' });
    expect(host.of('block.added').map((e) => (e.block as { message?: string }).message)).toEqual([
      "MCP server 'local' is a local command (stdio), and the sandboxes of this server cannot run MCP servers yet.",
    ]);
  });

  it('skips a public Ghost stdio server whose env holds secrets, without starting anything', async () => {
    const host = new RecordingHost();
    let acquired = 0;
    Object.assign(host, { acquireSandbox: async () => (acquired++, Promise.reject(new Error('must not be acquired'))) });
    fake.script(['ok']);
    const base = member();
    const request = soloRequest({
      members: [
        member({
          model: modelConnection({ baseUrl: fake.openaiBaseUrl }),
          ghost: { ...base.ghost, scope: 'public', tools: ['sandbox'], mcpServers: { gh: { command: 'node', env: { GITHUB_TOKEN: 'ghp_secret_value_1234' } } } },
        }),
      ],
    });
    const outcome = await executeRun(request, host, new AbortController().signal);
    expect(outcome).toEqual({ status: 'completed' });
    expect(acquired).toBe(0);
    expect(host.of('block.added').map((e) => (e.block as { message?: string }).message)).toEqual([
      "MCP server 'gh' was not started: its env holds secrets, and code in a sandbox that is not the Ghost owner's could read them.",
    ]);
  });
});

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
