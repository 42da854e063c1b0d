import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type Updateable } from 'kysely';
import { isUniqueViolation, type DialectName } from '../storage/database.js';
import type { ApiKeysTable, Database, UsersTable } from '../storage/schema.js';

export type UserRow = UsersTable;
export type ApiKeyRow = ApiKeysTable;

/** Settings rows owned by accounts (values are JSON). */
export const SETTING_KEYS = {
  registration: 'accounts.registration',
  defaultModel: 'accounts.default_model',
  /** A row that transactions changing who is an admin lock first, so that they run one at a time. */
  adminsLock: 'accounts.admins_lock',
} as const;

export interface UserListFilter {
  q?: string;
  role?: 'admin' | 'user';
  isActive?: boolean;
  /** Keyset: only users whose folded username sorts after this. */
  afterUsernameFold?: string;
  limit: number;
}

/** `LIKE` pattern for a substring, with `!` as the escape character (the same on all three databases). */
function containsPattern(text: string): string {
  return `%${text.toLowerCase().replace(/[!%_]/g, (c) => `!${c}`)}%`;
}

/** Storage of users, API keys, revoked token ids and account settings (Kysely; SQLite, MySQL, PostgreSQL). */
export class AccountStore {
  constructor(
    readonly db: Kysely<Database>,
    readonly dialect: DialectName,
  ) {}

  /** Runs `fn` in one transaction, with a store bound to it. */
  transaction<T>(fn: (store: AccountStore) => Promise<T>): Promise<T> {
    return this.db.transaction().execute((trx) => fn(new AccountStore(trx, this.dialect)));
  }

  // ---- users ----

  findUserById(id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** The user whose username or e-mail (case-insensitively) is `login`. */
  findUserByLogin(login: string): Promise<UserRow | undefined> {
    const fold = login.toLowerCase();
    const column = fold.includes('@') ? 'email_fold' : 'username_fold';
    return this.db.selectFrom('users').selectAll().where(column, '=', fold).executeTakeFirst();
  }

  /** Which of a username and an e-mail are already taken (case-insensitively), optionally ignoring one user. */
  async takenIdentity(username: string | undefined, email: string | undefined, exceptUserId?: string): Promise<{ username: boolean; email: boolean }> {
    const u = username?.toLowerCase();
    const e = email?.toLowerCase();
    if (u === undefined && e === undefined) return { username: false, email: false };
    let q = this.db
      .selectFrom('users')
      .select(['id', 'username_fold', 'email_fold'])
      .where((eb) => {
        const ors = [];
        if (u !== undefined) ors.push(eb('username_fold', '=', u));
        if (e !== undefined) ors.push(eb('email_fold', '=', e));
        return eb.or(ors);
      });
    if (exceptUserId) q = q.where('id', '!=', exceptUserId);
    const rows = await q.execute();
    return { username: rows.some((r) => r.username_fold === u), email: rows.some((r) => r.email_fold === e) };
  }

  async insertUser(row: UserRow): Promise<void> {
    await this.db.insertInto('users').values(row).execute();
  }

  /** Applies a change; `bumpTokenVersion` also invalidates every token issued so far. */
  async updateUser(id: string, patch: Updateable<UsersTable>, bumpTokenVersion = false): Promise<void> {
    const set: Record<string, unknown> = { ...patch };
    if (bumpTokenVersion) set.token_version = sql`token_version + 1`;
    if (Object.keys(set).length === 0) return;
    await this.db.updateTable('users').set(set as Updateable<UsersTable>).where('id', '=', id).execute();
  }

  async countActiveAdmins(exceptUserId?: string): Promise<number> {
    let q = this.db.selectFrom('users').select((eb) => eb.fn.countAll().as('n')).where('role', '=', 'admin').where('is_active', '=', 1);
    if (exceptUserId) q = q.where('id', '!=', exceptUserId);
    const row = await q.executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** Users sorted by folded username, filtered; `limit + 1` rows are read to know whether more follow. */
  listUsers(filter: UserListFilter): Promise<UserRow[]> {
    let q = this.db.selectFrom('users').selectAll();
    if (filter.q) {
      const p = containsPattern(filter.q);
      q = q.where(
        sql<boolean>`(${sql.ref('username_fold')} like ${p} escape '!' or ${sql.ref('email_fold')} like ${p} escape '!' or lower(${sql.ref('display_name')}) like ${p} escape '!')`,
      );
    }
    if (filter.role) q = q.where('role', '=', filter.role);
    if (filter.isActive !== undefined) q = q.where('is_active', '=', filter.isActive ? 1 : 0);
    if (filter.afterUsernameFold !== undefined) q = q.where('username_fold', '>', filter.afterUsernameFold);
    return q.orderBy('username_fold').limit(filter.limit + 1).execute();
  }

  /**
   * Locks the admins row until the transaction ends, so that concurrent setups, admin creations and
   * demotions see each other's result ("the last active admin" and "setup already done" stay true).
   * Call first inside a transaction.
   */
  async lockAdmins(): Promise<void> {
    const res = await this.db.updateTable('settings').set({ value: JSON.stringify(randomUUID()) }).where('key', '=', SETTING_KEYS.adminsLock).executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) {
      await this.db.insertInto('settings').values({ key: SETTING_KEYS.adminsLock, value: JSON.stringify(randomUUID()) }).execute();
    }
  }

  /** Creates the admins lock row if missing (outside any transaction, at start). */
  async ensureAdminsLockRow(): Promise<void> {
    const row = await this.db.selectFrom('settings').select('key').where('key', '=', SETTING_KEYS.adminsLock).executeTakeFirst();
    if (row) return;
    try {
      await this.db.insertInto('settings').values({ key: SETTING_KEYS.adminsLock, value: JSON.stringify(randomUUID()) }).execute();
    } catch (e) {
      if (!isUniqueViolation(e)) throw e;
    }
  }

  // ---- API keys ----

  async insertApiKey(row: ApiKeyRow): Promise<void> {
    await this.db.insertInto('api_keys').values(row).execute();
  }

  /** A user's keys that are not revoked (expired ones included), oldest first. */
  listApiKeys(userId: string): Promise<ApiKeyRow[]> {
    return this.db.selectFrom('api_keys').selectAll().where('user_id', '=', userId).where('revoked_at', 'is', null).orderBy('created_at').orderBy('id').execute();
  }

  /** A user's keys that still work (not revoked, not expired). */
  async countUsableApiKeys(userId: string, nowIso: string): Promise<number> {
    const row = await this.db
      .selectFrom('api_keys')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', nowIso)]))
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  findApiKeyByKeyId(keyId: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom('api_keys').selectAll().where('key_id', '=', keyId).executeTakeFirst();
  }

  /** Revokes one of a user's keys; the key id of the revoked key, or undefined when there was none. */
  async revokeApiKey(id: string, userId: string, nowIso: string): Promise<string | undefined> {
    const row = await this.db.selectFrom('api_keys').select('key_id').where('id', '=', id).where('user_id', '=', userId).where('revoked_at', 'is', null).executeTakeFirst();
    if (!row) return undefined;
    const res = await this.db.updateTable('api_keys').set({ revoked_at: nowIso }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(res.numUpdatedRows) > 0 ? row.key_id : undefined;
  }

  async touchApiKey(id: string, nowIso: string): Promise<void> {
    await this.db.updateTable('api_keys').set({ last_used_at: nowIso }).where('id', '=', id).execute();
  }

  // ---- revoked access tokens ----

  /** Records a logged-out token id until the token's own expiry; a repeat is harmless. */
  async revokeToken(jti: string, expiresAtIso: string): Promise<void> {
    try {
      await this.db.insertInto('revoked_tokens').values({ jti, expires_at: expiresAtIso }).execute();
    } catch (e) {
      if (!isUniqueViolation(e)) throw e;
    }
  }

  async isTokenRevoked(jti: string): Promise<boolean> {
    const row = await this.db.selectFrom('revoked_tokens').select('jti').where('jti', '=', jti).executeTakeFirst();
    return row !== undefined;
  }

  /** Forgets revocations of tokens that have expired anyway. */
  async pruneRevokedTokens(nowIso: string): Promise<void> {
    await this.db.deleteFrom('revoked_tokens').where('expires_at', '<', nowIso).execute();
  }

  // ---- settings ----

  async getSetting(key: string): Promise<unknown> {
    const row = await this.db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst();
    if (!row) return undefined;
    try {
      return JSON.parse(row.value) as unknown;
    } catch {
      return undefined;
    }
  }

  /** Writes a setting (update, else insert). Call inside a transaction when several go together. */
  async putSetting(key: string, value: unknown): Promise<void> {
    const text = JSON.stringify(value);
    const res = await this.db.updateTable('settings').set({ value: text }).where('key', '=', key).executeTakeFirst();
    if (Number(res.numUpdatedRows) > 0) return;
    try {
      await this.db.insertInto('settings').values({ key, value: text }).execute();
    } catch (e) {
      if (!isUniqueViolation(e)) throw e;
      await this.db.updateTable('settings').set({ value: text }).where('key', '=', key).execute();
    }
  }
}
