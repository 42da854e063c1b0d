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

export interface TaskStateTable {
  task_id: string;
  owner_id: string;
  status: string;
  run_seq: number;
  run_id: string | null;
  status_version: number;
  status_reason: string | null;
  error_message: string | null;
  current_stage: number | null;
  /** Pipeline only (resources.md §17.2); null: 0, or 100 once the run ended. */
  progress: number | null;
  pending_confirmation: string | null;
  usage: string | null;
  message_count: number;
  next_seq: number;
  team_deleted: number;
  deleted_at: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  completed_at: string | null;
  last_message_at: string | null;
}

export interface RunsTable {
  id: string;
  task_id: string;
  run_seq: number;
  status: string;
  input: string;
  superseded_by_run_seq: number | null;
  lease_owner: string | null;
  lease_expires_at: string | null;
  created_at: string;
  completed_at: string | null;
}

export interface MessagesTable {
  id: string;
  task_id: string;
  seq: number;
  run_id: string;
  run_seq: number;
  role: 'user' | 'assistant' | 'system';
  purpose: string | null;
  visible: number;
  content: string;
  reasoning: string;
  status: string | null;
  status_reason: string | null;
  error: string | null;
  sender: string;
  blocks: string;
  model: string | null;
  usage: string | null;
  resolved: string | null;
  client_message_id: string | null;
  attempt: number;
  member_index: number | null;
  superseded_by_run_seq: number | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  time_to_first_token_ms: number | null;
  duration_ms: number | null;
}

export interface IdempotencyTable {
  user_id: string;
  client_message_id: string;
  request_hash: string;
  ack: string;
  created_at: string;
}

export interface JobsTable {
  id: string;
  user_id: string;
  task_id: string;
  run_id: string;
  run_seq: number;
  step: number;
  payload: string;
  state: 'waiting' | 'claimed';
  worker_id: string | null;
  lease_expires_at: string | null;
  attempts: number;
  enqueued_at: string;
  claimed_at: string | null;
}

/** One sandbox record (sandbox.md §3); JSON columns hold limits, ports and the turns using it. */
export interface SandboxesTable {
  id: string;
  task_id: string;
  owner_id: string;
  host_id: string;
  instance_id: string;
  driver: string;
  state: string;
  state_reason: string | null;
  message: string | null;
  image: string | null;
  limits: string;
  network: string;
  ports: string;
  workspace_dir: string;
  driver_ref: string | null;
  in_use_by: string;
  created_at: string;
  ready_at: string | null;
  last_used_at: string;
  ended_at: string | null;
  deleted_at: string | null;
  exit_code: number | null;
  oom_killed: number;
}

/** A Skill's package (resources.md §15.2): the archive as uploaded and the file list of its root. */
export interface SkillPackagesTable {
  skill_uid: string;
  /** Hex sha256 of `data`. */
  sha256: string;
  size: number;
  /** The folder holding SKILL.md inside the archive (`''` or `<top>/`). */
  root: string;
  /** JSON `[{path, size}]`, paths relative to `root`. */
  files: string;
  created_at: string;
}

/** The archive bytes of a skill package, in order of `seq`. */
export interface SkillPackageChunksTable {
  skill_uid: string;
  seq: number;
  data: Uint8Array;
}

/** Host ports claimed by sandboxes (sandbox.md §8): the primary key (host_id, port) makes a claim atomic. */
export interface SandboxPortsTable {
  host_id: string;
  port: number;
  sandbox_id: string;
  claimed_at: string;
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
  task_state: TaskStateTable;
  runs: RunsTable;
  messages: MessagesTable;
  idempotency: IdempotencyTable;
  jobs: JobsTable;
  sandboxes: SandboxesTable;
  sandbox_ports: SandboxPortsTable;
  skill_packages: SkillPackagesTable;
  skill_package_chunks: SkillPackageChunksTable;
}

