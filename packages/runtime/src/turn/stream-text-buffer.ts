import { isHighSurrogate } from '../prompt/text-forms.js';

/**
 * The text of one kind (answer or reasoning) of a turn as it streams. Deltas handed out never end with a
 * high surrogate: that code unit is held back until the next delta or the end, so clients counting
 * UTF-16 offsets never see half a character (runtime.md §3.2, chat-protocol.md §7.1).
 */
export class StreamTextBuffer {
  #text = '';
  #emitted = 0;

  /** All text received so far, including a held-back code unit. */
  get text(): string {
    return this.#text;
  }

  /** Adds provider text; returns the part that may be emitted now ('' when nothing). */
  push(delta: string): string {
    if (delta === '') return '';
    this.#text += delta;
    let end = this.#text.length;
    if (isHighSurrogate(this.#text.charCodeAt(end - 1))) end -= 1;
    if (end <= this.#emitted) return '';
    const out = this.#text.slice(this.#emitted, end);
    this.#emitted = end;
    return out;
  }

  /** Everything not yet emitted (the held-back code unit at the end of the turn). */
  flush(): string {
    const out = this.#text.slice(this.#emitted);
    this.#emitted = this.#text.length;
    return out;
  }
}
