import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { type DatabaseIntrospector, PostgresIntrospector, sql, type Transaction } from 'kysely';
import { ConfigError, loadConfig } from '../../src/config/config.ts';
import { type Db, migrate, openDatabase, ping } from '../../src/db/database.ts';
import { FALLBACK_AUTOCHECKPOINT_PAGES } from '../../src/db/sqlite-checkpointer.ts';
import { havePostgres, postgresSchema } from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';

const TABLES = [
  'access_tokens',
  'alert_deliveries',
  'api_keys',
  'asset_sources',
  'asset_versions',
  'assets',
  'audit_log',
  'blobs',
  'credit_ledger',
  'job_breakers',
  'job_rate_limits',
  'job_schedules',
  'job_turns',
  'job_workers',
  'jobs',
  'media_derived',
  'media_info',
  'server_secrets',
  'tenant_job_usage',
  'tenants',
  'video_files',
  'video_info',
  'video_ladders',
];

const MIGRATIONS = [
  '001-initial',
  '002-jobs',
  '003-schedules',
  '004-job-turns',
  '005-alert-deliveries',
  '006-media',
  '007-video',
  '008-video-chunks',
];

describe('migrations', async () => {
  const pgSkip = (await havePostgres()) ? false : 'PostgreSQL is not running';

  it('create every table on SQLite, once', async () => {
    const dir = await makeTempDir('conveyor-db-');
    const db = openDatabase(loadConfig({}, { dataDir: dir.path }));
    try {
      assert.deepEqual(await migrate(db), MIGRATIONS);
      assert.deepEqual(await migrate(db), []);
      const tables = (await db.kysely.introspection.getTables()).map((t) => t.name).sort();
      assert.deepEqual(tables, TABLES);
      await ping(db);
    } finally {
      await db.close();
      await dir.cleanup();
    }
  });

  it('create every table on PostgreSQL, concurrently from two processes worth of connections', {
    skip: pgSkip,
  }, async () => {
    const schema = await postgresSchema();
    const a = openDatabase(loadConfig({}, { databaseUrl: schema.url }));
    const b = openDatabase(loadConfig({}, { databaseUrl: schema.url }));
    try {
      const results = await Promise.all([migrate(a), migrate(b)]);
      assert.deepEqual(results.flat().sort(), MIGRATIONS);
      const tables = (await a.kysely.introspection.getTables())
        .filter((t) => t.schema === schema.name)
        .map((t) => t.name)
        .sort();
      assert.deepEqual(tables, TABLES);
      // Every pooled connection has JIT off (see openDatabase): check a few of them at once.
      const settings = await Promise.all(
        Array.from({ length: 4 }, () => sql<{ jit: string }>`show jit`.execute(a.kysely)),
      );
      assert.deepEqual(
        settings.map((s) => s.rows[0]!.jit),
        ['off', 'off', 'off', 'off'],
      );
    } finally {
      await a.close();
      await b.close();
      await schema.drop();
    }
  });

  it('on PostgreSQL, name the missing schema of a search_path that points nowhere, and create nothing', {
    skip: pgSkip,
  }, async () => {
    const schema = await postgresSchema();
    await schema.drop();
    const db = openDatabase(loadConfig({}, { databaseUrl: schema.url }));
    try {
      await assert.rejects(migrate(db), (error: ConfigError) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(
          error.message,
          new RegExp(`CONVEYOR_DATABASE_URL: no schema on its search_path \\(${schema.name}\\)`),
        );
        return true;
      });
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from pg_namespace where nspname = ${schema.name}`.execute(db.kysely);
      assert.equal(rows[0]!.n, 0);
    } finally {
      await db.close();
    }
  });

  it('on PostgreSQL, see only their own schema, so another schema dropped meanwhile cannot fail them', {
    skip: pgSkip,
  }, async () => {
    const schema = await postgresSchema();
    const db = openDatabase(loadConfig({}, { databaseUrl: schema.url }));
    /**
     * Lists tables in a transaction whose snapshot still holds another schema (with a table) that another
     * session has dropped, as a migration's listing does when the drop lands while it runs: the moment a
     * lookup by name fails.
     */
    const listBesideADroppedSchema = async (introspector: (tx: Transaction<any>) => DatabaseIntrospector) => {
      const other = await postgresSchema('gone');
      try {
        await sql`create table ${sql.id(other.name, 't')} (id serial primary key)`.execute(db.kysely);
        return await db.kysely
          .transaction()
          .setIsolationLevel('repeatable read')
          .execute(async (tx) => {
            await sql`select 1`.execute(tx);
            await other.drop();
            return introspector(tx).getTables({ withInternalKyselyTables: true });
          });
      } finally {
        await other.drop();
      }
    };
    try {
      await migrate(db);
      // The same tables and columns as Kysely's own introspector reports for our schema.
      const kyselys = await new PostgresIntrospector(db.kysely).getTables({ withInternalKyselyTables: true });
      assert.deepEqual(
        await db.kysely.introspection.getTables({ withInternalKyselyTables: true }),
        kyselys.filter((t) => t.schema === schema.name),
      );
      await assert.rejects(
        listBesideADroppedSchema((tx) => new PostgresIntrospector(tx)),
        /schema "gone_\w+" does not exist/,
      );
      const tables = await listBesideADroppedSchema((tx) => tx.introspection);
      assert.deepEqual(
        tables.map((t) => t.name),
        [...TABLES, 'kysely_migration', 'kysely_migration_lock'].sort(),
      );
    } finally {
      await db.close();
      await schema.drop();
    }
  });
});

describe('SQLite under a competing writer', () => {
  let dir: TempDir;
  let path: string;
  before(async () => {
    dir = await makeTempDir('conveyor-busy-');
    path = join(dir.path, 'busy.db');
    const db = openDatabase(loadConfig({}, { databaseUrl: `sqlite:${path}` }));
    await migrate(db);
    await db.close();
  });
  after(async () => dir.cleanup());

  const tenant = (id: string) => ({ id, name: id, tier: 'free', created_at: Date.now() });

  it('waits for the lock without blocking the event loop, then succeeds', async () => {
    const db: Db = openDatabase(loadConfig({}, { databaseUrl: `sqlite:${path}`, sqliteBusyRetryMs: 10_000 }));
    const other = new DatabaseSync(path);
    try {
      other.exec('BEGIN IMMEDIATE');
      let insertDone = false;
      const insert = db.kysely
        .insertInto('tenants')
        .values(tenant('ten_waiting'))
        .execute()
        .then(() => {
          insertDone = true;
        });
      // While the insert is held up by the other connection's lock, the event loop keeps turning:
      // timers scheduled after it started still run, and the insert has not finished.
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 5));
      assert.equal(insertDone, false);
      other.exec('COMMIT');
      await insert;
      const row = await db.kysely
        .selectFrom('tenants')
        .select('id')
        .where('id', '=', 'ten_waiting')
        .executeTakeFirst();
      assert.equal(row?.id, 'ten_waiting');
    } finally {
      other.close();
      await db.close();
    }
  });

  it('gives up with SQLITE_BUSY once the retry budget is spent', async () => {
    const db = openDatabase(loadConfig({}, { databaseUrl: `sqlite:${path}`, sqliteBusyRetryMs: 50 }));
    const other = new DatabaseSync(path);
    try {
      other.exec('BEGIN IMMEDIATE');
      await assert.rejects(
        db.kysely.insertInto('tenants').values(tenant('ten_never')).execute(),
        /locked|busy/i,
      );
      other.exec('ROLLBACK');
    } finally {
      other.close();
      await db.close();
    }
  });

  it('rolls a failed transaction back completely', async () => {
    const db = openDatabase(loadConfig({}, { databaseUrl: `sqlite:${path}` }));
    try {
      await assert.rejects(
        db.kysely.transaction().execute(async (tx) => {
          await tx.insertInto('tenants').values(tenant('ten_rolled_back')).execute();
          await tx.insertInto('tenants').values(tenant('ten_rolled_back')).execute();
        }),
        /UNIQUE/,
      );
      const row = await db.kysely
        .selectFrom('tenants')
        .select('id')
        .where('id', '=', 'ten_rolled_back')
        .executeTakeFirst();
      assert.equal(row, undefined);
    } finally {
      await db.close();
    }
  });
});

describe('SQLite WAL checkpoints on a background thread', () => {
  /**
   * The WAL-index (the `-shm` file, https://sqlite.org/walformat.html) in native byte order: mxFrame, the
   * frames in the WAL, at byte 16, and nBackfill, the frames already copied into the database, at byte 96.
   */
  async function walIndex(path: string) {
    const shm = await readFile(`${path}-shm`);
    const read = (offset: number) =>
      endianness() === 'LE' ? shm.readUInt32LE(offset) : shm.readUInt32BE(offset);
    return { frames: read(16), copied: read(96) };
  }

  /** The WAL header's checkpoint sequence number (big-endian, byte 12): SQLite adds one whenever the WAL starts over. */
  async function walSequence(path: string) {
    return (await readFile(`${path}-wal`)).readUInt32BE(12);
  }

  it('copies every frame into the database, and the next commit starts the WAL over', async () => {
    const dir = await makeTempDir('conveyor-wal-');
    const path = join(dir.path, 'wal.db');
    const db = openDatabase(loadConfig({}, { databaseUrl: `sqlite:${path}`, sqliteCheckpointMs: 10 }));
    const insert = () => sql`insert into scratch (v) values (randomblob(16384))`.execute(db.kysely);
    try {
      await sql`create table scratch (v blob)`.execute(db.kysely);
      const writer = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(db.kysely);
      assert.equal(writer.rows[0]!.wal_autocheckpoint, FALLBACK_AUTOCHECKPOINT_PAGES);
      // 2,000 pages in 500 commits: below the writer's own (fallback) threshold of 10,000 pages, so only
      // the background thread can copy them. How much it copies while the writer goes on depends on how
      // the machine schedules the two threads, so what is checked is the end state, not the way there.
      for (let i = 0; i < 500; i++) await insert();
      await waitFor('the checkpointer to copy every frame', async () => {
        const index = await walIndex(path);
        return index.frames > 0 && index.copied === index.frames;
      });
      const sequence = await walSequence(path);
      await insert();
      // Started over: the WAL holds this one commit's few pages (a 16 KiB row is four overflow pages
      // and its leaf), written from the front of the file, instead of appending to what was copied.
      assert.equal(await walSequence(path), sequence + 1);
      const { frames } = await walIndex(path);
      assert.ok(frames < 16, `${frames} frames in the WAL after one commit`);
      assert.equal(
        (await sql<{ n: number }>`select count(*) as n from scratch`.execute(db.kysely)).rows[0]!.n,
        501,
      );
    } finally {
      await db.close();
      await dir.cleanup();
    }
  });
});
