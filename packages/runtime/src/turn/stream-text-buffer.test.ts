import { describe, expect, it } from 'vitest';
import { StreamTextBuffer } from './stream-text-buffer.js';

describe('StreamTextBuffer', () => {
  it('holds back a trailing high surrogate until the next delta', () => {
    const buffer = new StreamTextBuffer();
    expect(buffer.push('ab\ud83d')).toBe('ab');
    expect(buffer.push('\ude00c')).toBe('\ud83d\ude00c');
    expect(buffer.text).toBe('ab😀c');
  });

  it('emits nothing for a delta that is only a high surrogate, then the whole pair', () => {
    const buffer = new StreamTextBuffer();
    expect(buffer.push('\ud83d')).toBe('');
    expect(buffer.push('\ude00')).toBe('😀');
  });

  it('releases a held-back code unit at the end', () => {
    const buffer = new StreamTextBuffer();
    buffer.push('x\ud83d');
    expect(buffer.flush()).toBe('\ud83d');
    expect(buffer.flush()).toBe('');
  });

  it('keeps offsets exact: the emitted pieces always concatenate to the text', () => {
    const text = 'a😀b🎉c日本\ud83d';
    for (let split = 0; split < 50; split++) {
      const buffer = new StreamTextBuffer();
      const pieces: string[] = [];
      let rest = text;
      let size = 1 + (split % 4);
      while (rest !== '') {
        pieces.push(buffer.push(rest.slice(0, size)));
        rest = rest.slice(size);
        size = 1 + ((size + split) % 3);
      }
      pieces.push(buffer.flush());
      expect(pieces.join('')).toBe(text);
      for (const piece of pieces.slice(0, -1)) {
        if (piece !== '') expect(piece.charCodeAt(piece.length - 1) >= 0xd800 && piece.charCodeAt(piece.length - 1) <= 0xdbff).toBe(false);
      }
    }
  });
});
