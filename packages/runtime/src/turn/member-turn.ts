import type { CancelReason, FinishReason } from '@wegent/core';
import { jsonSchema, tool, type LanguageModel, type ModelMessage, type ProviderMetadata, type ToolSet } from 'ai';
import { ContextGuard, type EarlierMessages } from '../context/compaction.js';
import { summariseForCompaction } from '../context/summarise.js';
import { contextBudget, estimateTokens, TokenEstimator, type OfferedToolShape } from '../context/token-budget.js';
import { callModel, type ModelCallRequest, type ModelCallResult } from '../models/model-call.js';
import { mapModelError, turnError, type TurnError } from '../models/model-errors.js';
import { createLanguageModel, UnsupportedProtocolError } from '../models/providers.js';
import { modelAddressPolicy, type HostResolver } from '../network/address-policy.js';
import { createPinnedFetch, type PinnedFetch } from '../network/pinned-http.js';
import type { TurnReporter } from '../run/event-sink.js';
import { DEFAULT_MODEL_MAX_RETRIES, DEFAULT_MODEL_TIMEOUT_SECONDS, type ResolvedRuntimeConfig } from '../run/runtime-config.js';
import type { ModelConnection, RunOverrides } from '../run/types.js';
import { toolParameters, type RuntimeTool } from '../tools/tool.js';
import { runToolRound, type ToolCallOutcome } from '../tools/tool-round.js';
import { StreamTextBuffer } from './stream-text-buffer.js';
import { callUsage } from './call-usage.js';

/** Everything one member turn needs; the mode has assembled the prompt (runtime.md §4, §9). */
export interface MemberTurnInput {
  reporter: TurnReporter;
  model: ModelConnection;
  system: string;
  /** The messages the turn starts with (history, then what the mode adds; the last is a user message). */
  messages: ModelMessage[];
  tools: RuntimeTool[];
  /** Bot `maxToolRounds`. */
  botMaxToolRounds?: number;
  ghostTemperature?: number;
  overrides: RunOverrides;
  config: ResolvedRuntimeConfig;
  /** The run's signal (cancel). */
  signal: AbortSignal;
  resolver?: HostResolver;
  /** A turn-ending condition outside the model call (the turn's sandbox failed, runtime.md §15). */
  halt?: () => TurnError | undefined;
  /** The history part at the start of `messages`, which compaction may summarise (runtime.md §10.4). */
  earlier?: EarlierMessages;
  /** The run's user message (CONTEXT_TOO_LONG breakdown). */
  userMessage?: string;
  /** Persists a compaction checkpoint (`host.saveCompaction`). */
  saveCompaction?: (summary: string, coversUpToSeq: number) => void | Promise<void>;
  /** The host's clock, for block times. */
  now?: () => Date;
}

export type MemberTurnResult =
  | { status: 'completed'; text: string; reasoning: string; finishReason: FinishReason }
  | { status: 'failed'; error: TurnError; text: string }
  | { status: 'cancelled'; reason: CancelReason; text: string };

const CUT_OFF_NOTE = 'Your previous tool call was cut off by the output limit; send a smaller one.';
const CANCEL_REASONS = new Set(['USER_CANCELLED', 'CANCEL_TIMEOUT', 'TASK_DELETED', 'SANDBOX_STOPPED']);

/** The cancel reason the server put on the abort (`controller.abort('TASK_DELETED')`), else USER_CANCELLED. */
export function cancelReasonOf(signal: AbortSignal): CancelReason {
  const reason: unknown = signal.reason;
  const candidate = typeof reason === 'string' ? reason : (reason as { reason?: unknown } | null)?.reason;
  return typeof candidate === 'string' && CANCEL_REASONS.has(candidate) ? (candidate as CancelReason) : 'USER_CANCELLED';
}

function toolSet(tools: readonly RuntimeTool[]): { set: ToolSet; shapes: OfferedToolShape[] } {
  const set: ToolSet = {};
  const shapes: OfferedToolShape[] = [];
  for (const t of tools) {
    const parameters = toolParameters(t);
    set[t.name] = tool({ description: t.description, inputSchema: jsonSchema(parameters as Parameters<typeof jsonSchema>[0]) });
    shapes.push({ name: t.name, description: t.description, parameters });
  }
  return { set, shapes };
}

/** Provider options that turn on reasoning output for Models that declare `capabilities.reasoning`. */
function reasoningOptions(model: ModelConnection): ModelCallRequest['providerOptions'] {
  if (!model.capabilities?.reasoning) return undefined;
  if (model.protocol === 'openai' && model.apiFormat === 'responses') return { openai: { reasoningSummary: 'auto' } };
  if (model.protocol === 'google') return { google: { thinkingConfig: { includeThoughts: true } } };
  return undefined;
}

function finishReasonOf(reason: string): FinishReason {
  if (reason === 'length') return 'length';
  if (reason === 'content-filter') return 'content_filter';
  return 'stop';
}

function argumentsText(input: unknown): string {
  return typeof input === 'string' ? input : (JSON.stringify(input) ?? 'null');
}

/**
 * Runs one member turn: the tool loop of runtime.md §5 with streaming, tool blocks, usage and exactly one
 * terminal event. Never throws for expected failures.
 */
export async function runMemberTurn(input: MemberTurnInput): Promise<MemberTurnResult> {
  const { reporter, model, config } = input;
  const turnTimeout = new AbortController();
  const turnTimer = setTimeout(() => turnTimeout.abort(), config.turnTimeoutMs);
  const signal = AbortSignal.any([input.signal, turnTimeout.signal]);
  const text = new StreamTextBuffer();
  const reasoning = new StreamTextBuffer();
  let pinned: PinnedFetch | undefined;

  const end = async (result: MemberTurnResult): Promise<MemberTurnResult> => {
    const textRest = text.flush();
    if (textRest) await reporter.emit({ type: 'text.delta', delta: textRest });
    const reasoningRest = reasoning.flush();
    if (reasoningRest) await reporter.emit({ type: 'reasoning.delta', delta: reasoningRest });
    if (result.status === 'completed') await reporter.emit({ type: 'turn.done', text: result.text, reasoning: result.reasoning, finishReason: result.finishReason });
    else if (result.status === 'failed') await reporter.emit({ type: 'turn.failed', code: result.error.code, message: result.error.message, retryable: result.error.retryable, text: result.text });
    else await reporter.emit({ type: 'turn.cancelled', reason: result.reason, text: result.text });
    return result;
  };
  const stopped = (): MemberTurnResult | null => {
    if (input.signal.aborted) return { status: 'cancelled', reason: cancelReasonOf(input.signal), text: text.text };
    if (turnTimeout.signal.aborted) {
      return { status: 'failed', error: turnError('TURN_TIMEOUT', `The turn took longer than ${Math.round(config.turnTimeoutMs / 1000)} s and was stopped.`), text: text.text };
    }
    const halted = input.halt?.();
    if (halted) return { status: 'failed', error: halted, text: text.text };
    return null;
  };

  try {
    let languageModel: LanguageModel;
    try {
      if (model.protocol !== 'demo') {
        pinned = createPinnedFetch(modelAddressPolicy(model.trustedOwner, { privateHostsAllow: config.privateHostsAllow, modelAllowPrivate: config.modelAllowPrivate }), input.resolver);
      }
      languageModel = createLanguageModel(model, pinned?.fetch);
    } catch (err) {
      if (err instanceof UnsupportedProtocolError) return await end({ status: 'failed', error: turnError('MODEL_PROTOCOL_UNSUPPORTED', err.message), text: '' });
      throw err;
    }

    const supportsTools = model.capabilities?.tools !== false;
    const tools = supportsTools ? input.tools : [];
    const toolsByName = new Map(tools.map((t) => [t.name, t]));
    const { set: offeredSet, shapes: offeredShapes } = toolSet(tools);
    const maxRounds = Math.max(0, Math.min(input.botMaxToolRounds ?? config.maxToolRounds, config.maxToolRounds));
    const window = model.contextWindow ?? config.defaultContextWindow;
    const budget = contextBudget(window, model.maxOutputTokens);
    const estimator = new TokenEstimator();
    const outputLimitBytes = 3 * config.toolOutputMaxTokens;
    const providerOptions = reasoningOptions(model);

    const startMessages = [...input.messages];
    const messages: ModelMessage[] = [...startMessages];
    const guard = new ContextGuard({
      system: input.system,
      budget,
      window,
      estimator,
      trigger: config.compactionTrigger,
      target: config.compactionTarget,
      earlier: input.earlier,
      userMessage: input.userMessage,
      modelName: model.resource.name,
      summarise: (summaryInput) => summariseForCompaction({ model, languageModel, input: summaryInput, config, signal, reporter }),
      save: input.saveCompaction,
      emit: (event) => reporter.emit(event),
      now: input.now ?? (() => new Date()),
    });
    const toolLog: Array<{ name: string; args: string; result: string }> = [];
    let rounds = 0;
    let cutOffs = 0;
    let retryNote = false;
    let blockCounter = 0;
    let overflowRetried = false;
    let overflowRetry = false;

    for (;;) {
      const halt = stopped();
      if (halt) return await end(halt);
      const offerTools = rounds < maxRounds && tools.length > 0;
      const exhausted = !offerTools && rounds > 0 && rounds >= maxRounds;
      let callMessages: ModelMessage[];
      if (exhausted) {
        let summary = 'Your tool calls in this turn and their results:';
        for (const entry of toolLog) summary += `\n\n### ${entry.name}\nArguments: ${entry.args}\nResult: ${entry.result}`;
        summary += `\n\nYou have used all ${maxRounds} tool rounds. Answer now with what you have; do not call tools.`;
        callMessages = [...startMessages, { role: 'user', content: summary }];
      } else {
        callMessages = retryNote ? [...messages, { role: 'user', content: CUT_OFF_NOTE }] : messages;
      }
      retryNote = false;

      // Context guard (runtime.md §10): compaction or truncation when needed, then the meter.
      const guarded = await guard.beforeCall(callMessages, offerTools ? offeredShapes : [], [startMessages, messages], { overflow: overflowRetry });
      overflowRetry = false;
      if (!guarded.ok) return await end({ status: 'failed', error: guarded.error, text: text.text });
      callMessages = guarded.messages;
      const rawEstimate = guarded.rawEstimate;
      const halt1 = stopped();
      if (halt1) return await end(halt1);

      let callText = '';
      const result: ModelCallResult = await callModel({
        model: languageModel,
        system: input.system,
        messages: callMessages,
        tools: offerTools ? offeredSet : undefined,
        temperature: input.overrides.temperature ?? input.ghostTemperature ?? model.temperature,
        topP: input.overrides.topP,
        maxOutputTokens: input.overrides.maxOutputTokens ?? model.maxOutputTokens,
        maxRetries: model.maxRetries ?? DEFAULT_MODEL_MAX_RETRIES,
        signal,
        totalTimeoutMs: (model.timeoutSeconds ?? DEFAULT_MODEL_TIMEOUT_SECONDS) * 1000,
        idleTimeoutMs: config.modelIdleTimeoutMs,
        ...(providerOptions ? { providerOptions } : {}),
        onTextDelta: async (delta) => {
          let piece = delta;
          if (callText === '' && text.text !== '' && !text.text.endsWith('\n')) piece = `\n\n${delta}`;
          callText += delta;
          const out = text.push(piece);
          if (out) await reporter.emit({ type: 'text.delta', delta: out });
        },
        onReasoningDelta: async (delta) => {
          const out = reasoning.push(delta);
          if (out) await reporter.emit({ type: 'reasoning.delta', delta: out });
        },
      });

      const produced = result.text !== '' || result.reasoning !== '' || (result.status === 'finished' && result.toolCalls.length > 0);
      const estimateCall = () => ({
        input: estimator.scale(rawEstimate),
        output: estimateTokens(result.text + result.reasoning + (result.status === 'finished' ? result.toolCalls.map((c) => c.toolName + argumentsText(c.input)).join('') : '')),
      });
      const metadata: ProviderMetadata | undefined = result.status === 'finished' ? result.providerMetadata : undefined;
      if (result.status === 'finished' || produced || (result.status === 'failed' && result.usage)) {
        await reporter.emit({ type: 'usage', ...callUsage(model, result.status === 'aborted' ? undefined : result.usage, metadata, estimateCall) });
      }
      if (result.status === 'finished') estimator.calibrate(rawEstimate, result.usage?.inputTokens);

      if (result.status === 'aborted') return await end(stopped() ?? { status: 'cancelled', reason: cancelReasonOf(input.signal), text: text.text });
      if (result.status === 'failed') {
        const halt2 = stopped();
        if (halt2) return await end(halt2);
        const error = result.timeout
          ? turnError(
              'MODEL_TIMEOUT',
              result.timeout === 'total'
                ? `Model '${model.resource.name}' (namespace ${model.resource.namespace}) did not finish within ${model.timeoutSeconds ?? DEFAULT_MODEL_TIMEOUT_SECONDS} s.`
                : `Model '${model.resource.name}' (namespace ${model.resource.namespace}) sent nothing for ${Math.round(config.modelIdleTimeoutMs / 1000)} s.`,
            )
          : mapModelError(result, model);
        // A provider's "context length exceeded": compact once more towards 50 % and retry the call once (runtime.md §10.6).
        if (error.code === 'CONTEXT_TOO_LONG' && !overflowRetried && !produced) {
          overflowRetried = true;
          overflowRetry = true;
          continue;
        }
        return await end({ status: 'failed', error, text: text.text });
      }

      const cutOff = result.finishReason === 'length' && offerTools && (result.toolCalls.length > 0 || result.sawToolInput);
      if (cutOff) {
        cutOffs += 1;
        if (cutOffs >= 2) {
          return await end({
            status: 'failed',
            error: turnError('MODEL_OUTPUT_TRUNCATED', `Model '${model.resource.name}' (namespace ${model.resource.namespace}) cut off its tool calls at the output limit twice.`),
            text: text.text,
          });
        }
        retryNote = true;
        continue;
      }

      if (offerTools && result.toolCalls.length > 0) {
        rounds += 1;
        const outcomes: ToolCallOutcome[] = await runToolRound(result.toolCalls, {
          tools: toolsByName,
          signal: input.signal,
          outputLimitBytes,
          nextBlockId: () => `tool-${++blockCounter}`,
          emit: (event) => reporter.emit(event),
        });
        const halt3 = stopped();
        if (halt3) return await end(halt3);
        messages.push({
          role: 'assistant',
          content: [
            ...(result.text !== '' ? [{ type: 'text' as const, text: result.text }] : []),
            ...result.toolCalls.map((c) => ({ type: 'tool-call' as const, toolCallId: c.toolCallId, toolName: c.toolName, input: c.input })),
          ],
        });
        messages.push({
          role: 'tool',
          content: outcomes.map((o) => ({
            type: 'tool-result' as const,
            toolCallId: o.call.toolCallId,
            toolName: o.call.toolName,
            output: o.isError ? { type: 'error-text' as const, value: o.modelText } : { type: 'text' as const, value: o.modelText },
          })),
        });
        for (const o of outcomes) toolLog.push({ name: o.call.toolName, args: argumentsText(o.call.input), result: o.modelText });
        continue;
      }

      const finishReason: FinishReason = exhausted && result.toolCalls.length > 0 ? 'tool_rounds_exhausted' : finishReasonOf(result.finishReason);
      return await end({ status: 'completed', text: text.text, reasoning: reasoning.text, finishReason });
    }
  } catch (err) {
    const halt = stopped();
    if (halt) return await end(halt);
    return await end({ status: 'failed', error: turnError('INTERNAL', `internal error: ${err instanceof Error ? err.message : String(err)}`), text: text.text });
  } finally {
    clearTimeout(turnTimer);
    pinned?.close();
  }
}
