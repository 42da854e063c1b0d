import { createInterface } from 'node:readline/promises';
import type { ReadStream } from 'node:tty';
import { CliError } from './errors.js';

/** Everything a command touches outside itself, so the program can also run in-process. */
export interface CliIO {
  stdout(text: string): void;
  stderr(text: string): void;
  stdin: NodeJS.ReadableStream;
  env: Record<string, string | undefined>;
  /** True when stdin is a terminal, i.e. the user can be prompted. */
  interactive: boolean;
  /** Where prompts are written (the terminal; stderr, so that stdout stays clean). */
  promptOutput: NodeJS.WritableStream;
  /** Calls `handler` on every Ctrl-C (SIGINT) until the returned function is called; the default is to exit. */
  onInterrupt?(handler: () => void): () => void;
}

/** The IO of the running process. */
export function processIO(): CliIO {
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    stdin: process.stdin,
    env: process.env,
    interactive: Boolean(process.stdin.isTTY),
    promptOutput: process.stderr,
    onInterrupt(handler) {
      process.on('SIGINT', handler);
      return () => void process.off('SIGINT', handler);
    },
  };
}

/** Asks for one line of input on the terminal. */
export async function promptLine(io: CliIO, question: string): Promise<string> {
  const rl = createInterface({ input: io.stdin, output: io.promptOutput, terminal: true });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/** Asks for a secret on the terminal without echoing it (raw mode; backspace works, Ctrl-C aborts). */
export async function promptSecret(io: CliIO, question: string): Promise<string> {
  const stdin = io.stdin as ReadStream;
  if (typeof stdin.setRawMode !== 'function') return promptLine(io, question);
  // Echo goes off before the prompt shows, so nothing typed after the prompt can be echoed.
  stdin.setRawMode(true);
  io.promptOutput.write(question);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise<string>((resolve, reject) => {
    let value = '';
    const finish = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      io.promptOutput.write('\n');
    };
    const onData = (chunk: string | Buffer) => {
      for (const ch of String(chunk)) {
        if (ch === '\r' || ch === '\n') {
          finish();
          resolve(value);
          return;
        }
        if (ch === '\u0003' || (ch === '\u0004' && value === '')) {
          finish();
          reject(new CliError('error: interrupted', 130));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = Array.from(value).slice(0, -1).join('');
        else if (ch >= ' ') value += ch;
      }
    };
    stdin.on('data', onData);
  });
}
