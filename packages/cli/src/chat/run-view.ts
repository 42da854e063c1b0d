import type { Ack } from './connection.js';
import { describeAckError } from './connection.js';
import type { ChatOutput } from './output.js';

/** Statuses that end a run for a client: terminal ones, and a pipeline waiting for confirmation. */
const RUN_END = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'PENDING_CONFIRMATION']);

type Payload = Record<string, unknown>;
type TerminalKind = 'done' | 'error' | 'cancelled';
type TurnEvent = { type: 'chunk'; offset: number; text: string } | { type: 'terminal'; kind: TerminalKind; payload: Payload };

interface Turn {
  id: string;
  memberName?: string;
  memberIndex?: number;
  /** `route` and `plan` turns are not chat messages: nothing of them is printed but their errors. */
  visible: boolean;
  /** What the client has of the turn's text (§7.2); its length is the resume offset. */
  text: string;
  /** How much of `text` is on stdout. */
  printed: number;
  headerDone: boolean;
  ended: boolean;
  terminal?: { kind: TerminalKind; payload: Payload };
  /** A `chat:resume` is outstanding: events of this turn wait in `held` (§7.3). */
  resuming: boolean;
  held: TurnEvent[];
  /** A notice to print (on stderr) before the turn's next text, and whether stdout starts a new line for it. */
  pendingNotice?: { line: string; newLine: boolean };
  endTries: number;
}

export interface RunOutcome {
  status: 'COMPLETED' | 'FAILED' | 'CANCELLED' | 'PENDING_CONFIRMATION';
  statusReason?: string;
  errorMessage?: string;
  /** An `Error: …` line was printed for a failed turn. */
  errorReported: boolean;
}

export interface RunViewOptions {
  taskId: string;
  runSeq: number;
  /** Print each member's name on its own line before its answer. */
  multiMember: boolean;
  output: ChatOutput;
  call(event: string, payload: unknown): Promise<Ack>;
  /** Whether the user asked to cancel this run (Ctrl-C): its cancel is reported as `^C cancelled`. */
  cancelRequested(): boolean;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) ? v : undefined);

function terminalKind(status: unknown): TerminalKind | undefined {
  return status === 'COMPLETED' ? 'done' : status === 'FAILED' ? 'error' : status === 'CANCELLED' ? 'cancelled' : undefined;
}

/**
 * The client side of one run: keeps every turn's text by the offset merge rule (chat-protocol.md §7.3),
 * resumes a turn on a gap or after a reconnect (§5.3, §8.4), adopts each turn's final text (§7.4), and
 * prints the visible turns one after the other — a turn that streams while an earlier one is still
 * being printed (coordinate members work in parallel) is printed when its turn comes, so answers never
 * interleave. Resolves `done` once the run has ended and everything of it is printed.
 */
export class RunView {
  readonly done: Promise<RunOutcome>;
  private resolveDone!: (o: RunOutcome) => void;
  private finished = false;
  private readonly turns = new Map<string, Turn>();
  private readonly order: string[] = [];
  private cursor = 0;
  private multi: boolean;
  private firstMemberIndex?: number;
  private runStatus?: Payload;
  private errorReported = false;
  private cancelReported = false;
  private recovering = 0;
  private readonly warned = new Set<string>();

  constructor(private readonly opts: RunViewOptions) {
    this.multi = opts.multiMember;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get isFinished(): boolean {
    return this.finished;
  }

  /** Feeds one server event; events of other tasks and runs are ignored. */
  handle(name: string, p: Payload): void {
    if (this.finished || !p || p.taskId !== this.opts.taskId) return;
    if (name === 'task:status') {
      if (p.runSeq === this.opts.runSeq && RUN_END.has(p.status as string)) {
        this.runStatus = p;
        this.checkEnd();
      }
      return;
    }
    if (p.runSeq !== undefined && p.runSeq !== this.opts.runSeq) return;
    const id = str(p.subtaskId);
    if (!id) return;
    switch (name) {
      case 'chat:start': {
        const t = this.turn(id);
        t.memberName = str(p.memberName) ?? t.memberName;
        t.memberIndex = int(p.memberIndex) ?? t.memberIndex;
        t.visible = p.visible !== false;
        this.noteMember(t.memberIndex);
        this.flush();
        return;
      }
      case 'chat:chunk':
        if (p.kind !== 'text' || typeof p.offset !== 'number' || typeof p.text !== 'string') return;
        this.dispatch(this.turn(id), { type: 'chunk', offset: p.offset, text: p.text });
        return;
      case 'chat:block_created': {
        // Warnings (an MCP server skipped, a mode not available, ...) are worth a line on stderr.
        const block = (p.block ?? {}) as Payload;
        const key = `${id}/${String(block.id)}`;
        if (block.type === 'warning' && typeof block.message === 'string' && !this.warned.has(key)) {
          this.warned.add(key);
          this.opts.output.notice(`warning: ${block.message}`);
        }
        return;
      }
      case 'chat:done':
      case 'chat:error':
      case 'chat:cancelled': {
        const kind = name === 'chat:done' ? 'done' : name === 'chat:error' ? 'error' : 'cancelled';
        this.dispatch(this.turn(id), { type: 'terminal', kind, payload: p });
        return;
      }
    }
  }

  /**
   * After a reconnect (§8.4): rejoin the task, learn the run's turns from the stored messages, and
   * resume each unfinished one from the length already held — so that nothing is printed twice or lost.
   */
  async recover(): Promise<void> {
    if (this.finished) return;
    const attempt = ++this.recovering;
    try {
      const join = await this.opts.call('task:join', { taskId: this.opts.taskId });
      if (attempt !== this.recovering || this.finished) return;
      if (!join.ok) {
        if (join.error.code === 'NOT_FOUND') this.endNow({ status: 'FAILED', statusReason: 'NOT_FOUND', errorMessage: 'the task was deleted' });
        return;
      }
      const history = await this.opts.call('history:sync', { taskId: this.opts.taskId, limit: 200 });
      if (attempt !== this.recovering || this.finished) return;
      if (history.ok && Array.isArray(history.messages)) {
        for (const m of history.messages as Payload[]) {
          if (m.role !== 'assistant' || m.runSeq !== this.opts.runSeq || typeof m.id !== 'string') continue;
          const t = this.turn(m.id);
          const sender = (m.sender ?? {}) as Payload;
          t.memberName ??= str(sender.memberName);
          t.memberIndex ??= int(sender.memberIndex);
          if (m.visible === false) t.visible = false;
          this.noteMember(t.memberIndex);
        }
      }
      const runtime = (join.runtime ?? {}) as Payload;
      for (const s of Array.isArray(runtime.activeStreams) && runtime.runSeq === this.opts.runSeq ? (runtime.activeStreams as Payload[]) : []) {
        if (typeof s.subtaskId === 'string') this.turn(s.subtaskId);
      }
      for (const t of this.turns.values()) if (!t.ended) void this.resume(t);
      if (!this.runStatus && (runtime.runSeq !== this.opts.runSeq || RUN_END.has(runtime.status as string))) {
        // The run ended while the connection was down; its turns' terminals come with their resumes
        // (when a newer run has started since, the outcome is read from those terminals at the end).
        this.runStatus = runtime.runSeq === this.opts.runSeq ? runtime : { fromTurns: true };
      }
      this.flush();
      this.checkEnd();
    } catch {
      /* the connection dropped again: the next reconnect recovers */
    }
  }

  private statusFromTurns(): string {
    const kinds = [...this.turns.values()].map((t) => t.terminal?.kind);
    return kinds.includes('cancelled') ? 'CANCELLED' : kinds.includes('error') && !kinds.includes('done') ? 'FAILED' : 'COMPLETED';
  }

  private turn(id: string): Turn {
    let t = this.turns.get(id);
    if (!t) {
      t = { id, visible: true, text: '', printed: 0, headerDone: false, ended: false, resuming: false, held: [], endTries: 0 };
      this.turns.set(id, t);
      this.order.push(id);
    }
    return t;
  }

  /** A second member showing up makes the run a multi-member one even when the team was not known. */
  private noteMember(index: number | undefined): void {
    if (index === undefined) return;
    if (this.firstMemberIndex === undefined) this.firstMemberIndex = index;
    else if (index !== this.firstMemberIndex) this.multi = true;
  }

  /** `mayResume` is false for chunks held during a resume: one still beyond the text after it is stale. */
  private dispatch(t: Turn, ev: TurnEvent, mayResume = true): void {
    if (t.resuming) {
      t.held.push(ev);
      return;
    }
    if (ev.type === 'chunk') this.applyChunk(t, ev.offset, ev.text, mayResume);
    else this.applyTerminal(t, ev.kind, ev.payload);
  }

  /** The merge rule of §7.3. */
  private applyChunk(t: Turn, offset: number, text: string, mayResume: boolean): void {
    if (t.ended) return;
    const have = t.text.length;
    if (offset > have) {
      // A gap: hold this chunk and ask for what is missing.
      if (!mayResume) return;
      t.held.push({ type: 'chunk', offset, text });
      void this.resume(t);
      return;
    }
    if (offset + text.length <= have) return;
    t.text += text.slice(have - offset);
    this.flush();
  }

  /** `chat:resume` for one turn (one outstanding per turn); its events wait until the ack is applied. */
  private async resume(t: Turn): Promise<void> {
    if (t.resuming || t.ended || this.finished) return;
    t.resuming = true;
    try {
      const ack = await this.opts.call('chat:resume', { taskId: this.opts.taskId, subtaskId: t.id, offset: t.text.length });
      if (ack.ok) {
        const text = typeof ack.text === 'string' ? ack.text : '';
        if (ack.reset === true) this.replaceText(t, text, 'the server lost part of this answer; it continues from what the server kept', true);
        else if (typeof ack.offset === 'number' && ack.offset <= t.text.length && ack.offset + text.length > t.text.length) t.text += text.slice(t.text.length - ack.offset);
        const terminal = ack.terminal as Payload | undefined;
        const kind = terminal ? terminalKind(terminal.status) : undefined;
        if (terminal && kind) {
          t.memberName ??= str(terminal.memberName);
          this.applyTerminal(t, kind, terminal);
        }
      }
    } catch {
      /* timed out or disconnected: a later gap, reconnect or end check asks again */
    } finally {
      t.resuming = false;
      const held = t.held;
      t.held = [];
      for (const ev of held) this.dispatch(t, ev, false);
      this.flush();
      this.checkEnd();
    }
  }

  /**
   * The server's text replaces the client's (a reset, §5.3, or a final text that differs, §7.4). What is
   * on stdout cannot be taken back: when the new text still starts with it, printing just goes on;
   * when it is shorter, nothing is printed again; otherwise it is printed once more on a new line.
   */
  private replaceText(t: Turn, text: string, why: string, alwaysNotice = false): void {
    const shown = t.text.slice(0, t.printed);
    t.text = text;
    if (text.startsWith(shown)) {
      if (alwaysNotice) t.pendingNotice = { line: `(${why})`, newLine: false };
      return;
    }
    if (shown.startsWith(text)) {
      t.printed = text.length;
      t.pendingNotice = { line: `(${why}; the server kept ${shown.length - text.length} fewer characters than shown)`, newLine: false };
      return;
    }
    t.printed = 0;
    t.pendingNotice = { line: `(${why}; the whole text follows)`, newLine: true };
  }

  private applyTerminal(t: Turn, kind: TerminalKind, p: Payload): void {
    if (t.ended) return;
    t.memberName ??= str(p.memberName);
    t.memberIndex ??= int(p.memberIndex);
    const final = kind === 'done' ? str((p.result as Payload | undefined)?.value) : str(p.partialText);
    // §7.4: the terminal event carries the turn's full final text; it replaces the buffer.
    if (final !== undefined && final !== t.text) {
      if (final.startsWith(t.text)) t.text = final;
      else this.replaceText(t, final, 'the final answer differs from the streamed text');
    }
    t.ended = true;
    t.terminal = { kind, payload: p };
    this.flush();
    this.checkEnd();
  }

  /** Prints what can be printed: the current turn's new text, then the next turns once it has ended. */
  private flush(): void {
    const out = this.opts.output;
    while (this.cursor < this.order.length) {
      const t = this.turns.get(this.order[this.cursor]!)!;
      if (t.visible) {
        if (this.multi && !t.headerDone) {
          t.headerDone = true;
          out.endLine();
          if (out.written) out.text('\n');
          out.text(`${t.memberName ?? 'assistant'}\n`);
        }
        if (t.pendingNotice) {
          if (t.pendingNotice.newLine) out.endLine();
          out.notice(t.pendingNotice.line);
          t.pendingNotice = undefined;
        }
        if (t.printed < t.text.length) {
          out.text(t.text.slice(t.printed));
          t.printed = t.text.length;
        }
      }
      if (!t.ended || t.resuming) return;
      this.finishTurn(t);
      this.cursor++;
    }
  }

  /** After a turn's text: its newline, then what went wrong with it (on stderr). */
  private finishTurn(t: Turn): void {
    const out = this.opts.output;
    if (t.visible && t.printed > 0) out.endLine();
    const p = t.terminal?.payload ?? {};
    if (t.terminal?.kind === 'error') {
      out.notice(describeAckError({ code: str(p.code) ?? 'FAILED', message: str(p.message) || 'the answer failed' }));
      this.errorReported = true;
    } else if (t.terminal?.kind === 'cancelled' && !this.cancelReported) {
      this.cancelReported = true;
      out.notice(this.opts.cancelRequested() ? '^C cancelled' : `(cancelled: ${str(p.reason) ?? 'CANCELLED'})`);
    }
  }

  /** Ends the view once the run has ended and every turn of it has its final text. */
  private checkEnd(): void {
    if (this.finished || !this.runStatus) return;
    let waiting = false;
    for (const t of this.turns.values()) {
      if (t.resuming) waiting = true;
      else if (!t.ended) {
        // The run ended but this turn's terminal event was missed: an ended turn always resumes with it.
        if (t.endTries++ < 3) {
          waiting = true;
          void this.resume(t);
        } else {
          t.ended = true;
        }
      }
    }
    if (waiting) return;
    this.flush();
    const s = this.runStatus;
    this.endNow({
      status: (s.fromTurns ? this.statusFromTurns() : s.status) as RunOutcome['status'],
      statusReason: str(s.statusReason),
      errorMessage: str(s.errorMessage),
    });
  }

  private endNow(o: Omit<RunOutcome, 'errorReported'>): void {
    if (this.finished) return;
    this.finished = true;
    this.resolveDone({ ...o, errorReported: this.errorReported });
  }
}
