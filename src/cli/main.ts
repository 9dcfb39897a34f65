import { Command, InvalidArgumentError } from 'commander';
import { BlobLedger } from '../assets/blobs.ts';
import { openMigratedDatabase, openStore } from '../backends.ts';
import { type Config, ConfigError, configTable, loadConfig, redactedConfig } from '../config/config.ts';
import { migrate, openDatabase } from '../db/database.ts';
import { ConveyorError, errorTable } from '../errors.ts';
import { collectMedia } from '../media/wiring.ts';
import { isRole, type Principal, ROLES } from '../tenancy/principal.ts';
import { TenancyService } from '../tenancy/service.ts';
import { serve } from './serve.ts';
import { uploadFile } from './upload.ts';
import { runWorker } from './worker.ts';

/** The CLI acts on the database directly, as the operator of this installation. */
const OPERATOR = (tenantId: string): Principal => ({
  tenantId,
  role: 'admin',
  operator: true,
  keyId: null,
  actor: 'cli',
});

const program = new Command('conveyor')
  .description('Conveyor: a self-hosted media origin with a durable processing pipeline')
  .showHelpAfterError();

program
  .command('serve')
  .description('run the HTTP server (applies pending migrations first)')
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
  .description('apply pending database migrations')
  .action(async () => {
    const db = openDatabase(loadConfig());
    try {
      const applied = await migrate(db);
      console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
    } finally {
      await db.close();
    }
  });

program
  .command('config')
  .description('print the effective configuration (secrets redacted)')
  .option('--table', 'print every setting as a Markdown table instead')
  .action((options: { table?: boolean }) => {
    if (options.table) console.log(configTable());
    else console.log(JSON.stringify(redactedConfig(loadConfig()), null, 2));
  });

program
  .command('errors')
  .description('print the error catalog as the Markdown table of docs/api.md')
  .action(() => console.log(errorTable()));

program
  .command('gc')
  .description('collect blobs that nothing references (older than CONVEYOR_GC_GRACE_SECONDS)')
  .action(async () => {
    await withServices(async (config, _tenancy, ledger) => {
      collectMedia(ledger);
      console.log(JSON.stringify(await ledger.collect(config.gcGraceSeconds * 1000)));
    });
  });

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
  .action(
    async (options: {
      tenant: string;
      role: 'admin' | 'editor' | 'viewer';
      name?: string;
      operator?: boolean;
    }) => {
      await withServices(async (_config, tenancy) => {
        const { key, view } = await tenancy.createKey(OPERATOR(options.tenant), {
          tenantId: options.tenant,
          role: options.role,
          ...(options.name ? { name: options.name } : {}),
          operator: Boolean(options.operator),
        });
        console.log(JSON.stringify({ ...view, key }, null, 2));
      });
    },
  );
keys
  .command('list')
  .description("list a tenant's keys")
  .requiredOption('--tenant <id>', 'tenant id')
  .action(async (options: { tenant: string }) => {
    await withServices(async (_config, tenancy) => {
      let cursor: string | undefined;
      do {
        const page = await tenancy.listKeys(OPERATOR(options.tenant), {
          limit: 100,
          ...(cursor ? { cursor } : {}),
        });
        for (const key of page.items) console.log(JSON.stringify(key));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
    });
  });
keys
  .command('revoke <keyId>')
  .description('revoke a key')
  .action(async (keyId: string) => {
    await withServices(async (_config, tenancy) => {
      await tenancy.revokeKey(OPERATOR('cli'), keyId);
      console.log(`revoked ${keyId}`);
    });
  });

program
  .command('tenants')
  .description('list tenants')
  .action(async () => {
    await withServices(async (_config, tenancy) => {
      for (const tenant of await tenancy.listTenants(OPERATOR('cli'))) console.log(JSON.stringify(tenant));
    });
  });

program
  .command('upload <file>')
  .description('upload a file to a running Conveyor and print its URLs')
  .option(
    '--url <url>',
    'Conveyor base URL (or CONVEYOR_URL)',
    process.env['CONVEYOR_URL'] ?? 'http://localhost:8080',
  )
  .option('--key <key>', 'API key (or CONVEYOR_API_KEY)', process.env['CONVEYOR_API_KEY'])
  .option('--private', 'upload as a private asset')
  .option('--publish', 'also publish the upload as version 1')
  .action(
    async (file: string, options: { url: string; key?: string; private?: boolean; publish?: boolean }) => {
      if (!options.key) throw new CliError('an API key is needed: --key or CONVEYOR_API_KEY');
      const result = await uploadFile(file, {
        baseUrl: options.url,
        apiKey: options.key,
        visibility: options.private ? 'private' : 'public',
        publish: Boolean(options.publish),
      });
      console.log(JSON.stringify(result, null, 2));
    },
  );

class CliError extends Error {}

async function withServices(
  work: (config: Config, tenancy: TenancyService, ledger: BlobLedger) => Promise<void>,
): Promise<void> {
  const config = loadConfig();
  const db = await openMigratedDatabase(config);
  const store = await openStore(config);
  try {
    await work(config, new TenancyService(db.kysely), new BlobLedger(db.kysely, store));
  } finally {
    await store.close();
    await db.close();
  }
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof ConfigError) console.error(error.message);
  else if (error instanceof ConveyorError) console.error(`conveyor: ${error.code}: ${error.message}`);
  else if (error instanceof CliError) console.error(`conveyor: ${error.message}`);
  else console.error(error);
  process.exitCode =
    error instanceof ConveyorError || error instanceof ConfigError || error instanceof CliError ? 2 : 1;
}
