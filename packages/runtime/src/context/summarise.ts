import type { LanguageModel } from 'ai';
import { callModel } from '../models/model-call.js';
import { mapModelError } from '../models/model-errors.js';
import type { TurnReporter } from '../run/event-sink.js';
import { DEFAULT_MODEL_MAX_RETRIES, type ResolvedRuntimeConfig } from '../run/runtime-config.js';
import type { ModelConnection } from '../run/types.js';
import { callUsage } from '../turn/call-usage.js';
import { SUMMARY_MAX_OUTPUT_TOKENS, SUMMARY_SYSTEM_PROMPT, SUMMARY_TIMEOUT_MS, type SummaryResult } from './compaction.js';
import { estimateTokens } from './token-budget.js';

/**
 * The summarisation call of a compaction (runtime.md §10.4 step 3): the same model, no tools, at most
 * 2,000 output tokens, 120 s. Its usage counts on the turn that compacts (§14); nothing streams.
 */
export async function summariseForCompaction(args: {
  model: ModelConnection;
  languageModel: LanguageModel;
  input: string;
  config: ResolvedRuntimeConfig;
  signal: AbortSignal;
  reporter: TurnReporter;
}): Promise<SummaryResult> {
  const { model } = args;
  const result = await callModel({
    model: args.languageModel,
    system: SUMMARY_SYSTEM_PROMPT,
    messages: [{ role: 'user', content: args.input }],
    maxOutputTokens: Math.min(SUMMARY_MAX_OUTPUT_TOKENS, model.maxOutputTokens ?? SUMMARY_MAX_OUTPUT_TOKENS),
    maxRetries: model.maxRetries ?? DEFAULT_MODEL_MAX_RETRIES,
    signal: args.signal,
    totalTimeoutMs: SUMMARY_TIMEOUT_MS,
    idleTimeoutMs: args.config.modelIdleTimeoutMs,
    onTextDelta: () => {},
    onReasoningDelta: () => {},
  });
  if (result.status !== 'aborted' && (result.status === 'finished' || result.text !== '' || result.usage)) {
    const estimate = () => ({ input: estimateTokens(SUMMARY_SYSTEM_PROMPT) + 4 + estimateTokens(args.input) + 4, output: estimateTokens(result.text) });
    await args.reporter.emit({ type: 'usage', ...callUsage(model, result.usage, result.status === 'finished' ? result.providerMetadata : undefined, estimate) });
  }
  if (result.status === 'finished') {
    const text = result.text.trim();
    return text === '' ? { ok: false, code: 'MODEL_BAD_RESPONSE' } : { ok: true, text };
  }
  if (result.status === 'aborted') return { ok: false, code: 'CANCELLED' };
  return { ok: false, code: result.timeout ? 'MODEL_TIMEOUT' : mapModelError(result, model).code };
}
