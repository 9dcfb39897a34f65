import { createServer } from 'node:http';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from 'fastify';
import type { AssetService } from '../assets/service.ts';
import { tagHeadersOf } from '../cdn/registry.ts';
import { CacheTags } from '../cdn/tags.ts';
import type { Config } from '../config/config.ts';
import type { AccessService } from '../delivery/access.ts';
import { FastDelivery } from '../delivery/fast-delivery.ts';
import type { DeliveryLookup } from '../delivery/lookup.ts';
import { Origin } from '../delivery/origin.ts';
import { ConveyorError } from '../errors.ts';
import type { JobEngine } from '../jobs/engine.ts';
import type { JobEventHub } from '../jobs/events.ts';
import type { Media } from '../media/wiring.ts';
import type { ComponentHealth, ReadyCheck } from '../ops/health.ts';
import type { Metrics } from '../ops/metrics.ts';
import { requestIdOf } from '../ops/request-id.ts';
import { unauthenticated } from '../problems.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import type { FreeSpace } from '../storage/free-space.ts';
import type { TenancyService } from '../tenancy/service.ts';
import { UPLOADS_PATH } from '../uploads/protocol.ts';
import type { TusUploads } from '../uploads/tus.ts';
import { type Authenticator, enforceRateLimit } from './auth.ts';
import { compressJson } from './compression.ts';
import { CorsPolicy, corsHook } from './cors.ts';
import { boundJsonDepth } from './json-body.ts';
import { sendProblem } from './problems.ts';
import { RateLimiter, type RateLimitRule } from './rate-limit.ts';
import { assetRoutes } from './routes/assets.ts';
import { deliveryRoutes } from './routes/delivery.ts';
import { jobEventRoutes } from './routes/job-events.ts';
import { JobSchema, jobRoutes } from './routes/jobs.ts';
import { mediaRoutes } from './routes/media.ts';
import { opsRoutes } from './routes/ops.ts';
import { queueRoutes } from './routes/queue.ts';
import { scheduleRoutes } from './routes/schedules.ts';
import { tenancyRoutes } from './routes/tenancy.ts';
import { uploadRoutes } from './routes/uploads.ts';
import { Problem } from './schemas.ts';
import { SocketGuard, serverOptions } from './sockets.ts';
import { validatorCompiler } from './validation.ts';

export interface AppDeps {
  config: Config;
  tenancy: TenancyService;
  assets: AssetService;
  access: AccessService;
  jobs: JobEngine;
  jobEvents: JobEventHub;
  media: Media;
  /** Resumable uploads (tus), routed under UPLOADS_PATH. */
  uploads: TusUploads;
  store: BlobStore;
  metrics: Metrics;
  authenticator: Authenticator;
  /** Free space of the local filesystems written to: upload admission and the storage health. */
  space: FreeSpace;
  /**
   * Readiness of every dependency (database, storage): 'ok', 'failed' (logged there), or for storage
   * 'degraded' when it answers but a local filesystem is under the free-space reserve.
   */
  ready: () => Promise<Record<string, ReadyCheck>>;
  /** The `encoders` component of this process's video encoder detection (encoderHealth), once known. */
  encoders?: () => ComponentHealth | undefined;
  lookup: DeliveryLookup;
  /** Builds absolute delivery URLs; known once the server has bound its port. */
  baseUrl: () => string;
}

export type App = FastifyInstance;

declare module 'fastify' {
  interface FastifyInstance {
    /** The delivery shortcut in front of Fastify's routing (fast-delivery.ts). */
    fastDelivery: FastDelivery;
  }
}

/** Query parameters that are credentials and must never reach a log line. */
const SECRET_PARAMS = /([?&](?:token|sig|access_token)=)[^&]*/g;

export async function buildApp(
  deps: AppDeps,
  options: { logger?: FastifyServerOptions['logger'] } = {},
): Promise<App> {
  const { config } = deps;
  const debugLogging = config.logLevel === 'debug' || config.logLevel === 'trace';
  const deliveryLimit = limiter('delivery', config.rateLimitDelivery, config.rateLimitMaxKeys);
  const origin = new Origin({
    store: deps.store,
    lookup: deps.lookup,
    access: deps.access,
    metrics: deps.metrics,
    settings: config,
    log: { error: (obj, msg) => app.log.error(obj, msg) },
    tags: cacheTagsFor(config),
  });
  // Plain public delivery requests skip Fastify (see fast-delivery.ts); a rate limit or per-request debug
  // logging needs Fastify's request, so either turns the shortcut off.
  const cors = new CorsPolicy(config, { uploads: UPLOADS_PATH });
  const fast = new FastDelivery(origin, deps.metrics, {
    enabled: !deliveryLimit && !debugLogging,
    transforms: deps.media.transforms,
    cors: cors.delivery,
  });
  const guard = new SocketGuard(config, (reason) => deps.metrics.connectionsClosed.labels(reason).inc());
  const app = Fastify({
    // Fastify's own server, with the socket guard (timeouts, connection limits, framing; sockets.ts) and
    // the delivery shortcut in front.
    serverFactory: (handler) => {
      const server = createServer(serverOptions(config), (req, res) => {
        if (guard.admit(req, res) && !fast.handle(req, res)) handler(req, res);
      });
      guard.attach(server);
      return server;
    },
    clientErrorHandler: guard.clientError,
    logger: options.logger ?? {
      level: config.logLevel,
      redact: ['req.headers.authorization', 'req.headers.cookie'],
      serializers: {
        req: (req) => ({
          method: req.method,
          url: String(req.url).replace(SECRET_PARAMS, '$1[redacted]'),
          remoteAddress: req.ip,
        }),
      },
    },
    // One line per request is written by the onResponse hook below, at debug level for delivery so that
    // a busy origin does not spend its time logging.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: config.trustProxy,
    bodyLimit: config.maxJsonBodyBytes,
    requestIdHeader: false,
    // Malformed URLs (bad percent-encoding, over-long ids) fail before routing; answer them in our format too.
    frameworkErrors: (error, request, reply) => {
      reply.header('x-request-id', request.id);
      sendProblem(error, request, reply);
    },
    genReqId: requestIdOf,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setValidatorCompiler(validatorCompiler());
  boundJsonDepth(app, config.maxJsonDepth);
  app.decorateRequest('principal', null);
  app.decorate('fastDelivery', fast);
  // Shared schemas are added here, at the root: a plugin that adds one gets a schema controller of its
  // own, which does not inherit our validator compiler (and Fastify's default strips unknown properties
  // instead of refusing them).
  app.addSchema(Problem);
  app.addSchema(JobSchema);
  app.setErrorHandler((error, request, reply) => sendProblem(error, request, reply));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      new ConveyorError('not_found', `No route for ${request.method} ${request.url.split('?')[0]}`),
      request,
      reply,
    ),
  );

  // These two run on every request, delivery included: callback hooks, because an async hook costs a
  // promise and a microtask turn each (measurable on a 304, whose whole cost is about 40 µs).
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  // Registered only when some surface has origins: otherwise CORS costs nothing (src/http/cors.ts).
  if (cors.enabled) app.addHook('onRequest', corsHook(cors));
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    deps.metrics.recordRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
    const level = route.startsWith('/api/') ? 'info' : 'debug';
    // Skip building the line at all for delivery unless debug logging is on: this runs on every request.
    if (level === 'info' || debugLogging) {
      request.log[level](
        { req: request, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 },
        'request',
      );
    }
    done();
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Conveyor API',
        version: '1',
        description: 'Self-hosted media origin: upload, process, store and deliver media.',
        // package.json's UNLICENSED: no license is granted (an SPDX LicenseRef names that).
        license: { name: 'Proprietary', identifier: 'LicenseRef-Proprietary' },
      },
      // Relative: the document describes the server that serves it, under whatever name it is reached.
      servers: [{ url: '/' }],
      tags: [
        { name: 'assets', description: 'Upload, list, change and delete assets' },
        { name: 'versions', description: "Immutable snapshots of an asset's content" },
        { name: 'access', description: 'Access tokens and signed URLs that open private content' },
        { name: 'uploads', description: 'Resumable uploads (tus 1.0) that become assets' },
        { name: 'ingest', description: 'Fetch remote URLs into assets' },
        { name: 'transforms', description: 'Signed on-the-fly transform URLs for clients without a key' },
        {
          name: 'jobs',
          description: 'The job queue: enqueue, read, cancel, retry, dead letters, schedules, live events',
        },
        { name: 'monitoring', description: 'Queue status, statistics and health' },
        { name: 'tenants', description: 'Tenants (operator keys only)' },
        { name: 'keys', description: 'API keys' },
        {
          name: 'delivery',
          description:
            'The content itself, for browsers and CDNs: no API key; conditional and range requests; private content with a token or signed URL',
        },
      ],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'API key (cvk_…) or platform JWT' },
        },
      },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/api/v1/docs' });
  await app.register(async (docs) => {
    await compressJson(docs, config.apiCompressMinBytes);
    docs.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  });

  const perKey = limiter('api-key', config.rateLimitPerKey, config.rateLimitMaxKeys);
  const perAddress = limiter('api-address', config.rateLimitPerAddress, config.rateLimitMaxKeys);

  await app.register(
    async (api) => {
      await compressJson(api, config.apiCompressMinBytes);
      api.addHook('onRequest', async (request, reply) => {
        enforceRateLimit(reply, perAddress?.limiter ?? null, perAddress?.rule ?? null, request.ip);
        const principal = await deps.authenticator.identify(request);
        if (!principal && request.routeOptions.config?.credentialOptional === true) return;
        if (!principal) {
          throw unauthenticated('Use Authorization: Bearer <API key or JWT>', false);
        }
        request.principal = principal;
        enforceRateLimit(reply, perKey?.limiter ?? null, perKey?.rule ?? null, principal.actor);
      });
      await api.register(tenancyRoutes, { deps });
      await api.register(assetRoutes, { deps });
      await api.register(jobRoutes, { deps });
      await api.register(scheduleRoutes, { deps });
      await api.register(queueRoutes, { deps });
      await api.register(jobEventRoutes, { deps });
      await api.register(mediaRoutes, { deps });
      await api.register(uploadRoutes, { deps });
    },
    { prefix: '/api/v1' },
  );

  // From now on delivery requests go through Fastify, which answers 503 and closes their connections.
  app.addHook('preClose', (done) => {
    fast.closing = true;
    done();
  });
  await app.register(deliveryRoutes, { deps, origin, limit: deliveryLimit });
  await app.register(opsRoutes, { deps });
  return app;
}

function limiter(
  name: string,
  perMinute: number,
  maxKeys: number,
): { limiter: RateLimiter; rule: RateLimitRule } | null {
  if (perMinute === 0) return null;
  const rule = { name, limit: perMinute, windowSeconds: 60 };
  return { limiter: new RateLimiter(rule, { maxKeys }), rule };
}

/** The cache-tag headers of the configured CDNs, or none when no configured CDN reads tags. */
function cacheTagsFor(config: Config): CacheTags | undefined {
  const tags = new CacheTags(tagHeadersOf(config));
  return tags.enabled ? tags : undefined;
}
