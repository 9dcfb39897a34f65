import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { BlobLedger } from '../assets/blobs.ts';
import { openStore } from '../backends.ts';
import { type Config, ConfigError, configTable, loadConfig, redactedConfig } from '../config/config.ts';
import { type Db, databaseLabel, migrate, openDatabase } from '../db/database.ts';
import { ConveyorError, catalog, errorTable } from '../errors.ts';
import { collectMedia } from '../media/wiring.ts';
import { isRole, type Principal, ROLES } from '../tenancy/principal.ts';
import { type ApiKeyView, TenancyService } from '../tenancy/service.ts';
import { openInstallation } from './database.ts';
import { CliError, emit, fields, table } from './output.ts';
import { serve } from './serve.ts';
import { parseSize, UPLOAD_DEFAULTS, type UploadResult, uploadFile } from './upload.ts';
import { videoCommand } from './video.ts';
import { runWorker } from './worker.ts';

/** The CLI acts on the database directly, as the operator of this installation. */
const OPERATOR = (tenantId: string): Principal => ({
  tenantId,
  role: 'admin',
  operator: true,
  keyId: null,
  actor: 'cli',
});

/** package.json's version: two folders up from src/cli/main.ts and from dist/cli/main.js alike. */
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const program = new Command('conveyor')
  .description('Conveyor: a self-hosted media origin with a durable processing pipeline')
  .version(VERSION, '-V, --version', 'print the version')
  .showHelpAfterError();

const JSON_HELP = 'print one JSON document instead of text';
const CREATE_HELP = 'create the database (and migrate it) when it does not exist yet';

program
  .command('serve')
  .description('run the HTTP server (creates the database or applies pending migrations first)')
  .action(async () => {
    await serve(loadConfig());
  });

program
  .command('worker')
  .description('run job workers (no HTTP); several may run at once, on one host or many')
  .option('--lanes <lanes>', 'lanes to claim from, e.g. critical,high (default: all)')
  .option('--types <types>', 'job types to run, e.g. image.variants (default: all registered)')
  .option('--concurrency <n>', 'jobs run at once (default: CONVEYOR_WORKER_CONCURRENCY)', (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
    return n;
  })
  .action(async (flags: { lanes?: string; types?: string; concurrency?: number }) => {
    await runWorker(loadConfig(), flags);
  });

program
  .command('migrate')
  .description('create the database or apply its pending migrations')
  .option('--json', JSON_HELP)
  .action(async (options: { json?: boolean }) => {
    const config = loadConfig();
    process.stderr.write(`database: ${databaseLabel(config)}\n`);
    const db = openDatabase(config);
    try {
      const applied = await migrate(db);
      emit(options.json, { applied }, () =>
        applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date',
      );
    } finally {
      await db.close();
    }
  });

program
  .command('config')
  .description('print the effective configuration (secrets redacted)')
  .addOption(new Option('--table', 'print every setting as a Markdown table instead').conflicts('json'))
  .option('--json', JSON_HELP)
  .action((options: { table?: boolean; json?: boolean }) => {
    if (options.table) {
      console.log(configTable());
      return;
    }
    emit(options.json, redactedConfig(loadConfig()), (config) => fields(Object.entries(config)));
  });

program
  .command('errors')
  .description('print the error catalog (as the Markdown table of docs/api.md)')
  .option('--json', JSON_HELP)
  .action((options: { json?: boolean }) => {
    const entries = Object.entries(catalog).map(([code, { status, title, when }]) => ({
      code,
      status,
      title,
      when,
    }));
    emit(options.json, entries, () => errorTable());
  });

program
  .command('gc')
  .description('collect blobs that nothing references (older than CONVEYOR_GC_GRACE_SECONDS)')
  .option('--json', JSON_HELP)
  .option('--create', CREATE_HELP)
  .action(async (options: { json?: boolean; create?: boolean }) => {
    await withInstallation(options, async (config, db) => {
      const store = await openStore(config);
      try {
        const ledger = new BlobLedger(db.kysely, store);
        collectMedia(ledger);
        const collected = await ledger.collect(config.gcGraceSeconds * 1000);
        emit(options.json, collected, (c) =>
          fields([
            ['blobs marked unreferenced', c.marked],
            ['blobs deleted', c.deleted],
            ['stray files removed', c.strays],
            ['temporary files removed', c.temporaries],
          ]),
        );
      } finally {
        await store.close();
      }
    });
  });

const keyColumns: [string, (key: ApiKeyView) => unknown][] = [
  ['ID', (k) => k.id],
  ['PREFIX', (k) => k.prefix],
  ['ROLE', (k) => k.role],
  ['OPERATOR', (k) => k.operator],
  ['NAME', (k) => k.name],
  ['CREATED', (k) => k.createdAt],
  ['LAST USED', (k) => k.lastUsedAt],
  ['REVOKED', (k) => k.revokedAt],
];

const keys = program.command('keys').description('manage API keys');
keys
  .command('create')
  .description('create an API key and print it once')
  .requiredOption('--tenant <id>', 'tenant id')
  .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`, (value) => {
    if (!isRole(value)) throw new InvalidArgumentError(`expected one of ${ROLES.join(', ')}`);
    return value;
  })
  .option('--name <name>', 'a label for the key')
  .option('--operator', 'an operator key may manage tenants')
  .option('--json', JSON_HELP)
  .option('--create', CREATE_HELP)
  .action(
    async (options: {
      tenant: string;
      role: 'admin' | 'editor' | 'viewer';
      name?: string;
      operator?: boolean;
      json?: boolean;
      create?: boolean;
    }) => {
      await withInstallation(options, async (_config, db) => {
        const { key, view } = await new TenancyService(db.kysely).createKey(OPERATOR(options.tenant), {
          tenantId: options.tenant,
          role: options.role,
          ...(options.name ? { name: options.name } : {}),
          operator: Boolean(options.operator),
        });
        if (!options.json) process.stderr.write('The key is shown only this once: store it now.\n');
        emit(options.json, { ...view, key }, (created) =>
          fields([
            ['key', created.key],
            ['id', created.id],
            ['tenant', created.tenantId],
            ['role', created.role],
            ['operator', created.operator],
            ['name', created.name],
            ['prefix', created.prefix],
            ['created', created.createdAt],
          ]),
        );
      });
    },
  );
keys
  .command('list')
  .description("list a tenant's keys (never the keys themselves)")
  .requiredOption('--tenant <id>', 'tenant id')
  .option('--json', JSON_HELP)
  .option('--create', CREATE_HELP)
  .action(async (options: { tenant: string; json?: boolean; create?: boolean }) => {
    await withInstallation(options, async (_config, db) => {
      const tenancy = new TenancyService(db.kysely);
      const all: ApiKeyView[] = [];
      let cursor: string | undefined;
      do {
        const page = await tenancy.listKeys(OPERATOR(options.tenant), {
          limit: 100,
          ...(cursor ? { cursor } : {}),
        });
        all.push(...page.items);
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      emit(options.json, all, (items) => table(items, keyColumns, 'no keys'));
    });
  });
keys
  .command('revoke <keyId>')
  .description('revoke a key')
  .option('--json', JSON_HELP)
  .option('--create', CREATE_HELP)
  .action(async (keyId: string, options: { json?: boolean; create?: boolean }) => {
    await withInstallation(options, async (_config, db) => {
      await new TenancyService(db.kysely).revokeKey(OPERATOR('cli'), keyId);
      emit(options.json, { id: keyId, revoked: true }, () => `revoked ${keyId}`);
    });
  });

const tenants = program.command('tenants').description('list tenants (`tenants` alone: `tenants list`)');
tenants
  .command('list', { isDefault: true })
  .description('list tenants')
  .option('--json', JSON_HELP)
  .option('--create', CREATE_HELP)
  .action(async (options: { json?: boolean; create?: boolean }) => {
    await withInstallation(options, async (_config, db) => {
      const all = await new TenancyService(db.kysely).listTenants(OPERATOR('cli'));
      emit(options.json, all, (items) =>
        table(
          items,
          [
            ['ID', (t) => t.id],
            ['NAME', (t) => t.name],
            ['TIER', (t) => t.tier],
            ['CREATED', (t) => t.createdAt],
          ],
          'no tenants',
        ),
      );
    });
  });

const env = (name: string) => process.env[name] || undefined;
const sizeArgument = (value: string) => {
  const size = parseSize(value);
  if (size === undefined) throw new InvalidArgumentError('expected bytes, e.g. 8388608, 64KiB or 8MiB');
  return size;
};
/** A size given in the environment, checked as the option would be. */
const sizeFromEnv = (name: string): number | undefined => {
  const value = env(name);
  if (value === undefined) return undefined;
  const size = parseSize(value);
  if (size === undefined) throw new CliError(`${name}: expected bytes, e.g. 8388608, 64KiB or 8MiB`);
  return size;
};

program
  .command('upload <file>')
  .description(
    'upload a file to a running Conveyor and print the asset; large files upload resumably (tus) and ' +
      'an interrupted one continues where it stopped when the same command runs again',
  )
  .option(
    '--url <url>',
    'Conveyor base URL (or CONVEYOR_URL)',
    env('CONVEYOR_URL') ?? 'http://localhost:8080',
  )
  .option('--key <key>', 'API key (or CONVEYOR_API_KEY)', env('CONVEYOR_API_KEY'))
  .option('--private', 'upload as a private asset')
  .option('--publish', 'also publish the upload as version 1')
  .option('--json', JSON_HELP)
  .option(
    '--resumable-threshold <size>',
    'files of this size or more upload resumably, showing progress (or ' +
      `CONVEYOR_UPLOAD_RESUMABLE_THRESHOLD; default ${UPLOAD_DEFAULTS.resumableThreshold / 1048576}MiB)`,
    sizeArgument,
  )
  .option(
    '--chunk-size <size>',
    'bytes sent per request of a resumable upload (or CONVEYOR_UPLOAD_CHUNK_SIZE; default ' +
      `${UPLOAD_DEFAULTS.chunkSize / 1048576}MiB)`,
    sizeArgument,
  )
  .option(
    '--state-file <path>',
    'where unfinished resumable uploads are remembered (or CONVEYOR_UPLOAD_STATE_FILE; default ' +
      '$XDG_STATE_HOME/conveyor/uploads.json, else ~/.local/state/conveyor/uploads.json)',
  )
  .option('--no-progress', 'show no progress')
  .addOption(
    new Option('--stop-after-chunks <n>', 'stop a resumable upload after n chunks, as if cut off (for tests)')
      .argParser((value) => {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
        return n;
      })
      .hideHelp(),
  )
  .action(
    async (
      file: string,
      options: {
        url: string;
        key?: string;
        private?: boolean;
        publish?: boolean;
        json?: boolean;
        resumableThreshold?: number;
        chunkSize?: number;
        stateFile?: string;
        progress: boolean;
        stopAfterChunks?: number;
      },
    ) => {
      if (!options.key) throw new CliError('an API key is needed: --key or CONVEYOR_API_KEY');
      const chunkSize = options.chunkSize ?? sizeFromEnv('CONVEYOR_UPLOAD_CHUNK_SIZE');
      if (chunkSize === 0) throw new CliError('the chunk size must be at least 1 byte');
      const stateFile = options.stateFile ?? env('CONVEYOR_UPLOAD_STATE_FILE');
      const result = await uploadFile(file, {
        baseUrl: options.url,
        apiKey: options.key,
        visibility: options.private ? 'private' : 'public',
        publish: Boolean(options.publish),
        resumableThreshold:
          options.resumableThreshold ??
          sizeFromEnv('CONVEYOR_UPLOAD_RESUMABLE_THRESHOLD') ??
          UPLOAD_DEFAULTS.resumableThreshold,
        chunkSize: chunkSize ?? UPLOAD_DEFAULTS.chunkSize,
        ...(stateFile ? { stateFile } : {}),
        progress: options.progress,
        ...(options.stopAfterChunks ? { stopAfterChunks: options.stopAfterChunks } : {}),
      });
      emit(options.json, result, (r: UploadResult) =>
        fields([
          ['id', r.id],
          ['url', r.url],
          ['etag', r.etag],
          ['size', r.size],
          ['version url', r.versionUrl],
        ]),
      );
    },
  );

program
  .command('video <source>')
  .description(
    'upload a video file (or have the server download a video URL) and follow its HLS ladder job until ' +
      "it ends; exit 0 when the ladder is ready, 1 with the job's error code when it is not",
  )
  .option(
    '--url <url>',
    'Conveyor base URL (or CONVEYOR_URL)',
    env('CONVEYOR_URL') ?? 'http://localhost:8080',
  )
  .option('--key <key>', 'API key (or CONVEYOR_API_KEY)', env('CONVEYOR_API_KEY'))
  .option('--private', 'upload as a private asset')
  .option('--json', JSON_HELP)
  .option('--no-progress', 'show no progress')
  .action(
    async (
      source: string,
      options: { url: string; key?: string; private?: boolean; json?: boolean; progress: boolean },
    ) => {
      if (!options.key) throw new CliError('an API key is needed: --key or CONVEYOR_API_KEY');
      const stateFile = env('CONVEYOR_UPLOAD_STATE_FILE');
      const chunkSize = sizeFromEnv('CONVEYOR_UPLOAD_CHUNK_SIZE');
      if (chunkSize === 0) throw new CliError('the chunk size must be at least 1 byte');
      const outcome = await videoCommand(source, {
        baseUrl: options.url,
        apiKey: options.key,
        visibility: options.private ? 'private' : 'public',
        resumableThreshold:
          sizeFromEnv('CONVEYOR_UPLOAD_RESUMABLE_THRESHOLD') ?? UPLOAD_DEFAULTS.resumableThreshold,
        chunkSize: chunkSize ?? UPLOAD_DEFAULTS.chunkSize,
        ...(stateFile ? { stateFile } : {}),
        progress: options.progress,
      });
      emit(options.json, outcome, ({ asset, job }) =>
        fields([
          ['id', asset['id']],
          ['url', asset['url']],
          ['content type', asset['contentType']],
          ['video', asset['video']],
          ['job', job.id],
          ['state', job.state],
          ['result', job.result],
        ]),
      );
      const { job } = outcome;
      if (job.state !== 'succeeded') {
        console.error(
          `conveyor: video job ${job.id} ended ${job.state}: ${job.error?.code}: ${job.error?.message}`,
        );
        process.exitCode = 1;
      }
    },
  );

/** Runs `work` on the installation's existing database (see openInstallation), closing it afterwards. */
async function withInstallation(
  options: { create?: boolean },
  work: (config: Config, db: Db) => Promise<void>,
): Promise<void> {
  const config = loadConfig();
  const db = await openInstallation(config, options);
  try {
    await work(config, db);
  } finally {
    await db.close();
  }
}

/** Node's system errors (ENOENT, ECONNREFUSED, …) and the database driver's carry a code: no stack. */
const isOperational = (error: unknown): error is Error =>
  error instanceof Error && typeof (error as { code?: unknown }).code === 'string';

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof ConfigError) console.error(error.message);
  else if (error instanceof ConveyorError) console.error(`conveyor: ${error.code}: ${error.message}`);
  else if (error instanceof CliError || isOperational(error)) console.error(`conveyor: ${error.message}`);
  else console.error(error);
  process.exitCode =
    error instanceof ConveyorError || error instanceof ConfigError || error instanceof CliError ? 2 : 1;
}
