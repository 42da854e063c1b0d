import net from 'node:net';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/**
 * An MCP client transport over a Unix socket that relays a stdio MCP server's stdin/stdout
 * (sandbox.md §14.3): newline-delimited JSON-RPC, framed and serialised exactly as the SDK's stdio
 * transports do, so the server on the other end cannot tell it from a pipe.
 */
export class UnixSocketTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;

  readonly #path: string;
  readonly #readBuffer = new ReadBuffer();
  #socket?: net.Socket;
  #closed = false;

  constructor(socketPath: string) {
    this.#path = socketPath;
  }

  start(): Promise<void> {
    if (this.#socket) throw new Error('UnixSocketTransport already started');
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path: this.#path });
      this.#socket = socket;
      let connected = false;
      socket.once('connect', () => {
        connected = true;
        resolve();
      });
      socket.on('data', (chunk: Buffer) => {
        try {
          this.#readBuffer.append(chunk);
        } catch (err) {
          // An over-long line: the stream can no longer be framed.
          this.onerror?.(err as Error);
          void this.close();
          return;
        }
        for (;;) {
          let message: JSONRPCMessage | null;
          try {
            message = this.#readBuffer.readMessage();
          } catch (err) {
            this.onerror?.(err as Error); // one bad line; the next may be fine
            continue;
          }
          if (message === null) break;
          this.onmessage?.(message);
        }
      });
      socket.on('error', (err) => {
        if (!connected) reject(err);
        else this.onerror?.(err);
      });
      socket.on('close', () => this.#finish());
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const socket = this.#socket;
    if (!socket || this.#closed || socket.destroyed) return Promise.reject(new Error('the MCP server connection is closed'));
    return new Promise((resolve, reject) => {
      socket.write(serializeMessage(message), (err) => (err ? reject(err) : resolve()));
    });
  }

  async close(): Promise<void> {
    this.#socket?.destroy();
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#readBuffer.clear();
    this.onclose?.();
  }
}
