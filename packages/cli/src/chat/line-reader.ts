import { createInterface, type Interface } from 'node:readline';
import type { ReadStream } from 'node:tty';
import type { CliIO } from '../io.js';

/**
 * The lines typed in an interactive chat. On a terminal it shows the `you> ` prompt (on stderr) and
 * hands Ctrl-C to `onInterrupt`; between prompts the terminal is back in its normal mode, so Ctrl-C
 * arrives as SIGINT while an answer streams. Lines that come in while an answer streams (piped input)
 * wait their turn.
 */
export class LineReader {
  private readonly rl: Interface;
  private readonly lines: string[] = [];
  private ended = false;
  private waiting?: (line: string | undefined) => void;

  constructor(
    private readonly io: CliIO,
    onInterrupt: () => void,
  ) {
    this.rl = createInterface({
      input: io.stdin,
      output: io.interactive ? io.promptOutput : undefined,
      terminal: io.interactive,
      prompt: 'you> ',
    });
    this.rl.on('line', (line) => this.push(line));
    this.rl.on('close', () => {
      this.ended = true;
      this.push(undefined);
    });
    this.rl.on('SIGINT', onInterrupt);
  }

  /** The next line; undefined at the end of input (Ctrl-D). */
  next(): Promise<string | undefined> {
    if (this.lines.length) return Promise.resolve(this.lines.shift());
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  prompt(): void {
    if (this.io.interactive && !this.ended) this.rl.prompt();
  }

  /** While an answer streams: no line editing, and Ctrl-C is a signal again. */
  pauseForAnswer(): void {
    if (!this.io.interactive || this.ended) return;
    this.rl.pause();
    const stdin = this.io.stdin as ReadStream;
    if (typeof stdin.setRawMode === 'function') stdin.setRawMode(false);
  }

  resumeAfterAnswer(): void {
    if (!this.io.interactive || this.ended) return;
    const stdin = this.io.stdin as ReadStream;
    if (typeof stdin.setRawMode === 'function') stdin.setRawMode(true);
    this.rl.resume();
  }

  close(): void {
    this.ended = true;
    this.rl.close();
  }

  private push(line: string | undefined): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w(line);
    } else if (line !== undefined) this.lines.push(line);
  }
}
