import type { FastifyServerOptions } from 'fastify';
import { BlobLedger } from './assets/blobs.ts';
import { AssetService } from './assets/service.ts';
import { openMigratedDatabase, openStore } from './backends.ts';
import { type Config, publicBaseUrl } from './config/config.ts';
import { type Db, ping } from './db/database.ts';
import { AccessService, loadSigningKeys } from './delivery/access.ts';
import { DeliveryLookup, deliveryPath } from './delivery/lookup.ts';
import { type App, buildApp } from './http/app.ts';
import { createAuthenticator } from './http/auth.ts';
import { Metrics } from './ops/metrics.ts';
import type { BlobStore } from './storage/blob-store.ts';
import { createJwtVerifier } from './tenancy/jwt.ts';
import { TenancyService } from './tenancy/service.ts';

/** Everything one Conveyor process runs, wired together; `serve`, the CLI and the tests all start here. */
export interface Conveyor {
  config: Config;
  db: Db;
  store: BlobStore;
  ledger: BlobLedger;
  tenancy: TenancyService;
  assets: AssetService;
  app: App;
  /** Set once `listen` has bound the port. */
  baseUrl(): string;
  listen(): Promise<string>;
  close(): Promise<void>;
}

export async function createConveyor(
  config: Config,
  options: { logger?: FastifyServerOptions['logger']; runCollector?: boolean } = {},
): Promise<Conveyor> {
  const db = await openMigratedDatabase(config);
  const store = await openStore(config);
  let boundPort: number | undefined;
  const baseUrl = () => publicBaseUrl(config, boundPort);

  const tenancy = new TenancyService(db.kysely);
  const lookup = new DeliveryLookup(db.kysely, { ttlMs: config.deliveryMetadataTtlMs });
  const ledger = new BlobLedger(db.kysely, store);
  const assets = new AssetService({
    db: db.kysely,
    store,
    ledger,
    urls: {
      latest: (id) => baseUrl() + deliveryPath.latest(id),
      version: (id) => baseUrl() + deliveryPath.version(id),
    },
    limits: { maxUploadBytes: config.maxUploadBytes, maxFilenameBytes: config.maxFilenameBytes },
    changed: () => lookup.invalidate(),
  });
  const access = new AccessService({
    db: db.kysely,
    signingKeys: await loadSigningKeys(db.kysely, config.signingKeys),
    limits: {
      tokenMaxTtlSeconds: config.tokenMaxTtlSeconds,
      signedUrlMaxTtlSeconds: config.signedUrlMaxTtlSeconds,
    },
  });
  const verifyJwt = createJwtVerifier({
    ...(config.jwtSecret ? { secret: config.jwtSecret } : {}),
    ...(config.jwtJwksUrl ? { jwksUrl: config.jwtJwksUrl } : {}),
    ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
    ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
    tenantClaim: config.jwtTenantClaim,
    roleClaim: config.jwtRoleClaim,
    clockToleranceSeconds: 30,
    maxLifetimeSeconds: config.jwtMaxLifetimeSeconds,
  });
  const metrics = new Metrics();
  const check = async (name: string, probe: () => Promise<void>) => {
    try {
      await probe();
      return 'ok' as const;
    } catch (error) {
      app.log.warn({ err: error, check: name }, 'readiness check failed');
      return 'failed' as const;
    }
  };
  const app = await buildApp(
    {
      config,
      tenancy,
      assets,
      access,
      store,
      metrics,
      lookup,
      authenticator: createAuthenticator({ tenancy, verifyJwt }),
      ready: async () => ({
        database: await check('database', () => ping(db)),
        storage: await check('storage', () => store.ping()),
      }),
      baseUrl,
    },
    { ...(options.logger !== undefined ? { logger: options.logger } : {}) },
  );

  let gcTimer: NodeJS.Timeout | undefined;
  return {
    config,
    db,
    store,
    ledger,
    tenancy,
    assets,
    app,
    baseUrl,
    async listen() {
      await app.listen({ host: config.host, port: config.port });
      const address = app.server.address();
      if (address && typeof address === 'object') boundPort = address.port;
      if (config.gcIntervalSeconds > 0 && options.runCollector !== false) {
        gcTimer = setInterval(() => {
          ledger.collect(config.gcGraceSeconds * 1000).then(
            (result) => app.log.info({ gc: result }, 'garbage collection'),
            (error) => app.log.error({ err: error }, 'garbage collection failed'),
          );
        }, config.gcIntervalSeconds * 1000);
        gcTimer.unref();
      }
      return baseUrl();
    },
    async close() {
      clearInterval(gcTimer);
      await app.close();
      await store.close();
      await db.close();
    },
  };
}
