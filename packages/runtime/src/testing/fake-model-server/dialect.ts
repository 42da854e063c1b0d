// What every provider protocol of the fake server implements, and helpers they share.
import type { FakeError, FakeFinishReason, FakeProtocol, FakeRecordedRequest, FakeToolCall, FakeUsage } from './script.js';

/** A piece of model output, in the order the reply produces it. */
export type OutputPart =
  | { kind: 'text'; text: string }
  | { kind: 'reasoning'; text: string }
  | { kind: 'toolCall'; call: FakeToolCall }
  | { kind: 'json'; value: unknown };

/** What a protocol needs to know to answer one request. */
export interface ReplyContext {
  request: FakeRecordedRequest;
  model: string;
  /** The reply's usage, known up front (Anthropic reports input tokens in its first event). */
  usage: FakeUsage | undefined;
  /** The scripted override; protocols default to `tool_calls` after a tool call, else `stop`. */
  finishReason: FakeFinishReason | undefined;
  /** A fresh id with the provider's prefix, unique within the server. */
  newId(prefix: string): string;
  /** Unix seconds. */
  created: number;
}

/** Turns output parts into the protocol's stream events (each a complete SSE frame). */
export interface StreamEncoder {
  open(): string[];
  part(part: OutputPart): string[];
  /** An error event after the stream started; the stream ends right after it. */
  error(error: FakeError): string[];
  close(): string[];
}

/** An HTTP answer with a JSON body. */
export interface JsonAnswer {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
}

/** What the request says about itself, for recording and matching. */
export interface RequestFacts {
  model: string | undefined;
  stream: boolean;
  lastUserText: string | undefined;
  systemText: string | undefined;
}

export interface Dialect {
  protocol: FakeProtocol;
  describe(body: unknown, path: string, query: URLSearchParams): RequestFacts;
  /** A reason the request cannot be served (answered as a 400), e.g. Google streaming without `alt=sse`. */
  refuse?(request: FakeRecordedRequest): string | undefined;
  /** Throws `FakeScriptError` when a streamed reply's parts cannot be expressed (checked before the headers). */
  checkParts?(parts: readonly OutputPart[]): void;
  /** The provider's HTTP error answer. */
  errorAnswer(error: FakeError, model: string | undefined): JsonAnswer;
  openStream(ctx: ReplyContext): StreamEncoder;
  /** The non-streaming body; throws `FakeScriptError` when the parts cannot be expressed. */
  completeBody(parts: readonly OutputPart[], ctx: ReplyContext): unknown;
}

/** A script the protocol cannot express (answered as a 500 naming the problem). */
export class FakeScriptError extends Error {}

export function sseData(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

export function sseEvent(event: string, value: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(value)}\n\n`;
}

/** Tool-call arguments as the JSON text the model streams. */
export function argumentsText(call: FakeToolCall): string {
  return typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments);
}

/** Tool-call arguments as an object, for protocols that carry objects (Anthropic JSON, Google). */
export function argumentsObject(call: FakeToolCall, protocol: string): Record<string, unknown> {
  if (typeof call.arguments !== 'string') return call.arguments;
  try {
    const value: unknown = JSON.parse(call.arguments);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through to the error below
  }
  throw new FakeScriptError(
    `fake model server: ${protocol} carries tool arguments as a JSON object here; ${JSON.stringify(call.arguments)} is not one`,
  );
}

/** Splits text into fragments of at most `size` code points (never inside a surrogate pair). */
export function fragments(text: string, size = 8): string[] {
  const chars = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

/** Merges adjacent parts of the same text kind, as a non-streaming answer would hold them. */
export function mergeTextParts(parts: readonly OutputPart[]): OutputPart[] {
  const merged: OutputPart[] = [];
  for (const part of parts) {
    const last = merged[merged.length - 1];
    if (last !== undefined && (part.kind === 'text' || part.kind === 'reasoning') && last.kind === part.kind) {
      merged[merged.length - 1] = { kind: part.kind, text: last.text + part.text };
    } else {
      merged.push(part);
    }
  }
  return merged;
}

/** Joined text of message content given as a string or as typed parts (`text` field on parts of `textTypes`). */
export function contentText(content: unknown, textTypes: readonly string[]): string | undefined {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return undefined;
  const texts: string[] = [];
  for (const part of content) {
    if (isRecord(part) && typeof part.text === 'string' && (part.type === undefined || textTypes.includes(String(part.type)))) {
      texts.push(part.text);
    }
  }
  return texts.length > 0 ? texts.join('\n') : undefined;
}

/** The text of the last message (by `roleOf`) with role `user` that has text. */
export function lastUserText(messages: unknown, roleOf: (m: Record<string, unknown>) => unknown, textOf: (m: Record<string, unknown>) => string | undefined): string | undefined {
  if (!Array.isArray(messages)) return undefined;
  for (let i = messages.length - 1; i >= 0; i--) {
    const message: unknown = messages[i];
    if (!isRecord(message) || roleOf(message) !== 'user') continue;
    const text = textOf(message);
    if (text !== undefined) return text;
  }
  return undefined;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function joinDefined(texts: ReadonlyArray<string | undefined>, separator = '\n\n'): string | undefined {
  const present = texts.filter((t): t is string => t !== undefined);
  return present.length > 0 ? present.join(separator) : undefined;
}
