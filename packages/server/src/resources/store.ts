import { sql, type Kysely, type Transaction } from 'kysely';
import { foldName, type KindName } from '@wegent/core';
import type { Database, ResourcesTable } from '../storage/schema.js';
import type { Storage } from '../storage/database.js';

/** The owner id of public (system-owned) resources. */
export const PUBLIC_OWNER = '';

/** A live or deleted resource as stored (secrets still encrypted inside `spec`). */
export interface ResourceRecord {
  uid: string;
  ownerId: string;
  namespace: string;
  kind: KindName;
  name: string;
  generation: number;
  resourceVersion: number;
  displayName?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  spec: Record<string, unknown>;
  status: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export interface StoredRef {
  field: string;
  kind: KindName;
  namespace: string;
  name: string;
}

type Db = Kysely<Database> | Transaction<Database>;

function toRecord(row: ResourcesTable): ResourceRecord {
  return {
    uid: row.uid,
    ownerId: row.owner_id,
    namespace: row.namespace,
    kind: row.kind as KindName,
    name: row.name,
    generation: Number(row.generation),
    resourceVersion: Number(row.resource_version),
    displayName: row.display_name ?? undefined,
    labels: JSON.parse(row.labels),
    annotations: JSON.parse(row.annotations),
    spec: JSON.parse(row.spec),
    status: JSON.parse(row.status),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The columns a write may change. */
function mutableColumns(r: ResourceRecord) {
  return {
    generation: r.generation,
    resource_version: r.resourceVersion,
    display_name: r.displayName ?? null,
    labels: JSON.stringify(r.labels),
    annotations: JSON.stringify(r.annotations),
    spec: JSON.stringify(r.spec),
    status: JSON.stringify(r.status),
    updated_at: r.updatedAt,
  };
}

export interface ListQuery {
  kind: KindName;
  /** undefined = every namespace. */
  namespace?: string;
  ownerIds: string[];
  /** Keyset: continue after (namespace, name, rank), rank 0 = own, 1 = public. */
  after?: [string, string, number];
  limit: number;
}

/** Kysely queries over the `resources` and `resource_refs` tables. */
export class ResourceStore {
  constructor(readonly storage: Storage) {}

  get db(): Kysely<Database> {
    return this.storage.db;
  }

  /** Live resources of a kind/namespace/name among the given owners. */
  async findLive(db: Db, kind: KindName, namespace: string, name: string, ownerIds: string[]): Promise<ResourceRecord[]> {
    const rows = await db
      .selectFrom('resources')
      .selectAll()
      .where('kind', '=', kind)
      .where('namespace', '=', namespace)
      .where('name', '=', name)
      .where('owner_id', 'in', ownerIds)
      .where('live', '=', 1)
      .execute();
    return rows.map(toRecord);
  }

  /**
   * findLive outside any transaction, for the read path: on SQLite through the read connection's
   * prepared statements (no query building), elsewhere through Kysely.
   */
  async findLiveCommitted(kind: KindName, namespace: string, name: string, ownerIds: string[]): Promise<ResourceRecord[]> {
    const reader = this.storage.sqliteReader;
    if (!reader) return this.findLive(this.db, kind, namespace, name, ownerIds);
    const owners = ownerIds.length === 1 ? 'owner_id = ?' : `owner_id in (${ownerIds.map(() => '?').join(', ')})`;
    const rows = reader.all<ResourcesTable>(`select * from resources where kind = ? and namespace = ? and name = ? and ${owners} and live = 1`, [kind, namespace, name, ...ownerIds]);
    return rows.map(toRecord);
  }

  /** Only the identity and version of the live matches (cheap: no spec text leaves SQLite). */
  async findLiveVersions(kind: KindName, namespace: string, name: string, ownerIds: string[]): Promise<Array<{ uid: string; ownerId: string; resourceVersion: number }>> {
    const reader = this.storage.sqliteReader;
    let rows: Array<{ uid: string; owner_id: string; resource_version: number }>;
    if (reader) {
      const owners = ownerIds.length === 1 ? 'owner_id = ?' : `owner_id in (${ownerIds.map(() => '?').join(', ')})`;
      rows = reader.all(`select uid, owner_id, resource_version from resources where kind = ? and namespace = ? and name = ? and ${owners} and live = 1`, [kind, namespace, name, ...ownerIds]);
    } else {
      rows = await this.db.selectFrom('resources').select(['uid', 'owner_id', 'resource_version']).where('kind', '=', kind).where('namespace', '=', namespace).where('name', '=', name).where('owner_id', 'in', ownerIds).where('live', '=', 1).execute();
    }
    return rows.map((r) => ({ uid: r.uid, ownerId: r.owner_id, resourceVersion: Number(r.resource_version) }));
  }

  /** A live resource by uid (Kysely, any connection state). */
  async findLiveByUid(uid: string): Promise<ResourceRecord | undefined> {
    const row = await this.db.selectFrom('resources').selectAll().where('uid', '=', uid).where('live', '=', 1).executeTakeFirst();
    return row ? toRecord(row) : undefined;
  }

  /** A live resource by uid, read outside any transaction. */
  async getLiveByUid(uid: string): Promise<ResourceRecord | undefined> {
    const reader = this.storage.sqliteReader;
    const row = reader
      ? reader.all<ResourcesTable>('select * from resources where uid = ? and live = 1', [uid])[0]
      : await this.db.selectFrom('resources').selectAll().where('uid', '=', uid).where('live', '=', 1).executeTakeFirst();
    return row ? toRecord(row) : undefined;
  }

  /** The live resource of one owner whose name equals `name` ignoring case. */
  async findByFold(db: Db, kind: KindName, namespace: string, name: string, ownerId: string): Promise<ResourceRecord | undefined> {
    const row = await db
      .selectFrom('resources')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .where('kind', '=', kind)
      .where('namespace', '=', namespace)
      .where('name_fold', '=', foldName(name))
      .where('live', '=', 1)
      .executeTakeFirst();
    return row ? toRecord(row) : undefined;
  }

  async list(q: ListQuery): Promise<ResourceRecord[]> {
    const rank = sql<number>`case when owner_id = ${PUBLIC_OWNER} then 1 else 0 end`;
    let query = this.db
      .selectFrom('resources')
      .selectAll()
      .where('kind', '=', q.kind)
      .where('live', '=', 1)
      .where('owner_id', 'in', q.ownerIds);
    if (q.namespace !== undefined) query = query.where('namespace', '=', q.namespace);
    if (q.after) {
      const [ns, name, r] = q.after;
      query = query.where(({ or, and, eb }) =>
        or([
          eb('namespace', '>', ns),
          and([eb('namespace', '=', ns), eb('name', '>', name)]),
          and([eb('namespace', '=', ns), eb('name', '=', name), eb(rank, '>', r)]),
        ]),
      );
    }
    const rows = await query.orderBy('namespace').orderBy('name').orderBy(rank).limit(q.limit).execute();
    return rows.map(toRecord);
  }

  /** Allocates `count` new resource versions from the store-wide counter; returns the first. */
  async nextVersions(db: Db, count: number): Promise<number> {
    await db.updateTable('counters').set({ value: sql`value + ${count}` }).where('name', '=', 'resource_version').execute();
    const row = await db.selectFrom('counters').select('value').where('name', '=', 'resource_version').executeTakeFirstOrThrow();
    return Number(row.value) - count + 1;
  }

  async insert(db: Db, r: ResourceRecord, refs: StoredRef[]): Promise<void> {
    await db
      .insertInto('resources')
      .values({
        uid: r.uid,
        owner_id: r.ownerId,
        namespace: r.namespace,
        kind: r.kind,
        name: r.name,
        name_fold: foldName(r.name),
        live: 1,
        deleted_at: null,
        ...mutableColumns(r),
        created_at: r.createdAt,
      })
      .execute();
    await this.writeRefs(db, r.uid, refs);
  }

  async update(db: Db, r: ResourceRecord, refs: StoredRef[] | undefined): Promise<void> {
    await db
      .updateTable('resources')
      .set(mutableColumns(r))
      .where('uid', '=', r.uid)
      .execute();
    if (refs) {
      await db.deleteFrom('resource_refs').where('from_uid', '=', r.uid).execute();
      await this.writeRefs(db, r.uid, refs);
    }
  }

  async updateStatus(db: Db, uid: string, status: Record<string, unknown>, resourceVersion: number, updatedAt: string): Promise<void> {
    await db.updateTable('resources').set({ status: JSON.stringify(status), resource_version: resourceVersion, updated_at: updatedAt }).where('uid', '=', uid).execute();
  }

  private async writeRefs(db: Db, uid: string, refs: StoredRef[]): Promise<void> {
    if (!refs.length) return;
    await db
      .insertInto('resource_refs')
      .values(refs.map((ref) => ({ from_uid: uid, field: ref.field, to_kind: ref.kind, to_namespace: ref.namespace, to_name: ref.name })))
      .execute();
  }

  async softDelete(db: Db, uid: string, resourceVersion: number, at: string): Promise<void> {
    await db.updateTable('resources').set({ live: null, deleted_at: at, resource_version: resourceVersion, updated_at: at }).where('uid', '=', uid).execute();
    await db.deleteFrom('resource_refs').where('from_uid', '=', uid).execute();
  }

  /** Live resources holding a reference to (kind, name) in any namespace: candidates for protection. */
  async referrerCandidates(db: Db, kind: KindName, name: string): Promise<Array<{ record: ResourceRecord; field: string; ref: { namespace: string } }>> {
    const rows = await db
      .selectFrom('resource_refs as r')
      .innerJoin('resources as s', 's.uid', 'r.from_uid')
      .selectAll('s')
      .select(['r.field as ref_field', 'r.to_namespace as ref_namespace'])
      .where('r.to_kind', '=', kind)
      .where('r.to_name', '=', name)
      .where('s.live', '=', 1)
      .execute();
    return rows.map((row) => ({ record: toRecord(row as unknown as ResourcesTable), field: (row as { ref_field: string }).ref_field, ref: { namespace: (row as { ref_namespace: string }).ref_namespace } }));
  }

  /** Removes rows soft-deleted before `before` for good (resources.md §8); returns how many. */
  async purgeDeleted(before: string): Promise<number> {
    const result = await this.db.deleteFrom('resources').where('live', 'is', null).where('deleted_at', '<', before).executeTakeFirst();
    return Number(result.numDeletedRows ?? 0);
  }

  /** Namespaces with live resources, counted per owner kind (own vs public). */
  async namespaces(ownerId: string): Promise<Array<{ name: string; own: number; public: number }>> {
    const rows = await this.db
      .selectFrom('resources')
      .select(['namespace', 'owner_id', sql<number>`count(*)`.as('n')])
      .where('live', '=', 1)
      .where('owner_id', 'in', [ownerId, PUBLIC_OWNER])
      .groupBy(['namespace', 'owner_id'])
      .execute();
    const map = new Map<string, { name: string; own: number; public: number }>();
    for (const row of rows) {
      const entry = map.get(row.namespace) ?? { name: row.namespace, own: 0, public: 0 };
      if (row.owner_id === PUBLIC_OWNER) entry.public += Number(row.n);
      else entry.own += Number(row.n);
      map.set(row.namespace, entry);
    }
    if (!map.has('default')) map.set('default', { name: 'default', own: 0, public: 0 });
    return [...map.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
