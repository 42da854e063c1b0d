import { isHighSurrogate } from '../prompt/text-forms.js';

/**
 * The text of one kind (answer or reasoning) of a turn as it streams. Deltas handed out never end with a
 * high surrogate: that code unit is held back until the next delta or the end, so clients counting
 * UTF-16 offsets never see half a character (runtime.md §3.2, chat-protocol.md §7.1).
 */
export class StreamTextBuffer {
  // The whole text is only ever appended to (a cheap rope): reading a character of it would flatten it,
  // copying the answer so far on every delta. The surrogate check looks at the new piece only.
  #text = '';
  /** A high surrogate received last and not handed out yet ('' or one code unit). */
  #held = '';

  /** All text received so far, including a held-back code unit. */
  get text(): string {
    return this.#text;
  }

  /** Adds provider text; returns the part that may be emitted now ('' when nothing). */
  push(delta: string): string {
    if (delta === '') return '';
    this.#text += delta;
    let out = this.#held + delta;
    this.#held = '';
    if (isHighSurrogate(out.charCodeAt(out.length - 1))) {
      this.#held = out.slice(-1);
      out = out.slice(0, -1);
    }
    return out;
  }

  /** Everything not yet emitted (the held-back code unit at the end of the turn). */
  flush(): string {
    const out = this.#held;
    this.#held = '';
    return out;
  }
}
