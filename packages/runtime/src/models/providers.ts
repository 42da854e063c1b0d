import { createAnthropic } from '@ai-sdk/anthropic';
import { createGoogleGenerativeAI } from '@ai-sdk/google';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import type { LanguageModel } from 'ai';
import type { ModelConnection } from '../run/types.js';
import { DemoLanguageModel } from './demo-model.js';

/** Default base URLs; always passed explicitly so the SDK never falls back to environment variables. */
export const DEFAULT_BASE_URLS = {
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com/v1',
  google: 'https://generativelanguage.googleapis.com/v1beta',
} as const;

export class UnsupportedProtocolError extends Error {
  override readonly name = 'UnsupportedProtocolError';
}

/** Whether a Model's protocol can back a chat turn (not `dify`, runtime.md §3.1). */
export function isChatProtocol(protocol: string): boolean {
  return ['openai', 'openai-compatible', 'anthropic', 'google', 'demo'].includes(protocol);
}

/**
 * The AI SDK language model of a Model (runtime.md §3.1). `fetch` is the address-checked client the
 * runtime passes for network providers; keys never come from the environment (an absent key is sent empty).
 */
export function createLanguageModel(model: ModelConnection, fetch?: typeof globalThis.fetch): LanguageModel {
  const apiKey = model.apiKey ?? '';
  const headers = model.headers;
  const responses = model.apiFormat === 'responses';
  switch (model.protocol) {
    case 'openai': {
      const provider = createOpenAI({ apiKey, baseURL: model.baseUrl ?? DEFAULT_BASE_URLS.openai, headers, fetch });
      return responses ? provider.responses(model.modelId) : provider.chat(model.modelId);
    }
    case 'openai-compatible': {
      if (!model.baseUrl) throw new UnsupportedProtocolError(`Model '${model.resource.name}' (namespace ${model.resource.namespace}) has no base URL`);
      if (responses) return createOpenAI({ apiKey, baseURL: model.baseUrl, headers, fetch, name: 'wegent' }).responses(model.modelId);
      return createOpenAICompatible({
        name: 'wegent',
        baseURL: model.baseUrl,
        ...(model.apiKey ? { apiKey: model.apiKey } : {}),
        headers,
        includeUsage: true,
        fetch,
      }).chatModel(model.modelId);
    }
    case 'anthropic':
      return createAnthropic({ apiKey, baseURL: model.baseUrl ?? DEFAULT_BASE_URLS.anthropic, headers, fetch })(model.modelId);
    case 'google':
      return createGoogleGenerativeAI({ apiKey, baseURL: model.baseUrl ?? DEFAULT_BASE_URLS.google, headers, fetch })(model.modelId);
    case 'demo':
      return new DemoLanguageModel(model.modelId || 'demo-offline');
    default:
      throw new UnsupportedProtocolError(`Model '${model.resource.name}' (namespace ${model.resource.namespace}) has protocol '${model.protocol}', which cannot back a chat turn`);
  }
}
