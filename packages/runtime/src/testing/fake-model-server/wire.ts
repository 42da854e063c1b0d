import type { ServerResponse } from 'node:http';
import type { FakeRecordedRequest } from './script.js';

/** Thrown inside a reply when the client has gone (or the server is closing): the reply just stops. */
export class ExchangeEnded extends Error {
  constructor() {
    super('fake model server: the exchange has ended');
  }
}

/** Pauses between the pieces of a split write, so that the client reads them separately. */
const PIECE_PAUSE_MS = 1;
const CHARACTER_SPLIT_PAUSE_MS = 10; // longer, so even a busy client sees each half of a character on its own

/**
 * One HTTP exchange as the reply sees it: timed, split and cut writes, and the bookkeeping of who
 * ended the connection (`closedEarly` is only set when the client did).
 */
export class ReplyWire {
  private ended = false;
  private serverEnded = false;
  private readonly endListeners = new Set<() => void>();

  constructor(
    private readonly res: ServerResponse,
    private readonly record: FakeRecordedRequest,
    private readonly chunkBytes: number | undefined,
    onEnd: () => void,
  ) {
    const onClose = (): void => {
      this.ended = true;
      if (!res.writableFinished && !this.serverEnded) record.closedEarly = true;
      if (res.writableFinished) record.finished = true;
      record.endedAt = Date.now();
      for (const listener of this.endListeners) listener();
      this.endListeners.clear();
      onEnd();
    };
    // The client may already have gone while the request body was being read.
    if (res.destroyed) queueMicrotask(onClose);
    else res.on('close', onClose);
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  /** Writes the status line and headers now (so a streaming client sees the response start). */
  writeHead(status: number, headers: Record<string, string>): void {
    this.assertOpen();
    this.res.writeHead(status, headers);
    this.res.flushHeaders();
  }

  /** Writes frames, each as its own write; `splitChars` splits every multi-byte character across writes. */
  async write(frames: readonly string[], splitChars = false): Promise<void> {
    for (const frame of frames) {
      const bytes = Buffer.from(frame, 'utf8');
      const cuts = splitChars ? insideCharacterOffsets(bytes) : [];
      await this.writePieces(bytes, cuts, cuts.length > 0 ? CHARACTER_SPLIT_PAUSE_MS : PIECE_PAUSE_MS);
    }
  }

  /** Ends the response, writing `text` first (in `chunkBytes` pieces when asked). */
  async end(text?: string): Promise<void> {
    if (text !== undefined) await this.writePieces(Buffer.from(text, 'utf8'), [], PIECE_PAUSE_MS);
    this.assertOpen();
    this.res.end();
  }

  /** Writes the first `bytes` bytes of `text`, then destroys the socket. */
  async writeThenCut(text: string, bytes: number): Promise<void> {
    await this.writePieces(Buffer.from(text, 'utf8').subarray(0, bytes), [], PIECE_PAUSE_MS);
    this.cut();
  }

  /** Destroys the socket without finishing the response. */
  cut(): void {
    this.serverEnded = true;
    this.res.socket?.destroy();
    this.res.destroy();
  }

  /** Ends the exchange from the server side (server shutdown); not counted as `closedEarly`. */
  abandon(): void {
    if (this.ended) return;
    this.cut();
  }

  /** Waits `ms`; throws `ExchangeEnded` as soon as the connection closes. */
  async sleep(ms: number | undefined): Promise<void> {
    this.assertOpen();
    if (ms === undefined || ms <= 0) return;
    await new Promise<void>((resolve) => {
      const onEnd = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.endListeners.delete(onEnd);
        resolve();
      }, ms);
      this.endListeners.add(onEnd);
    });
    this.assertOpen();
  }

  /** Never returns normally: waits until the connection closes, then throws `ExchangeEnded`. */
  async hang(): Promise<never> {
    if (!this.ended) await new Promise<void>((resolve) => this.endListeners.add(resolve));
    throw new ExchangeEnded();
  }

  private async writePieces(bytes: Buffer, cuts: readonly number[], pauseMs: number): Promise<void> {
    const bounds = pieceBounds(bytes.length, cuts, this.chunkBytes);
    for (let i = 0; i < bounds.length; i++) {
      this.assertOpen();
      const [start, end] = bounds[i]!;
      this.res.write(bytes.subarray(start, end));
      if (i < bounds.length - 1) await this.sleep(pauseMs);
    }
  }

  private assertOpen(): void {
    if (this.ended || this.serverEnded || this.res.destroyed) throw new ExchangeEnded();
  }
}

/** Byte offsets that fall inside a multi-byte UTF-8 character (right after each lead byte). */
export function insideCharacterOffsets(bytes: Uint8Array): number[] {
  const offsets: number[] = [];
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0xc0) offsets.push(i + 1);
  return offsets;
}

/** [start, end) ranges covering `length` bytes, cut at `cuts` and at most `chunkBytes` long. */
function pieceBounds(length: number, cuts: readonly number[], chunkBytes: number | undefined): Array<[number, number]> {
  const points = new Set<number>(cuts.filter((c) => c > 0 && c < length));
  if (chunkBytes !== undefined) for (let c = chunkBytes; c < length; c += chunkBytes) points.add(c);
  const sorted = [...points].sort((a, b) => a - b);
  const bounds: Array<[number, number]> = [];
  let start = 0;
  for (const point of [...sorted, length]) {
    if (point > start) bounds.push([start, point]);
    start = point;
  }
  return bounds;
}
