// The scripting vocabulary of the fake model server: what a test says a reply should be.

/** The wire protocols the fake server speaks for model calls. */
export type FakeProtocol = 'openai-chat' | 'openai-responses' | 'anthropic' | 'google';

/** What a recorded request was: a model call, the model list, or a path the server does not know. */
export type FakeEndpoint = FakeProtocol | 'models' | 'unknown';

/** Finish reasons in provider-neutral form; each protocol maps them to its own names. */
export type FakeFinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

/**
 * Token counts as the AI SDK reports them: `inputTokens` includes `cachedInputTokens` and
 * `outputTokens` includes `reasoningTokens` (the server converts to each provider's split).
 */
export interface FakeUsage {
  inputTokens: number;
  outputTokens: number;
  reasoningTokens?: number;
  cachedInputTokens?: number;
}

/** A provider error. `code: 'context_length_exceeded'` with status 400 gets each provider's real wording. */
export interface FakeError {
  status: number;
  /** The provider's error message; a realistic default per status and provider when left out. */
  message?: string;
  /** OpenAI `error.code` (e.g. `context_length_exceeded`, `invalid_api_key`, `rate_limit_exceeded`). */
  code?: string;
  /** OpenAI `error.type` / Anthropic `error.type`; derived from the status when left out. */
  type?: string;
  /**
   * `retry-after-ms` header on the HTTP error. Defaults to 10 for 408, 409, 429 and 5xx so that SDK
   * retries are fast in tests; `null` sends no retry header.
   */
  retryAfterMs?: number | null;
  /** Extra response headers. */
  headers?: Record<string, string>;
}

/** A tool call the model makes. String arguments are sent verbatim (they may be invalid JSON). */
export interface FakeToolCall {
  /** Call id; a provider-style id (`call_…`, `toolu_…`) when left out. */
  id?: string;
  name: string;
  arguments: Record<string, unknown> | string;
}

/** A text delta. `splitBytes` writes its event so that every multi-byte character is split across TCP writes. */
export interface FakeTextStep {
  text: string;
  delayMs?: number;
  splitBytes?: boolean;
}

/** A reasoning delta (Anthropic thinking, Responses reasoning summary, `reasoning_content`, Gemini thought). */
export interface FakeReasoningStep {
  reasoning: string;
  delayMs?: number;
  splitBytes?: boolean;
}

/** A tool call; its arguments stream in small fragments where the protocol streams them. */
export interface FakeToolCallStep {
  toolCall: FakeToolCall;
  delayMs?: number;
}

/**
 * Structured output: the JSON text of `json` as the answer (as a `json` tool call for Anthropic when the
 * request asks for structured output through the AI SDK's `json` tool).
 */
export interface FakeJsonStep {
  json: unknown;
  delayMs?: number;
}

/** The usage the reply reports (wherever it is in the steps); `'none'` reports none where the protocol allows. */
export interface FakeUsageStep {
  usage: FakeUsage | 'none';
}

/** An error: an HTTP error in the provider's format when nothing was sent yet, else an in-stream error event. */
export interface FakeErrorStep {
  error: FakeError;
  delayMs?: number;
}

/** A pause (after the response headers, unless it comes before every output step). */
export interface FakeDelayStep {
  delayMs: number;
}

/** A pause before the response headers are written. */
export interface FakeDelayHeadersStep {
  delayHeadersMs: number;
}

/** Destroys the socket: before any answer when it comes first, otherwise mid-stream. */
export interface FakeCutStep {
  cut: true;
  delayMs?: number;
}

/** Never finishes (the connection stays open until the client closes it or the server closes). */
export interface FakeHangStep {
  hang: true;
}

export type FakeStep =
  | FakeTextStep
  | FakeReasoningStep
  | FakeToolCallStep
  | FakeJsonStep
  | FakeUsageStep
  | FakeErrorStep
  | FakeDelayStep
  | FakeDelayHeadersStep
  | FakeCutStep
  | FakeHangStep;

/** Which requests a reply may answer; every given condition must hold. */
export interface FakeReplyMatch {
  model?: string | RegExp;
  /** Substring of (or pattern for) the text of the last user message that has text. */
  lastUserText?: string | RegExp;
  protocol?: FakeProtocol;
  /** Any other condition on the recorded request. */
  when?: (request: FakeRecordedRequest) => boolean;
}

/** One scripted answer. */
export interface FakeReply {
  match?: FakeReplyMatch;
  steps: FakeStep[];
  /** Overrides the finish reason (default: `tool_calls` when the reply makes tool calls, else `stop`). */
  finishReason?: FakeFinishReason;
  /** Writes the whole response body in raw pieces of at most this many bytes, splitting lines and characters. */
  chunkBytes?: number;
  /** How many requests this reply answers before it is used up (default 1; `Infinity` for every matching request). */
  times?: number;
}

/** A reply, or a string as shorthand for a reply with one text step. */
export type FakeReplyInput = FakeReply | string;

/** A request the fake server received. `closedEarly`, `finished` and `endedAt` update as the exchange proceeds. */
export interface FakeRecordedRequest {
  /** Position in `requests` (0-based, in arrival order). */
  readonly index: number;
  readonly method: string;
  /** Path without the query string, e.g. `/v1/chat/completions`. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** Header names in lower case; repeated headers joined with `, `. */
  readonly headers: Readonly<Record<string, string>>;
  readonly rawBody: string;
  /**
   * The parsed JSON body (`undefined` when empty or not JSON). Typed `any` so that assertions can reach
   * into provider-specific shapes without casts.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
  readonly protocol: FakeEndpoint;
  /** Model id from the body, or from the path for Google. */
  readonly model: string | undefined;
  readonly stream: boolean;
  /** Text of the last user message that has text (tool results do not count), parts joined with `\n`. */
  readonly lastUserText: string | undefined;
  /** The system prompt text (system/developer messages, `instructions`, `system`, `systemInstruction`). */
  readonly systemText: string | undefined;
  /** The scripted reply that answered it, if any. */
  readonly reply: FakeReply | undefined;
  /** `Date.now()` when the request arrived. */
  readonly at: number;
  /** True when the client closed the connection before the reply finished. */
  closedEarly: boolean;
  /** True when the server wrote the whole reply. */
  finished: boolean;
  /** `Date.now()` when the exchange ended (finished, closed by the client, or cut/closed by the server). */
  endedAt: number | undefined;
}

/** A reply with the shorthand expanded and `times` made explicit. */
export interface QueuedReply {
  reply: FakeReply;
  remaining: number;
}

/** Expands the string shorthand and checks that the reply is usable, so script mistakes fail at `script()`. */
export function normalizeReply(input: FakeReplyInput): QueuedReply {
  const reply: FakeReply = typeof input === 'string' ? { steps: [{ text: input }] } : input;
  if (!Array.isArray(reply.steps)) throw new TypeError('fake model server: a reply needs a steps array');
  for (const step of reply.steps) stepKind(step);
  const times = reply.times ?? 1;
  if (!(times >= 1)) throw new TypeError(`fake model server: times must be at least 1 (got ${times})`);
  if (reply.chunkBytes !== undefined && !(reply.chunkBytes >= 1)) {
    throw new TypeError(`fake model server: chunkBytes must be at least 1 (got ${reply.chunkBytes})`);
  }
  return { reply, remaining: times };
}

export type StepKind = 'text' | 'reasoning' | 'toolCall' | 'json' | 'usage' | 'error' | 'delay' | 'delayHeaders' | 'cut' | 'hang';

/** The kind of a step, by its distinguishing key. */
export function stepKind(step: FakeStep): StepKind {
  if ('text' in step) return 'text';
  if ('reasoning' in step) return 'reasoning';
  if ('toolCall' in step) return 'toolCall';
  if ('json' in step) return 'json';
  if ('usage' in step) return 'usage';
  if ('error' in step) return 'error';
  if ('delayHeadersMs' in step) return 'delayHeaders';
  if ('cut' in step) return 'cut';
  if ('hang' in step) return 'hang';
  if ('delayMs' in step) return 'delay';
  throw new TypeError(`fake model server: unknown step ${JSON.stringify(step)}`);
}

/** Whether a queued reply may answer the request. */
export function replyMatches(reply: FakeReply, request: FakeRecordedRequest): boolean {
  const match = reply.match;
  if (match === undefined) return true;
  if (match.protocol !== undefined && match.protocol !== request.protocol) return false;
  if (match.model !== undefined && !textMatches(match.model, request.model, true)) return false;
  if (match.lastUserText !== undefined && !textMatches(match.lastUserText, request.lastUserText, false)) return false;
  if (match.when !== undefined && !match.when(request)) return false;
  return true;
}

function textMatches(pattern: string | RegExp, value: string | undefined, exact: boolean): boolean {
  if (value === undefined) return false;
  if (typeof pattern === 'string') return exact ? value === pattern : value.includes(pattern);
  pattern.lastIndex = 0;
  return pattern.test(value);
}

/** The usage a reply reports: its last usage step; `undefined` when it has none or says `'none'`. */
export function replyUsage(reply: FakeReply): FakeUsage | undefined {
  let usage: FakeUsage | 'none' | undefined;
  for (const step of reply.steps) if ('usage' in step) usage = step.usage;
  return usage === 'none' ? undefined : usage;
}

/** Describes a reply briefly for error messages. */
export function describeReply(reply: FakeReply): string {
  const match = reply.match;
  if (match === undefined) return 'a reply without match';
  const parts: string[] = [];
  if (match.protocol !== undefined) parts.push(`protocol ${match.protocol}`);
  if (match.model !== undefined) parts.push(`model ${String(match.model)}`);
  if (match.lastUserText !== undefined) parts.push(`lastUserText ${String(match.lastUserText)}`);
  if (match.when !== undefined) parts.push('a when() condition');
  return `a reply for ${parts.join(', ')}`;
}
