import { APICallError, asSchema, RetryError, type FinishReason, type LanguageModel, type LanguageModelUsage, type ModelMessage, type ProviderMetadata, type streamText, type ToolSet } from 'ai';
import { StreamCutError } from '../network/pinned-http.js';
import type { LanguageModelV3, LanguageModelV3CallOptions, LanguageModelV3Message, LanguageModelV3Prompt, LanguageModelV3StreamPart, LanguageModelV3Usage } from './language-model-types.js';
import type { ModelFailure } from './model-errors.js';

/** One streamed model call (runtime.md §3.2–§3.4). */
export interface ModelCallRequest {
  model: LanguageModel;
  system: string;
  messages: ModelMessage[];
  /** Tool definitions without `execute`: the turn runs tools itself. */
  tools?: ToolSet;
  temperature?: number;
  topP?: number;
  maxOutputTokens?: number;
  maxRetries: number;
  providerOptions?: Parameters<typeof streamText>[0]['providerOptions'];
  /** Structured output (a native JSON schema); its text still arrives as text deltas. */
  output?: Parameters<typeof streamText>[0]['output'];
  /** Aborted on cancel or turn timeout; the call then reports `aborted`. */
  signal: AbortSignal;
  /** Whole call (Model `timeoutSeconds`). */
  totalTimeoutMs: number;
  /** Longest gap without a stream part (`WEGENT_MODEL_IDLE_TIMEOUT_SECONDS`). */
  idleTimeoutMs: number;
  onTextDelta(delta: string): void | Promise<void>;
  onReasoningDelta(delta: string): void | Promise<void>;
}

/** A tool call the model asked for. */
export interface RequestedToolCall {
  toolCallId: string;
  toolName: string;
  /** Parsed arguments, or the raw text when they were not JSON. */
  input: unknown;
}

export type ModelCallResult =
  | {
      status: 'finished';
      finishReason: FinishReason;
      text: string;
      reasoning: string;
      toolCalls: RequestedToolCall[];
      /** A tool call had started streaming (its arguments may have been cut off). */
      sawToolInput: boolean;
      usage: LanguageModelUsage | undefined;
      providerMetadata: ProviderMetadata | undefined;
    }
  | ({ status: 'failed'; timeout?: 'total' | 'idle'; text: string; reasoning: string; usage: LanguageModelUsage | undefined } & ModelFailure)
  | { status: 'aborted'; text: string; reasoning: string };

/** The AI SDK's default retry schedule: 2 s, then doubling. */
const RETRY_INITIAL_DELAY_MS = 2000;
const RETRY_BACKOFF_FACTOR = 2;
/** A provider's `retry-after` is honoured up to this long (or when shorter than our own backoff). */
const RETRY_AFTER_MAX_MS = 60_000;

/**
 * Streams one model call through the provider's `doStream` (the AI SDK's language-model interface). Text and
 * reasoning deltas go to the callbacks as they arrive. The runtime runs its own tool loop, so `streamText`'s
 * multi-step machinery would only add its chain of web streams — about 90 µs of CPU per chunk, most of a
 * run thread's work under load (bench/stream). Retries follow the AI SDK's rules (retryable API errors only,
 * before the response starts, exponential backoff honouring `retry-after-ms` / `retry-after`), so output is
 * never repeated.
 */
export async function callModel(request: ModelCallRequest): Promise<ModelCallResult> {
  const controller = new AbortController();
  let timeout: 'total' | 'idle' | undefined;
  const onParentAbort = () => controller.abort(request.signal.reason);
  if (request.signal.aborted) return { status: 'aborted', text: '', reasoning: '' };
  request.signal.addEventListener('abort', onParentAbort, { once: true });
  const totalTimer = setTimeout(() => {
    timeout ??= 'total';
    controller.abort();
  }, request.totalTimeoutMs);
  // The idle timer is re-armed lazily: a part only records when it came (streams deliver thousands of
  // parts a second; re-creating a timer for each showed in profiles). When the timer fires early it waits
  // out the rest of the idle time since the last part.
  let lastPartAt = Date.now();
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  const armIdle = (ms: number) => {
    idleTimer = setTimeout(() => {
      const quietFor = Date.now() - lastPartAt;
      if (quietFor < request.idleTimeoutMs) return armIdle(request.idleTimeoutMs - quietFor);
      timeout ??= 'idle';
      controller.abort();
    }, ms);
  };
  const resetIdle = () => {
    lastPartAt = Date.now();
  };
  armIdle(request.idleTimeoutMs);
  const aborted = new Promise<'aborted'>((resolve) => controller.signal.addEventListener('abort', () => resolve('aborted'), { once: true }));

  let text = '';
  let reasoning = '';
  const toolCalls: RequestedToolCall[] = [];
  let sawToolInput = false;
  let afterOutput = false;
  let afterResponse = false;
  let error: unknown;
  let failed = false;
  let finish: { finishReason: FinishReason; usage: LanguageModelUsage | undefined; providerMetadata: ProviderMetadata | undefined } | undefined;
  let reader: ReadableStreamDefaultReader<LanguageModelV3StreamPart> | undefined;

  try {
    const options = await callOptions(request, controller.signal);
    const started = await Promise.race([withRetries(() => (request.model as LanguageModelV3).doStream(options), request.maxRetries, controller.signal), aborted]);
    if (started !== 'aborted') {
      afterResponse = true;
      resetIdle();
      reader = started.stream.getReader();
      // An abort ends a pending read at once (cancel resolves it as done), even from a provider stream
      // that would not notice the signal itself.
      const cancelRead = () => void reader?.cancel().catch(() => {});
      controller.signal.addEventListener('abort', cancelRead, { once: true });
      for (;;) {
        const next = await reader.read();
        if (next.done || controller.signal.aborted) break;
        const part = next.value;
        resetIdle();
        switch (part.type) {
          case 'text-delta':
            if (part.delta === '') break;
            afterOutput = true;
            text += part.delta;
            await request.onTextDelta(part.delta);
            break;
          case 'reasoning-delta':
            if (part.delta === '') break;
            afterOutput = true;
            reasoning += part.delta;
            await request.onReasoningDelta(part.delta);
            break;
          case 'tool-input-start':
            sawToolInput = true;
            break;
          case 'tool-call':
            afterOutput = true;
            toolCalls.push({ toolCallId: part.toolCallId, toolName: part.toolName, input: toolInput(part.input) });
            break;
          case 'finish':
            finish = { finishReason: part.finishReason.unified, usage: languageModelUsage(part.usage), providerMetadata: part.providerMetadata };
            break;
          case 'error':
            failed = true;
            error = part.error;
            break;
          default:
            break;
        }
        if (failed) break;
      }
    }
  } catch (err) {
    failed = true;
    error = err;
  } finally {
    clearTimeout(totalTimer);
    if (idleTimer) clearTimeout(idleTimer);
    request.signal.removeEventListener('abort', onParentAbort);
    if (!controller.signal.aborted && (failed || !finish)) controller.abort();
    reader?.cancel().catch(() => {});
  }

  if (request.signal.aborted) return { status: 'aborted', text, reasoning };
  if (timeout) return { status: 'failed', timeout, error: new Error(`${timeout} timeout`), afterOutput, afterResponse, text, reasoning, usage: finish?.usage };
  if (failed) return { status: 'failed', error, afterOutput, afterResponse, text, reasoning, usage: finish?.usage };
  if (!finish) {
    // The stream ended without the provider's finish: it was cut.
    return { status: 'failed', error: new StreamCutError(), afterOutput, afterResponse: true, text, reasoning, usage: undefined };
  }
  return { status: 'finished', finishReason: finish.finishReason, text, reasoning, toolCalls, sawToolInput, usage: finish.usage, providerMetadata: finish.providerMetadata };
}

/** The provider call: the prompt in the provider interface's form, the tools with their JSON Schemas. */
async function callOptions(request: ModelCallRequest, abortSignal: AbortSignal): Promise<LanguageModelV3CallOptions> {
  const tools = request.tools && Object.keys(request.tools).length > 0 ? request.tools : undefined;
  return {
    prompt: providerPrompt(request.system, request.messages),
    ...(tools
      ? {
          tools: await Promise.all(
            Object.entries(tools).map(async ([name, t]) => ({ type: 'function' as const, name, description: t.description, inputSchema: await asSchema(t.inputSchema).jsonSchema, providerOptions: t.providerOptions })),
          ),
          toolChoice: { type: 'auto' as const },
        }
      : {}),
    temperature: request.temperature,
    topP: request.topP,
    maxOutputTokens: request.maxOutputTokens,
    responseFormat: request.output ? await request.output.responseFormat : undefined,
    providerOptions: request.providerOptions,
    abortSignal,
    includeRawChunks: false,
  } as LanguageModelV3CallOptions;
}

/**
 * The conversation in the provider interface's form, as the AI SDK converts it: the system prompt first,
 * string contents as one text part, empty text parts dropped, consecutive tool messages merged. The runtime
 * builds its messages from text, tool calls and tool results only (no files to download).
 */
export function providerPrompt(system: string, messages: readonly ModelMessage[]): LanguageModelV3Prompt {
  const out: LanguageModelV3Message[] = [{ role: 'system', content: system }];
  for (const m of messages) {
    switch (m.role) {
      case 'system':
        out.push({ role: 'system', content: m.content, providerOptions: m.providerOptions });
        break;
      case 'user':
        out.push({
          role: 'user',
          content: typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : (m.content.filter((p) => p.type !== 'text' || p.text !== '') as Extract<LanguageModelV3Message, { role: 'user' }>['content']),
          providerOptions: m.providerOptions,
        });
        break;
      case 'assistant':
        out.push({
          role: 'assistant',
          content: typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : (m.content.filter((p) => p.type !== 'text' || p.text !== '' || p.providerOptions != null) as Extract<LanguageModelV3Message, { role: 'assistant' }>['content']),
          providerOptions: m.providerOptions,
        });
        break;
      case 'tool': {
        const content = m.content.filter((p) => p.type === 'tool-result') as Extract<LanguageModelV3Message, { role: 'tool' }>['content'];
        const last = out.at(-1);
        if (last?.role === 'tool') last.content.push(...content);
        else out.push({ role: 'tool', content: [...content], providerOptions: m.providerOptions });
        break;
      }
    }
  }
  return out.filter((m) => m.role !== 'tool' || m.content.length > 0);
}

/** A tool call's arguments: parsed JSON (empty means `{}`), or the raw text when it is not JSON. */
function toolInput(input: unknown): unknown {
  if (typeof input !== 'string') return input;
  if (input.trim() === '') return {};
  try {
    return JSON.parse(input) as unknown;
  } catch {
    return input;
  }
}

function languageModelUsage(usage: LanguageModelV3Usage): LanguageModelUsage {
  const inputTokens = usage.inputTokens.total;
  const outputTokens = usage.outputTokens.total;
  return {
    inputTokens,
    inputTokenDetails: { noCacheTokens: usage.inputTokens.noCache, cacheReadTokens: usage.inputTokens.cacheRead, cacheWriteTokens: usage.inputTokens.cacheWrite },
    outputTokens,
    outputTokenDetails: { textTokens: usage.outputTokens.text, reasoningTokens: usage.outputTokens.reasoning },
    totalTokens: inputTokens === undefined && outputTokens === undefined ? undefined : (inputTokens ?? 0) + (outputTokens ?? 0),
    raw: usage.raw,
    reasoningTokens: usage.outputTokens.reasoning,
    cachedInputTokens: usage.inputTokens.cacheRead,
  } as LanguageModelUsage;
}

/**
 * Starts the call, retrying retryable API errors (429, 5xx, connection failures) up to `maxRetries` times.
 * One attempt's error is thrown as it is; after retries, a RetryError carrying every attempt's error.
 */
async function withRetries<T>(start: () => PromiseLike<T>, maxRetries: number, signal: AbortSignal): Promise<T> {
  const errors: unknown[] = [];
  for (let attempt = 0; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      errors.push(err);
      const retryable = err instanceof Error && APICallError.isInstance(err) && err.isRetryable;
      if (signal.aborted || !retryable || attempt >= maxRetries) {
        if (attempt === 0) throw err;
        const message = (err as Error).message;
        throw new RetryError({
          message: retryable ? `Failed after ${attempt + 1} attempts. Last error: ${message}` : `Failed after ${attempt + 1} attempts with non-retryable error: '${message}'`,
          reason: retryable ? 'maxRetriesExceeded' : 'errorNotRetryable',
          errors,
        });
      }
      await sleep(retryDelayMs(err, RETRY_INITIAL_DELAY_MS * RETRY_BACKOFF_FACTOR ** attempt), signal);
      if (signal.aborted) throw err;
    }
  }
}

/** The provider's `retry-after-ms` or `retry-after` (seconds or a date) when sensible, else our backoff. */
function retryDelayMs(err: unknown, backoffMs: number): number {
  const headers = APICallError.isInstance(err) ? err.responseHeaders : undefined;
  let ms: number | undefined;
  const afterMs = headers?.['retry-after-ms'];
  if (afterMs !== undefined && !Number.isNaN(parseFloat(afterMs))) ms = parseFloat(afterMs);
  const after = headers?.['retry-after'];
  if (ms === undefined && after !== undefined) ms = Number.isNaN(parseFloat(after)) ? Date.parse(after) - Date.now() : parseFloat(after) * 1000;
  if (ms !== undefined && !Number.isNaN(ms) && ms >= 0 && (ms < RETRY_AFTER_MAX_MS || ms < backoffMs)) return ms;
  return backoffMs;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
