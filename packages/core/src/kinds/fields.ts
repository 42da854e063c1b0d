import { z } from 'zod';
import { NAME_PATTERN, NAME_RULE_MESSAGE } from '../names.js';

/** A resource or namespace name (resources.md §4). */
export const Name = z.string().regex(NAME_PATTERN, NAME_RULE_MESSAGE);

/** An enum matched ignoring surrounding whitespace and case, stored in canonical form (resources.md §7.2). */
export function ciEnum<const T extends readonly [string, ...string[]]>(values: T, aliases: Record<string, T[number]> = {}) {
  const byFold = new Map<string, T[number]>();
  for (const v of values) byFold.set(v.toLowerCase(), v);
  for (const [alias, canonical] of Object.entries(aliases)) byFold.set(alias.toLowerCase(), canonical);
  return z.preprocess(
    (v) => (typeof v === 'string' ? (byFold.get(v.trim().toLowerCase()) ?? v) : v),
    z.enum(values),
  );
}

/** Drops keys whose value is null for the fields this spec defines ("null means absent", §7.3). */
function dropNulls(known: readonly string[]) {
  return (v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    let copy: Record<string, unknown> | undefined;
    for (const key of known) {
      if ((v as Record<string, unknown>)[key] === null) {
        copy ??= { ...(v as Record<string, unknown>) };
        delete copy[key];
      }
    }
    return copy ?? v;
  };
}

/** An object whose known fields are validated and whose unknown fields are kept as they are. */
export function specObject<S extends z.ZodRawShape>(shape: S) {
  return z.preprocess(dropNulls(Object.keys(shape)), z.looseObject(shape));
}

/** A reference `{name, namespace?}` (resources.md §6.1); `kind` is checked then dropped, other keys dropped. */
export function ref(kind: string) {
  return z
    .object({ name: Name, namespace: Name.optional(), kind: z.string().optional() })
    .loose()
    .superRefine((v, ctx) => {
      if (v.kind !== undefined && v.kind.toLowerCase() !== kind.toLowerCase()) {
        ctx.addIssue({ code: 'custom', path: ['kind'], message: `must reference a ${kind}`, params: { reason: 'FieldValueInvalid' } });
      }
    })
    .transform((v) => (v.namespace === undefined ? { name: v.name } : { name: v.name, namespace: v.namespace }));
}
export type Ref = { name: string; namespace?: string };

export const StringMap = z.record(z.string(), z.string());
export const Text = (max: number) => z.string().max(max);
export const HttpUrl = z
  .string()
  .max(2048)
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'http:' || u.protocol === 'https:') && !u.username && !u.password;
    } catch {
      return false;
    }
  }, 'must be an http or https URL without user info');
