// Google Gemini: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`.
import {
  argumentsObject,
  isRecord,
  lastUserText,
  mergeTextParts,
  type Dialect,
  type JsonAnswer,
  type OutputPart,
  type ReplyContext,
  type StreamEncoder,
} from './dialect.js';
import type { FakeError, FakeUsage } from './script.js';

/** Matches the model path of both endpoints; group 1 is the model id, group 2 the method. */
export const GOOGLE_PATH = /\/models\/([^/:]+):(generateContent|streamGenerateContent)$/;

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

function googleError(error: FakeError, model: string | undefined): { code: number; message: string; status: string } {
  const status = error.type ?? STATUS_NAMES[error.status] ?? (error.status >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION');
  const message =
    error.message ??
    (error.code === 'context_length_exceeded'
      ? 'The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).'
      : error.status === 400
        ? 'Request contains an invalid argument.'
        : error.status === 401 || error.status === 403
          ? 'API key not valid. Please pass a valid API key.'
          : error.status === 404
            ? `models/${model ?? 'unknown'} is not found for API version v1beta, or is not supported for generateContent.`
            : error.status === 429
              ? 'Resource has been exhausted (e.g. check quota).'
              : error.status === 503
                ? 'The model is overloaded. Please try again later.'
                : error.status >= 500
                  ? 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting'
                  : `HTTP ${error.status}`);
  return { code: error.status, message, status };
}

function googleErrorAnswer(error: FakeError, model: string | undefined): JsonAnswer {
  return { status: error.status, body: { error: googleError(error, model) } };
}

/** Gemini counts thoughts apart from candidates; the AI SDK adds them, so totals match the script. */
function usageMetadata(usage: FakeUsage): Record<string, unknown> {
  const thoughts = usage.reasoningTokens;
  return {
    promptTokenCount: usage.inputTokens,
    candidatesTokenCount: usage.outputTokens - (thoughts ?? 0),
    totalTokenCount: usage.inputTokens + usage.outputTokens,
    ...(thoughts !== undefined ? { thoughtsTokenCount: thoughts } : {}),
    ...(usage.cachedInputTokens !== undefined ? { cachedContentTokenCount: usage.cachedInputTokens } : {}),
  };
}

function googlePart(part: OutputPart): Record<string, unknown> {
  switch (part.kind) {
    case 'text':
      return { text: part.text };
    case 'json':
      return { text: JSON.stringify(part.value) };
    case 'reasoning':
      return { text: part.text, thought: true };
    case 'toolCall':
      return {
        functionCall: { ...(part.call.id !== undefined ? { id: part.call.id } : {}), name: part.call.name, args: argumentsObject(part.call, 'Google') },
      };
  }
}

function finishReason(ctx: ReplyContext): string {
  switch (ctx.finishReason) {
    case 'length':
      return 'MAX_TOKENS';
    case 'content_filter':
      return 'SAFETY';
    default:
      return 'STOP'; // Gemini ends tool-call turns with STOP too
  }
}

function envelope(ctx: ReplyContext, responseId: string, candidate: Record<string, unknown>, withUsage: boolean): Record<string, unknown> {
  return {
    candidates: [{ ...candidate, index: 0 }],
    ...(withUsage && ctx.usage !== undefined ? { usageMetadata: usageMetadata(ctx.usage) } : {}),
    modelVersion: ctx.model,
    responseId,
  };
}

/** Gemini frames its SSE events with CRLF. */
function sse(value: unknown): string {
  return `data: ${JSON.stringify(value)}\r\n\r\n`;
}

/** Gemini parts have no `type`; a part with a `text` field (and no thought flag) is text. */
function textOfParts(parts: unknown): string | undefined {
  if (!Array.isArray(parts)) return undefined;
  const texts = parts.filter((p): p is { text: string } => isRecord(p) && typeof p.text === 'string' && p.thought !== true).map((p) => p.text);
  return texts.length > 0 ? texts.join('\n') : undefined;
}

export const googleDialect: Dialect = {
  protocol: 'google',

  describe(body, path) {
    const b = isRecord(body) ? body : {};
    const match = GOOGLE_PATH.exec(path);
    return {
      model: match?.[1],
      stream: match?.[2] === 'streamGenerateContent',
      lastUserText: lastUserText(b.contents, (m) => m.role, (m) => textOfParts(m.parts)),
      systemText: isRecord(b.systemInstruction) ? textOfParts(b.systemInstruction.parts) : undefined,
    };
  },

  refuse(request) {
    return request.stream && request.query.alt !== 'sse'
      ? 'fake model server: streamGenerateContent is served only as SSE (alt=sse), as the AI SDK requests it'
      : undefined;
  },

  checkParts(parts) {
    for (const part of parts) googlePart(part);
  },

  errorAnswer: googleErrorAnswer,

  openStream(ctx): StreamEncoder {
    const responseId = ctx.newId('gemini-');
    return {
      open: () => [],
      part: (part) => [sse(envelope(ctx, responseId, { content: { parts: [googlePart(part)], role: 'model' } }, false))],
      error: (error) => [sse({ error: googleError(error, ctx.model) })],
      close: () => [sse(envelope(ctx, responseId, { content: { parts: [], role: 'model' }, finishReason: finishReason(ctx) }, true))],
    };
  },

  completeBody(parts, ctx) {
    const content = { parts: mergeTextParts(parts).map(googlePart), role: 'model' };
    return envelope(ctx, ctx.newId('gemini-'), { content, finishReason: finishReason(ctx) }, true);
  },
};
