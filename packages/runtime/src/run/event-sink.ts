import type { RuntimeEvent } from '@wegent/core';
import type { RunHost } from './types.js';

type Envelope = 'taskId' | 'runId' | 'runSeq' | 'at';
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A run-level event without its envelope. */
export type RunEventInput = DistributiveOmit<Extract<RuntimeEvent, { type: `run.${string}` }>, Envelope>;
/** A turn event without its envelope and turn id. */
export type TurnEventInput = DistributiveOmit<Exclude<RuntimeEvent, { type: `run.${string}` }>, Envelope | 'turnId'>;

/**
 * Adds the envelope `{taskId, runId, runSeq, at}` to events and hands them to the host one at a time, in
 * order, even when tools running concurrently report at once.
 */
export class EventSink {
  #chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly host: RunHost,
    private readonly ids: { taskId: string; runId: string; runSeq: number },
  ) {}

  #send(event: RuntimeEvent): Promise<void> {
    const next = this.#chain.then(() => this.host.emit(event));
    this.#chain = next.catch(() => {});
    return next;
  }

  #envelope() {
    return { taskId: this.ids.taskId, runId: this.ids.runId, runSeq: this.ids.runSeq, at: this.host.now().toISOString() };
  }

  /** Emits a run-level event. */
  run(event: RunEventInput): Promise<void> {
    return this.#send({ ...this.#envelope(), ...event } as RuntimeEvent);
  }

  /** A reporter for one turn. */
  turn(turnId: string): TurnReporter {
    return new TurnReporter(turnId, (event) => this.#send({ ...this.#envelope(), turnId, ...event } as RuntimeEvent));
  }
}

const TERMINAL = new Set(['turn.done', 'turn.failed', 'turn.cancelled']);

/** Emits one turn's events: exactly one terminal event, then only `member.finished`; anything later is dropped. */
export class TurnReporter {
  #ended = false;
  #finished = false;

  constructor(
    readonly turnId: string,
    private readonly send: (event: TurnEventInput) => Promise<void>,
  ) {}

  get ended(): boolean {
    return this.#ended;
  }

  emit(event: TurnEventInput): Promise<void> {
    if (event.type === 'member.finished') {
      if (!this.#ended || this.#finished) return Promise.resolve();
      this.#finished = true;
      return this.send(event);
    }
    if (this.#ended) return Promise.resolve();
    if (TERMINAL.has(event.type)) this.#ended = true;
    return this.send(event);
  }
}
