import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A throw-away database for one test file: its URL and how to drop it. */
export interface TestDatabase {
  name: 'sqlite' | 'mariadb' | 'postgres';
  url: string;
  drop(): Promise<void>;
}

export const MARIADB_ADMIN_URL = process.env.WEGENT_TEST_MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/test';
export const POSTGRES_ADMIN_URL = process.env.WEGENT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Creates an empty database of the given engine with a random name. */
export async function createTestDatabase(engine: TestDatabase['name']): Promise<TestDatabase> {
  const suffix = randomBytes(6).toString('hex');
  if (engine === 'sqlite') {
    const dir = mkdtempSync(path.join(tmpdir(), 'wegent-db-'));
    return { name: engine, url: `sqlite:${path.join(dir, 'test.db')}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  if (engine === 'mariadb') {
    const mysql = await import('mysql2/promise');
    const dbName = `wegent_t_${suffix}`;
    const admin = new URL(MARIADB_ADMIN_URL);
    const conn = await mysql.createConnection({ host: admin.hostname, port: Number(admin.port || 3306), user: admin.username || 'root', password: decodeURIComponent(admin.password) });
    await conn.query(`CREATE DATABASE \`${dbName}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
    await conn.end();
    const url = new URL(MARIADB_ADMIN_URL);
    url.pathname = `/${dbName}`;
    return {
      name: engine,
      url: url.toString(),
      drop: async () => {
        const c = await mysql.createConnection({ host: admin.hostname, port: Number(admin.port || 3306), user: admin.username || 'root', password: decodeURIComponent(admin.password) });
        await c.query(`DROP DATABASE IF EXISTS \`${dbName}\``);
        await c.end();
      },
    };
  }
  const pg = await import('pg');
  const dbName = `wegent_t_${suffix}`;
  const client = new pg.default.Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  await client.query(`CREATE DATABASE "${dbName}"`);
  await client.end();
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${dbName}`;
  return {
    name: engine,
    url: url.toString(),
    drop: async () => {
      const c = new pg.default.Client({ connectionString: POSTGRES_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
      await c.end();
    },
  };
}

/** The engines every store suite runs on. */
export const DATABASE_ENGINES: TestDatabase['name'][] = ['sqlite', 'mariadb', 'postgres'];
