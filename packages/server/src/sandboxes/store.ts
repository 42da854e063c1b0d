import type { Kysely } from 'kysely';
import type { PortClaimStore, SandboxRecord, SandboxRecordFilter, SandboxRecordStore } from '@wegent/sandbox';
import { isUniqueViolation } from '../storage/database.js';
import type { Database, SandboxesTable } from '../storage/schema.js';

type Patch = Partial<Omit<SandboxRecord, 'id'>>;

const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);
const date = (s: string | null): Date | null => (s ? new Date(s) : null);

/** A record as its row; only the fields present in `patch` when given one. */
function toColumns(r: Patch): Partial<SandboxesTable> {
  const c: Partial<SandboxesTable> = {};
  if (r.taskId !== undefined) c.task_id = r.taskId;
  if (r.ownerId !== undefined) c.owner_id = r.ownerId;
  if (r.hostId !== undefined) c.host_id = r.hostId;
  if (r.instanceId !== undefined) c.instance_id = r.instanceId;
  if (r.driver !== undefined) c.driver = r.driver;
  if (r.state !== undefined) c.state = r.state;
  if (r.stateReason !== undefined) c.state_reason = r.stateReason;
  if (r.message !== undefined) c.message = r.message;
  if (r.image !== undefined) c.image = r.image;
  if (r.limits !== undefined) c.limits = JSON.stringify(r.limits);
  if (r.network !== undefined) c.network = r.network;
  if (r.ports !== undefined) c.ports = JSON.stringify(r.ports);
  if (r.workspaceDir !== undefined) c.workspace_dir = r.workspaceDir;
  if (r.driverRef !== undefined) c.driver_ref = r.driverRef;
  if (r.inUseBy !== undefined) c.in_use_by = JSON.stringify(r.inUseBy);
  if (r.createdAt !== undefined) c.created_at = r.createdAt.toISOString();
  if (r.readyAt !== undefined) c.ready_at = iso(r.readyAt);
  if (r.lastUsedAt !== undefined) c.last_used_at = r.lastUsedAt.toISOString();
  if (r.endedAt !== undefined) c.ended_at = iso(r.endedAt);
  if (r.deletedAt !== undefined) c.deleted_at = iso(r.deletedAt);
  if (r.exitCode !== undefined) c.exit_code = r.exitCode;
  if (r.oomKilled !== undefined) c.oom_killed = r.oomKilled ? 1 : 0;
  return c;
}

function toRecord(row: SandboxesTable): SandboxRecord {
  return {
    id: row.id,
    taskId: row.task_id,
    ownerId: row.owner_id,
    hostId: row.host_id,
    instanceId: row.instance_id,
    driver: row.driver as SandboxRecord['driver'],
    state: row.state as SandboxRecord['state'],
    stateReason: row.state_reason as SandboxRecord['stateReason'],
    message: row.message,
    image: row.image,
    limits: JSON.parse(row.limits) as SandboxRecord['limits'],
    network: row.network as SandboxRecord['network'],
    ports: JSON.parse(row.ports) as SandboxRecord['ports'],
    workspaceDir: row.workspace_dir,
    driverRef: row.driver_ref,
    inUseBy: JSON.parse(row.in_use_by) as string[],
    createdAt: new Date(row.created_at),
    readyAt: date(row.ready_at),
    lastUsedAt: new Date(row.last_used_at),
    endedAt: date(row.ended_at),
    deletedAt: date(row.deleted_at),
    exitCode: row.exit_code === null ? null : Number(row.exit_code),
    oomKilled: Number(row.oom_killed) === 1,
  };
}

/** Sandbox records in the `sandboxes` table (sandbox.md §3), for the pool and the API. */
export class SandboxStore implements SandboxRecordStore {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(record: SandboxRecord): Promise<void> {
    await this.db.insertInto('sandboxes').values({ ...(toColumns(record) as SandboxesTable), id: record.id }).execute();
  }

  /** Deleted is final (sandbox.md §3): a late writer cannot bring a record back to life. */
  async update(id: string, patch: Patch): Promise<SandboxRecord> {
    const columns = toColumns(patch);
    if (Object.keys(columns).length) {
      let q = this.db.updateTable('sandboxes').set(columns).where('id', '=', id);
      if (patch.state !== undefined && patch.state !== 'Deleted') q = q.where('state', '<>', 'Deleted');
      await q.execute();
    }
    const row = await this.get(id);
    if (!row) throw new Error(`no sandbox record ${id}`);
    return row;
  }

  async get(id: string): Promise<SandboxRecord | undefined> {
    const row = await this.db.selectFrom('sandboxes').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async list(filter: SandboxRecordFilter = {}): Promise<SandboxRecord[]> {
    let q = this.db.selectFrom('sandboxes').selectAll();
    if (filter.taskId) q = q.where('task_id', '=', filter.taskId);
    if (filter.ownerId) q = q.where('owner_id', '=', filter.ownerId);
    if (filter.hostId) q = q.where('host_id', '=', filter.hostId);
    if (filter.states) {
      if (!filter.states.length) return [];
      q = q.where('state', 'in', filter.states);
    }
    const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
    return rows.map(toRecord);
  }

  /** Removes Deleted records older than `before` (kept 7 days for display, sandbox.md §3). */
  async purgeDeleted(before: Date): Promise<number> {
    const result = await this.db.deleteFrom('sandboxes').where('state', '=', 'Deleted').where('deleted_at', '<', before.toISOString()).executeTakeFirst();
    return Number(result.numDeletedRows ?? 0);
  }
}

/** Port claims in the `sandbox_ports` table (sandbox.md §8), shared by every instance on the database. */
export class SandboxPortStore implements PortClaimStore {
  constructor(private readonly db: Kysely<Database>) {}

  async tryClaim(hostId: string, port: number, sandboxId: string): Promise<boolean> {
    try {
      await this.db.insertInto('sandbox_ports').values({ host_id: hostId, port, sandbox_id: sandboxId, claimed_at: new Date().toISOString() }).execute();
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  async releaseSandbox(hostId: string, sandboxId: string): Promise<void> {
    await this.db.deleteFrom('sandbox_ports').where('host_id', '=', hostId).where('sandbox_id', '=', sandboxId).execute();
  }

  async list(hostId: string): Promise<{ port: number; sandboxId: string }[]> {
    const rows = await this.db.selectFrom('sandbox_ports').select(['port', 'sandbox_id']).where('host_id', '=', hostId).orderBy('port').execute();
    return rows.map((r) => ({ port: Number(r.port), sandboxId: r.sandbox_id }));
  }
}
