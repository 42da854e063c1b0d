import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../storage/schema.js';
import type { PackageFile } from './archive.js';

type Db = Kysely<Database> | Transaction<Database>;

/** Bytes per stored chunk (hex-escaped by mysql2, a chunk's statement is about 2 MiB). */
const CHUNK_BYTES = 1024 * 1024;

/** A stored skill package. */
export interface StoredPackage {
  skillUid: string;
  /** Hex sha256 of the archive bytes. */
  sha256: string;
  size: number;
  root: string;
  files: PackageFile[];
  createdAt: string;
}

/**
 * Skill packages live in the database beside their Skill row: written in the resource's own transaction
 * (nothing half-stored), visible to every server of a scaled install, and purged with the row.
 */
export const skillPackageStore = {
  /** The package's facts without its bytes. */
  async find(db: Db, skillUid: string): Promise<StoredPackage | undefined> {
    const row = await db.selectFrom('skill_packages').select(['skill_uid', 'sha256', 'size', 'root', 'files', 'created_at']).where('skill_uid', '=', skillUid).executeTakeFirst();
    return row ? { skillUid: row.skill_uid, sha256: row.sha256, size: Number(row.size), root: row.root, files: JSON.parse(row.files) as PackageFile[], createdAt: row.created_at } : undefined;
  },

  /** The archive bytes exactly as uploaded. */
  async data(db: Db, skillUid: string): Promise<Buffer | undefined> {
    const rows = await db.selectFrom('skill_package_chunks').select('data').where('skill_uid', '=', skillUid).orderBy('seq').execute();
    return rows.length ? Buffer.concat(rows.map((r) => Buffer.from(r.data))) : undefined;
  },

  /** Stores (or replaces) the package of a Skill; call inside the transaction that writes the Skill. */
  async put(db: Db, pkg: StoredPackage, data: Buffer): Promise<void> {
    await db.deleteFrom('skill_package_chunks').where('skill_uid', '=', pkg.skillUid).execute();
    await db.deleteFrom('skill_packages').where('skill_uid', '=', pkg.skillUid).execute();
    await db.insertInto('skill_packages').values({ skill_uid: pkg.skillUid, sha256: pkg.sha256, size: pkg.size, root: pkg.root, files: JSON.stringify(pkg.files), created_at: pkg.createdAt }).execute();
    for (let seq = 0; seq * CHUNK_BYTES < data.length; seq++) {
      await db.insertInto('skill_package_chunks').values({ skill_uid: pkg.skillUid, seq, data: data.subarray(seq * CHUNK_BYTES, (seq + 1) * CHUNK_BYTES) }).execute();
    }
  },
};
