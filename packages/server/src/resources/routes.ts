import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { KINDS, lookupKind, printYaml, ResourceDocument, StatusBody, isUnsupportedUpstreamKind, Name, type KindName } from '@wegent/core';
import type { App, AppContext } from '../app.js';
import { ApiError, BadRequestError, ForbiddenError, NotFoundError } from '../errors.js';
import { documentOnly, YamlBody } from '../http/plumbing.js';
import { labelSelectorParam } from '../http/selectors.js';
import type { Actor, ApplyResultItem } from './service.js';

const PLURALS = Object.values(KINDS).map((k) => k.plural);
const dryRunParam = z.enum(['true', 'false', 'All', 'all']).optional().describe('true or All: validate only, store nothing');
const scopeWrite = z.enum(['public', 'own']).optional().describe('public: act on the public resource (admins only)');

const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  continue: z.string().max(2048).optional(),
  labelSelector: z.string().max(4096).optional(),
  q: z.string().max(200).optional(),
  scope: z.enum(['all', 'own', 'public']).default('all'),
});
const ListBody = z
  .object({ apiVersion: z.string(), kind: z.string(), metadata: z.object({ continue: z.string().optional() }).loose(), items: z.array(ResourceDocument) })
  .meta({ id: 'ResourceList' });
const ApplyResultBody = z
  .object({
    kind: z.literal('ApplyResult'),
    apiVersion: z.string(),
    dryRun: z.boolean(),
    results: z.array(z.object({ index: z.number(), kind: z.string(), namespace: z.string().optional(), name: z.string().optional(), action: z.string(), uid: z.string().optional(), resourceVersion: z.string().optional(), warnings: z.array(z.string()) }).loose()),
  })
  .meta({ id: 'ApplyResult' });
const DeleteResultBody = z
  .object({ kind: z.literal('DeleteResult'), apiVersion: z.string(), dryRun: z.boolean(), results: z.array(z.object({ index: z.number(), kind: z.string(), namespace: z.string().optional(), name: z.string().optional(), action: z.string() }).loose()) })
  .meta({ id: 'DeleteResult' });
/** Resource bodies are validated by the resource service (unknown spec fields kept), documented here. */
const DocumentBody = documentOnly(z.union([ResourceDocument, z.array(ResourceDocument), z.string()]).describe('resource document(s), JSON or YAML'));
const PatchBody = documentOnly(z.record(z.string(), z.unknown()).describe('RFC 7386 merge patch of the document'));
const errors = { 400: StatusBody, 401: StatusBody, 403: StatusBody, 404: StatusBody, 409: StatusBody, 413: StatusBody, 415: StatusBody, 422: StatusBody };

function actorOf(req: FastifyRequest): Actor {
  const p = req.principal!;
  return { userId: p.userId, isAdmin: p.role === 'admin' };
}

function kindOf(plural: string): KindName {
  const kind = lookupKind(plural);
  if (!kind || KINDS[kind].plural !== plural) {
    const upstream = isUnsupportedUpstreamKind(plural.replace(/s$/, ''));
    throw new NotFoundError(upstream ? `resource type '${plural}' is not supported by this server` : `unknown resource type '${plural}'`);
  }
  return kind;
}

function checkName(value: string, what: string): void {
  if (!Name.safeParse(value).success) throw new NotFoundError(`${what} '${value.slice(0, 80)}' not found`);
}

function wantsPublic(req: FastifyRequest, scope: string | undefined): boolean {
  if (scope !== 'public') return false;
  if (req.principal!.role !== 'admin') throw new ForbiddenError('only admins can write public resources (scope=public)');
  return true;
}

const isDryRun = (v: string | undefined) => v === 'true' || v === 'All' || v === 'all';

/** The documents of a request body: YAML stream, JSON document, JSON array or a List. */
function documentsOf(body: unknown): unknown[] {
  if (body === undefined || body === null) throw new BadRequestError('the request body is empty');
  if (body instanceof YamlBody) return body.documents;
  if (Array.isArray(body)) return body;
  if (typeof body === 'object' && (body as { kind?: unknown }).kind === 'List' && Array.isArray((body as { items?: unknown }).items)) return (body as { items: unknown[] }).items;
  return [body];
}

function oneDocument(body: unknown): unknown {
  const docs = documentsOf(body);
  if (docs.length !== 1) throw new BadRequestError(`expected exactly one document, got ${docs.length}`);
  return docs[0];
}

/** RFC 7234 warn-text: a quoted string of printable ASCII (other characters escaped as \\uXXXX). */
function warnText(w: string): string {
  return w.replace(/["\\]/g, '\\$&').replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function setWarnings(reply: FastifyReply, warnings: string[]): void {
  if (warnings.length) reply.header('Warning', warnings.map((w) => `299 - "${warnText(w)}"`));
}

function requireMergePatch(req: FastifyRequest): void {
  const ct = req.headers['content-type'] ?? '';
  if (!/^application\/(merge-patch\+)?json/.test(ct)) throw new ApiError(415, 'UnsupportedMediaType', 'PATCH takes application/merge-patch+json (or application/json)');
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the body is the resource document the route's schema describes
function send(req: FastifyRequest, reply: FastifyReply, body: unknown): any {
  if (wantsYaml(req)) {
    const b = body as { kind?: string; items?: unknown[] };
    reply.type('application/yaml; charset=utf-8');
    return reply.send(printYaml([b]));
  }
  return body;
}

function wantsYaml(req: FastifyRequest): boolean {
  const accept = req.headers.accept;
  return accept !== undefined && /application\/(x-)?yaml|text\/yaml/.test(accept);
}

/** The body is already JSON text. */
const passText = (payload: unknown) => payload as string;

function filterHash(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 12);
}

function decodeContinue(token: string, hash: string): [string, string, number] {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { k: [string, string, number]; h: string };
    if (v.h !== hash || !Array.isArray(v.k) || v.k.length !== 3 || typeof v.k[0] !== 'string' || typeof v.k[1] !== 'string' || (v.k[2] !== 0 && v.k[2] !== 1)) throw new Error('bad');
    return v.k;
  } catch {
    throw new BadRequestError('invalid continue token');
  }
}

/** Canonical resource routes, the seed-compatible aliases and admin access (api.md §4). */
export async function registerResourceRoutes(app: App, ctx: AppContext): Promise<void> {
  const svc = ctx.resources;

  async function listHandler(req: FastifyRequest, kind: KindName, namespace: string | undefined, q: z.infer<typeof ListQuery>, ownerId?: string) {
    const selector = labelSelectorParam(q.labelSelector);
    const hash = filterHash([kind, namespace ?? null, q.labelSelector ?? '', q.q ?? '', q.scope, ownerId ?? null]);
    const after = q.continue ? decodeContinue(q.continue, hash) : undefined;
    const page = await svc.list(actorOf(req), kind, { namespace, limit: q.limit, after, selector, text: q.q, scope: q.scope, ownerId });
    const metadata: Record<string, string> = {};
    if (page.more && page.last) metadata.continue = Buffer.from(JSON.stringify({ k: page.last, h: hash })).toString('base64url');
    const owner = ownerId ? await ownerInfo(ownerId) : undefined;
    return { apiVersion: 'agent.wecode.io/v1', kind: `${kind}List`, metadata, items: (await svc.toApiMany(page.items, owner)) as ResourceDocument[] };
  }

  async function ownerInfo(userId: string) {
    const row = await ctx.storage.db.selectFrom('users').select(['id', 'username']).where('id', '=', userId).executeTakeFirst();
    if (!row) throw new NotFoundError('user not found');
    return { id: row.id, username: row.username };
  }

  const writeResult = (reply: FastifyReply, item: ApplyResultItem, created: boolean) => {
    setWarnings(reply, item.warnings);
    reply.code(created ? 201 : 200);
    return item.object as ResourceDocument;
  };

  const applyResult = (dryRun: boolean, results: ApplyResultItem[]) => ({
    kind: 'ApplyResult' as const,
    apiVersion: 'agent.wecode.io/v1',
    dryRun,
    results: results.map(({ object: _o, ...rest }) => rest),
  });

  async function doApply(req: FastifyRequest, namespace: string | undefined, query: { dryRun?: string; scope?: string }) {
    const isPublic = wantsPublic(req, query.scope);
    const dryRun = isDryRun(query.dryRun);
    const docs = documentsOf(req.body);
    try {
      const results = await svc.apply(actorOf(req), docs, { public: isPublic, dryRun, routeNamespace: namespace, defaultNamespace: 'default' });
      return applyResult(dryRun, results);
    } catch (e) {
      if (e instanceof ApiError && (e as ApiError & { extra?: Record<string, unknown> }).extra) {
        const extra = (e as ApiError & { extra: { results: ApplyResultItem[] } }).extra;
        (e.details as Record<string, unknown>).results = extra.results;
      }
      throw e;
    }
  }

  async function doBatchDelete(req: FastifyRequest, namespace: string | undefined, query: { dryRun?: string; scope?: string; ignoreNotFound?: string }) {
    const isPublic = wantsPublic(req, query.scope);
    const dryRun = isDryRun(query.dryRun);
    const results = await svc.batchDelete(actorOf(req), documentsOf(req.body), { public: isPublic, dryRun, ignoreNotFound: query.ignoreNotFound !== 'false', routeNamespace: namespace });
    return { kind: 'DeleteResult' as const, apiVersion: 'agent.wecode.io/v1', dryRun, results: results.map(({ index, kind, namespace: ns, name, action, warnings }) => ({ index, kind, namespace: ns, name, action, ...(warnings.length ? { warnings } : {}) })) };
  }

  const nsParams = z.object({ ns: z.string(), plural: z.enum(PLURALS as [string, ...string[]]).or(z.string()) });
  const nameParams = nsParams.extend({ name: z.string() });
  const writeQuery = z.object({ dryRun: dryRunParam, scope: scopeWrite });
  const readQuery = z.object({ scope: z.enum(['own', 'public']).optional() });
  const deleteQuery = writeQuery.extend({ resourceVersion: z.string().optional(), uid: z.string().optional() });
  const tags = ['resources'];

  // ---- canonical routes
  app.get('/api/v1/namespaces', { config: { auth: 'user' }, schema: { tags, summary: 'Namespaces the caller can see', response: { 200: z.object({ items: z.array(z.object({ name: z.string(), own: z.number(), public: z.number() })) }), 401: StatusBody } } }, async (req) => ({
    items: await svc.namespaces(actorOf(req)),
  }));

  app.get('/api/v1/namespaces/:ns/:plural', { config: { auth: 'user' }, schema: { tags, summary: 'List resources of a kind', params: nsParams, querystring: ListQuery, response: { 200: ListBody, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.ns, 'namespace');
    return send(req, reply, await listHandler(req, kind, req.params.ns, req.query));
  });

  app.post('/api/v1/namespaces/:ns/:plural', { config: { auth: 'user' }, schema: { tags, summary: 'Create a resource', params: nsParams, querystring: writeQuery, body: DocumentBody, response: { 201: ResourceDocument, 200: ResourceDocument, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    const isPublic = wantsPublic(req, req.query.scope);
    const item = await svc.create(actorOf(req), oneDocument(req.body), { public: isPublic, dryRun: isDryRun(req.query.dryRun), routeKind: kind, routeNamespace: req.params.ns });
    return writeResult(reply, item, true);
  });

  app.get('/api/v1/namespaces/:ns/:plural/:name', { config: { auth: 'user' }, schema: { tags, summary: 'Read a resource', params: nameParams, querystring: readQuery, response: { 200: ResourceDocument, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.name, kind);
    checkName(req.params.ns, 'namespace');
    if (wantsYaml(req)) return send(req, reply, await svc.get(actorOf(req), kind, req.params.ns, req.params.name, req.query.scope));
    const text = await svc.getJson(actorOf(req), kind, req.params.ns, req.params.name, req.query.scope);
    return reply.type('application/json; charset=utf-8').serializer(passText).send(text as never);
  });

  app.put('/api/v1/namespaces/:ns/:plural/:name', { config: { auth: 'user' }, schema: { tags, summary: 'Replace a resource', params: nameParams, querystring: writeQuery, body: DocumentBody, response: { 200: ResourceDocument, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.name, kind);
    const isPublic = wantsPublic(req, req.query.scope);
    const item = await svc.replace(actorOf(req), oneDocument(req.body), { public: isPublic, dryRun: isDryRun(req.query.dryRun), routeKind: kind, routeNamespace: req.params.ns, pathName: req.params.name });
    return writeResult(reply, item, false);
  });

  app.patch('/api/v1/namespaces/:ns/:plural/:name', { config: { auth: 'user' }, schema: { tags, summary: 'Merge-patch a resource (RFC 7386)', params: nameParams, querystring: writeQuery, body: PatchBody, response: { 200: ResourceDocument, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.name, kind);
    requireMergePatch(req);
    const isPublic = wantsPublic(req, req.query.scope);
    const item = await svc.patch(actorOf(req), kind, req.params.ns, req.params.name, req.body, { public: isPublic, dryRun: isDryRun(req.query.dryRun) });
    return writeResult(reply, item, false);
  });

  app.delete('/api/v1/namespaces/:ns/:plural/:name', { config: { auth: 'user' }, schema: { tags, summary: 'Delete a resource (soft delete)', params: nameParams, querystring: deleteQuery, response: { 204: z.null().describe('deleted'), ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.name, kind);
    const isPublic = wantsPublic(req, req.query.scope);
    const body = (req.body ?? {}) as { resourceVersion?: unknown; uid?: unknown; metadata?: { resourceVersion?: unknown; uid?: unknown } };
    const rv = req.query.resourceVersion ?? (typeof body.resourceVersion === 'string' ? body.resourceVersion : typeof body.metadata?.resourceVersion === 'string' ? body.metadata.resourceVersion : undefined);
    const uid = req.query.uid ?? (typeof body.uid === 'string' ? body.uid : typeof body.metadata?.uid === 'string' ? body.metadata.uid : undefined);
    await svc.delete(actorOf(req), kind, req.params.ns, req.params.name, { public: isPublic, dryRun: isDryRun(req.query.dryRun), resourceVersion: rv, uid });
    return reply.code(204).send(null);
  });

  const batchQuery = z.object({ dryRun: dryRunParam, scope: scopeWrite });
  const deleteBatchQuery = batchQuery.extend({ ignoreNotFound: z.enum(['true', 'false']).optional() });
  const nsOnly = z.object({ ns: z.string() });
  app.post('/api/v1/namespaces/:ns/apply', { config: { auth: 'user' }, schema: { tags, summary: 'Apply documents (create or update), atomically', params: nsOnly, querystring: batchQuery, body: DocumentBody, response: { 200: ApplyResultBody, ...errors } } }, async (req) => {
    checkName(req.params.ns, 'namespace');
    return doApply(req, req.params.ns, req.query);
  });
  app.post('/api/v1/apply', { config: { auth: 'user' }, schema: { tags, summary: 'Apply documents, each in its own namespace', querystring: batchQuery, body: DocumentBody, response: { 200: ApplyResultBody, ...errors } } }, async (req) => doApply(req, undefined, req.query));
  app.post('/api/v1/namespaces/:ns/delete', { config: { auth: 'user' }, schema: { tags, summary: 'Delete a set of documents atomically', params: nsOnly, querystring: deleteBatchQuery, body: DocumentBody, response: { 200: DeleteResultBody, ...errors } } }, async (req) => {
    checkName(req.params.ns, 'namespace');
    return doBatchDelete(req, req.params.ns, req.query);
  });
  app.post('/api/v1/delete', { config: { auth: 'user' }, schema: { tags, summary: 'Delete a set of documents atomically', querystring: deleteBatchQuery, body: DocumentBody, response: { 200: DeleteResultBody, ...errors } } }, async (req) => doBatchDelete(req, undefined, req.query));

  // ---- seed-compatible aliases (api.md §4.10)
  const aliasTags = ['resources (seed-compatible aliases)'];
  const kindsParams = z.object({ plural: z.string() });
  const kindsNameParams = kindsParams.extend({ name: z.string() });
  const nsQuery = z.object({ namespace: z.string().optional() });
  app.get('/api/v1/kinds/:plural', { config: { auth: 'user' }, schema: { tags: aliasTags, params: kindsParams, querystring: ListQuery.extend({ namespace: z.string().optional() }), response: { 200: ListBody, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    if (req.query.namespace !== undefined) checkName(req.query.namespace, 'namespace');
    return send(req, reply, await listHandler(req, kind, req.query.namespace, req.query));
  });
  app.post('/api/v1/kinds/:plural', { config: { auth: 'user' }, schema: { tags: aliasTags, params: kindsParams, querystring: writeQuery.extend(nsQuery.shape), body: DocumentBody, response: { 201: ResourceDocument, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    const doc = oneDocument(req.body) as Record<string, unknown>;
    const md = (doc && typeof doc === 'object' ? doc.metadata : undefined) as Record<string, unknown> | undefined;
    const ns = req.query.namespace ?? (typeof md?.namespace === 'string' ? md.namespace : 'default');
    const item = await svc.create(actorOf(req), doc, { public: wantsPublic(req, req.query.scope), dryRun: isDryRun(req.query.dryRun), routeKind: kind, routeNamespace: ns, allowV1: true });
    return writeResult(reply, item, true);
  });
  app.get('/api/v1/kinds/:plural/:name', { config: { auth: 'user' }, schema: { tags: aliasTags, params: kindsNameParams, querystring: readQuery.extend(nsQuery.shape), response: { 200: ResourceDocument, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.name, kind);
    return send(req, reply, await svc.get(actorOf(req), kind, req.query.namespace ?? 'default', req.params.name, req.query.scope));
  });
  app.put('/api/v1/kinds/:plural/:name', { config: { auth: 'user' }, schema: { tags: aliasTags, params: kindsNameParams, querystring: writeQuery.extend(nsQuery.shape), body: DocumentBody, response: { 200: ResourceDocument, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.name, kind);
    const item = await svc.replace(actorOf(req), oneDocument(req.body), { public: wantsPublic(req, req.query.scope), dryRun: isDryRun(req.query.dryRun), routeKind: kind, routeNamespace: req.query.namespace ?? 'default', pathName: req.params.name, allowV1: true });
    return writeResult(reply, item, false);
  });
  app.patch('/api/v1/kinds/:plural/:name', { config: { auth: 'user' }, schema: { tags: aliasTags, params: kindsNameParams, querystring: writeQuery.extend(nsQuery.shape), body: PatchBody, response: { 200: ResourceDocument, ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.name, kind);
    requireMergePatch(req);
    const item = await svc.patch(actorOf(req), kind, req.query.namespace ?? 'default', req.params.name, req.body, { public: wantsPublic(req, req.query.scope), dryRun: isDryRun(req.query.dryRun) });
    return writeResult(reply, item, false);
  });
  app.delete('/api/v1/kinds/:plural/:name', { config: { auth: 'user' }, schema: { tags: aliasTags, params: kindsNameParams, querystring: deleteQuery.extend(nsQuery.shape), response: { 204: z.null(), ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    checkName(req.params.name, kind);
    await svc.delete(actorOf(req), kind, req.query.namespace ?? 'default', req.params.name, { public: wantsPublic(req, req.query.scope), dryRun: isDryRun(req.query.dryRun), resourceVersion: req.query.resourceVersion, uid: req.query.uid });
    return reply.code(204).send(null);
  });

  // ---- admin access to other users' resources (api.md §4.14)
  const adminTags = ['admin'];
  const adminParams = z.object({ id: z.string(), ns: z.string(), plural: z.string() });
  app.get('/api/v1/admin/users/:id/namespaces/:ns/:plural', { config: { auth: 'admin' }, schema: { tags: adminTags, params: adminParams, querystring: ListQuery, response: { 200: ListBody, ...errors } } }, async (req) => {
    const kind = kindOf(req.params.plural);
    await ownerInfo(req.params.id);
    return listHandler(req, kind, req.params.ns, { ...req.query, scope: 'own' }, req.params.id);
  });
  app.get('/api/v1/admin/users/:id/namespaces/:ns/:plural/:name', { config: { auth: 'admin' }, schema: { tags: adminTags, params: adminParams.extend({ name: z.string() }), response: { 200: ResourceDocument, ...errors } } }, async (req) => {
    const kind = kindOf(req.params.plural);
    const owner = await ownerInfo(req.params.id);
    const rows = await svc.store.findLive(svc.store.db, kind, req.params.ns, req.params.name, [owner.id]);
    if (!rows[0]) throw new NotFoundError(`${kind} '${req.params.name}' not found`);
    return (await svc.toApiMany([rows[0]], owner))[0] as ResourceDocument;
  });
  app.delete('/api/v1/admin/users/:id/namespaces/:ns/:plural/:name', { config: { auth: 'admin' }, schema: { tags: adminTags, params: adminParams.extend({ name: z.string() }), querystring: z.object({ dryRun: dryRunParam }), response: { 204: z.null(), ...errors } } }, async (req, reply) => {
    const kind = kindOf(req.params.plural);
    const owner = await ownerInfo(req.params.id);
    await svc.delete({ userId: owner.id, isAdmin: false }, kind, req.params.ns, req.params.name, { public: false, dryRun: isDryRun(req.query.dryRun) });
    return reply.code(204).send(null);
  });
}
