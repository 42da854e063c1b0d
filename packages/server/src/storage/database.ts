import type BetterSqlite3 from 'better-sqlite3';
import { Kysely, MysqlDialect, PostgresDialect, SqliteDialect, type Dialect } from 'kysely';
import type { Database } from './schema.js';

export type DialectName = 'sqlite' | 'mysql' | 'postgres';

/** True for a unique-constraint violation on any of the three databases. */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: unknown; errno?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  return (
    e.code === 'SQLITE_CONSTRAINT_UNIQUE' ||
    e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' ||
    e.code === 'ER_DUP_ENTRY' ||
    e.errno === 1062 ||
    e.code === '23505'
  );
}

export interface Storage {
  db: Kysely<Database>;
  dialect: DialectName;
  /**
   * SQLite only: a second connection for hot-path reads with cached prepared statements. It sees
   * committed data only (WAL snapshots), never a transaction in progress on the main connection.
   */
  sqliteReader?: SqliteReader;
  close(): Promise<void>;
}

/** Prepared-statement reads on SQLite's read connection. */
export class SqliteReader {
  private readonly statements = new Map<string, BetterSqlite3.Statement>();

  constructor(private readonly database: BetterSqlite3.Database) {}

  /** All rows of a read-only query; the statement is prepared once per SQL text. */
  all<T>(sqlText: string, params: unknown[]): T[] {
    let statement = this.statements.get(sqlText);
    if (!statement) {
      statement = this.database.prepare(sqlText);
      this.statements.set(sqlText, statement);
    }
    return statement.all(...params) as T[];
  }

  close(): void {
    this.database.close();
  }
}

/**
 * Kysely prepares every query anew on SQLite; compiling the SQL is a large part of a small query's
 * cost. Statements are cached per SQL text (bounded). Safe because Kysely runs one query at a time on
 * the connection and this project never streams rows (`iterate`), which could hold a statement open.
 */
function withStatementCache(database: BetterSqlite3.Database): BetterSqlite3.Database {
  const statements = new Map<string, BetterSqlite3.Statement>();
  return new Proxy(database, {
    get(target, prop) {
      if (prop === 'prepare') {
        return (sqlText: string) => {
          let statement = statements.get(sqlText);
          if (!statement) {
            statement = target.prepare(sqlText);
            if (statements.size >= 2000) statements.delete(statements.keys().next().value!);
            statements.set(sqlText, statement);
          }
          return statement;
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Opens the database named by a URL: `sqlite:<file>`, `mysql://`/`mariadb://` or `postgres://`. */
export async function openStorage(url: string): Promise<Storage> {
  let dialect: Dialect;
  let name: DialectName;
  if (url.startsWith('mysql://') || url.startsWith('mariadb://')) {
    const { createPool } = await import('mysql2');
    const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
    name = 'mysql';
    const pool = createPool({
        host: u.hostname,
        port: Number(u.port || 3306),
        user: decodeURIComponent(u.username || 'root'),
        password: decodeURIComponent(u.password),
        database: u.pathname.slice(1),
        connectionLimit: 10,
        charset: 'utf8mb4',
        timezone: 'Z',
        supportBigNumbers: true,
        bigNumberStrings: false,
    });
    pool.on('connection', (conn) => conn.on('error', () => undefined));
    dialect = new MysqlDialect({ pool });
  } else if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const pg = await import('pg');
    const Pool = pg.default.Pool;
    // bigint counters fit in a double here; parse them as numbers.
    pg.default.types.setTypeParser(20, (v: string) => Number(v));
    name = 'postgres';
    const pool = new Pool({ connectionString: url, max: 10 });
    // An idle connection dropped by the server (restart, admin termination) must not crash the process.
    pool.on('error', () => undefined);
    dialect = new PostgresDialect({ pool });
  } else {
    const { default: SQLite } = await import('better-sqlite3');
    const file = url.replace(/^sqlite:(\/\/)?/, '');
    const database = new SQLite(file);
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = NORMAL');
    database.pragma('busy_timeout = 5000');
    database.pragma('foreign_keys = ON');
    name = 'sqlite';
    dialect = new SqliteDialect({ database: withStatementCache(database) });
    const readConnection = new SQLite(file);
    readConnection.pragma('busy_timeout = 5000');
    readConnection.pragma('query_only = true');
    const reader = new SqliteReader(readConnection);
    const db = new Kysely<Database>({ dialect });
    return {
      db,
      dialect: name,
      sqliteReader: reader,
      close: async () => {
        reader.close();
        await db.destroy();
      },
    };
  }
  const db = new Kysely<Database>({ dialect });
  return { db, dialect: name, close: () => db.destroy() };
}
