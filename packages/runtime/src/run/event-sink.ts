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
  /** The host's last `emit` still in progress, if it returned a promise; later events wait for it. */
  #pending: Promise<void> | undefined;

  constructor(
    private readonly host: RunHost,
    private readonly ids: { taskId: string; runId: string; runSeq: number },
  ) {}

  #atMs = NaN;
  #atText = '';

  /** The host's clock as ISO text, formatted once per millisecond (streams emit many events in one). */
  #at(): string {
    const now = this.host.now();
    const ms = now.getTime();
    if (ms !== this.#atMs) {
      this.#atMs = ms;
      this.#atText = now.toISOString();
    }
    return this.#atText;
  }

  #send(event: RuntimeEvent): Promise<void> {
    if (this.#pending) return this.#after(this.#pending, event);
    // Nothing in flight: hand the event over now. A host that takes it synchronously (the run thread's)
    // costs no promise per streamed chunk.
    let result: void | Promise<void>;
    try {
      result = this.host.emit(event);
    } catch (err) {
      return Promise.reject(err);
    }
    return result instanceof Promise ? this.#track(result) : RESOLVED;
  }

  #after(previous: Promise<void>, event: RuntimeEvent): Promise<void> {
    return this.#track(previous.catch(() => {}).then(() => this.host.emit(event)));
  }

  #track(call: Promise<void>): Promise<void> {
    const settled: Promise<void> = call.then(
      () => {
        if (this.#pending === settled) this.#pending = undefined;
      },
      () => {
        if (this.#pending === settled) this.#pending = undefined;
      },
    );
    this.#pending = settled;
    return call;
  }

  #envelope() {
    return { taskId: this.ids.taskId, runId: this.ids.runId, runSeq: this.ids.runSeq, at: this.#at() };
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
const RESOLVED: Promise<void> = Promise.resolve();

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
