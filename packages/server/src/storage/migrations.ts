import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { DialectName } from './database.js';

/**
 * Forward-only migrations, run at start. Name and namespace columns compare byte-wise on every
 * database (binary collation on MySQL, "C" on PostgreSQL) so that all three order and match alike.
 */
function migrations(dialect: DialectName): Record<string, Migration> {
  const big = sql.raw(dialect === 'mysql' ? 'mediumtext' : 'text');
  const bin = dialect === 'postgres' ? sql`collate "C"` : sql``;
  const tableEnd = dialect === 'mysql' ? sql`engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin` : sql``;
  const vc = (n: number) => `varchar(${n})` as const;

  return {
    '0001_initial': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('users')
          .addColumn('id', vc(36), (c) => c.primaryKey())
          .addColumn('username', vc(32), (c) => c.notNull())
          .addColumn('username_fold', vc(32), (c) => c.notNull().unique())
          .addColumn('email', vc(254), (c) => c.notNull())
          .addColumn('email_fold', vc(254), (c) => c.notNull().unique())
          .addColumn('display_name', vc(100), (c) => c.notNull())
          .addColumn('password_hash', vc(255), (c) => c.notNull())
          .addColumn('role', vc(16), (c) => c.notNull())
          .addColumn('is_active', 'integer', (c) => c.notNull())
          .addColumn('token_version', 'integer', (c) => c.notNull())
          .addColumn('default_model', vc(200))
          .addColumn('locale', vc(16), (c) => c.notNull())
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addColumn('last_login_at', vc(30))
          .modifyEnd(tableEnd)
          .execute();
        await db.schema
          .createTable('api_keys')
          .addColumn('id', vc(36), (c) => c.primaryKey())
          .addColumn('user_id', vc(36), (c) => c.notNull())
          .addColumn('key_id', vc(16), (c) => c.notNull().unique())
          .addColumn('secret_hash', vc(64), (c) => c.notNull())
          .addColumn('name', vc(100), (c) => c.notNull())
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addColumn('last_used_at', vc(30))
          .addColumn('expires_at', vc(30))
          .addColumn('revoked_at', vc(30))
          .modifyEnd(tableEnd)
          .execute();
        await db.schema.createIndex('api_keys_user').on('api_keys').column('user_id').execute();
        await db.schema
          .createTable('revoked_tokens')
          .addColumn('jti', vc(64), (c) => c.primaryKey())
          .addColumn('expires_at', vc(30), (c) => c.notNull())
          .modifyEnd(tableEnd)
          .execute();
        await db.schema
          .createTable('settings')
          .addColumn('key', vc(64), (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .modifyEnd(tableEnd)
          .execute();
        await db.schema
          .createTable('counters')
          .addColumn('name', vc(64), (c) => c.primaryKey())
          .addColumn('value', 'bigint', (c) => c.notNull())
          .modifyEnd(tableEnd)
          .execute();
        await db.schema
          .createTable('resources')
          .addColumn('uid', vc(36), (c) => c.primaryKey())
          .addColumn('owner_id', vc(36), (c) => c.notNull())
          .addColumn('namespace', vc(63), (c) => c.notNull().modifyEnd(bin))
          .addColumn('kind', vc(16), (c) => c.notNull())
          .addColumn('name', vc(63), (c) => c.notNull().modifyEnd(bin))
          .addColumn('name_fold', vc(63), (c) => c.notNull().modifyEnd(bin))
          .addColumn('live', 'integer')
          .addColumn('deleted_at', vc(30))
          .addColumn('generation', 'integer', (c) => c.notNull())
          .addColumn('resource_version', 'bigint', (c) => c.notNull())
          .addColumn('display_name', vc(256))
          .addColumn('labels', 'text', (c) => c.notNull())
          .addColumn('annotations', big, (c) => c.notNull())
          .addColumn('spec', big, (c) => c.notNull())
          .addColumn('status', big, (c) => c.notNull())
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addColumn('updated_at', vc(30), (c) => c.notNull())
          .modifyEnd(tableEnd)
          .execute();
        await db.schema
          .createIndex('resources_identity')
          .on('resources')
          .columns(['owner_id', 'kind', 'namespace', 'name_fold', 'live'])
          .unique()
          .execute();
        await db.schema.createIndex('resources_lookup').on('resources').columns(['kind', 'namespace', 'name', 'owner_id']).execute();
        await db.schema.createIndex('resources_owner').on('resources').columns(['owner_id', 'kind', 'live']).execute();
        await db.schema
          .createTable('resource_refs')
          .addColumn('from_uid', vc(36), (c) => c.notNull())
          .addColumn('field', vc(200), (c) => c.notNull())
          .addColumn('to_kind', vc(16), (c) => c.notNull())
          .addColumn('to_namespace', vc(63), (c) => c.notNull().modifyEnd(bin))
          .addColumn('to_name', vc(63), (c) => c.notNull().modifyEnd(bin))
          .modifyEnd(tableEnd)
          .execute();
        await db.schema.createIndex('resource_refs_from').on('resource_refs').column('from_uid').execute();
        await db.schema.createIndex('resource_refs_to').on('resource_refs').columns(['to_kind', 'to_name', 'to_namespace']).execute();
        await db.schema
          .createTable('seed_state')
          .addColumn('kind', vc(16), (c) => c.notNull())
          .addColumn('namespace', vc(63), (c) => c.notNull().modifyEnd(bin))
          .addColumn('name', vc(63), (c) => c.notNull().modifyEnd(bin))
          .addColumn('seed_version', 'integer', (c) => c.notNull())
          .addColumn('generation', 'integer', (c) => c.notNull())
          .addColumn('deleted', 'integer', (c) => c.notNull())
          .addPrimaryKeyConstraint('seed_state_pk', ['kind', 'namespace', 'name'])
          .modifyEnd(tableEnd)
          .execute();
        await db.insertInto('counters' as never).values({ name: 'resource_version', value: 0 } as never).execute();
      },
    },
    '0002_conversations': {
      async up(db: Kysely<unknown>) {
        // The run-time state of a Task; its document (spec, labels) stays in `resources`.
        await db.schema
          .createTable('task_state')
          .addColumn('task_id', vc(36), (c) => c.primaryKey())
          .addColumn('owner_id', vc(36), (c) => c.notNull())
          .addColumn('status', vc(24), (c) => c.notNull())
          .addColumn('run_seq', 'integer', (c) => c.notNull())
          .addColumn('run_id', vc(36))
          .addColumn('status_version', 'integer', (c) => c.notNull())
          .addColumn('status_reason', vc(64))
          .addColumn('error_message', 'text')
          .addColumn('current_stage', 'integer')
          .addColumn('pending_confirmation', 'text')
          .addColumn('usage', 'text')
          .addColumn('message_count', 'integer', (c) => c.notNull())
          .addColumn('next_seq', 'integer', (c) => c.notNull())
          .addColumn('team_deleted', 'integer', (c) => c.notNull())
          .addColumn('deleted_at', vc(30))
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addColumn('updated_at', vc(30), (c) => c.notNull())
          .addColumn('started_at', vc(30))
          .addColumn('completed_at', vc(30))
          .addColumn('last_message_at', vc(30))
          .modifyEnd(tableEnd)
          .execute();
        await db.schema.createIndex('task_state_owner').on('task_state').columns(['owner_id', 'updated_at']).execute();
        await db.schema.createIndex('task_state_status').on('task_state').columns(['status']).execute();
        await db.schema
          .createTable('runs')
          .addColumn('id', vc(36), (c) => c.primaryKey())
          .addColumn('task_id', vc(36), (c) => c.notNull())
          .addColumn('run_seq', 'integer', (c) => c.notNull())
          .addColumn('status', vc(24), (c) => c.notNull())
          .addColumn('input', big, (c) => c.notNull())
          .addColumn('superseded_by_run_seq', 'integer')
          .addColumn('lease_owner', vc(64))
          .addColumn('lease_expires_at', vc(30))
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addColumn('completed_at', vc(30))
          .addUniqueConstraint('runs_task_seq', ['task_id', 'run_seq'])
          .modifyEnd(tableEnd)
          .execute();
        // User messages and assistant turns share one sequence per task (api.md §5.1).
        await db.schema
          .createTable('messages')
          .addColumn('id', vc(36), (c) => c.primaryKey())
          .addColumn('task_id', vc(36), (c) => c.notNull())
          .addColumn('seq', 'integer', (c) => c.notNull())
          .addColumn('run_id', vc(36), (c) => c.notNull())
          .addColumn('run_seq', 'integer', (c) => c.notNull())
          .addColumn('role', vc(16), (c) => c.notNull())
          .addColumn('purpose', vc(24))
          .addColumn('visible', 'integer', (c) => c.notNull())
          .addColumn('content', big, (c) => c.notNull())
          .addColumn('reasoning', big, (c) => c.notNull())
          .addColumn('status', vc(24))
          .addColumn('status_reason', vc(64))
          .addColumn('error', 'text')
          .addColumn('sender', 'text', (c) => c.notNull())
          .addColumn('blocks', big, (c) => c.notNull())
          .addColumn('model', 'text')
          .addColumn('usage', 'text')
          .addColumn('resolved', 'text')
          .addColumn('client_message_id', vc(64))
          .addColumn('attempt', 'integer', (c) => c.notNull())
          .addColumn('member_index', 'integer')
          .addColumn('superseded_by_run_seq', 'integer')
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addColumn('started_at', vc(30))
          .addColumn('completed_at', vc(30))
          .addColumn('time_to_first_token_ms', 'integer')
          .addColumn('duration_ms', 'integer')
          .addUniqueConstraint('messages_task_seq', ['task_id', 'seq'])
          .modifyEnd(tableEnd)
          .execute();
        await db.schema.createIndex('messages_run').on('messages').columns(['run_id', 'status']).execute();
        await db.schema
          .createTable('idempotency')
          .addColumn('user_id', vc(36), (c) => c.notNull())
          .addColumn('client_message_id', vc(64), (c) => c.notNull())
          .addColumn('request_hash', vc(64), (c) => c.notNull())
          .addColumn('ack', 'text', (c) => c.notNull())
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addPrimaryKeyConstraint('idempotency_pk', ['user_id', 'client_message_id'])
          .modifyEnd(tableEnd)
          .execute();
        // The embedded job queue (chat-protocol.md §10): one row per run step, persisted.
        await db.schema
          .createTable('jobs')
          .addColumn('id', vc(80), (c) => c.primaryKey())
          .addColumn('user_id', vc(36), (c) => c.notNull())
          .addColumn('task_id', vc(36), (c) => c.notNull())
          .addColumn('run_id', vc(36), (c) => c.notNull())
          .addColumn('run_seq', 'integer', (c) => c.notNull())
          .addColumn('step', 'integer', (c) => c.notNull())
          .addColumn('payload', 'text', (c) => c.notNull())
          .addColumn('state', vc(16), (c) => c.notNull())
          .addColumn('worker_id', vc(64))
          .addColumn('lease_expires_at', vc(30))
          .addColumn('attempts', 'integer', (c) => c.notNull())
          .addColumn('enqueued_at', vc(30), (c) => c.notNull())
          .addColumn('claimed_at', vc(30))
          .modifyEnd(tableEnd)
          .execute();
        await db.schema.createIndex('jobs_state').on('jobs').columns(['state', 'user_id', 'enqueued_at']).execute();
      },
    },
    // Sandbox records (sandbox.md §3): written by the pool through the sandboxes store.
    '0003_sandboxes': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('sandboxes')
          .addColumn('id', vc(36), (c) => c.primaryKey())
          .addColumn('task_id', vc(36), (c) => c.notNull())
          .addColumn('owner_id', vc(36), (c) => c.notNull())
          .addColumn('host_id', vc(100), (c) => c.notNull())
          .addColumn('instance_id', vc(100), (c) => c.notNull())
          .addColumn('driver', vc(16), (c) => c.notNull())
          .addColumn('state', vc(16), (c) => c.notNull())
          .addColumn('state_reason', vc(32))
          .addColumn('message', 'text')
          .addColumn('image', 'text')
          .addColumn('limits', 'text', (c) => c.notNull())
          .addColumn('network', vc(16), (c) => c.notNull())
          .addColumn('ports', 'text', (c) => c.notNull())
          .addColumn('workspace_dir', 'text', (c) => c.notNull())
          .addColumn('driver_ref', 'text')
          .addColumn('in_use_by', 'text', (c) => c.notNull())
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addColumn('ready_at', vc(30))
          .addColumn('last_used_at', vc(30), (c) => c.notNull())
          .addColumn('ended_at', vc(30))
          .addColumn('deleted_at', vc(30))
          .addColumn('exit_code', 'integer')
          .addColumn('oom_killed', 'integer', (c) => c.notNull())
          .modifyEnd(tableEnd)
          .execute();
        await db.schema.createIndex('sandboxes_task').on('sandboxes').column('task_id').execute();
        await db.schema.createIndex('sandboxes_owner').on('sandboxes').columns(['owner_id', 'created_at']).execute();
        await db.schema.createIndex('sandboxes_host_state').on('sandboxes').columns(['host_id', 'state']).execute();
      },
    },
    // Skill packages (resources.md §15.2): the archive bytes beside their Skill, written in the same
    // transaction as the resource and purged with its row (foreign keys, on delete cascade).
    '0004_skill_packages': {
      async up(db: Kysely<unknown>) {
        const blob = sql.raw(dialect === 'mysql' ? 'longblob' : dialect === 'postgres' ? 'bytea' : 'blob');
        await db.schema
          .createTable('skill_packages')
          .addColumn('skill_uid', vc(36), (c) => c.primaryKey())
          .addColumn('sha256', vc(64), (c) => c.notNull())
          .addColumn('size', 'integer', (c) => c.notNull())
          .addColumn('root', vc(256), (c) => c.notNull())
          .addColumn('files', big, (c) => c.notNull())
          .addColumn('created_at', vc(30), (c) => c.notNull())
          .addForeignKeyConstraint('skill_packages_resource', ['skill_uid'], 'resources', ['uid'], (fk) => fk.onDelete('cascade'))
          .modifyEnd(tableEnd)
          .execute();
        // The bytes in 1 MiB chunks: one statement stays far below MySQL's max_allowed_packet (16 MiB).
        await db.schema
          .createTable('skill_package_chunks')
          .addColumn('skill_uid', vc(36), (c) => c.notNull())
          .addColumn('seq', 'integer', (c) => c.notNull())
          .addColumn('data', blob, (c) => c.notNull())
          .addPrimaryKeyConstraint('skill_package_chunks_pk', ['skill_uid', 'seq'])
          .addForeignKeyConstraint('skill_package_chunks_package', ['skill_uid'], 'skill_packages', ['skill_uid'], (fk) => fk.onDelete('cascade'))
          .modifyEnd(tableEnd)
          .execute();
      },
    },
    // A pipeline task's progress (resources.md §17.2): finished stages ÷ stages, kept as its stages run.
    '0005_task_progress': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('task_state').addColumn('progress', 'integer').execute();
      },
    },
    // Port claims of sandboxes that publish a port (sandbox.md §8): a claim is an insert, and the primary key
    // (host_id, port) lets only one of several racing allocators — threads, processes, instances — win it.
    '0006_sandbox_ports': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('sandbox_ports')
          .addColumn('host_id', vc(100), (c) => c.notNull())
          .addColumn('port', 'integer', (c) => c.notNull())
          .addColumn('sandbox_id', vc(36), (c) => c.notNull())
          .addColumn('claimed_at', vc(30), (c) => c.notNull())
          .addPrimaryKeyConstraint('sandbox_ports_pk', ['host_id', 'port'])
          .modifyEnd(tableEnd)
          .execute();
        await db.schema.createIndex('sandbox_ports_sandbox').on('sandbox_ports').columns(['host_id', 'sandbox_id']).execute();
      },
    },
  };
}

/** Brings the schema up to date; refuses to run against a database newer than this code. */
export async function migrateToLatest(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  const provider: MigrationProvider = { getMigrations: async () => migrations(dialect) };
  const migrator = new Migrator({ db, provider, migrationTableName: 'wegent_migrations', migrationLockTableName: 'wegent_migrations_lock' });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error) throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${(error as Error).message ?? String(error)}`);
}
