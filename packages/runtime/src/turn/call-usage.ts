import type { RuntimeEventOf } from '@wegent/core';
import type { LanguageModelUsage, ProviderMetadata } from 'ai';
import type { ModelConnection } from '../run/types.js';

export type CallUsage = Omit<RuntimeEventOf<'usage'>, 'type' | 'taskId' | 'runId' | 'runSeq' | 'at' | 'turnId'>;

/**
 * The usage of one model call (runtime.md §14). When the provider reported no token counts, `estimate`
 * supplies them (§10.2) and the call is marked estimated; a provider may also mark its own counts
 * estimated (the demo model does, through `providerMetadata.wegent.estimated`).
 */
export function callUsage(
  model: ModelConnection,
  usage: LanguageModelUsage | undefined,
  providerMetadata: ProviderMetadata | undefined,
  estimate: () => { input: number; output: number },
): CallUsage {
  const ref = { uid: model.resource.uid, name: model.resource.name, namespace: model.resource.namespace, protocol: model.protocol, modelId: model.modelId };
  const reported = usage !== undefined && (usage.inputTokens !== undefined || usage.outputTokens !== undefined);
  if (!reported) {
    const e = estimate();
    return { model: ref, inputTokens: e.input, outputTokens: e.output, reasoningTokens: 0, cachedInputTokens: 0, estimated: true };
  }
  return {
    model: ref,
    inputTokens: usage.inputTokens ?? 0,
    outputTokens: usage.outputTokens ?? 0,
    reasoningTokens: usage.outputTokenDetails?.reasoningTokens ?? usage.reasoningTokens ?? 0,
    cachedInputTokens: usage.inputTokenDetails?.cacheReadTokens ?? usage.cachedInputTokens ?? 0,
    estimated: (providerMetadata?.wegent as { estimated?: unknown } | undefined)?.estimated === true,
  };
}
