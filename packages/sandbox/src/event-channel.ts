/** A broadcast channel: every `subscribe()` gets each event pushed after it subscribed. */
export class EventChannel<T> {
  private readonly subscribers = new Set<{ queue: T[]; wake?: () => void }>();
  private closed = false;

  push(event: T): void {
    for (const s of this.subscribers) { s.queue.push(event); s.wake?.(); }
  }

  close(): void {
    this.closed = true;
    for (const s of this.subscribers) s.wake?.();
  }

  async *subscribe(): AsyncGenerator<T> {
    const sub: { queue: T[]; wake?: () => void } = { queue: [] };
    this.subscribers.add(sub);
    try {
      for (;;) {
        const next = sub.queue.shift();
        if (next !== undefined) { yield next; continue; }
        if (this.closed) return;
        await new Promise<void>((resolve) => { sub.wake = resolve; });
        sub.wake = undefined;
      }
    } finally {
      this.subscribers.delete(sub);
    }
  }
}
