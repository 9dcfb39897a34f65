import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { type Db, migrate, openDatabase, ping } from '../../src/db/database.ts';
import { havePostgres, postgresSchema } from '../helpers/conveyor.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';

const TABLES = [
  'access_tokens',
  'api_keys',
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
  'server_secrets',
  'tenant_job_usage',
  'tenants',
];

describe('migrations', async () => {
  const pgSkip = (await havePostgres()) ? false : 'PostgreSQL is not running';

  it('create every table on SQLite, once', async () => {
    const dir = await makeTempDir('conveyor-db-');
    const db = openDatabase(loadConfig({}, { dataDir: dir.path }));
    try {
      assert.deepEqual(await migrate(db), ['001-initial', '002-jobs', '003-schedules', '004-job-turns']);
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
      assert.deepEqual(results.flat().sort(), ['001-initial', '002-jobs', '003-schedules', '004-job-turns']);
      const tables = (await a.kysely.introspection.getTables())
        .filter((t) => t.schema === schema.name)
        .map((t) => t.name)
        .sort();
      assert.deepEqual(tables, TABLES);
    } finally {
      await a.close();
      await b.close();
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
