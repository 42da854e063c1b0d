// OpenAI Chat Completions: `POST /v1/chat/completions`, JSON and SSE (`chat.completion.chunk`, `data: [DONE]`).
import {
  argumentsText,
  contentText,
  fragments,
  isRecord,
  joinDefined,
  lastUserText,
  mergeTextParts,
  sseData,
  type Dialect,
  type JsonAnswer,
  type OutputPart,
  type ReplyContext,
  type StreamEncoder,
} from './dialect.js';
import type { FakeError, FakeFinishReason, FakeUsage } from './script.js';

/** OpenAI's `{error: {message, type, param, code}}` answer, with the API's own wording by default. */
export function openaiErrorAnswer(error: FakeError, model: string | undefined): JsonAnswer {
  const preset = openaiErrorPreset(error, model ?? 'the model');
  return {
    status: error.status,
    body: {
      error: {
        message: error.message ?? preset.message,
        type: error.type ?? preset.type,
        param: preset.param,
        code: error.code ?? preset.code,
      },
    },
  };
}

/** The error object OpenAI puts into a stream (`data: {"error": …}`) after output has started. */
export function openaiStreamError(error: FakeError, model: string): unknown {
  return openaiErrorAnswer(error, model).body;
}

function openaiErrorPreset(error: FakeError, model: string): { message: string; type: string; param: string | null; code: string | null } {
  if (error.code === 'context_length_exceeded') {
    return {
      message:
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 140000 tokens. Please reduce the length of the messages.",
      type: 'invalid_request_error',
      param: 'messages',
      code: 'context_length_exceeded',
    };
  }
  switch (error.status) {
    case 400:
      return { message: 'Invalid request.', type: 'invalid_request_error', param: null, code: null };
    case 401:
      return {
        message: 'Incorrect API key provided: sk-fake***. You can find your API key at https://platform.openai.com/account/api-keys.',
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      };
    case 403:
      return { message: 'You are not allowed to use this model.', type: 'invalid_request_error', param: null, code: 'permission_denied' };
    case 404:
      return {
        message: `The model \`${model}\` does not exist or you do not have access to it.`,
        type: 'invalid_request_error',
        param: null,
        code: 'model_not_found',
      };
    case 429:
      return {
        message: `Rate limit reached for ${model} in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.`,
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      };
    case 500:
      return {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: null,
      };
    case 502:
    case 503:
      return { message: 'The engine is currently overloaded, please try again later.', type: 'server_error', param: null, code: null };
    default:
      return {
        message: `HTTP ${error.status}`,
        type: error.status >= 500 ? 'server_error' : 'invalid_request_error',
        param: null,
        code: null,
      };
  }
}

function chatUsage(usage: FakeUsage): Record<string, unknown> {
  return {
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedInputTokens ?? 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: usage.reasoningTokens ?? 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

function finishReasonOf(ctx: ReplyContext, madeToolCalls: boolean): string {
  const reason: FakeFinishReason = ctx.finishReason ?? (madeToolCalls ? 'tool_calls' : 'stop');
  return reason;
}

function messageText(message: Record<string, unknown>): string | undefined {
  return contentText(message.content, ['text']);
}

export const openaiChatDialect: Dialect = {
  protocol: 'openai-chat',

  describe(body) {
    const b = isRecord(body) ? body : {};
    const messages = Array.isArray(b.messages) ? b.messages : [];
    const system = messages
      .filter((m): m is Record<string, unknown> => isRecord(m) && (m.role === 'system' || m.role === 'developer'))
      .map(messageText);
    return {
      model: typeof b.model === 'string' ? b.model : undefined,
      stream: b.stream === true,
      lastUserText: lastUserText(messages, (m) => m.role, messageText),
      systemText: joinDefined(system),
    };
  },

  errorAnswer: openaiErrorAnswer,

  openStream(ctx): StreamEncoder {
    const body = isRecord(ctx.request.body) ? ctx.request.body : {};
    const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
    const base = {
      id: ctx.newId('chatcmpl-'),
      object: 'chat.completion.chunk',
      created: ctx.created,
      model: ctx.model,
      service_tier: 'default',
      system_fingerprint: 'fp_fake',
    };
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null): string =>
      sseData({
        ...base,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
        ...(includeUsage ? { usage: null } : {}),
      });
    let toolCallCount = 0;
    const willWriteText = ctx.request.reply?.steps.some((s) => 'text' in s || 'json' in s) ?? false;
    return {
      open: () => [chunk({ role: 'assistant', content: willWriteText ? '' : null, refusal: null })],
      part(part) {
        switch (part.kind) {
          case 'text':
            return [chunk({ content: part.text })];
          case 'json':
            return [chunk({ content: JSON.stringify(part.value) })];
          case 'reasoning':
            // DeepSeek-style `reasoning_content`, which OpenAI-compatible clients read as reasoning.
            return [chunk({ reasoning_content: part.text })];
          case 'toolCall': {
            const index = toolCallCount++;
            const id = part.call.id ?? ctx.newId('call_');
            const start = chunk({
              tool_calls: [{ index, id, type: 'function', function: { name: part.call.name, arguments: '' } }],
            });
            const args = fragments(argumentsText(part.call)).map((f) => chunk({ tool_calls: [{ index, function: { arguments: f } }] }));
            return [start, ...args];
          }
        }
      },
      error: (error) => [sseData(openaiStreamError(error, ctx.model))],
      close() {
        const frames = [chunk({}, finishReasonOf(ctx, toolCallCount > 0))];
        if (includeUsage && ctx.usage !== undefined) frames.push(sseData({ ...base, choices: [], usage: chatUsage(ctx.usage) }));
        frames.push('data: [DONE]\n\n');
        return frames;
      },
    };
  },

  completeBody(parts: readonly OutputPart[], ctx) {
    const merged = mergeTextParts(parts);
    let text: string | undefined;
    let reasoning: string | undefined;
    const toolCalls: unknown[] = [];
    for (const part of merged) {
      if (part.kind === 'text') text = (text ?? '') + part.text;
      else if (part.kind === 'json') text = (text ?? '') + JSON.stringify(part.value);
      else if (part.kind === 'reasoning') reasoning = (reasoning ?? '') + part.text;
      else toolCalls.push({ id: part.call.id ?? ctx.newId('call_'), type: 'function', function: { name: part.call.name, arguments: argumentsText(part.call) } });
    }
    return {
      id: ctx.newId('chatcmpl-'),
      object: 'chat.completion',
      created: ctx.created,
      model: ctx.model,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: text ?? null,
            refusal: null,
            annotations: [],
            ...(reasoning !== undefined ? { reasoning_content: reasoning } : {}),
            ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
          },
          logprobs: null,
          finish_reason: finishReasonOf(ctx, toolCalls.length > 0),
        },
      ],
      ...(ctx.usage !== undefined ? { usage: chatUsage(ctx.usage) } : {}),
      service_tier: 'default',
      system_fingerprint: 'fp_fake',
    };
  },
};
