/**
 * The sandbox agent: the sandbox's main process (sandbox.md §14.1). Node built-ins only; compiled to
 * one CommonJS file into the executor image (`/opt/wegent/agent/main.js`). Serves HTTP/1.1 on
 * /run/wegent/agent.sock: health, exec (NDJSON stream) and kill, file read/write/list.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { killAll, killExec, runExec, validateExec } from './exec.js';
import { AgentError, listFilesEndpoint, readFileEndpoint, writeFileEndpoint, type FileRoots } from './files.js';
import { startGatewayForwarder } from './gateway-forwarder.js';
import { startStdio, stdioStatus, stopAllStdio, stopStdio } from './stdio.js';

const VERSION = '0.3.0';
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const started = Date.now();
const socketPath = process.env.WEGENT_AGENT_SOCKET ?? '/run/wegent/agent.sock';
const runDir = dirname(socketPath);
const roots: FileRoots = { base: '/workspace', allowed: ['/workspace', '/tmp'] };

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) { res.end(); return; }
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function sendError(res: ServerResponse, err: unknown): void {
  if (err instanceof AgentError) { sendJson(res, err.status, { error: { code: err.code, message: err.message } }); return; }
  const e = err as NodeJS.ErrnoException;
  const status = e.code === 'ENOENT' ? 404 : e.code === 'EACCES' || e.code === 'EPERM' ? 403 : 500;
  sendJson(res, status, { error: { code: e.code ?? 'INTERNAL', message: e.message } });
}

function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) { reject(new AgentError(413, 'TOO_LARGE', 'the request body is too large')); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text) { resolve({}); return; }
      try {
        const v = JSON.parse(text) as unknown;
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch { reject(new AgentError(400, 'BAD_REQUEST', 'the body must be a JSON object')); }
    });
    req.on('error', reject);
  });
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  if (req.method === 'GET' && url === '/v1/health') {
    sendJson(res, 200, { ok: true, version: VERSION, uptimeMs: Date.now() - started });
    return;
  }
  const mcpStatus = /^\/v1\/mcp\/([^/]{1,100})$/.exec(url);
  if (req.method === 'GET' && mcpStatus) { sendJson(res, 200, stdioStatus(decodeURIComponent(mcpStatus[1] as string))); return; }
  if (req.method === 'POST') {
    if (url === '/v1/exec') {
      const body = await readBody(req);
      const valid = validateExec(body);
      if (typeof valid === 'string') throw new AgentError(400, 'BAD_REQUEST', valid);
      runExec(valid, res);
      return;
    }
    const kill = /^\/v1\/exec\/([\w.-]{1,100})\/kill$/.exec(url);
    if (kill) {
      await readBody(req);
      const found = await killExec(kill[1] as string);
      sendJson(res, 200, { ok: true, found });
      return;
    }
    const mcp = /^\/v1\/mcp\/([^/]{1,100})\/(start|stop)$/.exec(url);
    if (mcp) {
      const name = decodeURIComponent(mcp[1] as string);
      const body = await readBody(req);
      if (mcp[2] === 'start') sendJson(res, 200, await startStdio(name, body, runDir));
      else sendJson(res, 200, { ok: true, found: await stopStdio(name) });
      return;
    }
    const files: Record<string, (b: Record<string, unknown>, r: FileRoots) => Promise<unknown>> = {
      '/v1/files/read': readFileEndpoint, '/v1/files/write': writeFileEndpoint, '/v1/files/list': listFilesEndpoint,
    };
    const fn = files[url];
    if (fn) { sendJson(res, 200, await fn(await readBody(req), roots)); return; }
  }
  throw new AgentError(404, 'NOT_FOUND', `no route ${req.method} ${url}`);
}

const server = createServer((req, res) => { handle(req, res).catch((err: unknown) => sendError(res, err)); });
server.keepAliveTimeout = 5000;

rmSync(socketPath, { force: true });
startGatewayForwarder(process.env.WEGENT_GATEWAY_SOCKET ?? `${runDir}/gateway.sock`);
server.listen(socketPath, () => { process.stderr.write(`wegent agent ${VERSION} listening on ${socketPath}\n`); });
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    server.close();
    void Promise.all([killAll(), stopAllStdio()]).finally(() => { rmSync(socketPath, { force: true }); process.exit(0); });
  });
}
