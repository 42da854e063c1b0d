import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { KINDS, lookupKind, parseYamlDocuments, type KindName } from '@wegent/core';
import type { AppContext } from '../app.js';
import { PUBLIC_OWNER } from '../resources/store.js';
import { SYSTEM_ACTOR } from '../resources/service.js';
import { SEED_DOCUMENTS, SEED_VERSION } from './manifests.js';

type Doc = Record<string, unknown> & { kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> } };

/**
 * Ensures the public seed resources exist (resources.md §19.2): created when missing, updated to a
 * newer seed version only while unchanged since seeding, never re-created after an admin deleted one.
 */
export async function seedPublicResources(ctx: AppContext): Promise<void> {
  const docs: Doc[] = [...(SEED_DOCUMENTS as Doc[])];
  if (ctx.config.seedDir) {
    for (const file of readdirSync(ctx.config.seedDir).filter((f) => /\.(ya?ml|json)$/.test(f)).sort()) {
      const text = readFileSync(path.join(ctx.config.seedDir, file), 'utf8');
      const parsed = file.endsWith('.json') ? [JSON.parse(text)].flat() : parseYamlDocuments(text);
      for (const d of parsed as Doc[]) {
        d.metadata.labels = { ...(d.metadata.labels ?? {}), 'wegent.io/seed': 'true' };
        d.metadata.annotations = { 'wegent.io/seed-version': '1', ...(d.metadata.annotations ?? {}) };
        docs.push(d);
      }
    }
  }
  const db = ctx.storage.db;
  const toApply: Doc[] = [];
  for (const doc of docs) {
    const kind = lookupKind(doc.kind) as KindName;
    const ns = doc.metadata.namespace ?? 'default';
    const version = Number(doc.metadata.annotations?.['wegent.io/seed-version'] ?? SEED_VERSION);
    const state = await db.selectFrom('seed_state').selectAll().where('kind', '=', kind).where('namespace', '=', ns).where('name', '=', doc.metadata.name).executeTakeFirst();
    const existing = (await ctx.resources.store.findLive(db, kind, ns, doc.metadata.name, [PUBLIC_OWNER]))[0];
    if (state?.deleted) continue;
    if (!existing) {
      if (state) {
        // Seeded before and gone now: an admin deleted it. Remember, never re-create.
        await db.updateTable('seed_state').set({ deleted: 1 }).where('kind', '=', kind).where('namespace', '=', ns).where('name', '=', doc.metadata.name).execute();
        continue;
      }
      toApply.push(doc);
      continue;
    }
    if (!state || state.seed_version >= version) continue;
    const untouched = existing.generation === state.generation && existing.labels['wegent.io/seed'] === 'true' && existing.annotations['wegent.io/seed-version'] !== undefined;
    if (untouched) toApply.push(doc);
    else ctx.log.info({ kind, name: doc.metadata.name }, 'seed resource was changed by an admin; not updating it');
  }
  if (!toApply.length) return;
  toApply.sort((a, b) => KINDS[lookupKind(a.kind)!].applyOrder - KINDS[lookupKind(b.kind)!].applyOrder);
  const results = await ctx.resources.apply(SYSTEM_ACTOR, toApply, { public: true, dryRun: false, defaultNamespace: 'default' });
  for (const r of results) {
    if (r.action !== 'created' && r.action !== 'configured' && r.action !== 'unchanged') continue;
    const rows = await ctx.resources.store.findLive(db, r.kind as KindName, r.namespace!, r.name!, [PUBLIC_OWNER]);
    const rec = rows[0]!;
    const version = Number(rec.annotations['wegent.io/seed-version'] ?? SEED_VERSION);
    const exists = await db.selectFrom('seed_state').select('name').where('kind', '=', rec.kind).where('namespace', '=', rec.namespace).where('name', '=', rec.name).executeTakeFirst();
    if (exists) await db.updateTable('seed_state').set({ seed_version: version, generation: rec.generation }).where('kind', '=', rec.kind).where('namespace', '=', rec.namespace).where('name', '=', rec.name).execute();
    else await db.insertInto('seed_state').values({ kind: rec.kind, namespace: rec.namespace, name: rec.name, seed_version: version, generation: rec.generation, deleted: 0 }).execute();
  }
  ctx.log.info({ count: toApply.length }, 'seeded public resources');
}
