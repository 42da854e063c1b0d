/** The tool output cap (runtime.md §10.1). */

/** Default `WEGENT_TOOL_OUTPUT_MAX_TOKENS`. */
export const DEFAULT_TOOL_OUTPUT_MAX_TOKENS = 15_000;
/** What a block keeps for display (chat-protocol.md §6.4). */
export const BLOCK_OUTPUT_MAX_BYTES = 64 * 1024;

/** The text a model receives for a tool result: a string as is, any other value as its JSON, an error as `{"error": ...}`. */
export function toolResultText(result: { ok: true; value: unknown } | { ok: false; error: string }): string {
  if (!result.ok) return JSON.stringify({ error: result.error });
  if (typeof result.value === 'string') return result.value;
  return JSON.stringify(result.value) ?? 'null';
}

const isContinuation = (byte: number) => (byte & 0xc0) === 0x80;

/**
 * Cuts a text longer than `limitBytes` UTF-8 bytes to its first floor(3L/10) bytes, the marker
 * `\n[… <n> bytes omitted …]\n` and its last floor(7L/10) bytes; a cut never splits a character.
 */
export function capToolOutput(text: string, limitBytes: number): string {
  const bytes = Buffer.from(text, 'utf8'); // a lone surrogate becomes U+FFFD (3 bytes), as §10.1 counts it
  if (bytes.length <= limitBytes) return text;
  let headEnd = Math.floor((3 * limitBytes) / 10);
  while (headEnd > 0 && isContinuation(bytes[headEnd]!)) headEnd--; // the head ends before a split character
  let tailStart = bytes.length - Math.floor((7 * limitBytes) / 10);
  while (tailStart < bytes.length && isContinuation(bytes[tailStart]!)) tailStart++; // the tail starts after it
  const omitted = tailStart - headEnd;
  return `${bytes.subarray(0, headEnd).toString('utf8')}\n[… ${omitted} bytes omitted …]\n${bytes.subarray(tailStart).toString('utf8')}`;
}

/** Cuts a text to at most `maxBytes` UTF-8 bytes at a character boundary (display copies). */
export function cutToBytes(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && isContinuation(bytes[end]!)) end--;
  return bytes.subarray(0, end).toString('utf8');
}
