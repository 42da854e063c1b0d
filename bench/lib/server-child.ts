/**
 * A server under load, in its own process so that it gets a core to itself and the load generator
 * (autocannon, in the parent) gets the other. Started by bench/lib/servers.ts with an IPC channel; the
 * parent sends one `start` message, then `usage` messages around each measurement (and `profile-start` /
 * `profile-stop` to record a V8 CPU profile of just that measurement), then `stop`.
 *
 *   { cmd: 'start', kind: 'wegent', overrides, env }  → startServer(overrides, env, silent logger)
 *   { cmd: 'start', kind: 'bare', bodyLimit, fixtures } → fastify() with a few routes answering fixtures
 *   { cmd: 'start', kind: 'fake-model', chunks, chunkMs } → the fake model server, every answer `chunks` chunks
 *                                                            `chunkMs` apart (the url is its OpenAI base URL)
 *   { cmd: 'start', kind: 'socketio' }                  → a bare Socket.IO server (namespace /chat); a socket
 *                                                            joins room `task:<auth.room>`; then
 *   { cmd: 'emit', rooms, chunks, chunkMs }             → every chunkMs, one `chat:chunk` to each room, `chunks`
 *                                                            times; answers when done
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

type Request = { id: number } & (
  | { cmd: 'start'; kind: 'wegent'; overrides: Record<string, unknown>; env: Record<string, string> }
  | { cmd: 'start'; kind: 'bare'; bodyLimit: number; fixtures: BareFixtures }
  | { cmd: 'start'; kind: 'fake-model'; chunks: number; chunkMs: number; chunkChars: number }
  | { cmd: 'start'; kind: 'socketio' }
  | { cmd: 'emit'; rooms: number; chunks: number; chunkMs: number; chunkChars: number }
  | { cmd: 'usage' }
  | { cmd: 'profile-start' }
  | { cmd: 'profile-stop'; file: string }
  | { cmd: 'stop' }
);

/** Bodies the bare server answers with: the very documents Wegent answered, so that sizes match. */
export interface BareFixtures {
  one: unknown;
  list: unknown;
  created: { metadata: Record<string, unknown> } & Record<string, unknown>;
  applied: unknown;
}

let close: (() => Promise<void>) | undefined;
let session: Session | undefined;

async function startWegent(overrides: Record<string, unknown>, env: Record<string, string>): Promise<string> {
  const { startServer, createLogger } = await import('../../packages/server/src/server.js');
  // The API and streaming benchmarks use no sandbox: without this the server would probe Docker, build the
  // executor image and keep a warm sandbox running beside the measurement (bench/sandbox measures those).
  const running = await startServer(overrides as never, { WEGENT_SANDBOX_DRIVER: 'none', ...env }, createLogger('silent'));
  close = () => running.close();
  return running.url;
}

async function startBare(bodyLimit: number, fx: BareFixtures): Promise<string> {
  // The fastify package the server uses, resolved from packages/server.
  const fastifyPath = createRequire(path.join(repo, 'packages', 'server', 'package.json')).resolve('fastify');
  const { default: fastify } = (await import(pathToFileURL(fastifyPath).href)) as typeof import('fastify');
  const app = fastify({ logger: false, bodyLimit });
  app.get('/one', async () => fx.one);
  app.get('/list', async () => fx.list);
  app.post('/create', async (req, reply) => {
    const name = (req.body as { metadata?: { name?: string } } | undefined)?.metadata?.name;
    reply.code(201);
    return { ...fx.created, metadata: { ...fx.created.metadata, name } };
  });
  // The bare baseline of an apply: receive the YAML text, answer a result of the same size; no parsing.
  app.addContentTypeParser('application/yaml', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  app.post('/apply', async () => fx.applied);
  await app.listen({ port: 0, host: '127.0.0.1' });
  close = () => app.close();
  const address = app.server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

async function startFakeModel(chunks: number, chunkMs: number, chunkChars: number): Promise<string> {
  const { startFakeModelServer } = await import('@wegent/runtime/testing');
  const fake = await startFakeModelServer();
  const steps = [];
  for (let i = 0; i < chunks; i++) steps.push({ delayMs: chunkMs }, { text: `t=${i};`.padEnd(chunkChars, '.') });
  fake.script([{ steps, times: Infinity }]);
  close = () => fake.close();
  return fake.openaiBaseUrl;
}

let emitLoad: ((rooms: number, chunks: number, chunkMs: number, chunkChars: number) => Promise<void>) | undefined;

async function startSocketIo(): Promise<string> {
  // The socket.io package the server uses, resolved from packages/server.
  const ioPath = createRequire(path.join(repo, 'packages', 'server', 'package.json')).resolve('socket.io');
  const { Server } = (await import(pathToFileURL(ioPath).href)) as typeof import('socket.io');
  const { createServer } = await import('node:http');
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'] });
  const chat = io.of('/chat');
  chat.on('connection', (socket) => void socket.join(`task:${String(socket.handshake.auth.room)}`));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  close = () => new Promise<void>((resolve) => { void io.close(() => resolve()); });
  // The payload has the fields and sizes of Wegent's `chat:chunk` (spec/chat-protocol.md).
  emitLoad = (rooms, chunks, chunkMs, chunkChars) => new Promise<void>((resolve) => {
    let k = 0;
    const timer = setInterval(() => {
      for (let r = 0; r < rooms; r++) {
        chat.to(`task:${r}`).emit('chat:chunk', { taskId: `0192f0a4-7d4e-7c1a-9b3e-${String(r).padStart(12, '0')}`, subtaskId: `0192f0a4-7d4e-7c1a-9b3e-${String(r).padStart(12, '1')}`, offset: k * chunkChars, content: `t=${k};`.padEnd(chunkChars, '.'), seq: k + 1 });
      }
      if (++k >= chunks) { clearInterval(timer); resolve(); }
    }, chunkMs);
  });
  const address = http.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

function reply(message: Record<string, unknown>): void {
  process.send?.(message);
}

process.on('message', (raw) => {
  const m = raw as Request;
  void (async () => {
    try {
      switch (m.cmd) {
        case 'start': {
          const url = m.kind === 'wegent' ? await startWegent(m.overrides, m.env)
            : m.kind === 'bare' ? await startBare(m.bodyLimit, m.fixtures)
              : m.kind === 'fake-model' ? await startFakeModel(m.chunks, m.chunkMs, m.chunkChars)
                : await startSocketIo();
          reply({ id: m.id, ok: true, url, pid: process.pid });
          break;
        }
        case 'usage': {
          const cpu = process.cpuUsage();
          // `at`: when the reading was taken, on the machine's clock; a busy server answers late, so the
          // parent measures intervals of CPU time against these stamps, not against its own clock.
          reply({ id: m.id, ok: true, cpuMicros: cpu.user + cpu.system, rss: process.memoryUsage.rss(), at: performance.timeOrigin + performance.now() });
          break;
        }
        case 'emit':
          if (!emitLoad) throw new Error('emit: no Socket.IO server was started');
          await emitLoad(m.rooms, m.chunks, m.chunkMs, m.chunkChars);
          reply({ id: m.id, ok: true });
          break;
        case 'profile-start':
          session = new Session();
          session.connect();
          await session.post('Profiler.enable');
          await session.post('Profiler.start');
          reply({ id: m.id, ok: true });
          break;
        case 'profile-stop': {
          const { profile } = await session!.post('Profiler.stop');
          session!.disconnect();
          session = undefined;
          writeFileSync(m.file, JSON.stringify(profile));
          reply({ id: m.id, ok: true });
          break;
        }
        case 'stop':
          await close?.();
          reply({ id: m.id, ok: true });
          process.disconnect?.();
          setTimeout(() => process.exit(0), 50);
          break;
      }
    } catch (e) {
      reply({ id: m.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  })();
});

// The parent went away: do not linger.
process.on('disconnect', () => setTimeout(() => process.exit(0), 200).unref());
