/**
 * The event bus (DESIGN.md §4): publish/subscribe on named channels. Workers publish a turn's events
 * on its task's channel and every server instance forwards them to its own sockets
 * (chat-protocol.md §8.1, §14); cancel messages reach the worker holding a run the same way (§11).
 */

/** A bus message: a JSON-serialisable object. Subscribers receive a JSON round-trip copy of it. */
export type BusMessage = Record<string, unknown>;

/** Called once per message and subscription, in publish order per channel. */
export type BusHandler = (message: BusMessage, channel: string) => void | Promise<void>;

/** An active subscription; delivery stops once `unsubscribe` resolves. */
export interface Subscription {
  /** Stops delivery to this subscription; idempotent. */
  unsubscribe(): Promise<void>;
}

/**
 * What every bus provides, in process or on Redis:
 * - messages one publisher sends on one channel reach each subscription in the order of the
 *   `publish` calls (even when the caller does not await them), each exactly once while subscribed;
 * - a subscription receives every message published after its `subscribe` resolved, and none after
 *   its `unsubscribe` resolved; no message published before `subscribe` was called;
 * - a handler gets its own copy (JSON semantics: `undefined` fields vanish, dates become strings);
 * - a throwing or rejecting handler affects neither other handlers nor later messages.
 */
export interface EventBus {
  /** Sends `message` to every current subscription of `channel`; resolves once the bus accepted it. */
  publish(channel: string, message: BusMessage): Promise<void>;
  /** Receives every later message of one channel. */
  subscribe(channel: string, handler: BusHandler): Promise<Subscription>;
  /**
   * Receives every later message of each channel matching a glob `pattern`: `*` matches any run of
   * characters, `?` one character; `[`, `]` and `\` are refused (Redis would give them meanings).
   */
  subscribePattern(pattern: string, handler: BusHandler): Promise<Subscription>;
  /** Drops every subscription and releases connections. */
  close(): Promise<void>;
}

/** The channel names the server uses, in one place so that publishers and subscribers agree. */
export const BusChannels = {
  /** Runtime events of one task's turns, published by the worker running them. */
  taskEvents: (taskId: string): string => `task:${taskId}`,
  /** Every task's events: what each chat gateway instance forwards to its local sockets. */
  allTaskEvents: 'task:*',
  /** Cancel requests `{taskId, runSeq}`, heard by every worker (chat-protocol.md §11). */
  runCancel: 'run-cancel',
} as const;

/** Options of the in-process bus. */
export interface InProcessEventBusOptions {
  /** Where handler failures go; they never reach the publisher. Default: `console.error`. */
  onHandlerError?: (error: unknown, channel: string) => void;
}

interface Registration {
  handler: BusHandler;
  active: boolean;
  /** Set for pattern subscriptions. */
  matcher?: RegExp;
}

interface Delivery {
  channel: string;
  json: string;
  recipients: Registration[];
}

/**
 * The embedded bus: delivery on a microtask after `publish`, in one FIFO for all channels, so that
 * ordering matches a single Redis connection and no handler runs inside the publisher's call.
 */
export class InProcessEventBus implements EventBus {
  private readonly channels = new Map<string, Set<Registration>>();
  private readonly patterns = new Set<Registration>();
  private readonly pending: Delivery[] = [];
  private draining = false;
  private closed = false;
  private readonly onHandlerError: (error: unknown, channel: string) => void;

  constructor(options: InProcessEventBusOptions = {}) {
    this.onHandlerError = options.onHandlerError ?? ((error, channel) => console.error(`event bus handler on ${channel} failed:`, error));
  }

  async publish(channel: string, message: BusMessage): Promise<void> {
    this.assertOpen();
    assertChannel(channel);
    // Serialise now: a bad payload fails the publisher (as on Redis), and later mutation by the
    // publisher cannot change what subscribers see.
    const json = JSON.stringify(message);
    if (json === undefined || !json.startsWith('{')) throw new TypeError('a bus message must be a JSON object');
    // Recipients are fixed at publish time: a subscription made afterwards does not see this message.
    const recipients = [...(this.channels.get(channel) ?? [])];
    for (const registration of this.patterns) if (registration.matcher?.test(channel)) recipients.push(registration);
    if (recipients.length === 0) return;
    this.pending.push({ channel, json, recipients });
    if (!this.draining) {
      this.draining = true;
      queueMicrotask(() => this.drain());
    }
  }

  async subscribe(channel: string, handler: BusHandler): Promise<Subscription> {
    this.assertOpen();
    assertChannel(channel);
    const registration: Registration = { handler, active: true };
    let set = this.channels.get(channel);
    if (!set) {
      set = new Set();
      this.channels.set(channel, set);
    }
    set.add(registration);
    return {
      unsubscribe: async () => {
        registration.active = false;
        const current = this.channels.get(channel);
        current?.delete(registration);
        if (current?.size === 0) this.channels.delete(channel);
      },
    };
  }

  async subscribePattern(pattern: string, handler: BusHandler): Promise<Subscription> {
    this.assertOpen();
    const registration: Registration = { handler, active: true, matcher: globToRegExp(pattern) };
    this.patterns.add(registration);
    return {
      unsubscribe: async () => {
        registration.active = false;
        this.patterns.delete(registration);
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const set of this.channels.values()) for (const registration of set) registration.active = false;
    for (const registration of this.patterns) registration.active = false;
    this.channels.clear();
    this.patterns.clear();
    this.pending.length = 0;
  }

  private drain(): void {
    // Messages published by handlers join the end of the queue, so per-channel order still holds.
    for (let delivery = this.pending.shift(); delivery; delivery = this.pending.shift()) {
      for (const registration of delivery.recipients) {
        if (!registration.active) continue;
        this.deliver(registration, delivery);
      }
    }
    this.draining = false;
  }

  private deliver(registration: Registration, delivery: Delivery): void {
    try {
      // Each subscriber parses its own copy, as each Redis subscriber would.
      const result = registration.handler(JSON.parse(delivery.json) as BusMessage, delivery.channel);
      if (result instanceof Promise) result.catch((error: unknown) => this.onHandlerError(error, delivery.channel));
    } catch (error) {
      this.onHandlerError(error, delivery.channel);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the event bus is closed');
  }
}

function assertChannel(channel: string): void {
  if (typeof channel !== 'string' || channel.length === 0) throw new TypeError('a bus channel must be a non-empty string');
}

/** The portable subset of Redis glob patterns as a regular expression. */
export function globToRegExp(pattern: string): RegExp {
  if (typeof pattern !== 'string' || pattern.length === 0) throw new TypeError('a bus pattern must be a non-empty string');
  if (/[[\]\\]/.test(pattern)) throw new TypeError(`bus pattern ${JSON.stringify(pattern)}: only * and ? are portable wildcards`);
  const body = pattern.replace(/[.*+?^${}()|]/g, (c) => (c === '*' ? '[\\s\\S]*' : c === '?' ? '[\\s\\S]' : `\\${c}`));
  return new RegExp(`^${body}$`);
}
