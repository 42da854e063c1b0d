/**
 * Test support: a real MCP server built with the SDK, served over Streamable HTTP (`/mcp`) and the older
 * SSE transport (`GET /sse`, `POST /messages`) on a loopback port. It records every call and what its
 * requests carried, so tests can check what the runtime sent.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

export interface McpCall {
  tool: string;
  args: Record<string, unknown>;
  /** Set when the call's signal aborted (the client sent notifications/cancelled or went away). */
  aborted: boolean;
}

export interface TestMcpServer {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  calls: McpCall[];
  /** Headers of every HTTP request, in order. */
  requestHeaders: http.IncomingHttpHeaders[];
  /** `<method> <path>` of every HTTP request, in order. */
  requestLines: string[];
  /** When set, every request is answered with this status and no MCP. */
  failWith?: number;
  close(): Promise<void>;
}

/** The tools the test server offers. */
export function buildTestMcpServer(calls: McpCall[]): McpServer {
  const server = new McpServer({ name: 'test-tools', version: '1.0.0' });
  const record = (tool: string, args: Record<string, unknown>, signal: AbortSignal) => {
    const call: McpCall = { tool, args, aborted: signal.aborted };
    signal.addEventListener('abort', () => (call.aborted = true), { once: true });
    calls.push(call);
    return call;
  };
  server.registerTool('add', { description: 'Adds two numbers.', inputSchema: { a: z.number().describe('first'), b: z.number() } }, async (args, extra) => {
    record('add', args, extra.signal);
    return { content: [{ type: 'text', text: String(args.a + args.b) }] };
  });
  server.registerTool('fail', { description: 'Always fails.', inputSchema: { why: z.string().optional() } }, async (args, extra) => {
    record('fail', args, extra.signal);
    throw new Error('the database is down');
  });
  server.registerTool('sleep', { description: 'Waits, then answers.', inputSchema: { ms: z.number() } }, async (args, extra) => {
    record('sleep', args, extra.signal);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, args.ms);
      extra.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return { content: [{ type: 'text', text: 'slept' }] };
  });
  server.registerTool('mixed', { description: 'Answers with several kinds of content.' }, async (extra) => {
    record('mixed', {}, extra.signal);
    return {
      content: [
        { type: 'text', text: 'first' },
        { type: 'image', data: 'aGVsbG8=', mimeType: 'image/png' },
        { type: 'resource_link', uri: 'file:///report.pdf', name: 'report' },
        { type: 'resource', resource: { uri: 'file:///notes.txt', text: 'the notes' } },
      ],
    };
  });
  return server;
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

export async function startTestMcpServer(): Promise<TestMcpServer> {
  const calls: McpCall[] = [];
  const requestHeaders: http.IncomingHttpHeaders[] = [];
  const requestLines: string[] = [];
  const streamable = new Map<string, StreamableHTTPServerTransport>();
  const sse = new Map<string, SSEServerTransport>();
  const open: Array<{ close(): Promise<void> }> = [];
  const state: TestMcpServer = {
    origin: '',
    calls,
    requestHeaders,
    requestLines,
    close: async () => {
      await Promise.all(open.map((o) => o.close().catch(() => {})));
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };

  const httpServer = http.createServer((req, res) => {
    void (async () => {
      requestHeaders.push(req.headers);
      requestLines.push(`${req.method} ${new URL(req.url ?? '/', 'http://localhost').pathname}`);
      if (state.failWith) {
        res.writeHead(state.failWith, { 'content-type': 'text/plain' }).end('unavailable');
        return;
      }
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname === '/mcp') {
        const body = req.method === 'POST' ? await readJson(req) : undefined;
        const sessionId = req.headers['mcp-session-id'];
        let transport = typeof sessionId === 'string' ? streamable.get(sessionId) : undefined;
        if (!transport) {
          const t = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => void streamable.set(id, t) });
          const server = buildTestMcpServer(calls);
          await server.connect(t);
          open.push(server);
          transport = t;
        }
        await transport.handleRequest(req, res, body);
      } else if (url.pathname === '/sse' && req.method === 'GET') {
        const transport = new SSEServerTransport('/messages', res);
        sse.set(transport.sessionId, transport);
        const server = buildTestMcpServer(calls);
        open.push(server);
        await server.connect(transport);
      } else if (url.pathname === '/messages' && req.method === 'POST') {
        const transport = sse.get(url.searchParams.get('sessionId') ?? '');
        if (!transport) res.writeHead(404).end();
        else await transport.handlePostMessage(req, res, await readJson(req));
      } else {
        // Only GET /sse exists there: a Streamable HTTP client's POST gets 405, as older servers answer.
        res.writeHead(url.pathname === '/sse' ? 405 : 404).end();
      }
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  state.origin = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
  return state;
}
