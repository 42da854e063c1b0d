import { z } from 'zod';
import { API_VERSION, isUnsupportedUpstreamKind, KINDS, lookupKind, type KindName } from './kinds/index.js';
import { validateLabels, isValidLabelKey } from './labels.js';
import { isValidName, NAME_RULE_MESSAGE } from './names.js';
import { fieldPath, type Cause, type CauseReason } from './status.js';

/** A resource document as clients send and read it (resources.md §1), for OpenAPI and typing. */
export const ResourceDocument = z
  .object({
    apiVersion: z.string().optional(),
    kind: z.string().optional(),
    metadata: z
      .object({
        name: z.string(),
        namespace: z.string().optional(),
        displayName: z.string().optional(),
        labels: z.record(z.string(), z.string()).optional(),
        annotations: z.record(z.string(), z.string()).optional(),
        uid: z.string().optional(),
        resourceVersion: z.string().optional(),
        generation: z.number().optional(),
        creationTimestamp: z.string().optional(),
        updateTimestamp: z.string().optional(),
        scope: z.enum(['user', 'public']).optional(),
      })
      .loose(),
    spec: z.record(z.string(), z.unknown()),
    status: z.record(z.string(), z.unknown()).optional(),
  })
  .loose()
  .meta({ id: 'Resource' });
export type ResourceDocument = z.infer<typeof ResourceDocument>;

/** Metadata after validation: only client-owned fields. */
export interface NormalizedMetadata {
  name: string;
  namespace: string;
  displayName?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** A validated, normalised document ready to store. */
export interface NormalizedDocument {
  kind: KindName;
  metadata: NormalizedMetadata;
  spec: Record<string, unknown>;
  /** Preconditions the client sent (used by PUT/PATCH only). */
  preconditions: { resourceVersion?: string; uid?: string };
  warnings: string[];
}

export type DocumentProblem =
  | { type: 'bad-request'; message: string }
  | { type: 'invalid'; causes: Cause[]; kind?: string; name?: string }
  | { type: 'unknown-kind'; kind: string }
  | { type: 'skipped'; kind: string; name?: string; namespace?: string; warning: string };

export type NormalizeResult = { ok: true; doc: NormalizedDocument } | { ok: false; problem: DocumentProblem };

export interface NormalizeOptions {
  /** Kind implied by the route (typed routes); absent for apply. */
  routeKind?: KindName;
  /** Namespace of the route; a different document namespace is refused. */
  routeNamespace?: string;
  /** Namespace when neither route nor document names one. */
  defaultNamespace?: string;
  /** Seed-compatible alias routes also accept `apiVersion: v1`. */
  allowV1?: boolean;
}

export const MAX_DOCUMENT_BYTES = 512 * 1024;
/** Stands for "generate the name from the id" on a Task document without a name. */
export const TASK_NAME_PLACEHOLDER = '\u0000generated';
const KNOWN_TOP = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
const CLIENT_META = new Set(['name', 'namespace', 'displayName', 'labels', 'annotations']);
const SERVER_META = new Set(['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'updateTimestamp', 'scope', 'owner', 'deletionTimestamp']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function invalid(field: string, reason: CauseReason, message: string, kind?: string, name?: string): NormalizeResult {
  return { ok: false, problem: { type: 'invalid', causes: [{ field, reason, message }], kind, name } };
}

/** Applies the alias forms of resources.md §7.2 before schema validation. */
function applyAliases(kind: KindName, spec: Record<string, unknown>, causes: Cause[]): Record<string, unknown> {
  const out = { ...spec };
  const alias = (from: string, to: string, map?: (v: unknown) => unknown) => {
    if (!(from in out) || out[from] === null) return;
    const value = map ? map(out[from]) : out[from];
    if (value === undefined) return;
    if (to in out && out[to] !== null) {
      const same = JSON.stringify(out[to]).toLowerCase() === JSON.stringify(value).toLowerCase();
      if (!same) {
        causes.push({ field: `spec.${from}`, reason: 'FieldValueInvalid', message: `'${from}' and '${to}' disagree; send only '${to}'` });
        return;
      }
    }
    if (!(to in out) || out[to] === null) out[to] = value;
    delete out[from];
  };
  if (kind === 'Shell') {
    alias('runtime', 'shellType');
    alias('type', 'shellType', (v) => (typeof v === 'string' && /^(chat|code|claudecode|dify|agno|codex)$/i.test(v.trim()) ? v : undefined));
  } else if (kind === 'Ghost') {
    alias('toolsEnabled', 'tools', (v) => (Array.isArray(v) ? v : undefined));
  }
  return out;
}

function issueReason(issue: z.core.$ZodIssue): CauseReason {
  const params = (issue as { params?: { reason?: CauseReason } }).params;
  if (params?.reason) return params.reason;
  switch (issue.code) {
    case 'invalid_type':
      return (issue as { input?: unknown }).input === undefined ? 'FieldValueRequired' : 'FieldValueInvalid';
    case 'too_big':
      return 'FieldValueTooLong';
    case 'too_small':
      return (issue as { origin?: string; minimum?: unknown }).origin === 'string' || (issue as { origin?: string }).origin === 'array'
        ? Number((issue as { minimum?: unknown }).minimum) <= 1
          ? 'FieldValueRequired'
          : 'FieldValueInvalid'
        : 'FieldValueInvalid';
    case 'invalid_value':
      return 'FieldValueNotSupported';
    default:
      return 'FieldValueInvalid';
  }
}

/** Maps zod issues to Status causes with dotted field paths under `base`. */
export function causesFromZod(error: z.ZodError, base: Array<string | number> = []): Cause[] {
  return error.issues.map((issue) => {
    const path = [...base, ...issue.path];
    const reason = issueReason(issue);
    let message = issue.message;
    if (reason === 'FieldValueRequired' && issue.code === 'invalid_type') message = 'required value';
    if (issue.code === 'invalid_value') message = `unsupported value; expected one of ${(issue as { values?: unknown[] }).values?.map((v) => JSON.stringify(v)).join(', ')}`;
    return { field: fieldPath(path as PropertyKey[]), reason, message };
  });
}

/**
 * Validates one document and normalises it (resources.md §1–§7). Pure: references, ownership and
 * secrets are the server's business.
 */
export function normalizeDocument(raw: unknown, opts: NormalizeOptions = {}): NormalizeResult {
  if (!isPlainObject(raw)) return { ok: false, problem: { type: 'bad-request', message: 'a resource document must be an object' } };
  const warnings: string[] = [];
  const { apiVersion } = raw;
  if (apiVersion !== undefined && apiVersion !== null && apiVersion !== API_VERSION && !(opts.allowV1 && apiVersion === 'v1')) {
    return { ok: false, problem: { type: 'bad-request', message: `unsupported apiVersion '${String(apiVersion)}'; use ${API_VERSION}` } };
  }
  let kind: KindName | undefined;
  if (raw.kind !== undefined && raw.kind !== null) {
    if (typeof raw.kind !== 'string') return invalid('kind', 'FieldValueInvalid', 'kind must be a string');
    const skipped = isUnsupportedUpstreamKind(raw.kind);
    if (skipped && !opts.routeKind) {
      const md = isPlainObject(raw.metadata) ? raw.metadata : {};
      return {
        ok: false,
        problem: {
          type: 'skipped',
          kind: skipped,
          name: typeof md.name === 'string' ? md.name : undefined,
          namespace: typeof md.namespace === 'string' ? md.namespace : undefined,
          warning: `kind ${skipped} is not supported by this server; document skipped`,
        },
      };
    }
    kind = lookupKind(raw.kind);
    if (!kind || KINDS[kind].plural === raw.kind.toLowerCase() && raw.kind.toLowerCase() !== kind.toLowerCase()) {
      if (!kind) return { ok: false, problem: { type: 'unknown-kind', kind: raw.kind } };
    }
    if (opts.routeKind && kind !== opts.routeKind) {
      return { ok: false, problem: { type: 'bad-request', message: `kind '${raw.kind}' does not match the route (${opts.routeKind})` } };
    }
  } else {
    kind = opts.routeKind;
    if (!kind) return invalid('kind', 'FieldValueRequired', 'kind is required');
  }
  for (const key of Object.keys(raw)) {
    if (!KNOWN_TOP.has(key)) warnings.push(`unknown top-level field '${key}' ignored`);
  }

  const md = raw.metadata;
  if (!isPlainObject(md)) return invalid('metadata', 'FieldValueRequired', 'metadata with at least a name is required', kind);
  let name = md.name;
  // A Task without a name gets one from its id (resources.md §4); the server fills it in.
  if ((name === undefined || name === null) && kind === 'Task') name = TASK_NAME_PLACEHOLDER;
  if (name === undefined || name === null || name === '') return invalid('metadata.name', 'FieldValueRequired', 'name is required', kind);
  if (name !== TASK_NAME_PLACEHOLDER && !isValidName(name)) return invalid('metadata.name', 'FieldValueInvalid', NAME_RULE_MESSAGE, kind, typeof name === 'string' ? name : undefined);

  const causes: Cause[] = [];
  let namespace = md.namespace;
  if (namespace === undefined || namespace === null) namespace = opts.routeNamespace ?? opts.defaultNamespace ?? 'default';
  if (!isValidName(namespace)) {
    causes.push({ field: 'metadata.namespace', reason: 'FieldValueInvalid', message: NAME_RULE_MESSAGE });
  } else if (opts.routeNamespace !== undefined && namespace !== opts.routeNamespace) {
    return { ok: false, problem: { type: 'bad-request', message: `the document's namespace '${namespace}' does not match the request's namespace '${opts.routeNamespace}'` } };
  }

  for (const key of Object.keys(md)) {
    if (!CLIENT_META.has(key) && !SERVER_META.has(key)) warnings.push(`unknown metadata field '${key}' ignored`);
  }
  const metadata: NormalizedMetadata = { name, namespace: namespace as string, labels: {}, annotations: {} };
  if (md.displayName !== undefined && md.displayName !== null) {
    if (typeof md.displayName !== 'string') causes.push({ field: 'metadata.displayName', reason: 'FieldValueInvalid', message: 'must be a string' });
    else if (md.displayName.trim().length > 256) causes.push({ field: 'metadata.displayName', reason: 'FieldValueTooLong', message: 'at most 256 characters' });
    else if (md.displayName.trim() !== '') metadata.displayName = md.displayName.trim();
  }
  if (md.labels !== undefined && md.labels !== null) {
    if (!isPlainObject(md.labels)) causes.push({ field: 'metadata.labels', reason: 'FieldValueInvalid', message: 'must be a map of strings' });
    else {
      const labelCauses = validateLabels(md.labels);
      causes.push(...labelCauses);
      if (!labelCauses.length) metadata.labels = md.labels as Record<string, string>;
    }
  }
  if (md.annotations !== undefined && md.annotations !== null) {
    if (!isPlainObject(md.annotations)) causes.push({ field: 'metadata.annotations', reason: 'FieldValueInvalid', message: 'must be a map of strings' });
    else {
      let size = 0;
      for (const [k, v] of Object.entries(md.annotations)) {
        if (!isValidLabelKey(k)) causes.push({ field: `metadata.annotations[${k}]`, reason: 'FieldValueInvalid', message: 'invalid annotation key' });
        else if (typeof v !== 'string') causes.push({ field: `metadata.annotations[${k}]`, reason: 'FieldValueInvalid', message: 'annotation values must be strings' });
        else size += k.length + v.length;
      }
      if (size > 64 * 1024) causes.push({ field: 'metadata.annotations', reason: 'FieldValueTooLong', message: 'annotations may hold at most 64 KiB together' });
      metadata.annotations = md.annotations as Record<string, string>;
    }
  }
  const preconditions: NormalizedDocument['preconditions'] = {};
  if (typeof md.resourceVersion === 'string' && md.resourceVersion) preconditions.resourceVersion = md.resourceVersion;
  if (typeof md.uid === 'string' && md.uid) preconditions.uid = md.uid;

  let specIn = raw.spec;
  if (specIn === undefined || specIn === null) specIn = {};
  if (!isPlainObject(specIn)) {
    causes.push({ field: 'spec', reason: 'FieldValueInvalid', message: 'spec must be an object' });
    return { ok: false, problem: { type: 'invalid', causes, kind, name } };
  }
  const aliased = applyAliases(kind, specIn, causes);
  const parsed = KINDS[kind].spec.safeParse(aliased, { reportInput: true });
  if (!parsed.success) causes.push(...causesFromZod(parsed.error, ['spec']));
  if (causes.length) return { ok: false, problem: { type: 'invalid', causes, kind, name } };
  return { ok: true, doc: { kind, metadata, spec: parsed.data as Record<string, unknown>, preconditions, warnings } };
}
