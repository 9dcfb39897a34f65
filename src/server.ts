import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyServerOptions } from 'fastify';
import type { BlobLedger } from './assets/blobs.ts';
import type { AssetService } from './assets/service.ts';
import { localVolumes, openAssets, openMigratedDatabase, openStore } from './backends.ts';
import { type Config, publicBaseUrl } from './config/config.ts';
import { type Db, ping } from './db/database.ts';
import { AccessService, loadSigningKeys } from './delivery/access.ts';
import { DeliveryLookup } from './delivery/lookup.ts';
import { type App, buildApp } from './http/app.ts';
import { createAuthenticator } from './http/auth.ts';
import type { JobEvent } from './jobs/context.ts';
import { JobEngine } from './jobs/engine.ts';
import { JobEventHub } from './jobs/events.ts';
import { buildRegistry } from './jobs/modules.ts';
import { JobMonitor } from './jobs/monitor.ts';
import type { JobRegistry } from './jobs/registry.ts';
import type { Worker } from './jobs/worker.ts';
import { encoderAvailability, encoderHealth } from './media/video/hwaccel-report.ts';
import { attachMedia, type Media } from './media/wiring.ts';
import { Alerter } from './ops/alerts.ts';
import { answerPrimary } from './ops/cluster-metrics.ts';
import { Metrics } from './ops/metrics.ts';
import { listenMetrics, type MetricsListener } from './ops/metrics-endpoint.ts';
import type { BlobStore } from './storage/blob-store.ts';
import { FreeSpace } from './storage/free-space.ts';
import { createJwtVerifier } from './tenancy/jwt.ts';
import { TenancyService } from './tenancy/service.ts';
import { createResumableUploads } from './uploads/resumable.ts';

/** Everything one Conveyor process runs, wired together; `serve`, the CLI and the tests all start here. */
export interface Conveyor {
  config: Config;
  db: Db;
  store: BlobStore;
  ledger: BlobLedger;
  tenancy: TenancyService;
  assets: AssetService;
  jobs: JobEngine;
  media: Media;
  app: App;
  /** The delivery metadata lookup (its memory is what lets the origin answer at once). */
  lookup: DeliveryLookup;
  /** The in-process worker, when `serveWorkers` is on and the server listens. */
  worker(): Worker | undefined;
  /** Set once `listen` has bound the port. */
  baseUrl(): string;
  /** The /metrics listener of `metricsPort` once `listen` has bound it; undefined on the main port. */
  metricsUrl(): string | undefined;
  listen(): Promise<string>;
  /** Stops gracefully: running jobs get the shutdown grace period, in-flight requests their answers. */
  close(): Promise<void>;
  /**
   * Cuts a close short, in progress or to come (a second SIGTERM): running jobs are aborted and handed
   * back to the queue at once, and every connection is closed, requests in flight or not.
   */
  hurry(): void;
}

export async function createConveyor(
  config: Config,
  options: {
    logger?: FastifyServerOptions['logger'];
    runCollector?: boolean;
    /** Job types beyond the built-in ones (tests, embedding applications). */
    registry?: JobRegistry;
    /**
     * A server process of a cluster: the primary serves /metrics on `metricsPort` for all of them, and this
     * process answers its requests for its own (src/ops/cluster-metrics.ts) instead of listening there.
     */
    metricsViaPrimary?: boolean;
  } = {},
): Promise<Conveyor> {
  const db = await openMigratedDatabase(config);
  const store = await openStore(config);
  let boundPort: number | undefined;
  const baseUrl = () => publicBaseUrl(config, boundPort);

  const tenancy = new TenancyService(db.kysely);
  const lookup = new DeliveryLookup(db.kysely, { ttlMs: config.deliveryMetadataTtlMs });
  const { ledger, assets } = openAssets(config, db.kysely, store, {
    baseUrl,
    changed: () => lookup.invalidate(),
  });
  const signingKeys = await loadSigningKeys(db.kysely, config.signingKeys);
  const access = new AccessService({
    db: db.kysely,
    signingKeys,
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
  const jobs = new JobEngine(db, options.registry ?? (await buildRegistry(config)), config);
  const media = attachMedia({
    config,
    db: db.kysely,
    store,
    ledger,
    assets,
    jobs,
    signingKeys,
    log: { error: (obj, msg) => app.log.error(obj, msg) },
  });
  const jobEvents = new JobEventHub({
    context: jobs.context,
    db,
    subscribeRemote: true,
    pollMs: config.jobEventsPollMs,
    flushMs: config.jobEventsFlushMs,
    log: { warn: (obj, msg) => app.log.warn(obj, msg) },
  });
  const space = new FreeSpace(localVolumes(config), {
    minFreeBytes: config.storageMinFreeBytes,
    ttlMs: config.storageSpaceCheckMs,
  });
  const uploads = createResumableUploads(
    config,
    assets,
    { error: (obj, msg) => app.log.error(obj, msg) },
    space,
  );
  const metrics = new Metrics({ hostLabels: config.metricsHostLabels });
  // Monitoring: the job gauges read the queue on each scrape; the histograms observe this process's jobs.
  const monitor = new JobMonitor(jobs.context, jobs.breakers, {
    heartbeatMs: config.jobHeartbeatMs,
    statsMaxRows: config.monitorStatsMaxRows,
  });
  metrics.attachJobs({ depthByLane: () => monitor.depthByLane(), breakers: () => monitor.breakers('all') });
  jobs.context.events.on('job', (event: JobEvent) => metrics.observeJob(event));
  media.video.observe({
    detected: (report) => metrics.observeEncoders(encoderAvailability(report)),
    fellBack: (fallback) => metrics.countEncodeFallback(fallback),
  });
  let alerter: Alerter | undefined;
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
      jobs,
      jobEvents,
      media,
      uploads,
      store,
      metrics,
      lookup,
      authenticator: createAuthenticator({ tenancy, verifyJwt }),
      space,
      // Known once this process's worker has proved its encoders (at its start or its first video job).
      encoders: () => (media.video.report ? encoderHealth(media.video.report) : undefined),
      ready: async () => {
        const database = await check('database', () => ping(db));
        const storage = await check('storage', () => store.ping());
        // Reachable but short of space: still ready (delivery reads on), but degraded.
        return {
          database,
          storage: storage === 'ok' && (await space.low()).length > 0 ? 'degraded' : storage,
        };
      },
      baseUrl,
    },
    { ...(options.logger !== undefined ? { logger: options.logger } : {}) },
  );

  const connections = trackConnections(app.server);
  let gcTimer: NodeJS.Timeout | undefined;
  let uploadsTimer: NodeJS.Timeout | undefined;
  let worker: Worker | undefined;
  let metricsListener: MetricsListener | undefined;
  let stopAnsweringPrimary: (() => void) | undefined;
  let hurried = false;
  let closing = false;
  return {
    config,
    db,
    store,
    ledger,
    tenancy,
    assets,
    jobs,
    media,
    app,
    lookup,
    baseUrl,
    metricsUrl: () => metricsListener?.url,
    worker: () => worker,
    async listen() {
      await jobEvents.ready();
      await app.listen({ host: config.host, port: config.port });
      const address = app.server.address();
      if (address && typeof address === 'object') boundPort = address.port;
      if (config.metricsPort !== undefined) {
        if (options.metricsViaPrimary) stopAnsweringPrimary = answerPrimary(metrics.registry);
        else {
          metricsListener = await listenMetrics({
            host: config.metricsHost ?? config.host,
            port: config.metricsPort,
            token: config.metricsToken,
            render: () => metrics.render(),
            log: app.log,
          });
        }
      }
      if (config.gcIntervalSeconds > 0 && options.runCollector !== false) {
        gcTimer = setInterval(() => {
          ledger.collect(config.gcGraceSeconds * 1000).then(
            (result) => app.log.info({ gc: result }, 'garbage collection'),
            (error) => app.log.error({ err: error }, 'garbage collection failed'),
          );
        }, config.gcIntervalSeconds * 1000);
        gcTimer.unref();
      }
      if (config.uploadsCleanupIntervalSeconds > 0) {
        uploadsTimer = setInterval(() => {
          uploads.cleanupExpired().then(
            (removed) => removed > 0 && app.log.info({ removed }, 'expired resumable uploads removed'),
            (error) => app.log.error({ err: error }, 'removing expired resumable uploads failed'),
          );
        }, config.uploadsCleanupIntervalSeconds * 1000);
        uploadsTimer.unref();
      }
      alerter = new Alerter({ config, db: db.kysely, monitor, log: app.log.child({ component: 'alerts' }) });
      alerter.start();
      if (config.serveWorkers) {
        worker = jobs.createWorker(app.log.child({ component: 'worker' }));
        await media.video.detectAtStart(config.workerTypes ?? null, app.log);
        await worker.start();
      }
      return baseUrl();
    },
    async close() {
      clearInterval(gcTimer);
      clearInterval(uploadsTimer);
      await alerter?.stop();
      stopAnsweringPrimary?.();
      await metricsListener?.close();
      await worker?.stop(config.jobShutdownGraceMs);
      const closed = app.close();
      closing = true;
      if (hurried) connections.destroy();
      else connections.drain();
      await closed;
      await uploads.close();
      await jobEvents.close();
      await store.close();
      await db.close();
    },
    hurry() {
      hurried = true;
      worker?.endGrace();
      if (closing) connections.destroy();
    },
  };
}

/**
 * Connections by whether a request is in flight on them, so that a close ends each one as soon as it
 * carries no request. Fastify's close ends the keep-alive connections idle at that moment, but not one
 * that never sent a request (a client's spare, a browser's preconnect: Node counts it as active until its
 * headers timeout, which held the close for 60-90 s), nor one whose request is answered after the close
 * began (it then idled for the keep-alive timeout). No response is lost either way.
 */
function trackConnections(server: Server) {
  const busy = new Map<Socket, number>();
  let closing = false;
  server.on('connection', (socket: Socket) => {
    busy.set(socket, 0);
    socket.once('close', () => busy.delete(socket));
  });
  const begin = (socket: Socket) => busy.set(socket, (busy.get(socket) ?? 0) + 1);
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    begin(socket);
    response.once('close', () => {
      if (!busy.has(socket)) return;
      const left = Math.max(0, busy.get(socket)! - 1);
      busy.set(socket, left);
      if (closing && left === 0) finish(socket);
    });
  });
  // A WebSocket is busy for as long as it lives (the events route ends it at close, with a close frame).
  server.on('upgrade', (request: IncomingMessage) => begin(request.socket));
  // Flush what was written, then close, without waiting for the client to close its side.
  const finish = (socket: Socket) => socket.end(() => socket.destroy());
  return {
    /** Ends the connections without a request in flight now, and the others once they have none. */
    drain() {
      closing = true;
      for (const [socket, requests] of busy) if (requests === 0) finish(socket);
    },
    /** Closes every connection now, in flight or not. */
    destroy() {
      closing = true;
      for (const socket of busy.keys()) socket.destroy();
    },
  };
}
