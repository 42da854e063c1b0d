import { streamText, type FinishReason, type LanguageModel, type LanguageModelUsage, type ModelMessage, type ProviderMetadata, type ToolSet } from 'ai';
import { StreamCutError } from '../network/pinned-http.js';
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

/**
 * Streams one model call. Text and reasoning deltas go to the callbacks as they arrive; the AI SDK retries
 * 429/5xx and connection failures only before the response starts, so output is never repeated.
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
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  const resetIdle = () => {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      timeout ??= 'idle';
      controller.abort();
    }, request.idleTimeoutMs);
  };
  resetIdle();
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

  const result = streamText({
    model: request.model,
    system: request.system,
    messages: request.messages,
    tools: request.tools,
    temperature: request.temperature,
    topP: request.topP,
    maxOutputTokens: request.maxOutputTokens,
    maxRetries: request.maxRetries,
    providerOptions: request.providerOptions,
    abortSignal: controller.signal,
    onError: () => {}, // errors are read from the stream below
  });
  const reader = result.fullStream.getReader();
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), aborted]);
      if (next === 'aborted' || next.done) break;
      const part = next.value;
      resetIdle();
      switch (part.type) {
        case 'start-step':
          afterResponse = true;
          break;
        case 'text-delta':
          if (part.text === '') break;
          afterOutput = true;
          text += part.text;
          await request.onTextDelta(part.text);
          break;
        case 'reasoning-delta':
          if (part.text === '') break;
          afterOutput = true;
          reasoning += part.text;
          await request.onReasoningDelta(part.text);
          break;
        case 'tool-input-start':
          sawToolInput = true;
          break;
        case 'tool-call':
          afterOutput = true;
          toolCalls.push({ toolCallId: part.toolCallId, toolName: part.toolName, input: part.input });
          break;
        case 'finish-step':
          finish = { finishReason: part.finishReason, usage: part.usage, providerMetadata: part.providerMetadata };
          break;
        case 'error':
          failed = true;
          error = part.error;
          break;
        case 'abort':
          break;
        default:
          break;
      }
      if (failed) break;
    }
  } catch (err) {
    failed = true;
    error = err;
  } finally {
    clearTimeout(totalTimer);
    if (idleTimer) clearTimeout(idleTimer);
    request.signal.removeEventListener('abort', onParentAbort);
    if (!controller.signal.aborted && (failed || !finish)) controller.abort();
    reader.cancel().catch(() => {});
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
