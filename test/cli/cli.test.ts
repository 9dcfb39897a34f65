import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import {
  LAUNCHER,
  ROOT,
  type Run,
  runCli,
  type ServerProcess,
  startServerProcess,
} from '../helpers/child.ts';
import { havePostgres, POSTGRES_URL, postgresSchema } from '../helpers/conveyor.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';

function ok(run: Run): Run {
  assert.equal(run.code, 0, `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return run;
}

describe('conveyor CLI without a server', () => {
  let dir: TempDir;
  before(async () => {
    dir = await makeTempDir('conveyor-cli-');
  });
  after(async () => dir?.cleanup());

  it('--version prints the version of package.json', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    const run = ok(await runCli(['--version'], {}));
    assert.equal(run.stdout, `${version}\n`);
  });

  it('config --json prints the effective configuration with secrets redacted', async () => {
    const adminKey = generateApiKey();
    const secrets = {
      CONVEYOR_ADMIN_KEY: adminKey,
      CONVEYOR_DATABASE_URL: 'postgres://u:secret@h/db',
      CONVEYOR_JWT_SECRET: `jwt-${randomBytes(24).toString('hex')}`,
      CONVEYOR_S3_SECRET_ACCESS_KEY: `s3-${randomBytes(16).toString('hex')}`,
      CONVEYOR_SIGNING_KEYS: `k1:${randomBytes(24).toString('hex')}`,
    };
    const settings = { ...secrets, CONVEYOR_DATA_DIR: dir.path, CONVEYOR_PORT: '9123' };
    const [run, text] = [
      ok(await runCli(['config', '--json'], settings)),
      ok(await runCli(['config'], settings)),
    ];
    const config = JSON.parse(run.stdout);
    assert.equal(config.port, 9123);
    assert.equal(config.dataDir, dir.path);
    assert.equal(config.adminKey, '[redacted]');
    assert.equal(config.jwtSecret, '[redacted]');
    assert.equal(config.s3SecretAccessKey, '[redacted]');
    assert.equal(config.signingKeys, '[redacted]');
    assert.ok(!config.databaseUrl.includes('secret'), config.databaseUrl);
    assert.match(config.databaseUrl, /^postgres:\/\/u:[^@]*@h\/db$/);
    // Without --json: one `name  value` line per setting.
    assert.match(text.stdout, /^port\s+9123$/m);
    assert.match(text.stdout, /^adminKey\s+\[redacted\]$/m);
    const everything = run.stdout + run.stderr + text.stdout + text.stderr;
    assert.ok(!everything.includes(adminKey), 'admin key printed');
    assert.ok(!everything.includes(':secret@'), 'database password printed');
    for (const value of Object.values(secrets)) assert.ok(!everything.includes(value), `${value} printed`);
    for (const value of [secrets.CONVEYOR_SIGNING_KEYS.slice(3), secrets.CONVEYOR_JWT_SECRET.slice(4)]) {
      assert.ok(!everything.includes(value), 'part of a secret printed');
    }
  });

  it('refuses an invalid configuration naming every bad variable', async () => {
    const bad = { CONVEYOR_DATA_DIR: dir.path, CONVEYOR_PORT: 'abc', CONVEYOR_STORAGE: 'ftp' };
    const [run, serve, typo] = await Promise.all([
      runCli(['config'], bad),
      // serve refuses the same way, before opening anything.
      runCli(['serve'], bad),
      // A misspelt variable is named too.
      runCli(['config'], { CONVEYOR_DATA_DIR: dir.path, CONVEYOR_PROT: '8080' }),
    ]);
    for (const r of [run, serve]) {
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /CONVEYOR_PORT/);
      assert.match(r.stderr, /CONVEYOR_STORAGE/);
      assert.equal(r.stdout, '');
    }
    assert.notEqual(typo.code, 0);
    assert.match(typo.stderr, /CONVEYOR_PROT/);
  });

  it('migrate prepares a fresh data directory, and is idempotent', async () => {
    const fresh = join(dir.path, 'fresh');
    const first = ok(await runCli(['migrate'], { CONVEYOR_DATA_DIR: fresh }));
    assert.match(first.stdout, /applied: 001-initial/);
    assert.equal(first.stderr, `database: sqlite ${join(fresh, 'conveyor.db')}\n`);
    assert.ok((await stat(join(fresh, 'conveyor.db'))).isFile());
    const second = ok(await runCli(['migrate', '--json'], { CONVEYOR_DATA_DIR: fresh }));
    assert.deepEqual(JSON.parse(second.stdout), { applied: [] });
  });

  it('errors --json prints the catalog as one array', async () => {
    const run = ok(await runCli(['errors', '--json'], {}));
    const entries = JSON.parse(run.stdout);
    assert.ok(Array.isArray(entries));
    assert.deepEqual(
      entries.find((e: { code: string }) => e.code === 'not_found'),
      {
        code: 'not_found',
        status: 404,
        title: 'Not found',
        when: entries.find((e: { code: string }) => e.code === 'not_found').when,
      },
    );
    assert.match(ok(await runCli(['errors'], {})).stdout, /^\| code \| status \| title \| when \|$/m);
  });

  it('tenants and keys refuse a SQLite database that does not exist, and leave no file; --create makes it', async () => {
    const missing = join(dir.path, 'missing');
    const settings = { CONVEYOR_DATA_DIR: missing };
    const database = join(missing, 'conveyor.db');
    const [tenants, keys, gc] = await Promise.all([
      runCli(['tenants', 'list'], settings),
      runCli(['keys', 'list', '--tenant', 'ten_00000000000000000000000000'], settings),
      runCli(['gc'], settings),
    ]);
    for (const run of [tenants, keys, gc]) {
      assert.equal(run.code, 2, run.stderr);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, new RegExp(`^database: sqlite ${database}$`, 'm'));
      assert.match(
        run.stderr,
        new RegExp(`^conveyor: no Conveyor database at sqlite ${database}: .*--create`, 'm'),
      );
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'a stack trace');
    }
    assert.ok(!existsSync(missing), 'the data directory was created');

    const created = ok(await runCli(['tenants', 'list', '--create', '--json'], settings));
    assert.deepEqual(JSON.parse(created.stdout), []);
    assert.ok((await stat(database)).isFile());
    // From now on it exists; `tenants` alone is `tenants list`.
    assert.equal(ok(await runCli(['tenants'], settings)).stdout, 'no tenants\n');
  });

  it('bin/conveyor runs the compiled JavaScript, compiling it first when the source is newer', async () => {
    const data = join(dir.path, 'launched');
    const run = ok(await runCli(['migrate'], { CONVEYOR_DATA_DIR: data }, LAUNCHER));
    assert.match(run.stdout, /applied: 001-initial/);
    const built = await stat(join(ROOT, 'dist/.built'));
    // The stamp is taken just before compiling, so what the compile wrote is never older than it (however
    // long the compile took).
    assert.ok(built.mtimeMs <= (await stat(join(ROOT, 'dist/cli/main.js'))).mtimeMs);
    const again = ok(await runCli(['migrate'], { CONVEYOR_DATA_DIR: data }, LAUNCHER));
    assert.match(again.stdout, /up to date/);
    assert.equal(
      (await stat(join(ROOT, 'dist/.built'))).mtimeMs,
      built.mtimeMs,
      'nothing to compile the second time',
    );
  });
});

describe('conveyor migrate on PostgreSQL', async () => {
  const skip = !(await havePostgres()) ? 'PostgreSQL is not running' : false;

  it('tenants refuses a schema without Conveyor tables, migrating nothing, unless --create', {
    skip,
  }, async () => {
    const dir = await makeTempDir('conveyor-cli-pg-');
    const schema = await postgresSchema();
    const tables = async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      try {
        const { rows } = await client.query(
          'select count(*)::int as n from information_schema.tables where table_schema = $1',
          [schema.name],
        );
        return rows[0].n as number;
      } finally {
        await client.end();
      }
    };
    try {
      // With a password in the URL, to see it redacted.
      const url = new URL(schema.url);
      url.password = 'hunter2';
      const settings = { CONVEYOR_DATA_DIR: dir.path, CONVEYOR_DATABASE_URL: url.toString() };
      const refused = await runCli(['tenants', 'list'], settings);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /^database: postgres postgres:\/\/postgres:redacted@/m);
      assert.match(refused.stderr, /^conveyor: no Conveyor database at postgres .*--create/m);
      assert.ok(!refused.stderr.includes('hunter2'), refused.stderr);
      assert.equal(await tables(), 0, 'nothing was migrated');
      const created = ok(await runCli(['tenants', 'list', '--create', '--json'], settings));
      assert.deepEqual(JSON.parse(created.stdout), []);
      assert.ok((await tables()) > 0);
    } finally {
      await schema.drop();
      await dir.cleanup();
    }
  });

  it('migrates a fresh schema even when another schema of the database already holds Conveyor', {
    skip,
  }, async () => {
    // Two installations sharing one database, each in its own schema (search_path), as the test harness does.
    const dir = await makeTempDir('conveyor-cli-pg-');
    const first = await postgresSchema();
    const second = await postgresSchema();
    try {
      const one = ok(
        await runCli(['migrate'], { CONVEYOR_DATA_DIR: dir.path, CONVEYOR_DATABASE_URL: first.url }),
      );
      assert.match(one.stdout, /applied: 001-initial/);
      const two = ok(
        await runCli(['migrate'], { CONVEYOR_DATA_DIR: dir.path, CONVEYOR_DATABASE_URL: second.url }),
      );
      assert.match(two.stdout, /applied: 001-initial/);
    } finally {
      await first.drop();
      await second.drop();
      await dir.cleanup();
    }
  });
});

describe('conveyor CLI against a running server', () => {
  let dir: TempDir;
  let server: ServerProcess | undefined;
  let url: string;
  let tenantId: string;
  const adminKey = generateApiKey();
  let env: Record<string, string>;

  before(async () => {
    dir = await makeTempDir('conveyor-cli-server-');
    env = {
      CONVEYOR_DATA_DIR: dir.path,
      CONVEYOR_LOG_LEVEL: 'warn',
      CONVEYOR_UPLOAD_STATE_FILE: join(dir.path, 'uploads.json'),
    };
    server = await startServerProcess({
      ...env,
      CONVEYOR_ADMIN_KEY: adminKey,
      CONVEYOR_GC_INTERVAL_SECONDS: '0',
    });
    url = server.url;
    const tenants = ok(await runCli(['tenants', 'list', '--json'], env));
    const list = JSON.parse(tenants.stdout);
    assert.equal(list.length, 1);
    assert.equal(list[0].name, 'default');
    tenantId = list[0].id;
  });

  after(async () => {
    await server?.stop('SIGTERM');
    await dir?.cleanup();
  });

  const api = (path: string, key: string, init: RequestInit = {}) =>
    fetch(`${url}${path}`, { ...init, headers: { ...init.headers, authorization: `Bearer ${key}` } });

  it('keys create prints a working key once; keys list never shows it; keys revoke stops it', async () => {
    const created = ok(
      await runCli(
        ['keys', 'create', '--tenant', tenantId, '--role', 'editor', '--name', 'ci', '--json'],
        env,
      ),
    );
    const view = JSON.parse(created.stdout);
    assert.match(view.key, /^cvk_[A-Za-z0-9_-]{43}$/);
    assert.equal(view.role, 'editor');
    assert.equal(view.tenantId, tenantId);
    assert.equal(view.name, 'ci');
    assert.equal(view.operator, false);

    // The key works against the running server, with the editor's rights.
    const uploaded = await api('/api/v1/assets?filename=cli.txt', view.key, {
      method: 'POST',
      body: 'from a CLI key',
    });
    assert.equal(uploaded.status, 201);
    assert.equal((await api('/api/v1/keys', view.key)).status, 403);

    const revoked = ok(await runCli(['keys', 'revoke', view.id], env));
    assert.match(revoked.stdout, new RegExp(`revoked ${view.id}`));
    const refused = await api('/api/v1/assets', view.key);
    assert.equal(refused.status, 401);

    const listed = ok(await runCli(['keys', 'list', '--tenant', tenantId, '--json'], env));
    assert.ok(!listed.stdout.includes(view.key), 'keys list printed a key');
    assert.ok(!listed.stdout.includes(adminKey), 'keys list printed the admin key');
    const keys = JSON.parse(listed.stdout);
    assert.ok(Array.isArray(keys));
    const mine = keys.find((k) => k.id === view.id);
    assert.ok(mine, listed.stdout);
    assert.equal(mine.key, undefined);
    assert.equal(mine.hash, undefined);
    assert.equal(mine.prefix, view.key.slice(0, 12));
    assert.equal(typeof mine.revokedAt, 'string');
    const bootstrap = keys.find((k) => k.name === 'bootstrap');
    assert.equal(bootstrap?.operator, true);
    assert.equal(bootstrap?.revokedAt, null);
  });

  it('without --json, keys and tenants print tables and keys create the key as text', async () => {
    const [created, tenants] = await Promise.all([
      runCli(['keys', 'create', '--tenant', tenantId, '--role', 'viewer', '--name', 'text'], env),
      runCli(['tenants'], env),
    ]);
    const key = /^key\s+(cvk_\S+)$/m.exec(ok(created).stdout)?.[1];
    assert.ok(key, created.stdout);
    assert.match(created.stdout, /^role\s+viewer$/m);
    assert.match(created.stderr, /shown only this once/);
    const id = /^id\s+(key_\S+)$/m.exec(created.stdout)![1]!;
    const [header, ...rows] = ok(tenants).stdout.trimEnd().split('\n');
    assert.match(header!, /^ID\s+NAME\s+TIER\s+CREATED$/);
    assert.equal(rows.length, 1);
    assert.match(rows[0]!, new RegExp(`^${tenantId}\\s+default\\s`));

    const listed = ok(await runCli(['keys', 'list', '--tenant', tenantId], env));
    assert.match(listed.stdout, /^ID\s+PREFIX\s+ROLE\s+OPERATOR\s+NAME\s+CREATED\s+LAST USED\s+REVOKED$/m);
    assert.match(listed.stdout, new RegExp(`^${id}\\s+${key.slice(0, 12)}\\s+viewer\\s+no\\s+text\\s`, 'm'));
    assert.ok(!listed.stdout.includes(key));
    const revoked = ok(await runCli(['keys', 'revoke', id, '--json'], env));
    assert.deepEqual(JSON.parse(revoked.stdout), { id, revoked: true });
  });

  it('keys create refuses a bad role and an unknown tenant; revoke refuses an unknown key', async () => {
    const [role, tenant, revoke] = await Promise.all([
      runCli(['keys', 'create', '--tenant', tenantId, '--role', 'god'], env),
      runCli(['keys', 'create', '--tenant', 'ten_00000000000000000000000000', '--role', 'viewer'], env),
      runCli(['keys', 'revoke', 'key_00000000000000000000000000'], env),
    ]);
    assert.notEqual(role.code, 0);
    assert.match(role.stderr, /admin, editor, viewer/);
    assert.equal(tenant.code, 2, tenant.stderr);
    assert.match(tenant.stderr, /not_found/);
    assert.equal(tenant.stdout, '');
    assert.equal(revoke.code, 2, revoke.stderr);
    assert.match(revoke.stderr, /not_found/);
  });

  it('upload sends a file to the running server and prints its URLs', async () => {
    const file = join(dir.path, 'hello.txt');
    await writeFile(file, 'hello from the CLI\n');
    const [published, hidden] = await Promise.all([
      runCli(['upload', file, '--publish', '--json'], {
        ...env,
        CONVEYOR_URL: url,
        CONVEYOR_API_KEY: adminKey,
      }),
      // --private, and the --url/--key flags instead of the variables.
      runCli(['upload', file, '--private', '--json', '--url', url, '--key', adminKey], env),
    ]);
    const run = ok(published);
    const result = JSON.parse(run.stdout);
    assert.match(result.id, /^ast_/);
    assert.equal(result.size, 19);
    assert.equal(result.url, `${url}/a/${result.id}`);
    assert.match(result.versionUrl, new RegExp(`^${url}/v/ver_`));
    assert.ok(!run.stderr.includes('uploading'), 'a small file shows no progress');
    for (const link of [result.url, result.versionUrl]) {
      const res = await fetch(link);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('etag'), result.etag);
      assert.equal(await res.text(), 'hello from the CLI\n');
    }
    const asset = (await (await api(`/api/v1/assets/${result.id}`, adminKey)).json()) as any;
    assert.equal(asset.filename, 'hello.txt');
    assert.equal(asset.visibility, 'public');

    const privateResult = JSON.parse(ok(hidden).stdout);
    // Private: answered as an unknown id without a grant, served to the owner.
    assert.equal((await fetch(privateResult.url)).status, 404);
    const owned = await fetch(privateResult.url, { headers: { authorization: `Bearer ${adminKey}` } });
    assert.equal(owned.status, 200);
    assert.equal(owned.headers.get('cache-control'), 'private, no-store');
  });

  it('upload of a 10 MiB file (resumable by default) shows progress on stderr and arrives whole', async () => {
    const file = join(dir.path, 'big.bin');
    const bytes = randomBytes(10 * 1024 * 1024);
    await writeFile(file, bytes);
    const run = ok(
      await runCli(['upload', file, '--json'], { ...env, CONVEYOR_URL: url, CONVEYOR_API_KEY: adminKey }),
    );
    assert.match(run.stderr, /^uploading 10\.0 \/ 10\.0 MiB \(100%, [\d.]+ MiB\/s\)$/m);
    const result = JSON.parse(run.stdout);
    assert.equal(result.size, bytes.length);
    const res = await fetch(result.url);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
  });

  it('upload refuses to run without a key and reports server errors', async () => {
    const file = join(dir.path, 'nokey.txt');
    await writeFile(file, 'x');
    const [noKey, badKey, missing] = await Promise.all([
      runCli(['upload', file], { ...env, CONVEYOR_URL: url }),
      runCli(['upload', file], { ...env, CONVEYOR_URL: url, CONVEYOR_API_KEY: generateApiKey() }),
      runCli(['upload', join(dir.path, 'does-not-exist')], {
        ...env,
        CONVEYOR_URL: url,
        CONVEYOR_API_KEY: adminKey,
      }),
    ]);
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /API key/);
    assert.notEqual(badKey.code, 0);
    assert.match(badKey.stderr, /401/);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /ENOENT/);
    for (const run of [badKey, missing]) assert.doesNotMatch(run.stderr, /\n\s+at /, 'a stack trace');
  });
});
