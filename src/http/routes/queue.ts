import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { ConveyorError } from '../../errors.ts';
import type { Lane } from '../../glossary.ts';
import { JobMonitor, type Scope } from '../../jobs/monitor.ts';
import { checkHealth } from '../../ops/health.ts';
import { audit } from '../../tenancy/audit.ts';
import type { Principal } from '../../tenancy/principal.ts';
import { requireRole } from '../../tenancy/principal.ts';
import type { AppDeps } from '../app.ts';
import { LaneSchema, OpenStateSchema, problemResponses } from '../schemas.ts';

// Schemas are inline: a route plugin that calls addSchema gets a schema controller of its own, which
// drops the app's validator compiler (see app.ts).
const Nullable = <T extends ReturnType<typeof Type.Number>>(t: T) => Type.Union([t, Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);
const Counts = { queued: Type.Integer(), failed: Type.Integer(), active: Type.Integer() };

const BreakerSchema = Type.Object({
  key: Type.String(),
  state: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half_open')]),
  failures: Type.Integer(),
  openedAt: NullableString,
  openUntil: NullableString,
  probeJobId: NullableString,
});

const QueueStatusSchema = Type.Object({
  scope: Type.Union([Type.Literal('tenant'), Type.Literal('all')]),
  generatedAt: Type.String({ format: 'date-time' }),
  totals: Type.Object(Counts),
  lanes: Type.Array(
    Type.Object({ lane: LaneSchema, ...Counts, oldestDueAgeSeconds: Nullable(Type.Number()) }),
  ),
  types: Type.Array(Type.Object({ type: Type.String(), ...Counts })),
  depth: Type.Array(
    Type.Object({
      lane: LaneSchema,
      type: Type.String(),
      state: OpenStateSchema,
      count: Type.Integer(),
    }),
  ),
  active: Type.Array(
    Type.Object({
      id: Type.String(),
      tenantId: Type.String(),
      type: Type.String(),
      lane: LaneSchema,
      attempts: Type.Integer(),
      maxAttempts: Type.Integer(),
      startedAt: NullableString,
      leaseOwner: NullableString,
      leaseExpiresAt: NullableString,
    }),
  ),
  activeTotal: Type.Integer(),
  liveWorkers: Type.Integer(),
  workers: Type.Array(
    Type.Object({
      id: Type.String(),
      host: Type.String(),
      pid: Type.Integer(),
      lanes: Type.Array(Type.String()),
      types: Type.Array(Type.String()),
      concurrency: Type.Integer(),
      running: Type.Integer(),
      startedAt: Type.String(),
      seenAt: Type.String(),
    }),
  ),
  breakers: Type.Array(BreakerSchema),
  rateLimits: Type.Array(
    Type.Object({
      scope: Type.String({
        description: 'type:<job type> or key:<breaker key>, e.g. key:host:cdn.example.com',
      }),
      ratePerSecond: Nullable(Type.Number()),
      nextStartAt: Type.String(),
    }),
  ),
});

const PercentilesSchema = Type.Object({
  count: Type.Integer(),
  p50: Nullable(Type.Number()),
  p95: Nullable(Type.Number()),
  p99: Nullable(Type.Number()),
});
const BucketCounts = {
  started: Type.Integer(),
  succeeded: Type.Integer(),
  failed: Type.Integer(),
  dead: Type.Integer(),
};
const WindowSchema = Type.Object({
  from: Type.String(),
  to: Type.String(),
  bucketSeconds: Type.Integer(),
  totals: Type.Object({ ...BucketCounts, successRate: Nullable(Type.Number()) }),
  waitMs: PercentilesSchema,
  runMs: PercentilesSchema,
  buckets: Type.Array(Type.Object({ start: Type.String(), ...BucketCounts })),
});
const StatisticsSchema = Type.Object({
  scope: Type.Union([Type.Literal('tenant'), Type.Literal('all')]),
  generatedAt: Type.String(),
  maxRows: Type.Integer(),
  rowsRead: Type.Integer(),
  truncated: Type.Boolean(),
  hour: WindowSchema,
  day: WindowSchema,
});

const HealthStatusSchema = Type.Union([
  Type.Literal('healthy'),
  Type.Literal('degraded'),
  Type.Literal('unhealthy'),
]);
/** The video encoders of the answering process (src/media/video/hwaccel.ts, encoderHealth). */
const EncodersSchema = Type.Object({
  mode: Type.String(),
  source: Type.Union([Type.Literal('trials'), Type.Literal('cache')]),
  detectedAt: Type.String(),
  proven: Type.Array(Type.String()),
  failed: Type.Array(Type.Object({ encoder: Type.String(), reason: Type.String() })),
  best: Type.Record(Type.String(), Type.String()),
});
const HealthSchema = Type.Object({
  status: HealthStatusSchema,
  checkedAt: Type.String(),
  windowMinutes: Type.Integer(),
  thresholds: Type.Object({ healthyPercent: Type.Number(), degradedPercent: Type.Number() }),
  components: Type.Array(
    Type.Object({
      name: Type.String(),
      kind: Type.Union([
        Type.Literal('database'),
        Type.Literal('storage'),
        Type.Literal('jobs'),
        Type.Literal('breaker'),
        Type.Literal('encoders'),
      ]),
      status: HealthStatusSchema,
      successRate: Nullable(Type.Number()),
      detail: Type.String(),
      encoders: Type.Optional(EncodersSchema),
    }),
  ),
});

const ClearBody = Type.Object(
  {
    confirm: Type.Optional(Type.Boolean()),
    type: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    lane: Type.Optional(LaneSchema),
    /** The jobs API's name for a lane. */
    priority: Type.Optional(LaneSchema),
  },
  { additionalProperties: false },
);

const scopeOf = (principal: Principal): Scope =>
  principal.operator ? 'all' : { tenantId: principal.tenantId };

/**
 * The monitoring API: queue status, statistics and health (every role; operator keys see every tenant),
 * and clearing waiting jobs (admin, audit-logged, with explicit confirmation).
 */
export async function queueRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { jobs, config } = opts.deps;
  const monitor = new JobMonitor(jobs.context, jobs.breakers, {
    heartbeatMs: config.jobHeartbeatMs,
    statsMaxRows: config.monitorStatsMaxRows,
  });

  app.get(
    '/queue/status',
    {
      schema: {
        operationId: 'getQueueStatus',
        tags: ['monitoring'],
        summary: 'Queue depth by lane, type and state; active jobs; oldest due age; live workers; breakers',
        description:
          'Scoped to the caller’s tenant; an operator key sees every tenant, and the live workers’ details.',
        response: { 200: QueueStatusSchema, ...problemResponses },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return monitor.status(scopeOf(request.principal!));
    },
  );

  app.get(
    '/statistics',
    {
      schema: {
        operationId: 'getStatistics',
        tags: ['monitoring'],
        summary: 'Throughput, success rate and wait/run time percentiles over the last hour and day',
        description: `Computed from at most monitorStatsMaxRows (${config.monitorStatsMaxRows}) of the newest jobs touched in the last day; \`truncated\` says when the window held more. Wait and run times are those of each job’s last attempt.`,
        response: { 200: StatisticsSchema, ...problemResponses },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return monitor.statistics(scopeOf(request.principal!));
    },
  );

  app.get(
    '/health',
    {
      schema: {
        operationId: 'getHealth',
        tags: ['monitoring'],
        summary: 'Health of every component: database, storage, job engine, each breaker',
        description:
          'The job engine’s success rate and the breakers are the caller’s tenant’s (the breakers its waiting or running jobs name); an operator key sees every tenant’s.',
        response: { 200: HealthSchema, ...problemResponses },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return checkHealth({
        config,
        monitor,
        ready: opts.deps.ready,
        scope: scopeOf(request.principal!),
        space: opts.deps.space,
        encoders: opts.deps.encoders,
        now: jobs.context.now,
      });
    },
  );

  app.post(
    '/queue/clear',
    {
      schema: {
        operationId: 'clearQueue',
        tags: ['monitoring'],
        summary: 'Cancel the tenant’s waiting jobs matching a filter (admin; audit-logged; needs confirm)',
        description:
          'Queued jobs, and failed ones awaiting a retry, become `cancelled` with their reserved credits refunded, as a cancel does. Requires `{"confirm": true}` or `?confirm=true`.',
        querystring: Type.Object({ confirm: Type.Optional(Type.Boolean()) }),
        body: ClearBody,
        response: { 200: Type.Object({ cleared: Type.Integer() }), ...problemResponses },
      },
      // `?confirm=true` with no body at all is allowed: validate an empty filter then.
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request) => {
      const principal = request.principal!;
      requireRole(principal, 'admin');
      const body = request.body;
      if (body.confirm !== true && request.query.confirm !== true) {
        throw new ConveyorError(
          'bad_request',
          'Clearing the queue cancels jobs: confirm with {"confirm": true} or ?confirm=true',
        );
      }
      if (body.lane && body.priority && body.lane !== body.priority) {
        throw new ConveyorError('bad_request', 'lane and priority name the same filter; give one');
      }
      const filter = { type: body.type, lane: (body.lane ?? body.priority) as Lane | undefined };
      const cleared = await monitor.clear(principal.tenantId, filter);
      await audit(jobs.context.db, {
        tenantId: principal.tenantId,
        actor: principal.actor,
        action: 'queue.clear',
        details: {
          ...(filter.type ? { type: filter.type } : {}),
          ...(filter.lane ? { lane: filter.lane } : {}),
          cleared,
        },
      });
      return { cleared };
    },
  );
}
