/**
 * The sandbox agent: the sandbox's main process (sandbox.md §14.1). Node built-ins only.
 * This first layer serves `GET /v1/health` on /run/wegent/agent.sock; exec and files come next.
 */
import { createServer } from 'node:http';
import { rmSync } from 'node:fs';

const VERSION = '0.1.0';
const started = Date.now();
const socketPath = process.env.WEGENT_AGENT_SOCKET ?? '/run/wegent/agent.sock';

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/v1/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, version: VERSION, uptimeMs: Date.now() - started }));
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url}` } }));
});

rmSync(socketPath, { force: true });
server.listen(socketPath);
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => { server.close(); rmSync(socketPath, { force: true }); process.exit(0); });
}
