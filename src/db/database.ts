import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';
import pg from 'pg';
import { type Config, ConfigError, redactUrl } from '../config/config.ts';
import * as initial from './migrations/001-initial.ts';
import * as jobs from './migrations/002-jobs.ts';
import * as schedules from './migrations/003-schedules.ts';
import * as turns from './migrations/004-job-turns.ts';
import * as alertDeliveries from './migrations/005-alert-deliveries.ts';
import * as media from './migrations/006-media.ts';
import * as video from './migrations/007-video.ts';
import * as videoChunks from './migrations/008-video-chunks.ts';
import { SchemaScopedPostgresDialect } from './postgres-introspector.ts';
import { NodeSqliteDialect } from './sqlite-dialect.ts';
import type { Database } from './tables.ts';

export type Dialect = 'sqlite' | 'postgres';

export interface Db {
  readonly kysely: Kysely<Database>;
  readonly dialect: Dialect;
  /**
   * PostgreSQL only: calls `onNotify` for every NOTIFY on `channel`, over a dedicated connection that is
   * re-established after a failure. Answers an unsubscribe.
   */
  readonly listen?: (channel: string, onNotify: (payload: string) => void) => Promise<() => Promise<void>>;
  close(): Promise<void>;
}

// PostgreSQL BIGINT (int8) arrives as a string by default, because it can exceed 2^53. Our BIGINT
// columns hold millisecond times and byte sizes, far below that, so numbers are the honest type.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export function openDatabase(config: Config): Db {
  const url = config.databaseUrl;
  if (url && /^postgres(ql)?:\/\//.test(url)) {
    const pool = new pg.Pool({ connectionString: url, max: config.databasePoolSize });
    // An idle client's connection error (server restart) must not crash the process; the pool replaces it.
    pool.on('error', () => {});
    // No JIT compilation: our statements are short, and their estimates grow with the table (a claim's
    // LIMIT per group is a parameter, so PostgreSQL assumes the whole group), so past about a million
    // queued jobs the claim crossed jit_above_cost and spent 7 ms compiling a query that runs in 0.6 ms.
    // Queued on each new connection before the pool hands it out, so it runs ahead of any other statement.
    pool.on('connect', (client) => {
      client.query('SET jit = off').catch(() => {});
    });
    const kysely = new Kysely<Database>({ dialect: new SchemaScopedPostgresDialect({ pool }) });
    return {
      kysely,
      dialect: 'postgres',
      listen: (channel, onNotify) => listen(url, channel, onNotify),
      close: () => kysely.destroy(),
    };
  }
  const path = sqlitePath(config)!;
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const kysely = new Kysely<Database>({
    dialect: new NodeSqliteDialect({
      path,
      busyRetryMs: config.sqliteBusyRetryMs,
      checkpointMs: config.sqliteCheckpointMs,
    }),
  });
  return { kysely, dialect: 'sqlite', close: () => kysely.destroy() };
}

/** The SQLite database file (or `:memory:`) of `config`; undefined when the database is PostgreSQL. */
export function sqlitePath(config: Config): string | undefined {
  const url = config.databaseUrl;
  if (url && /^postgres(ql)?:\/\//.test(url)) return undefined;
  return url?.startsWith('sqlite:') ? url.slice('sqlite:'.length) : resolve(config.dataDir, 'conveyor.db');
}

/**
 * Which database `config` names, for an operator: `sqlite <absolute path>` or `postgres <URL>` with the
 * password redacted.
 */
export function databaseLabel(config: Config): string {
  const path = sqlitePath(config);
  if (path === undefined) return `postgres ${redactUrl(config.databaseUrl ?? '')}`;
  return `sqlite ${path === ':memory:' ? path : resolve(path)}`;
}

/**
 * Whether the database holds Conveyor's tables (in the connection's own schema on PostgreSQL), at any
 * migration: what tells an installation from an empty database.
 */
export async function hasConveyorTables(db: Db): Promise<boolean> {
  const found =
    db.dialect === 'postgres'
      ? await sql<{ name: string }>`select table_name as name from information_schema.tables
          where table_schema = current_schema() and table_name = 'tenants'`.execute(db.kysely)
      : await sql<{ name: string }>`select name from sqlite_master
          where type = 'table' and name = 'tenants'`.execute(db.kysely);
  return found.rows.length > 0;
}

const migrations: Record<string, Migration> = {
  '001-initial': initial,
  '002-jobs': jobs,
  '003-schedules': schedules,
  '004-job-turns': turns,
  '005-alert-deliveries': alertDeliveries,
  '006-media': media,
  '007-video': video,
  '008-video-chunks': videoChunks,
};

class InCodeMigrations implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations;
  }
}

/** Applies pending migrations; safe to run from several processes at once (Kysely takes a lock). */
export async function migrate(db: Db): Promise<string[]> {
  // On PostgreSQL, pin Kysely's bookkeeping tables to our own schema: without it, Kysely takes a
  // kysely_migration table in ANY schema of the database as ours (several installs, or test runs, can
  // share one database in separate schemas).
  let schema: string | undefined;
  if (db.dialect === 'postgres') {
    const { rows } = await sql<{ schema: string | null; path: string }>`
      select current_schema() as schema, current_setting('search_path') as path`.execute(db.kysely);
    schema = rows[0]?.schema ?? undefined;
    // current_schema() is null when no schema on the search_path exists; PostgreSQL would then refuse the
    // first CREATE TABLE with "no schema has been selected to create in".
    if (!schema) {
      throw new ConfigError([
        `CONVEYOR_DATABASE_URL: no schema on its search_path (${rows[0]?.path}) exists; create it first (CREATE SCHEMA <name>)`,
      ]);
    }
  }
  const migrator = new Migrator({
    db: db.kysely,
    provider: new InCodeMigrations(),
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * LISTEN on a connection of its own (a pooled one would be handed to other queries). Notifications are
 * hints: whoever relies on them also polls, so a lost connection costs latency until it is back, never
 * correctness.
 */
async function listen(
  url: string,
  channel: string,
  onNotify: (payload: string) => void,
): Promise<() => Promise<void>> {
  let client: pg.Client | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString: url });
    next.on('notification', (message) => {
      if (message.channel === channel) onNotify(message.payload ?? '');
    });
    next.on('error', () => {
      next.end().catch(() => {});
      if (!closed) retry = setTimeout(() => void connect().catch(() => {}), 1000);
    });
    await next.connect();
    await next.query(`LISTEN ${pg.Client.prototype.escapeIdentifier(channel)}`);
    if (closed) await next.end();
    else client = next;
  };
  await connect();
  return async () => {
    closed = true;
    clearTimeout(retry);
    await client?.end().catch(() => {});
  };
}

export async function ping(db: Db): Promise<void> {
  await sql`select 1`.execute(db.kysely);
}
