/** Test support: Socket.IO clients of a test server's `/chat` namespace. */
import { io as connect, type Socket } from 'socket.io-client';

const sockets: Socket[] = [];

/** A client of `/chat` (websocket only, no reconnection), not yet connected; `disconnectAll` ends it. */
export function openChat(server: { url: string }, token: string | undefined, extra: Record<string, unknown> = {}): Socket {
  const socket = connect(`${server.url}/chat`, { path: '/socket.io', transports: ['websocket'], auth: token ? { token } : {}, reconnection: false, forceNew: true, ...extra });
  sockets.push(socket);
  return socket;
}

/** A client of `/chat`, connected. */
export async function connected(server: { url: string }, token: string): Promise<Socket> {
  const socket = openChat(server, token);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (e) => reject(e));
  });
  return socket;
}

/** Disconnects every client `openChat` and `connected` made. */
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
