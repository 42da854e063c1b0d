import type { Cause, StatusBody, StatusReason } from '@wegent/core';

/** An error a client caused; mapped once to a Kubernetes Status body (http/status.ts). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details: { name?: string; kind?: string; uid?: string; causes?: Cause[]; retryAfterSeconds?: number } & Record<string, unknown> = {},
  ) {
    super(message);
  }

  toStatus(): StatusBody {
    const body: StatusBody = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, code: this.code };
    if (Object.keys(this.details).length) body.details = this.details;
    return body;
  }
}

export class BadRequestError extends ApiError {
  constructor(message: string, details: ApiError['details'] = {}) {
    super(400, 'BadRequest', message, details);
  }
}
export class UnauthorizedError extends ApiError {
  constructor(message = 'authentication required') {
    super(401, 'Unauthorized', message);
  }
}
export class ForbiddenError extends ApiError {
  constructor(message: string, details: ApiError['details'] = {}) {
    super(403, 'Forbidden', message, details);
  }
}
export class NotFoundError extends ApiError {
  constructor(message: string, details: ApiError['details'] = {}) {
    super(404, 'NotFound', message, details);
  }
}
export class AlreadyExistsError extends ApiError {
  constructor(message: string, details: ApiError['details'] = {}) {
    super(409, 'AlreadyExists', message, details);
  }
}
export class ConflictError extends ApiError {
  constructor(message: string, details: ApiError['details'] = {}) {
    super(409, 'Conflict', message, details);
  }
}
export class PayloadTooLargeError extends ApiError {
  constructor(message: string) {
    super(413, 'RequestEntityTooLarge', message);
  }
}
export class UnsupportedMediaTypeError extends ApiError {
  constructor(message: string) {
    super(415, 'UnsupportedMediaType', message);
  }
}
/** 422 Invalid with field causes. */
export class ValidationError extends ApiError {
  constructor(message: string, causes: Cause[], details: ApiError['details'] = {}) {
    super(422, 'Invalid', message, { ...details, causes });
  }
}
export class TooManyRequestsError extends ApiError {
  constructor(retryAfterSeconds: number) {
    super(429, 'TooManyRequests', `too many requests; retry in ${retryAfterSeconds} s`, { retryAfterSeconds });
  }
}

/** "<Kind> 'name' is invalid: field: message" — the message shape of api.md §2.4. */
export function invalidMessage(kind: string | undefined, name: string | undefined, causes: Cause[]): string {
  const head = kind && name ? `${kind} '${name}' is invalid` : kind ? `${kind} is invalid` : 'the request is invalid';
  const first = causes[0];
  if (!first) return head;
  const more = causes.length > 1 ? ` (and ${causes.length - 1} more)` : '';
  return `${head}: ${first.field}: ${first.message}${more}`;
}
