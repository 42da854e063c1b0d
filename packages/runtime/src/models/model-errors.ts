import { RETRYABLE_TURN_ERROR_CODES, type TurnErrorCode } from '@wegent/core';
import { APICallError, RetryError } from 'ai';
import { AddressRefusedError, modelRefusalText } from '../network/address-policy.js';
import { StreamCutError } from '../network/pinned-http.js';
import { cutChars } from '../prompt/text-forms.js';
import type { ModelConnection } from '../run/types.js';

/** A turn error: code (runtime.md §15), message for people, and whether retrying may help. */
export interface TurnError {
  code: TurnErrorCode;
  message: string;
  retryable: boolean;
}

export function turnError(code: TurnErrorCode, message: string): TurnError {
  return { code, message, retryable: RETRYABLE_TURN_ERROR_CODES.has(code) };
}

/** How a model call went wrong, as the call saw it. */
export interface ModelFailure {
  error: unknown;
  /** Output (text, reasoning or a tool call) had been received before the failure. */
  afterOutput: boolean;
  /** The response had started (headers received) before the failure. */
  afterResponse: boolean;
}

/** `Model 'name' (namespace ns)`. */
export function describeModel(model: ModelConnection): string {
  return `Model '${model.resource.name}' (namespace ${model.resource.namespace})`;
}

/** Removes every secret value of the call (API key, header values) from a provider text. */
export function redactSecrets(text: string, model: ModelConnection): string {
  const secrets = [model.apiKey, ...Object.values(model.headers ?? {})].filter((s): s is string => typeof s === 'string' && s.length >= 4);
  let out = text;
  for (const secret of secrets.sort((a, b) => b.length - a.length)) out = out.split(secret).join('***');
  return out;
}

function causes(error: unknown): unknown[] {
  const chain: unknown[] = [];
  let current: unknown = error;
  while (current != null && !chain.includes(current) && chain.length < 10) {
    chain.push(current);
    current = (current as { cause?: unknown }).cause;
  }
  return chain;
}

/** The provider's own error message (`error.message` of its JSON body), at most 500 characters, secrets removed. */
export function providerErrorMessage(error: unknown, model: ModelConnection): string | undefined {
  let message: string | undefined;
  const fromJson = (value: unknown): string | undefined => {
    if (value == null || typeof value !== 'object') return undefined;
    const v = value as Record<string, unknown>;
    const inner = v.error;
    if (typeof inner === 'string') return inner;
    if (inner && typeof inner === 'object' && typeof (inner as Record<string, unknown>).message === 'string') return (inner as Record<string, string>).message;
    if (typeof v.message === 'string') return v.message;
    if (typeof v.detail === 'string') return v.detail;
    return undefined;
  };
  if (APICallError.isInstance(error)) {
    if (typeof error.responseBody === 'string') {
      try {
        message = fromJson(JSON.parse(error.responseBody));
      } catch {
        // not JSON: the raw body is never shown
      }
    }
    message ??= fromJson(error.data);
  } else {
    message = fromJson(error) ?? fromJson({ error });
  }
  if (message === undefined || message.trim() === '') return undefined;
  return cutChars(redactSecrets(message.trim(), model), 500);
}

/** A machine-readable code or type the provider attached to its error, lower-cased. */
function providerErrorCode(error: unknown): string {
  const pick = (value: unknown): string => {
    if (value == null || typeof value !== 'object') return '';
    const v = value as Record<string, unknown>;
    const inner = (v.error && typeof v.error === 'object' ? v.error : v) as Record<string, unknown>;
    return [inner.code, inner.type, inner.status].filter((x) => typeof x === 'string').join(' ').toLowerCase();
  };
  if (APICallError.isInstance(error)) {
    let body: unknown;
    try {
      body = typeof error.responseBody === 'string' ? JSON.parse(error.responseBody) : undefined;
    } catch {
      body = undefined;
    }
    return `${pick(body)} ${pick(error.data)}`.trim();
  }
  return pick(error);
}

const CONTEXT_TOO_LONG = /context[_ ]length|context window|maximum context|too many tokens|prompt is too long|input is too long|too long for the model|maximum (?:number of )?tokens|reduce the length|exceeds? the (?:maximum|max|token)|token limit/i;
const CONTENT_FILTER = /content[_ ]?(?:policy|filter|management)|safety|responsible ?ai|moderation/i;
const MODEL_MISSING = /model[_ ]not[_ ]found|does not exist|no such model|unknown model|model .*not (?:found|available)|not_found_error/i;

/** Maps a failed model call to a turn error (runtime.md §3.3). */
export function mapModelError(failure: ModelFailure, model: ModelConnection): TurnError {
  const who = describeModel(model);
  let error = failure.error;
  if (RetryError.isInstance(error)) error = error.lastError;
  const chain = causes(error);

  const refused = chain.find((e): e is AddressRefusedError => e instanceof AddressRefusedError);
  if (refused) return turnError('MODEL_UNREACHABLE', `${who} cannot be reached: ${modelRefusalText(refused)}.`);

  if (chain.some((e) => e instanceof StreamCutError)) {
    return turnError('MODEL_STREAM_INTERRUPTED', `The answer stream of ${who} broke off before it finished. Try again.`);
  }

  if (APICallError.isInstance(error)) {
    const status = error.statusCode;
    const providerMessage = providerErrorMessage(error, model);
    const code = providerErrorCode(error);
    const detail = providerMessage ? `: ${providerMessage}` : '.';
    if (status === undefined) {
      const cause = chain.map((e) => (e as { code?: unknown }).code).find((c) => typeof c === 'string');
      const reason = cause ?? (error.cause instanceof Error ? error.cause.message : error.message);
      return turnError('MODEL_UNREACHABLE', `${who} cannot be reached (${reason}). Check its base URL and that the server is running.`);
    }
    if (status === 401 || status === 403) return turnError('MODEL_AUTH_FAILED', `The provider rejected the API key of ${who}. Update the key on the Model.`);
    if (status === 404 || (status === 400 && MODEL_MISSING.test(`${code} ${providerMessage ?? ''}`))) {
      return turnError('MODEL_NOT_FOUND', `The provider does not know model '${model.modelId}' of ${who}. Check the model id and base URL.`);
    }
    if (status === 429) return turnError('MODEL_RATE_LIMITED', `The provider is rate-limiting ${who}. Try again later.`);
    if (status >= 500) return turnError('MODEL_UNAVAILABLE', `The provider of ${who} is unavailable (HTTP ${status}). Try again later.`);
    if ((status === 400 || status === 413) && CONTEXT_TOO_LONG.test(`${code} ${providerMessage ?? ''}`)) {
      return turnError('CONTEXT_TOO_LONG', `The input is too long for ${who}${detail}`);
    }
    if (CONTENT_FILTER.test(`${code} ${providerMessage ?? ''}`)) {
      return turnError('CONTENT_FILTERED', `The provider's content filter refused the request for ${who}${detail}`);
    }
    if (status === 408) return turnError('MODEL_TIMEOUT', `${who} timed out at the provider (HTTP 408). Try again.`);
    if (status >= 400) return turnError('MODEL_BAD_REQUEST', `The provider refused the request for ${who}${detail}`);
    return turnError('MODEL_BAD_RESPONSE', `${who} answered with an unexpected HTTP status ${status}.`);
  }

  const name = error instanceof Error ? error.name : '';
  if (/JSONParseError|TypeValidationError|InvalidResponseDataError|EmptyResponseBodyError|NoContentGeneratedError/.test(name)) {
    return turnError('MODEL_BAD_RESPONSE', `${who} sent an answer that could not be read. Try again.`);
  }
  // An error event inside the stream (Anthropic `error`, Responses `error`): judge by the provider's type or code.
  const code = providerErrorCode(error);
  const providerMessage = providerErrorMessage(error, model);
  const detail = providerMessage ? `: ${providerMessage}` : '.';
  if (/overloaded|server_error|api_error|unavailable|internal/.test(code)) return turnError('MODEL_UNAVAILABLE', `The provider of ${who} is unavailable${detail}`);
  if (/rate_limit|too_many_requests|resource_exhausted/.test(code)) return turnError('MODEL_RATE_LIMITED', `The provider is rate-limiting ${who}. Try again later.`);
  if (CONTEXT_TOO_LONG.test(`${code} ${providerMessage ?? ''}`)) return turnError('CONTEXT_TOO_LONG', `The input is too long for ${who}${detail}`);
  if (CONTENT_FILTER.test(`${code} ${providerMessage ?? ''}`)) return turnError('CONTENT_FILTERED', `The provider's content filter stopped the answer of ${who}${detail}`);
  if (/authentication|permission|unauthorized/.test(code)) return turnError('MODEL_AUTH_FAILED', `The provider rejected the API key of ${who}. Update the key on the Model.`);
  if (failure.afterResponse) return turnError('MODEL_STREAM_INTERRUPTED', `The answer stream of ${who} broke off${detail}`);
  const networkCode = chain.map((e) => (e as { code?: unknown }).code).find((c) => typeof c === 'string');
  if (networkCode) return turnError('MODEL_UNREACHABLE', `${who} cannot be reached (${networkCode}). Check its base URL and that the server is running.`);
  return turnError('MODEL_BAD_RESPONSE', `${who} failed${providerMessage ? detail : `: ${redactSecrets(error instanceof Error ? error.message : String(error), model)}`}`);
}
