/** Text rules shared by prompt assembly (runtime.md §4.4). */

/** The one-line form of a text: each whitespace run becomes one space, ends trimmed. */
export function oneLine(text: string): string {
  return text.replace(/\s+/gu, ' ').trim();
}

/** The first `n` code points of `text` (never splits a surrogate pair). */
export function cutChars(text: string, n: number): string {
  if (n <= 0) return '';
  // Fast path: n UTF-16 units hold at most n code points.
  if (text.length <= n) return text;
  let units = 0;
  let count = 0;
  while (units < text.length && count < n) {
    const code = text.charCodeAt(units);
    const isPair = code >= 0xd800 && code <= 0xdbff && units + 1 < text.length && isLowSurrogate(text.charCodeAt(units + 1));
    units += isPair ? 2 : 1;
    count += 1;
  }
  return text.slice(0, units);
}

/** Number of code points in `text`. */
export function charCount(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length && isLowSurrogate(text.charCodeAt(i + 1))) i++;
    count++;
  }
  return count;
}

export function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

export function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** UTF-8 size of a text; a lone surrogate counts as U+FFFD (3 bytes), as §10.1 says. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}
