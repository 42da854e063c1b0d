import { io as connect, type Socket } from 'socket.io-client';
import { CliError, EXIT, UnreachableError } from '../errors.js';

/** An ack of the chat protocol (chat-protocol.md §4.2). */
export type Ack<T = Record<string, unknown>> = ({ ok: true } & T) | { ok: false; error: AckErrorBody };

export interface AckErrorBody {
  code: string;
  message: string;
  details?: { causes?: Array<{ field?: string; reason?: string; message?: string }>; [key: string]: unknown };
}

/** How long an ack may take; the server answers every event within 5 s (§4.2). */
const ACK_TIMEOUT_MS = 10_000;

export interface ConnectionOptions {
  /** Told once per lost connection, and again when it is back. */
  onConnectionChange?(state: 'lost' | 'back'): void;
}

/** `Error: <code>: <message>` — how the CLI reports a refusal of the chat protocol. */
export function describeAckError(error: AckErrorBody): string {
  let text = `Error: ${error.code}: ${error.message}`;
  const causes = Array.isArray(error.details?.causes) ? error.details.causes : [];
  for (const c of causes.slice(0, 20)) if (c.message && !error.message.includes(c.message)) text += `\n  ${c.field ? `${c.field}: ` : ''}${c.message}`;
  if (typeof error.details?.retryAfterSeconds === 'number') text += `\n  retry after ${error.details.retryAfterSeconds} s`;
  return text;
}

/** The few words that say why a connection attempt failed ("connect ECONNREFUSED 127.0.0.1:9"). */
function networkCause(err: Error & { description?: unknown; context?: unknown }): string {
  const candidates = [
    (err.context as { statusText?: { message?: unknown } } | undefined)?.statusText?.message,
    (err.description as { message?: unknown; error?: { message?: unknown } } | undefined)?.error?.message,
    (err.description as { message?: unknown } | undefined)?.message,
  ];
  for (const c of candidates) if (typeof c === 'string' && c) return c;
  return err.message || String(err);
}

/** A refused handshake (§2): `connect_error` with message "unauthorized" and `data: {code, message}`. */
function refusal(err: Error & { data?: { code?: unknown; message?: unknown } }): CliError | undefined {
  const data = err.data;
  if (!data || typeof data.code !== 'string') return err.message === 'unauthorized' ? new CliError('Error: UNAUTHORIZED: the server refused the credential', EXIT.refused) : undefined;
  const hint = data.code === 'TOO_MANY_CONNECTIONS' ? '' : "\nhint: run 'wegent login' to sign in again, or check WEGENT_TOKEN";
  return new CliError(`Error: ${data.code}: ${typeof data.message === 'string' ? data.message : err.message}${hint}`, EXIT.refused);
}

/**
 * The Socket.IO connection to `/chat` (chat-protocol.md §1–§2): opens with the token in the handshake,
 * lets socket.io-client reconnect after a drop (and reconnects itself when the server closed the socket
 * for another reason than the credential), and turns a refused credential into a fatal CLI error.
 */
export class ChatConnection {
  private fatalError?: CliError;
  private readonly fatalListeners = new Set<(err: CliError) => void>();
  private readonly reconnectListeners = new Set<() => void>();
  private authError?: { code: string; message: string };
  private closed = false;
  private lost = false;

  private constructor(
    readonly socket: Socket,
    private readonly opts: ConnectionOptions,
  ) {
    socket.on('connect', () => {
      if (this.lost) {
        this.lost = false;
        this.opts.onConnectionChange?.('back');
      }
      for (const l of this.reconnectListeners) l();
    });
    socket.on('disconnect', (reason) => {
      if (this.closed) return;
      if (!this.lost) {
        this.lost = true;
        this.opts.onConnectionChange?.('lost');
      }
      if (reason === 'io server disconnect') {
        // The server closed this socket; socket.io-client leaves reconnecting to us.
        if (this.authError) this.fail(new CliError(`Error: ${this.authError.code}: ${this.authError.message}\nhint: run 'wegent login' to sign in again, or check WEGENT_TOKEN`, EXIT.refused));
        else socket.connect();
      }
    });
    socket.on('connect_error', (err: Error) => {
      // A refused credential is final; a network error is retried by socket.io-client.
      const refused = refusal(err);
      if (refused) this.fail(refused);
    });
    socket.on('auth:error', (p: { code?: string; message?: string }) => {
      this.authError = { code: p?.code ?? 'UNAUTHENTICATED', message: p?.message ?? 'the credential is no longer valid' };
    });
  }

  /** Connects and waits for the handshake; a refusal ends with exit 1, an unreachable server with exit 3. */
  static open(server: string, token: string, opts: ConnectionOptions = {}): Promise<ChatConnection> {
    const url = new URL(server);
    const basePath = url.pathname.replace(/\/+$/, '');
    const socket = connect(`${url.origin}/chat`, {
      path: `${basePath}/socket.io`,
      auth: { token },
      // WebSocket first; long-polling when a proxy in between refuses WebSockets.
      transports: ['websocket', 'polling'],
      tryAllTransports: true,
      forceNew: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 5000,
    });
    return new Promise<ChatConnection>((resolve, reject) => {
      const onConnect = () => {
        socket.off('connect_error', onError);
        resolve(new ChatConnection(socket, opts));
      };
      const onError = (err: Error) => {
        socket.off('connect', onConnect);
        socket.close();
        reject(refusal(err) ?? new UnreachableError(server, networkCause(err)));
      };
      socket.once('connect', onConnect);
      socket.once('connect_error', onError);
    });
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Called after every reconnect (not the first connect). */
  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => void this.reconnectListeners.delete(listener);
  }

  /** Called once when the connection can no longer be used (its credential was refused). */
  onFatal(listener: (err: CliError) => void): () => void {
    if (this.fatalError) listener(this.fatalError);
    else this.fatalListeners.add(listener);
    return () => void this.fatalListeners.delete(listener);
  }

  on(event: string, listener: (payload: never) => void): void {
    this.socket.on(event, listener as (payload: unknown) => void);
  }

  /**
   * Emits an event and resolves with its ack. Waits for the connection first when it is down; rejects
   * when no ack came within the timeout (the caller decides whether to repeat).
   */
  async call<T = Record<string, unknown>>(event: string, payload: unknown, timeoutMs = ACK_TIMEOUT_MS): Promise<Ack<T>> {
    if (!this.socket.connected) await this.waitConnected();
    return (await this.socket.timeout(timeoutMs).emitWithAck(event, payload)) as Ack<T>;
  }

  /** Resolves at the next connect; rejects when the connection became unusable. */
  waitConnected(): Promise<void> {
    if (this.socket.connected) return Promise.resolve();
    if (this.fatalError) return Promise.reject(this.fatalError);
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise<void>((resolve, reject) => {
      const offFatal = this.onFatal((err) => {
        this.socket.off('connect', onConnect);
        reject(err);
      });
      const onConnect = () => {
        offFatal();
        resolve();
      };
      this.socket.once('connect', onConnect);
    });
  }

  close(): void {
    this.closed = true;
    this.socket.removeAllListeners();
    this.socket.close();
  }

  private fail(err: CliError): void {
    if (this.fatalError) return;
    this.fatalError = err;
    this.socket.close();
    for (const l of this.fatalListeners) l(err);
    this.fatalListeners.clear();
  }
}
