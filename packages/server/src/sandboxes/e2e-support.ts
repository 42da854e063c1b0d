/** Test support for sandboxes end to end: socket clients, a bare repository to clone, a Code team. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { io as connect, type Socket } from 'socket.io-client';
import type { TestServer } from '../testing/server.js';

const sockets: Socket[] = [];

/** A Socket.IO client on `/chat`, connected. */
export async function connected(server: TestServer, token: string): Promise<Socket> {
  const socket = connect(`${server.url}/chat`, { path: '/socket.io', transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true });
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (e) => reject(e));
  });
  return socket;
}

/** Disconnects every client `connected` made. */
export function disconnectAll(): void {
  for (const s of sockets.splice(0)) s.disconnect();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- acks are arbitrary JSON
export const send = (socket: Socket, event: string, payload: unknown) => socket.timeout(15_000).emitWithAck(event, payload) as Promise<any>;

/** Every event the socket receives from now on, in order. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- event payloads are arbitrary JSON
export function seenBy(socket: Socket): Array<[string, any]> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  const seen: Array<[string, any]> = [];
  socket.onAny((name, payload) => seen.push([name, payload]));
  return seen;
}

/** A bare repository with one commit on `main` (README.md and `files`), as a file:// URL. */
export function bareRepository(root: string, files: Record<string, string> = {}): string {
  const work = path.join(root, 'work');
  const bare = path.join(root, 'repo.git');
  const git = (args: string[], cwd?: string) => execFileSync('git', args, { cwd, stdio: 'pipe', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' } });
  git(['init', '-q', '-b', 'main', work]);
  writeFileSync(path.join(work, 'README.md'), 'hello from the repository\n');
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(work, name)), { recursive: true });
    writeFileSync(path.join(work, name), content);
  }
  git(['add', '.'], work);
  git(['commit', '-q', '-m', 'first'], work);
  git(['clone', '-q', '--bare', work, bare]);
  return `file://${bare}`;
}
