import { randomUUID } from 'node:crypto';
import { CliError, EXIT } from '../errors.js';
import type { AckErrorBody, ChatConnection } from './connection.js';
import type { ChatOutput } from './output.js';
import { RunView, type RunOutcome } from './run-view.js';

/** The server events a chat follows (chat-protocol.md §6). */
const RUN_EVENTS = ['chat:start', 'chat:chunk', 'chat:block_created', 'chat:done', 'chat:error', 'chat:cancelled', 'task:status'] as const;

/** How often a `chat:send` whose ack did not come is repeated (with the same `clientMessageId`). */
const SEND_ATTEMPTS = 3;

export type SendResult = { kind: 'refused'; error: AckErrorBody } | { kind: 'run'; outcome: RunOutcome };

interface SendAck {
  taskId: string;
  runSeq: number;
  subtaskId: string;
  status: string;
  queue?: { position: number; reason: string };
}

/**
 * One chat with one task over a connection: sends messages (the first may create the task), follows
 * each run to its end through a RunView, re-sends an unanswered `chat:send` idempotently, recovers the
 * run after a reconnect, and cancels on request.
 */
export class ChatSession {
  taskId?: string;
  /** The task a message of this session went to (set by the first accepted send). */
  acceptedTaskId?: string;
  private view?: RunView;
  /** Events that arrived while the ack of a send was outstanding (a run may start before its ack, §5.1). */
  private early: Array<[string, Record<string, unknown>]> = [];
  private awaitingAck = false;
  private reconnectedDuringSend = false;
  private cancelRequested = false;

  constructor(
    private readonly conn: ChatConnection,
    private readonly output: ChatOutput,
    private readonly opts: { team: string; taskId?: string; multiMember: boolean },
  ) {
    this.taskId = opts.taskId;
    for (const name of RUN_EVENTS) {
      conn.on(name, (payload: Record<string, unknown>) => {
        if (this.view && !this.view.isFinished) this.view.handle(name, payload);
        else if (this.awaitingAck) this.early.push([name, payload]);
      });
    }
    conn.onReconnect(() => {
      if (this.awaitingAck) this.reconnectedDuringSend = true;
      if (this.view && !this.view.isFinished) {
        void this.view.recover();
        if (this.cancelRequested) void this.sendCancel();
      }
    });
  }

  /** Whether the user asked to cancel the last run (Ctrl-C). */
  get cancelledByUser(): boolean {
    return this.cancelRequested;
  }

  /** Whether a message is being sent or answered. */
  get busy(): boolean {
    return this.awaitingAck || (this.view !== undefined && !this.view.isFinished);
  }

  /**
   * Ctrl-C: the first one while busy asks the server to cancel the run ('cancelling'); a second one, or
   * one while idle, means the user wants out ('exit').
   */
  interrupt(): 'cancelling' | 'exit' {
    if (!this.busy || this.cancelRequested) return 'exit';
    this.cancelRequested = true;
    if (this.view) void this.sendCancel();
    return 'cancelling';
  }

  /** Sends one message and streams the answer until the run ends. */
  async send(message: string): Promise<SendResult> {
    this.cancelRequested = false;
    this.reconnectedDuringSend = false;
    this.early = [];
    this.output.resetWritten();
    const payload: Record<string, unknown> = { clientMessageId: randomUUID(), message, source: 'cli' };
    if (this.taskId) payload.taskId = this.taskId;
    else payload.team = this.opts.team;

    this.awaitingAck = true;
    let ack;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          // Repeating the same clientMessageId is safe: the server answers a repeat with the first ack (§8.5).
          ack = await this.conn.call<SendAck>('chat:send', payload);
          break;
        } catch (err) {
          if (err instanceof CliError) throw err;
          if (attempt >= SEND_ATTEMPTS) throw new CliError('Error: the server did not acknowledge the message (chat:send timed out)', EXIT.refused);
        }
      }
    } finally {
      this.awaitingAck = false;
    }
    if (!ack.ok) return { kind: 'refused', error: ack.error };

    this.taskId = ack.taskId;
    this.acceptedTaskId = ack.taskId;
    if (ack.queue) this.output.notice(`(queued: position ${ack.queue.position}, ${ack.queue.reason.replace('_', ' ')})`);
    const view = new RunView({
      taskId: ack.taskId,
      runSeq: ack.runSeq,
      multiMember: this.opts.multiMember,
      output: this.output,
      call: (event, p) => this.conn.call(event, p),
      cancelRequested: () => this.cancelRequested,
    });
    this.view = view;
    const early = this.early;
    this.early = [];
    for (const [name, p] of early) view.handle(name, p);
    if (this.reconnectedDuringSend) void view.recover();
    if (this.cancelRequested) void this.sendCancel();
    const outcome = await view.done;
    // The answer ends with a newline (an empty answer is an empty line).
    if (outcome.status === 'COMPLETED' && !this.output.written) this.output.text('\n');
    this.output.endLine();
    return { kind: 'run', outcome };
  }

  /** `chat:cancel` for the task's current run; the result shows as `chat:cancelled` and `task:status`. */
  private async sendCancel(): Promise<void> {
    if (!this.taskId) return;
    try {
      await this.conn.call('chat:cancel', { taskId: this.taskId });
    } catch {
      /* disconnected: sent again after the reconnect */
    }
  }
}
