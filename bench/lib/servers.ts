import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'server-child.ts');

/** CPU time and memory of a server process at one instant. */
export interface Usage {
  cpuMicros: number;
  rss: number;
  /** When the child took the reading (ms on the machine's clock, `performance.timeOrigin + performance.now()`). */
  at: number;
}

/** A server under test, running in a child process (bench/lib/server-child.ts), driven over IPC. */
export class ChildServer {
  private constructor(
    private readonly child: ChildProcess,
    private readonly ask: (msg: Record<string, unknown>) => Promise<Record<string, unknown>>,
    readonly url: string,
    readonly pid: number,
  ) {}

  private static seq = 0;

  /**
   * Forks a child with `node --import tsx` and sends it `start`. `processEnv` is added to the child's
   * process environment (for settings the server reads from `process.env` itself rather than from the
   * `env` given to startServer, such as WEGENT_SOCKET_MAX_PER_USER).
   */
  static async start(start: Record<string, unknown>, options: { processEnv?: Record<string, string> } = {}): Promise<ChildServer> {
    const env = options.processEnv ? { ...process.env, ...options.processEnv } : process.env;
    const child = fork(childScript, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env });
    const pending = new Map<number, (m: Record<string, unknown>) => void>();
    child.on('message', (m) => {
      const msg = m as { id: number } & Record<string, unknown>;
      pending.get(msg.id)?.(msg);
      pending.delete(msg.id);
    });
    const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`server child exited (code ${code}) before answering`))));
    exited.catch(() => undefined);
    const ask = (msg: Record<string, unknown>) => {
      const id = ++ChildServer.seq;
      const answer = new Promise<Record<string, unknown>>((resolve) => pending.set(id, resolve));
      child.send({ ...msg, id });
      return Promise.race([answer, exited]);
    };
    const answer = await ask({ cmd: 'start', ...start });
    if (!answer.ok) {
      child.kill();
      throw new Error(`server child failed to start:\n${String(answer.error)}`);
    }
    return new ChildServer(child, ask, String(answer.url), Number(answer.pid));
  }

  async usage(): Promise<Usage> {
    const a = await this.ask({ cmd: 'usage' });
    return { cpuMicros: Number(a.cpuMicros), rss: Number(a.rss), at: Number(a.at) };
  }

  /** Sends a command of the child's protocol (bench/lib/server-child.ts) and waits for its answer. */
  async command(msg: Record<string, unknown>): Promise<void> {
    const a = await this.ask(msg);
    if (!a.ok) throw new Error(`${String(msg.cmd)}: ${String(a.error)}`);
  }

  /** Starts recording a V8 CPU profile of the server process. */
  async profileStart(): Promise<void> {
    const a = await this.ask({ cmd: 'profile-start' });
    if (!a.ok) throw new Error(`profile-start: ${String(a.error)}`);
  }

  /** Stops the recording and writes the profile (a .cpuprofile file, for Chrome DevTools or profile-top.ts). */
  async profileStop(file: string): Promise<void> {
    const a = await this.ask({ cmd: 'profile-stop', file });
    if (!a.ok) throw new Error(`profile-stop: ${String(a.error)}`);
  }

  /** Closes the server and waits for the child to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exit = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    try {
      await Promise.race([this.ask({ cmd: 'stop' }), new Promise((r) => setTimeout(r, 10_000))]);
    } catch {
      // the child is gone already
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await exit;
    clearTimeout(timer);
  }
}
