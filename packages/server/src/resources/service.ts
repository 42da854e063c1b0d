import { randomUUID } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Logger } from 'pino';
import {
  foldName,
  isUnsupportedUpstreamKind,
  KINDS,
  MASK_PATTERN,
  mapSecrets,
  maskSecret,
  matchesSelector,
  normalizeDocument,
  RESERVED_LABEL_PREFIX,
  MAX_DOCUMENT_BYTES,
  TASK_NAME_PLACEHOLDER,
  type Cause,
  type KindName,
  type NormalizedDocument,
  type Ref,
  type SelectorTerm,
  type StatusBody,
} from '@wegent/core';
import type { ServerConfig } from '../config.js';
import type { Storage } from '../storage/database.js';
import type { Transaction } from 'kysely';
import type { Database } from '../storage/schema.js';
import type { SecretBox } from '../secrets/keyring.js';
import { AlreadyExistsError, ApiError, BadRequestError, ConflictError, ForbiddenError, invalidMessage, NotFoundError, PayloadTooLargeError, ValidationError } from '../errors.js';
import { PUBLIC_OWNER, ResourceStore, type ResourceRecord, type StoredRef } from './store.js';
import { ACTIVE_TASK_STATES, checkKind, referencesOf, type Resolved } from './semantics.js';
import { canonicalJson, clearSecretsByPath, clearSpec, encryptSpec, mergePatch, toApiDocument } from './documents.js';

type Obj = Record<string, unknown>;

/** Who writes or reads: a user, or the system while seeding. */
export interface Actor {
  userId: string;
  isAdmin: boolean;
}

export const SYSTEM_ACTOR: Actor = { userId: '__system__', isAdmin: true };

export type ApplyAction = 'created' | 'configured' | 'unchanged' | 'skipped' | 'error' | 'notApplied';

export interface ApplyResultItem {
  index: number;
  kind: string;
  namespace?: string;
  name?: string;
  action: ApplyAction;
  uid?: string;
  resourceVersion?: string;
  warnings: string[];
  error?: StatusBody;
  /** The stored resource (API form) for single-document routes. */
  object?: Obj;
}

export interface WriteOptions {
  mode: 'create' | 'replace' | 'apply';
  /** Act on public resources (admins only, checked by the caller of the service too). */
  public: boolean;
  dryRun: boolean;
  routeKind?: KindName;
  routeNamespace?: string;
  defaultNamespace?: string;
  allowV1?: boolean;
  /** For replace: the name in the path. */
  pathName?: string;
  /** Apply as seed data: reserved labels allowed (system actor). */
  /** Server-owned status fields laid over the computed status (a Skill's package facts, skills/service.ts). */
  statusFields?: Obj;
  /** The resource's content changed even if its spec did not (a new Skill package): generation + 1. */
  contentChanged?: boolean;
  /** Runs inside the write transaction after the row is written; throwing rolls the whole write back. */
  inTransaction?: (trx: Transaction<Database>, record: ResourceRecord) => Promise<void>;
}

interface Plan {
  index: number;
  doc?: NormalizedDocument;
  ownerId: string;
  existing?: ResourceRecord;
  clear?: Obj;
  record?: ResourceRecord;
  refs?: StoredRef[];
  action?: ApplyAction;
  error?: ApiError;
  warnings: string[];
  skipped?: { kind: string; name?: string; namespace?: string };
}

const key = (owner: string, kind: string, ns: string, name: string) => `${owner}\u0000${kind}\u0000${ns}\u0000${name}`;

/** The resource API's behaviour (resources.md, api.md §4), independent of HTTP. */
export class ResourceService {
  readonly store: ResourceStore;

  constructor(
    readonly storage: Storage,
    readonly box: SecretBox,
    readonly config: ServerConfig,
    readonly log: Logger,
  ) {
    this.store = new ResourceStore(storage);
  }

  // ---------------------------------------------------------------- reads

  /** Reads one resource: the caller's own, else the public one (`scope` narrows). */
  async get(actor: Actor, kind: KindName, namespace: string, name: string, scope?: 'own' | 'public'): Promise<Obj> {
    const record = await this.findVisible(actor, kind, namespace, name, scope);
    if (!record) throw this.notFound(kind, name, namespace);
    return (await this.toApiMany([record]))[0]!;
  }

  async findVisible(actor: Actor, kind: KindName, namespace: string, name: string, scope?: 'own' | 'public'): Promise<ResourceRecord | undefined> {
    const owners = scope === 'own' ? [actor.userId] : scope === 'public' ? [PUBLIC_OWNER] : [actor.userId, PUBLIC_OWNER];
    const rows = await this.store.findLiveCommitted(kind, namespace, name, owners);
    return rows.find((r) => r.ownerId === actor.userId) ?? rows[0];
  }

  /**
   * GET one resource as JSON text. The API form of a (uid, resourceVersion) never changes, so its text
   * is kept in a bounded cache and the hot read path skips masking and serialisation.
   */
  async getJson(actor: Actor, kind: KindName, namespace: string, name: string, scope?: 'own' | 'public'): Promise<string> {
    // A Task's status lives outside its resource version: never cached.
    if (kind === 'Task') return JSON.stringify(await this.get(actor, kind, namespace, name, scope));
    const owners = scope === 'own' ? [actor.userId] : scope === 'public' ? [PUBLIC_OWNER] : [actor.userId, PUBLIC_OWNER];
    const versions = await this.store.findLiveVersions(kind, namespace, name, owners);
    const hit = versions.find((r) => r.ownerId === actor.userId) ?? versions[0];
    if (!hit) throw this.notFound(kind, name, namespace);
    let cacheKey = `${hit.uid}:${hit.resourceVersion}`;
    let text = this.jsonCache.get(cacheKey);
    if (text === undefined) {
      // Changed (or deleted) since the version was read: answer what is there now.
      const record = await this.store.getLiveByUid(hit.uid);
      if (!record) throw this.notFound(kind, name, namespace);
      text = JSON.stringify(this.toApi(record));
      cacheKey = `${record.uid}:${record.resourceVersion}`;
      if (this.jsonCache.size >= 5000) this.jsonCache.delete(this.jsonCache.keys().next().value!);
      this.jsonCache.set(cacheKey, text);
    }
    return text;
  }

  private readonly jsonCache = new Map<string, string>();

  /** Live status of Tasks (kept by the task service in its own table), merged into their documents. */
  taskStatusSource?: (uids: string[]) => Promise<Map<string, Record<string, unknown>>>;
  /** Creates a Task's run state inside the apply transaction that creates the Task. */
  onTaskCreated?: (trx: Transaction<Database>, record: ResourceRecord, actor: Actor) => Promise<void>;

  /** API documents of stored records, with live Task status where it applies. */
  async toApiMany(records: ResourceRecord[], owner?: { id: string; username: string }): Promise<Obj[]> {
    const tasks = records.filter((r) => r.kind === 'Task').map((r) => r.uid);
    const states = tasks.length && this.taskStatusSource ? await this.taskStatusSource(tasks) : new Map<string, Obj>();
    return records.map((r) => {
      const doc = this.toApi(r, owner);
      const live = states.get(r.uid);
      if (live) doc.status = { ...(doc.status as Obj), ...live };
      return doc;
    });
  }

  toApi(record: ResourceRecord, owner?: { id: string; username: string }): Obj {
    return toApiDocument(record, this.box, owner);
  }

  /** Clear-text spec of a stored resource (for the runtime; never sent to clients). */
  clearSpecOf(record: ResourceRecord): Obj {
    return clearSpec(record.kind, record.spec, this.box);
  }

  /**
   * Resolves a reference per resources.md §6.2. `ownerId` null means a public referrer.
   * Returns the target's scope and clear spec, or undefined.
   */
  async resolveRef(ownerId: string | null, kind: KindName, ref: Ref, homeNamespace = 'default'): Promise<{ scope: 'user' | 'public'; spec: Obj; record: ResourceRecord } | undefined> {
    const record = await this.resolveRecord(ownerId ?? PUBLIC_OWNER, homeNamespace, kind, ref, new Map(), new Map());
    if (!record) return undefined;
    return { scope: record.ownerId === PUBLIC_OWNER ? 'public' : 'user', spec: this.clearSpecOf(record), record };
  }

  /** Lists resources visible to the actor, paginated by keyset (api.md §2.6). */
  async list(
    actor: Actor,
    kind: KindName,
    q: { namespace?: string; limit: number; after?: [string, string, number]; selector?: SelectorTerm[]; text?: string; scope: 'all' | 'own' | 'public'; ownerId?: string },
  ): Promise<{ items: ResourceRecord[]; last?: [string, string, number]; more: boolean }> {
    const ownerIds = q.ownerId !== undefined ? [q.ownerId] : q.scope === 'own' ? [actor.userId] : q.scope === 'public' ? [PUBLIC_OWNER] : [actor.userId, PUBLIC_OWNER];
    const items: ResourceRecord[] = [];
    let after = q.after;
    const text = q.text?.toLowerCase();
    const batch = Math.min(500, Math.max(q.limit + 1, 50));
    for (;;) {
      const rows = await this.store.list({ kind, namespace: q.namespace, ownerIds, after, limit: batch });
      for (const r of rows) {
        after = [r.namespace, r.name, r.ownerId === PUBLIC_OWNER ? 1 : 0];
        if (q.selector && !matchesSelector(r.labels, q.selector)) continue;
        if (text && !r.name.toLowerCase().includes(text) && !(r.displayName ?? '').toLowerCase().includes(text)) continue;
        items.push(r);
        if (items.length > q.limit) {
          const page = items.slice(0, q.limit);
          const last = page[page.length - 1]!;
          return { items: page, last: [last.namespace, last.name, last.ownerId === PUBLIC_OWNER ? 1 : 0], more: true };
        }
      }
      if (rows.length < batch) return { items, more: false };
    }
  }

  async namespaces(actor: Actor) {
    return this.store.namespaces(actor.userId);
  }

  // ---------------------------------------------------------------- writes

  /** Creates one resource (POST). */
  async create(actor: Actor, raw: unknown, opts: Omit<WriteOptions, 'mode'>): Promise<ApplyResultItem> {
    return this.single(actor, raw, { ...opts, mode: 'create' });
  }

  /** Replaces one resource (PUT), honouring resourceVersion/uid preconditions. */
  async replace(actor: Actor, raw: unknown, opts: Omit<WriteOptions, 'mode'>): Promise<ApplyResultItem> {
    return this.single(actor, raw, { ...opts, mode: 'replace' });
  }

  /** Applies an RFC 7386 merge patch to the stored document and replaces it with the result. */
  async patch(actor: Actor, kind: KindName, namespace: string, name: string, patch: unknown, opts: { public: boolean; dryRun: boolean }): Promise<ApplyResultItem> {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) throw new BadRequestError('a merge patch must be a JSON object');
    const existing = await this.targetForWrite(actor, kind, namespace, name, opts.public);
    const p = patch as Obj;
    const pm = (p.metadata ?? {}) as Obj;
    const causes: Cause[] = [];
    if (pm && typeof pm === 'object') {
      if ('name' in pm && pm.name !== name) causes.push({ field: 'metadata.name', reason: 'FieldValueForbidden', message: 'field is immutable' });
      if ('namespace' in pm && pm.namespace !== namespace) causes.push({ field: 'metadata.namespace', reason: 'FieldValueForbidden', message: 'field is immutable' });
    }
    if (causes.length) throw new ValidationError(invalidMessage(kind, name, causes), causes, { kind, name });
    const current: Obj = {
      apiVersion: 'agent.wecode.io/v1',
      kind,
      metadata: { name, namespace, ...(existing.displayName !== undefined ? { displayName: existing.displayName } : {}), labels: existing.labels, annotations: existing.annotations },
      spec: clearSpec(kind, existing.spec, this.box),
    };
    const merged = mergePatch(current, { ...p, status: undefined }) as Obj;
    const md = (merged.metadata ?? {}) as Obj;
    md.name = name;
    md.namespace = namespace;
    if (typeof pm.resourceVersion === 'string') md.resourceVersion = pm.resourceVersion;
    else delete md.resourceVersion;
    if (typeof pm.uid === 'string') md.uid = pm.uid;
    else delete md.uid;
    merged.metadata = md;
    return this.single(actor, merged, { mode: 'replace', public: opts.public, dryRun: opts.dryRun, routeKind: kind, routeNamespace: namespace, pathName: name, patchedFrom: existing } as WriteOptions);
  }

  private async single(actor: Actor, raw: unknown, opts: WriteOptions): Promise<ApplyResultItem> {
    const { plans } = await this.plan(actor, [raw], opts);
    const plan = plans[0]!;
    if (plan.error) throw plan.error;
    await this.commit(plans, opts.dryRun, actor, opts.inTransaction);
    return this.resultOf(plan, true);
  }

  /** Applies many documents atomically (api.md §4.8). Throws a Status carrying every result on failure. */
  async apply(actor: Actor, docs: unknown[], opts: Omit<WriteOptions, 'mode'>): Promise<ApplyResultItem[]> {
    if (docs.length > this.config.applyMaxDocuments) throw new PayloadTooLargeError(`at most ${this.config.applyMaxDocuments} documents per request`);
    const { plans } = await this.plan(actor, docs, { ...opts, mode: 'apply' });
    const failed = plans.filter((p) => p.error);
    if (failed.length) {
      const results = plans.map((p) => (p.error ? this.resultOf(p, false) : { ...this.resultOf(p, false), action: p.action === 'skipped' ? ('skipped' as const) : ('notApplied' as const), uid: undefined, resourceVersion: undefined }));
      const causes: Cause[] = [];
      for (const p of failed) {
        const c = p.error!.details.causes ?? [{ field: '', reason: p.error!.reason, message: p.error!.message }];
        for (const cause of c) causes.push({ ...cause, field: `documents[${p.index}]${cause.field ? (cause.field.startsWith('[') ? '' : '.') + cause.field : ''}` });
      }
      const all409 = failed.every((p) => p.error!.code === 409);
      const msg = `${failed.length} of ${plans.length} document${plans.length === 1 ? ' is' : 's are'} invalid; nothing was applied`;
      const err = all409 ? new ConflictError(msg, { causes }) : new ValidationError(msg, causes);
      (err as ApiError & { extra?: Obj }).extra = { results };
      throw err;
    }
    await this.commit(plans, opts.dryRun, actor);
    return plans.map((p) => this.resultOf(p, false));
  }

  private resultOf(p: Plan, withObject: boolean): ApplyResultItem {
    const kind = p.doc?.kind ?? (p.error?.details.kind as string | undefined) ?? p.skipped?.kind ?? '';
    const item: ApplyResultItem = {
      index: p.index,
      kind,
      namespace: p.doc?.metadata.namespace ?? p.skipped?.namespace,
      name: p.doc?.metadata.name ?? p.skipped?.name ?? (p.error?.details.name as string | undefined),
      action: p.error ? 'error' : (p.action ?? 'skipped'),
      warnings: p.warnings,
    };
    if (p.record && !p.error) {
      item.uid = p.record.uid;
      item.resourceVersion = String(p.record.resourceVersion);
      if (withObject) item.object = this.toApi(p.record);
    }
    if (p.error) item.error = p.error.toStatus();
    return item;
  }

  /** Finds the caller's own (or the public, with `public`) resource for a write; 404/403 otherwise. */
  private async targetForWrite(actor: Actor, kind: KindName, namespace: string, name: string, isPublic: boolean): Promise<ResourceRecord> {
    const owner = isPublic ? PUBLIC_OWNER : actor.userId;
    const rows = await this.store.findLive(this.store.db, kind, namespace, name, [actor.userId, PUBLIC_OWNER]);
    const mine = rows.find((r) => r.ownerId === owner);
    if (mine) return mine;
    if (!isPublic && rows.some((r) => r.ownerId === PUBLIC_OWNER)) {
      throw new ForbiddenError(`${kind} '${name}' is public; only admins can change it, with ?scope=public`, { kind, name });
    }
    throw this.notFound(kind, name, namespace);
  }

  private notFound(kind: string, name: string, namespace: string): NotFoundError {
    return new NotFoundError(`${kind} '${name}' not found in namespace '${namespace}'`, { kind, name });
  }

  /** Validates and plans every document; nothing is written here. */
  private async plan(actor: Actor, docs: unknown[], opts: WriteOptions): Promise<{ plans: Plan[] }> {
    const ownerId = opts.public ? PUBLIC_OWNER : actor.userId;
    const plans: Plan[] = [];
    const overlay = new Map<string, ResourceRecord>();
    const seen = new Map<string, number>();
    const now = new Date().toISOString();

    for (let index = 0; index < docs.length; index++) {
      const raw = docs[index];
      const plan: Plan = { index, ownerId, warnings: [] };
      plans.push(plan);
      try {
        if (JSON.stringify(raw ?? null).length > MAX_DOCUMENT_BYTES) throw new PayloadTooLargeError(`document ${index + 1} is larger than 512 KiB`);
        const result = normalizeDocument(raw, {
          routeKind: opts.routeKind,
          routeNamespace: opts.routeNamespace,
          defaultNamespace: opts.defaultNamespace,
          allowV1: opts.allowV1,
        });
        if (!result.ok) {
          const pr = result.problem;
          if (pr.type === 'skipped') {
            plan.action = 'skipped';
            plan.skipped = { kind: pr.kind, name: pr.name, namespace: pr.namespace };
            plan.warnings.push(pr.warning);
            continue;
          }
          if (pr.type === 'bad-request') throw new BadRequestError(pr.message);
          if (pr.type === 'unknown-kind') throw new NotFoundError(`unknown resource type '${pr.kind}'`, { kind: pr.kind });
          throw new ValidationError(invalidMessage(pr.kind, pr.name, pr.causes), pr.causes, { kind: pr.kind, name: pr.name });
        }
        const doc = result.doc;
        plan.doc = doc;
        let newUid: string | undefined;
        if (doc.metadata.name === TASK_NAME_PLACEHOLDER) {
          // Task ids are UUIDv7; the name takes the random tail (the head is a timestamp).
          newUid = uuidv7();
          doc.metadata.name = `t-${newUid.replace(/-/g, '').slice(-12)}`;
        }
        plan.warnings.push(...doc.warnings);
        const { kind, metadata } = doc;
        if (opts.public && kind === 'Task') {
          throw new ValidationError(invalidMessage(kind, metadata.name, []), [{ field: 'scope', reason: 'FieldValueNotSupported', message: 'tasks cannot be public' }], { kind, name: metadata.name });
        }
        if (opts.pathName !== undefined && metadata.name !== opts.pathName) {
          throw new BadRequestError(`metadata.name '${metadata.name}' does not match the name in the path '${opts.pathName}'`);
        }
        const idKey = key(ownerId, kind, metadata.namespace, foldName(metadata.name));
        if (seen.has(idKey)) {
          throw new ValidationError(invalidMessage(kind, metadata.name, []), [{ field: 'metadata.name', reason: 'FieldValueDuplicate', message: `the same ${kind} appears in document ${seen.get(idKey)! + 1} too` }], { kind, name: metadata.name });
        }
        seen.set(idKey, index);

        // The stored resource this document targets.
        let existing: ResourceRecord | undefined;
        if (opts.mode === 'replace') {
          existing = (opts as WriteOptions & { patchedFrom?: ResourceRecord }).patchedFrom ?? (await this.targetForWrite(actor, kind, metadata.namespace, metadata.name, opts.public));
          const pre = doc.preconditions;
          if (pre.uid !== undefined && pre.uid !== existing.uid) throw new ConflictError('the object was deleted and re-created', { kind, name: metadata.name, uid: existing.uid });
          if (pre.resourceVersion !== undefined && pre.resourceVersion !== String(existing.resourceVersion)) {
            throw new ConflictError('the object has been modified; read it again and re-apply your change', { kind, name: metadata.name });
          }
        } else {
          const clash = await this.store.findByFold(this.store.db, kind, metadata.namespace, metadata.name, ownerId);
          if (clash && clash.name !== metadata.name) {
            throw new AlreadyExistsError(`${kind} '${metadata.name}' conflicts with existing '${clash.name}': names may not differ only by case`, { kind, name: metadata.name });
          }
          if (clash && opts.mode === 'create') throw new AlreadyExistsError(`${kind} '${metadata.name}' already exists in namespace '${metadata.namespace}'`, { kind, name: metadata.name });
          existing = clash;
        }
        plan.existing = existing;

        const causes: Cause[] = [];
        // Secrets: a mask sent back keeps the stored value (resources.md §9.4).
        const storedSecrets = existing ? clearSecretsByPath(kind, existing.spec, this.box) : new Map<string, string>();
        const clear = mapSecrets(kind, doc.spec, (value, path) => {
          const old = storedSecrets.get(path);
          if (old !== undefined && value === maskSecret(old)) return old;
          if (MASK_PATTERN.test(value)) causes.push({ field: path, reason: 'FieldValueInvalid', message: 'this field holds a masked value; send the real secret' });
          return value;
        });
        plan.clear = clear;

        // Reserved labels: only admins write them; non-admins keep what exists (resources.md §3.1).
        const labels = { ...metadata.labels };
        if (!actor.isAdmin) {
          for (const [k, v] of Object.entries(metadata.labels)) {
            if (k.startsWith(RESERVED_LABEL_PREFIX) && existing?.labels[k] !== v) {
              causes.push({ field: `metadata.labels[${k}]`, reason: 'FieldValueForbidden', message: `labels with the prefix ${RESERVED_LABEL_PREFIX} are written by the server` });
            }
          }
          for (const [k, v] of Object.entries(existing?.labels ?? {})) if (k.startsWith(RESERVED_LABEL_PREFIX) && !(k in labels)) labels[k] = v;
        }
        if (kind === 'Task') {
          labels['wegent.io/source'] ??= existing?.labels['wegent.io/source'] ?? 'manifest';
          const prompt = clear.prompt;
          if (!existing && prompt === undefined) causes.push({ field: 'spec.prompt', reason: 'FieldValueRequired', message: 'the first message of the task is required' });
          if (typeof prompt === 'string' && prompt.length > this.config.maxMessageChars) causes.push({ field: 'spec.prompt', reason: 'FieldValueTooLong', message: `at most ${this.config.maxMessageChars} characters` });
          if (existing) {
            for (const f of ['prompt', 'teamRef', 'workspaceRef', 'source']) {
              const before = (clearSpec(kind, existing.spec, this.box) as Obj)[f];
              if (canonicalJson(before) !== canonicalJson(clear[f])) causes.push({ field: `spec.${f}`, reason: 'FieldValueForbidden', message: 'field is immutable' });
            }
          }
        }
        if (causes.length) throw new ValidationError(invalidMessage(kind, metadata.name, causes), causes, { kind, name: metadata.name });

        const record: ResourceRecord = {
          uid: existing?.uid ?? (opts.dryRun ? '' : (newUid ?? (kind === 'Task' ? uuidv7() : randomUUID()))),
          ownerId,
          namespace: metadata.namespace,
          kind,
          name: metadata.name,
          generation: existing?.generation ?? 1,
          resourceVersion: existing?.resourceVersion ?? 0,
          displayName: metadata.displayName,
          labels,
          annotations: metadata.annotations,
          spec: clear,
          status: existing?.status ?? {},
          createdAt: existing?.createdAt ?? now,
          updatedAt: now,
        };
        plan.record = record;
        overlay.set(key(ownerId, kind, metadata.namespace, metadata.name), record);
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        plan.error = e;
        // Name the document in its result even when it failed before normalisation.
        const md = raw !== null && typeof raw === 'object' ? ((raw as Obj).metadata as Obj | undefined) : undefined;
        const rawKind = raw !== null && typeof raw === 'object' ? (raw as Obj).kind : undefined;
        plan.skipped ??= {
          kind: typeof rawKind === 'string' ? rawKind : '',
          name: typeof md?.name === 'string' ? md.name : undefined,
          namespace: typeof md?.namespace === 'string' ? md.namespace : (opts.routeNamespace ?? opts.defaultNamespace),
        };
      }
    }

    // References and status, dependencies first so that dependents see fresh statuses.
    const order = plans.filter((p) => p.record && !p.error).sort((a, b) => KINDS[a.doc!.kind].applyOrder - KINDS[b.doc!.kind].applyOrder || a.index - b.index);
    const cache = new Map<string, ResourceRecord[]>();
    for (const p of order) {
      const doc = p.doc!;
      const record = p.record!;
      try {
        const refs = referencesOf(doc.kind, record.spec);
        const resolved: Resolved = new Map();
        const causes: Cause[] = [];
        const stored: StoredRef[] = [];
        for (const r of refs) {
          const target = await this.resolveRecord(ownerId, record.namespace, r.kind, r.ref, overlay, cache);
          resolved.set(r.field, target);
          if (!target && r.required) {
            const ns = r.ref.namespace ?? record.namespace;
            causes.push({
              field: r.field,
              reason: 'FieldValueNotFound',
              message: ownerId === PUBLIC_OWNER ? `${r.kind} '${r.ref.name}' not found among public resources in namespace '${ns}'` : `${r.kind} '${r.ref.name}' not found in namespace '${ns}' (neither yours nor public)`,
            });
          }
          if (r.protects || doc.kind === 'Task') stored.push({ field: r.field, kind: r.kind, namespace: r.ref.namespace ?? '', name: r.ref.name });
        }
        const check = checkKind(doc.kind, record.spec, resolved, record.generation, { gitAllowLocal: this.config.gitAllowLocal, now: record.updatedAt, existingStatus: p.existing?.status });
        causes.push(...check.causes);
        if (causes.length) throw new ValidationError(invalidMessage(doc.kind, record.name, causes), causes, { kind: doc.kind, name: record.name });
        if (opts.statusFields) Object.assign(check.status, opts.statusFields);
        p.refs = stored;
        p.warnings.push(...((check.status.warnings as string[] | undefined) ?? []));

        // Unchanged?
        const existing = p.existing;
        if (existing) {
          const before = clearSpec(doc.kind, existing.spec, this.box);
          const specSame = canonicalJson(before) === canonicalJson(record.spec) && !opts.contentChanged;
          const metaSame =
            canonicalJson(existing.labels) === canonicalJson(record.labels) &&
            canonicalJson(existing.annotations) === canonicalJson(record.annotations) &&
            (existing.displayName ?? null) === (record.displayName ?? null);
          const nextGeneration = specSame ? existing.generation : existing.generation + 1;
          check.status.observedGeneration = nextGeneration;
          const statusSame = canonicalJson({ ...existing.status, updatedAt: null }) === canonicalJson({ ...check.status, updatedAt: null });
          record.generation = nextGeneration;
          if (specSame && metaSame) {
            p.action = 'unchanged';
            record.status = statusSame ? existing.status : check.status;
            if (!statusSame) p.action = 'unchanged';
            record.updatedAt = existing.updatedAt;
            (p as Plan & { statusOnly?: boolean }).statusOnly = !statusSame;
          } else {
            p.action = 'configured';
            record.status = check.status;
          }
        } else {
          p.action = 'created';
          record.status = check.status;
        }
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        p.error = e;
      }
    }
    return { plans };
  }

  /** Resolution order of resources.md §6.2, over the batch overlay first, then storage. */
  private async resolveRecord(ownerId: string, home: string, kind: KindName, ref: Ref, overlay: Map<string, ResourceRecord>, cache: Map<string, ResourceRecord[]>): Promise<ResourceRecord | undefined> {
    const candidates: Array<[string, string]> = [];
    if (ownerId !== PUBLIC_OWNER) {
      candidates.push([ownerId, ref.namespace ?? home], [PUBLIC_OWNER, ref.namespace ?? home]);
    } else candidates.push([PUBLIC_OWNER, ref.namespace ?? home]);
    if (ref.namespace === undefined && home !== 'default') candidates.push([PUBLIC_OWNER, 'default']);
    for (const [owner, ns] of candidates) {
      const o = overlay.get(key(owner, kind, ns, ref.name));
      if (o) return o;
      const ck = `${kind}\u0000${ns}\u0000${ref.name}\u0000${ownerId}`;
      let rows = cache.get(ck);
      if (!rows) {
        rows = await this.store.findLive(this.store.db, kind, ns, ref.name, ownerId === PUBLIC_OWNER ? [PUBLIC_OWNER] : [ownerId, PUBLIC_OWNER]);
        cache.set(ck, rows);
      }
      const hit = rows.find((r) => r.ownerId === owner);
      if (hit) return hit;
    }
    return undefined;
  }

  /** Writes every planned change in one transaction, dependencies first. */
  private async commit(plans: Plan[], dryRun: boolean, actor: Actor, inTransaction?: WriteOptions['inTransaction']): Promise<void> {
    const writes = plans
      .filter((p) => p.record && !p.error && (p.action === 'created' || p.action === 'configured' || (p as Plan & { statusOnly?: boolean }).statusOnly))
      .sort((a, b) => KINDS[a.doc!.kind].applyOrder - KINDS[b.doc!.kind].applyOrder || a.index - b.index);
    if (dryRun || !writes.length) return;
    await this.storage.db.transaction().execute(async (trx) => {
      let version = await this.store.nextVersions(trx, writes.length);
      for (const p of writes) {
        const r = p.record!;
        r.resourceVersion = version++;
        const stored: ResourceRecord = { ...r, spec: encryptSpec(r.kind, r.spec, this.box) };
        if (p.action === 'created') await this.store.insert(trx, stored, p.refs ?? []);
        else await this.store.update(trx, stored, p.refs);
        if (p.action === 'created' && stored.kind === 'Task' && this.onTaskCreated) await this.onTaskCreated(trx, { ...stored, spec: r.spec }, actor);
        if (inTransaction) await inTransaction(trx, stored);
        p.record = stored;
      }
    });
    // Stored form now carries encrypted secrets; refresh plans that were not written.
    for (const p of plans) {
      if (p.record && !writes.includes(p) && p.existing) p.record = p.existing;
    }
    await this.refreshReferrers(writes.map((p) => p.record!));
  }

  /**
   * Recomputes the status of resources that reference the changed ones (resources.md §5), following
   * the chain a few levels (Shell → Bot → Team). Best effort: a failure here never fails the write.
   */
  private async refreshReferrers(changed: ResourceRecord[]): Promise<void> {
    try {
      let frontier = changed;
      const done = new Set(changed.map((r) => r.uid));
      for (let depth = 0; depth < 3 && frontier.length; depth++) {
        const next: ResourceRecord[] = [];
        const seenNames = new Set<string>();
        for (const target of frontier) {
          const nameKey = `${target.kind}\u0000${target.name}`;
          if (seenNames.has(nameKey)) continue;
          seenNames.add(nameKey);
          for (const c of await this.store.referrerCandidates(this.store.db, target.kind, target.name)) {
            if (done.has(c.record.uid)) continue;
            done.add(c.record.uid);
            if (await this.recomputeStatus(c.record)) next.push(c.record);
          }
        }
        frontier = next;
      }
    } catch (e) {
      this.log.warn({ err: e }, 'could not refresh the status of referring resources');
    }
  }

  /** Recomputes one stored resource's status; writes and returns true when it changed. */
  private async recomputeStatus(record: ResourceRecord): Promise<boolean> {
    const resolved: Resolved = new Map();
    const cache = new Map<string, ResourceRecord[]>();
    for (const r of referencesOf(record.kind, record.spec)) {
      resolved.set(r.field, await this.resolveRecord(record.ownerId, record.namespace, r.kind, r.ref, new Map(), cache));
    }
    const now = new Date().toISOString();
    const { status } = checkKind(record.kind, record.spec, resolved, record.generation, { gitAllowLocal: this.config.gitAllowLocal, now, existingStatus: record.status });
    if (canonicalJson({ ...record.status, updatedAt: null }) === canonicalJson({ ...status, updatedAt: null })) return false;
    await this.storage.db.transaction().execute(async (trx) => {
      const version = await this.store.nextVersions(trx, 1);
      await this.store.updateStatus(trx, record.uid, status, version, now);
    });
    record.status = status;
    return true;
  }

  // ---------------------------------------------------------------- deletes

  /** Soft-deletes one resource (api.md §4.7). */
  async delete(actor: Actor, kind: KindName, namespace: string, name: string, opts: { public: boolean; dryRun: boolean; resourceVersion?: string; uid?: string }): Promise<void> {
    const target = await this.targetForWrite(actor, kind, namespace, name, opts.public);
    if (opts.uid !== undefined && opts.uid !== target.uid) throw new ConflictError('the object was deleted and re-created', { kind, name });
    if (opts.resourceVersion !== undefined && opts.resourceVersion !== String(target.resourceVersion)) {
      throw new ConflictError('the object has been modified; read it again and re-apply your change', { kind, name });
    }
    await this.deleteSet(actor, [target], opts.dryRun);
  }

  /** Deletes a set of documents atomically (api.md §4.9). */
  async batchDelete(actor: Actor, docs: unknown[], opts: { public: boolean; dryRun: boolean; ignoreNotFound: boolean; routeNamespace?: string }): Promise<ApplyResultItem[]> {
    if (docs.length > this.config.applyMaxDocuments) throw new PayloadTooLargeError(`at most ${this.config.applyMaxDocuments} documents per request`);
    const results: ApplyResultItem[] = [];
    const targets: ResourceRecord[] = [];
    const causes: Cause[] = [];
    for (let index = 0; index < docs.length; index++) {
      const d = docs[index] as Obj;
      const md = (d && typeof d === 'object' ? d.metadata : undefined) as Obj | undefined;
      const kindName = typeof d?.kind === 'string' ? d.kind : undefined;
      const kind = kindName ? (Object.keys(KINDS) as KindName[]).find((k) => k.toLowerCase() === kindName.toLowerCase()) : undefined;
      const name = typeof md?.name === 'string' ? md.name : undefined;
      const namespace = typeof md?.namespace === 'string' ? md.namespace : (opts.routeNamespace ?? 'default');
      const upstream = kindName && !kind ? isUnsupportedUpstreamKind(kindName) : undefined;
      if (upstream) {
        results.push({ index, kind: upstream, namespace, name, action: 'skipped', warnings: [`kind ${upstream} is not supported by this server; document skipped`] });
        continue;
      }
      if (!kind || !name) {
        causes.push({ field: `documents[${index}]${kind ? '.metadata.name' : '.kind'}`, reason: kind ? 'FieldValueRequired' : 'FieldValueNotSupported', message: kind ? 'name is required' : `unknown kind '${String(kindName)}'` });
        continue;
      }
      if (opts.routeNamespace !== undefined && namespace !== opts.routeNamespace) {
        throw new BadRequestError(`document ${index + 1}: namespace '${namespace}' does not match the request's namespace '${opts.routeNamespace}'`);
      }
      const rows = await this.store.findLive(this.store.db, kind, namespace, name, [opts.public ? PUBLIC_OWNER : actor.userId]);
      const target = rows[0];
      if (!target) {
        if (!opts.ignoreNotFound) throw new NotFoundError(`${kind} '${name}' not found in namespace '${namespace}'`, { kind, name });
        results.push({ index, kind, namespace, name, action: 'notFound' as ApplyAction, warnings: [] });
        continue;
      }
      if (!targets.some((t) => t.uid === target.uid)) targets.push(target);
      results.push({ index, kind, namespace, name, action: 'deleted' as ApplyAction, warnings: [] });
    }
    if (causes.length) throw new ValidationError(`${causes.length} of ${docs.length} documents are invalid; nothing was deleted`, causes);
    await this.deleteSet(actor, targets, opts.dryRun);
    return results;
  }

  private async deleteSet(_actor: Actor, targets: ResourceRecord[], dryRun: boolean): Promise<void> {
    const inSet = new Set(targets.map((t) => t.uid));
    const causes: Cause[] = [];
    const blockedTargets: Array<{ target: ResourceRecord; referrers: string[] }> = [];
    for (const target of targets) {
      const referrers = await this.referrersOf(target, inSet);
      if (referrers.length) {
        blockedTargets.push({ target, referrers: referrers.map((r) => r.label) });
        referrers.slice(0, 50).forEach((r) => causes.push({ field: `referrers[${causes.length}]`, reason: 'ResourceInUse', message: `${r.label}` }));
      }
    }
    if (blockedTargets.length) {
      const first = blockedTargets[0]!;
      const total = blockedTargets.reduce((n, b) => n + b.referrers.length, 0);
      if (total > 50) causes.push({ field: `referrers[50]`, reason: 'ResourceInUse', message: `and ${total - 50} more` });
      const firstRef = first.referrers[0]!;
      const m = /^(\w+) ([^/]+)\/(\S+) \(/.exec(firstRef);
      const who = m ? `${m[1]} '${m[3]}' (namespace ${m[2]})` : firstRef;
      const more = total > 1 ? ` and ${total - 1} more` : '';
      throw new ConflictError(`${first.target.kind} '${first.target.name}' is still used by ${who}${more}; change or delete ${total > 1 ? 'them' : 'it'} first`, {
        name: first.target.name,
        kind: first.target.kind,
        causes,
      });
    }
    if (dryRun || !targets.length) return;
    const order = [...targets].sort((a, b) => KINDS[b.kind].applyOrder - KINDS[a.kind].applyOrder);
    const at = new Date().toISOString();
    await this.storage.db.transaction().execute(async (trx) => {
      let version = await this.store.nextVersions(trx, order.length);
      for (const t of order) await this.store.softDelete(trx, t.uid, version++, at);
    });
    await this.refreshReferrers(order);
  }

  /** Live resources whose reference currently resolves to `target` (resources.md §6.4). */
  private async referrersOf(target: ResourceRecord, exclude: Set<string>): Promise<Array<{ label: string }>> {
    const candidates = await this.store.referrerCandidates(this.store.db, target.kind, target.name);
    const out: Array<{ label: string }> = [];
    const cache = new Map<string, ResourceRecord[]>();
    for (const c of candidates) {
      if (exclude.has(c.record.uid)) continue;
      if (c.record.kind === 'Task') {
        const live = this.taskStatusSource ? (await this.taskStatusSource([c.record.uid])).get(c.record.uid) : undefined;
        if (!ACTIVE_TASK_STATES.includes(String((live ?? c.record.status).status))) continue;
      }
      const refField = referencesOf(c.record.kind, c.record.spec).find((r) => r.field === c.field);
      if (!refField || (!refField.protects && c.record.kind !== 'Task') || (c.record.kind === 'Task' && refField.kind === 'Model')) continue;
      const resolved = await this.resolveRecord(c.record.ownerId, c.record.namespace, refField.kind, refField.ref, new Map(), cache);
      if (resolved?.uid !== target.uid) continue;
      const ownerPrefix = c.record.ownerId !== target.ownerId && c.record.ownerId !== PUBLIC_OWNER ? `${await this.usernameOf(c.record.ownerId)}/` : '';
      out.push({ label: `${c.record.kind} ${ownerPrefix}${c.record.namespace}/${c.record.name} (${c.field})` });
    }
    return out;
  }

  private async usernameOf(userId: string): Promise<string> {
    const row = await this.storage.db.selectFrom('users').select('username').where('id', '=', userId).executeTakeFirst();
    return row?.username ?? 'unknown-user';
  }
}
