/** Sandbox records (sandbox.md §3) and the storage-agnostic store the server implements. */
import type { DriverName, SandboxLimits, SandboxState, StopReason } from '../types.js';

export interface SandboxRecord {
  id: string;
  taskId: string;
  ownerId: string;
  hostId: string;
  instanceId: string;
  driver: DriverName;
  state: SandboxState;
  stateReason: StopReason | null;
  message: string | null;
  image: string | null;
  limits: SandboxLimits;
  network: 'none' | 'egress';
  ports: { container: number; host: number; url: string }[];
  workspaceDir: string;
  /** Container id, or the bwrap state file. */
  driverRef: string | null;
  inUseBy: string[];
  createdAt: Date;
  readyAt: Date | null;
  lastUsedAt: Date;
  endedAt: Date | null;
  deletedAt: Date | null;
  exitCode: number | null;
  oomKilled: boolean;
}

export interface SandboxRecordFilter {
  taskId?: string;
  ownerId?: string;
  hostId?: string;
  states?: SandboxState[];
}

/** Where records live; the server backs it with the `sandboxes` table. */
export interface SandboxRecordStore {
  insert(record: SandboxRecord): Promise<void>;
  update(id: string, patch: Partial<Omit<SandboxRecord, 'id'>>): Promise<SandboxRecord>;
  get(id: string): Promise<SandboxRecord | undefined>;
  list(filter?: SandboxRecordFilter): Promise<SandboxRecord[]>;
}

/** Records in memory (tests; the embedded home until storage is wired). */
export class InMemorySandboxRecordStore implements SandboxRecordStore {
  private readonly rows = new Map<string, SandboxRecord>();

  async insert(record: SandboxRecord): Promise<void> {
    if (this.rows.has(record.id)) throw new Error(`sandbox record ${record.id} exists`);
    this.rows.set(record.id, structuredClone(record));
  }

  async update(id: string, patch: Partial<Omit<SandboxRecord, 'id'>>): Promise<SandboxRecord> {
    const row = this.rows.get(id);
    if (!row) throw new Error(`no sandbox record ${id}`);
    // Deleted is final (sandbox.md §3): a late writer — an instance that lost the sandbox to a reaper —
    // cannot bring a record back.
    if (row.state === 'Deleted' && patch.state !== undefined && patch.state !== 'Deleted') return structuredClone(row);
    Object.assign(row, structuredClone(patch));
    return structuredClone(row);
  }

  async get(id: string): Promise<SandboxRecord | undefined> {
    const row = this.rows.get(id);
    return row && structuredClone(row);
  }

  async list(filter: SandboxRecordFilter = {}): Promise<SandboxRecord[]> {
    return [...this.rows.values()]
      .filter((r) => (!filter.taskId || r.taskId === filter.taskId) && (!filter.ownerId || r.ownerId === filter.ownerId)
        && (!filter.hostId || r.hostId === filter.hostId) && (!filter.states || filter.states.includes(r.state)))
      .map((r) => structuredClone(r));
  }
}
