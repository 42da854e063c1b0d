import { z } from 'zod';

/** Field-level error reasons (resources.md §20). */
export const CauseReason = z.enum([
  'FieldValueRequired',
  'FieldValueInvalid',
  'FieldValueNotSupported',
  'FieldValueNotFound',
  'FieldValueDuplicate',
  'FieldValueTooLong',
  'FieldValueForbidden',
  'ResourceInUse',
]);
export type CauseReason = z.infer<typeof CauseReason>;

export const Cause = z.object({ field: z.string(), reason: z.string(), message: z.string() });
export type Cause = z.infer<typeof Cause>;

/** HTTP status reasons (api.md §2.5). */
export const StatusReason = z.enum([
  'BadRequest',
  'Unauthorized',
  'Forbidden',
  'NotFound',
  'MethodNotAllowed',
  'AlreadyExists',
  'Conflict',
  'Gone',
  'RequestEntityTooLarge',
  'UnsupportedMediaType',
  'Invalid',
  'TooManyRequests',
  'InternalError',
  'BadGateway',
  'ServiceUnavailable',
  'Timeout',
]);
export type StatusReason = z.infer<typeof StatusReason>;

/** The Kubernetes-style error body every failing request answers with (api.md §2.4). */
export const StatusBody = z
  .object({
    kind: z.literal('Status'),
    apiVersion: z.literal('v1'),
    metadata: z.object({}).loose(),
    status: z.literal('Failure'),
    message: z.string(),
    reason: StatusReason,
    code: z.number().int(),
    details: z
      .object({
        name: z.string().optional(),
        kind: z.string().optional(),
        uid: z.string().optional(),
        causes: z.array(Cause).optional(),
        retryAfterSeconds: z.number().optional(),
      })
      .loose()
      .optional(),
  })
  .loose()
  .meta({ id: 'Status' });
export type StatusBody = z.infer<typeof StatusBody>;

/** Turns a path like ['spec','members',1,'botRef'] into `spec.members[1].botRef`. */
export function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (typeof part === 'string' && /^[A-Za-z_$][\w$]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${String(part)}]`;
  }
  return out;
}
