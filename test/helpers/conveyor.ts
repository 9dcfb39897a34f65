import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type Config, type ConfigInput, loadConfig } from '../../src/config/config.ts';
import { type Conveyor, createConveyor } from '../../src/server.ts';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import { type S3Server, startS3Server } from './s3-server.ts';
import { makeTempDir } from './tmp.ts';

/** PostgreSQL for tests; the machine's server by default. */
export const POSTGRES_URL = process.env['TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

export type Backend = { database: 'sqlite' | 'postgres'; storage: 'fs' | 's3' };

export const BACKENDS: Backend[] = [
  { database: 'sqlite', storage: 'fs' },
  { database: 'postgres', storage: 's3' },
];

let postgresAvailable: Promise<boolean> | undefined;

/**
 * Whether PostgreSQL can be reached. In CI (CI=true) it must be: a missing server fails the run instead
 * of quietly skipping the PostgreSQL suites.
 */
export function havePostgres(): Promise<boolean> {
  postgresAvailable ??= (async () => {
    const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.end();
      return true;
    } catch (error) {
      if (process.env['CI'] === 'true')
        throw new Error(`PostgreSQL is required in CI: ${(error as Error).message}`);
      return false;
    }
  })();
  return postgresAvailable;
}

/** The `skip` option of a test on `database`: a reason when that is PostgreSQL and it cannot be reached. */
export async function skipIfNoPostgres(database: Backend['database']): Promise<string | false> {
  return database === 'postgres' && !(await havePostgres()) ? 'PostgreSQL is not running' : false;
}

/** A fresh schema (`<prefix>_<hex>`) in the test database, dropped again by `drop`. */
export async function postgresSchema(
  prefix = 't',
): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const schema = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  const url = new URL(POSTGRES_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    name: schema,
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`drop schema if exists ${schema} cascade`);
      await client.end();
    },
  };
}

export interface TestServer {
  conveyor: Conveyor;
  url: string;
  config: Config;
  dataDir: string;
  /** The bootstrap operator key of the default tenant. */
  adminKey: string;
  tenantId: string;
  /** fetch against the server with an optional API key. */
  fetch(path: string, init?: RequestInit & { key?: string | null }): Promise<Response>;
  /** JSON request helper: answers status, headers and the parsed body. */
  json(
    method: string,
    path: string,
    body?: unknown,
    key?: string | null,
  ): Promise<{ status: number; headers: Headers; body: any }>;
  close(): Promise<void>;
}

/**
 * Starts a real Conveyor on 127.0.0.1 with an ephemeral port, a temporary data folder and the chosen
 * backends (PostgreSQL in its own schema, s3rver in its own folder).
 */
export async function startConveyor(
  backend: Backend = { database: 'sqlite', storage: 'fs' },
  overrides: ConfigInput = {},
): Promise<TestServer> {
  const dir = await makeTempDir('conveyor-test-');
  const cleanups: (() => Promise<void>)[] = [() => dir.cleanup()];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch(() => {});
  };
  try {
    return await start(dir.path, cleanups, cleanup, backend, overrides);
  } catch (error) {
    // A half-started server must not leave an s3rver child or a pool behind to hang the test run.
    await cleanup();
    throw error;
  }
}

async function start(
  dataDir: string,
  cleanups: (() => Promise<void>)[],
  cleanup: () => Promise<void>,
  backend: Backend,
  overrides: ConfigInput,
): Promise<TestServer> {
  const settings: ConfigInput = {
    dataDir,
    host: '127.0.0.1',
    port: 0,
    logLevel: 'silent',
    gcIntervalSeconds: 0,
    rateLimitPerKey: 0,
    rateLimitPerAddress: 0,
    // Suites that test jobs turn the in-process worker on; the others need no polling in the background.
    serveWorkers: false,
    // Each server's data folder is new, so its detection would run trial encodes every time: suites
    // that look at encoders turn it on, and the others detect at their first video job, if any.
    videoDetectEncodersAtStart: false,
  };
  if (backend.database === 'postgres') {
    const schema = await postgresSchema();
    cleanups.push(() => schema.drop());
    Object.assign(settings, { databaseUrl: schema.url });
  }
  let s3: S3Server | undefined;
  if (backend.storage === 's3') {
    s3 = await startS3Server();
    cleanups.push(() => s3!.close());
    Object.assign(settings, {
      storage: 's3',
      s3Endpoint: s3.endpoint,
      s3Region: s3.region,
      s3Bucket: s3.bucket,
      s3ForcePathStyle: true,
      s3AccessKeyId: s3.accessKeyId,
      s3SecretAccessKey: s3.secretAccessKey,
      s3PartSizeBytes: 5 * 1024 * 1024,
    });
  }
  const config = loadConfig({}, { ...settings, ...overrides });
  const conveyor = await createConveyor(config);
  cleanups.push(() => conveyor.close());
  const adminKey = generateApiKey();
  const boot = await conveyor.tenancy.bootstrap(adminKey);
  const url = await conveyor.listen();

  const doFetch: TestServer['fetch'] = (path, init = {}) => {
    const { key, ...rest } = init;
    const headers = new Headers(rest.headers);
    const useKey = key === undefined ? adminKey : key;
    if (useKey) headers.set('authorization', `Bearer ${useKey}`);
    return fetch(url + path, { ...rest, headers });
  };

  return {
    conveyor,
    url,
    config,
    dataDir,
    adminKey,
    tenantId: boot!.tenantId,
    fetch: doFetch,
    async json(method, path, body, key) {
      const init: RequestInit & { key?: string | null } = { method };
      if (key !== undefined) init.key = key;
      if (body !== undefined) {
        init.body = JSON.stringify(body);
        init.headers = { 'content-type': 'application/json' };
      }
      const res = await doFetch(path, init);
      const text = await res.text();
      return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
    },
    close: cleanup,
  };
}

/** Uploads bytes as a raw body and answers the created asset. */
export async function upload(
  server: TestServer,
  bytes: Buffer | string,
  options: { filename?: string; contentType?: string; visibility?: 'public' | 'private'; key?: string } = {},
): Promise<any> {
  const query = new URLSearchParams({ filename: options.filename ?? 'file.bin' });
  if (options.visibility) query.set('visibility', options.visibility);
  const res = await server.fetch(`/api/v1/assets?${query}`, {
    method: 'POST',
    body: bytes,
    headers: { 'content-type': options.contentType ?? 'application/octet-stream' },
    ...(options.key ? { key: options.key } : {}),
  });
  const body = await res.json();
  if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Creates a tenant and an admin key for it, answering both. */
export async function createTenant(
  server: TestServer,
  name = 'other',
): Promise<{ tenantId: string; key: string }> {
  const tenant = await server.json('POST', '/api/v1/tenants', { name, tier: 'standard' });
  if (tenant.status !== 201) throw new Error(`tenant: ${tenant.status} ${JSON.stringify(tenant.body)}`);
  const key = await server.json('POST', '/api/v1/keys', { tenantId: tenant.body.id, role: 'admin' });
  if (key.status !== 201) throw new Error(`key: ${key.status} ${JSON.stringify(key.body)}`);
  return { tenantId: tenant.body.id, key: key.body.key };
}
