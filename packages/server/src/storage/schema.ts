/** Row types of every table; the migrations in migrations.ts create exactly these. */
export interface UsersTable {
  id: string;
  username: string;
  username_fold: string;
  email: string;
  email_fold: string;
  display_name: string;
  password_hash: string;
  role: 'admin' | 'user';
  is_active: number;
  token_version: number;
  default_model: string | null;
  locale: string;
  created_at: string;
  last_login_at: string | null;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  key_id: string;
  secret_hash: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  revoked_at: string | null;
}

export interface RevokedTokensTable {
  jti: string;
  expires_at: string;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface CountersTable {
  name: string;
  value: number;
}

/** Every kind but Task lives here; owner_id '' marks a public (system-owned) resource. */
export interface ResourcesTable {
  uid: string;
  owner_id: string;
  namespace: string;
  kind: string;
  name: string;
  name_fold: string;
  /** 1 while live, NULL once soft-deleted: lets a plain unique index cover live rows only. */
  live: number | null;
  deleted_at: string | null;
  generation: number;
  resource_version: number;
  display_name: string | null;
  labels: string;
  annotations: string;
  spec: string;
  status: string;
  created_at: string;
  updated_at: string;
}

/** References held by live resources, for deletion protection (resources.md §6.4). */
export interface ResourceRefsTable {
  from_uid: string;
  field: string;
  to_kind: string;
  to_namespace: string;
  to_name: string;
}

export interface SeedStateTable {
  kind: string;
  namespace: string;
  name: string;
  seed_version: number;
  generation: number;
  deleted: number;
}

export interface Database {
  users: UsersTable;
  api_keys: ApiKeysTable;
  revoked_tokens: RevokedTokensTable;
  settings: SettingsTable;
  counters: CountersTable;
  resources: ResourcesTable;
  resource_refs: ResourceRefsTable;
  seed_state: SeedStateTable;
}

