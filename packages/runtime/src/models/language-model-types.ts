import type { LanguageModel } from 'ai';

/**
 * The AI SDK's provider interface (specification v3), taken from `ai`'s own types so the runtime does not
 * depend on `@ai-sdk/provider` directly.
 */
export type LanguageModelV3 = Extract<LanguageModel, { specificationVersion: 'v3' }>;
export type LanguageModelV3CallOptions = Parameters<LanguageModelV3['doStream']>[0];
export type LanguageModelV3StreamResult = Awaited<ReturnType<LanguageModelV3['doStream']>>;
export type LanguageModelV3GenerateResult = Awaited<ReturnType<LanguageModelV3['doGenerate']>>;
export type LanguageModelV3StreamPart = LanguageModelV3StreamResult['stream'] extends ReadableStream<infer P> ? P : never;
export type LanguageModelV3Prompt = LanguageModelV3CallOptions['prompt'];
export type LanguageModelV3Message = LanguageModelV3Prompt[number];
export type LanguageModelV3Usage = Extract<LanguageModelV3StreamPart, { type: 'finish' }>['usage'];
