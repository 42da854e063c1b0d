/**
 * Where a chat writes: the answer text to stdout, notices to stderr. Remembers whether stdout is at the
 * start of a line, so that member names and the final newline go on lines of their own.
 */
export class ChatOutput {
  private atLineStart = true;
  private wrote = false;

  constructor(
    private readonly writeOut: (text: string) => void,
    private readonly writeErr: (text: string) => void,
  ) {}

  /** Answer text, exactly as received. */
  text(text: string): void {
    if (!text) return;
    this.writeOut(text);
    this.wrote = true;
    this.atLineStart = text.endsWith('\n');
  }

  /** Ends the current stdout line, if one is open. */
  endLine(): void {
    if (!this.atLineStart) this.text('\n');
  }

  /** Whether anything was written to stdout since the last `resetWritten`. */
  get written(): boolean {
    return this.wrote;
  }

  resetWritten(): void {
    this.wrote = false;
  }

  /** One line on stderr. */
  notice(line: string): void {
    this.writeErr(line.endsWith('\n') ? line : line + '\n');
  }
}
