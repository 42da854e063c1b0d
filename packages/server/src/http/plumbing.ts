import { parse as parseQuery } from 'node:querystring';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { jsonDepth, ManifestSyntaxError, parseYamlDocuments, fieldPath, type Cause } from '@wegent/core';
import { ApiError, BadRequestError, invalidMessage, NotFoundError, ValidationError } from '../errors.js';

/** Body schemas that only document a route: the route's service validates the body itself. */
const documentedOnly = new WeakSet<object>();
export function documentOnly<T extends object>(schema: T): T {
  documentedOnly.add(schema);
  return schema;
}
export function isDocumentOnly(schema: unknown): boolean {
  return typeof schema === 'object' && schema !== null && documentedOnly.has(schema);
}

/** A YAML request body: the parsed, non-empty documents. */
export class YamlBody {
  constructor(readonly documents: unknown[]) {}
}

export const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml'];
const MAX_JSON_DEPTH = 64;

function parseJsonText(text: string): unknown {
  if (text.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text, (key, v) => (key === '__proto__' ? undefined : v));
  } catch (e) {
    throw new BadRequestError(`malformed JSON body: ${(e as Error).message}`);
  }
  if (jsonDepth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw new BadRequestError(`JSON body nested deeper than ${MAX_JSON_DEPTH} levels`);
  return value;
}

/** Body parsers for JSON (with a depth limit), merge patches, YAML and login forms (api.md §2.2). */
export function registerBodyParsers(app: FastifyInstance): void {
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser(['application/json', 'application/merge-patch+json'], { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, parseJsonText(body as string));
    } catch (e) {
      done(e as Error, undefined);
    }
  });
  app.addContentTypeParser(YAML_TYPES, { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, new YamlBody(parseYamlDocuments(body as string)));
    } catch (e) {
      if (e instanceof ManifestSyntaxError) done(new BadRequestError(e.message), undefined);
      else done(e as Error, undefined);
    }
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    const parsed = parseQuery(body as string);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(parsed)) out[k] = Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
    done(null, out);
  });
}

/** Sends an ApiError as its Status body. */
export function sendStatus(reply: FastifyReply, error: ApiError): FastifyReply {
  if (error.code === 401) reply.header('WWW-Authenticate', 'Bearer realm="wegent"');
  if (error.details.retryAfterSeconds !== undefined) reply.header('Retry-After', String(error.details.retryAfterSeconds));
  return reply.code(error.code).type('application/json; charset=utf-8').send(error.toStatus());
}

function zodCauses(validation: FastifyError['validation'], context: string | undefined): Cause[] {
  // fastify-type-provider-zod reports {keyword: <zod issue code>, instancePath, message, params}.
  return (validation ?? []).map((v) => {
    const issue = v as unknown as { keyword?: string; instancePath?: string; message?: string; params?: { keys?: string[] } };
    const parts: PropertyKey[] = (issue.instancePath ?? '').split('/').filter(Boolean).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    const unknownKey = issue.keyword === 'unrecognized_keys' ? issue.params?.keys?.[0] : undefined;
    if (unknownKey !== undefined) parts.push(unknownKey);
    const field = fieldPath(parts) || context || 'body';
    const required = issue.keyword === 'invalid_type' && /received undefined$/.test(issue.message ?? '');
    return {
      field,
      reason: required ? 'FieldValueRequired' : unknownKey !== undefined ? 'FieldValueNotSupported' : 'FieldValueInvalid',
      message: required ? 'required value' : unknownKey !== undefined ? 'unknown field' : (issue.message ?? 'invalid value'),
    };
  });
}

/** Maps every error to a Status body, once, for every route (api.md §2.4). */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof ApiError) return sendStatus(reply, err);
    if (err.validation) {
      const ctx = err.validationContext;
      const causes = zodCauses(err.validation, ctx === 'body' ? undefined : ctx);
      if (ctx === 'querystring' || ctx === 'params' || ctx === 'headers') {
        return sendStatus(reply, new BadRequestError(`invalid ${ctx === 'querystring' ? 'query parameter' : ctx}: ${causes[0]?.field}: ${causes[0]?.message}`, { causes }));
      }
      return sendStatus(reply, new ValidationError(invalidMessage(undefined, undefined, causes), causes));
    }
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendStatus(reply, new ApiError(413, 'RequestEntityTooLarge', 'request body is too large'));
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return sendStatus(reply, new ApiError(415, 'UnsupportedMediaType', `content type '${request.headers['content-type'] ?? '(none)'}' is not accepted here`));
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return sendStatus(reply, new BadRequestError('empty JSON body'));
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        return sendStatus(reply, new BadRequestError('malformed JSON body'));
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      const reason = status === 404 ? 'NotFound' : status === 413 ? 'RequestEntityTooLarge' : status === 415 ? 'UnsupportedMediaType' : status === 429 ? 'TooManyRequests' : 'BadRequest';
      return sendStatus(reply, new ApiError(status, reason, err.message || 'bad request'));
    }
    request.log.error({ err }, 'unhandled error');
    return sendStatus(reply, new ApiError(500, 'InternalError', `internal error; request id ${request.id}`));
  });
  app.setNotFoundHandler((request, reply) => {
    sendStatus(reply, new NotFoundError(`no route ${request.method} ${request.url.split('?')[0]}`));
  });
}

/** Errors raised by the framework before routing (bad URL encoding, ...) as Status bodies. */
export function frameworkErrors(error: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  const code = error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 413 : 400;
  sendStatus(reply, new ApiError(code, code === 413 ? 'RequestEntityTooLarge' : 'BadRequest', code === 413 ? 'request body is too large' : 'malformed request URL'));
}
