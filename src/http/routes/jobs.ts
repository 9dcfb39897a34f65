import { type Static, Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { ConveyorError } from '../../errors.ts';
import type { Job } from '../../jobs/types.ts';
import { audit } from '../../tenancy/audit.ts';
import { requireRole } from '../../tenancy/principal.ts';
import type { AppDeps } from '../app.ts';
import {
  IdParams,
  JobStateSchema,
  LaneSchema,
  location,
  PageQuery,
  pageOf,
  problem,
  problemResponses,
  withHeaders,
} from '../schemas.ts';

/** The Location of an enqueued job (or of the existing one an idempotent request finds). */
export const jobLocation = location('The job: /api/v1/jobs/{id}');

const EnqueueBody = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 64 }),
    payload: Type.Optional(Type.Unknown()),
    priority: Type.Optional(LaneSchema),
    idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    runAt: Type.Optional(
      Type.Union([Type.String({ format: 'date-time' }), Type.Integer({ minimum: 0 })], {
        description: 'When the job may start: an RFC 3339 time or epoch milliseconds (default now)',
      }),
    ),
    parentId: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

export const JobSchema = Type.Object(
  {
    id: Type.String(),
    tenantId: Type.String(),
    type: Type.String(),
    priority: LaneSchema,
    state: JobStateSchema,
    payload: Type.Unknown(),
    result: Type.Unknown(),
    attempts: Type.Integer(),
    maxAttempts: Type.Integer(),
    runAt: Type.String(),
    progress: Type.Union([
      Type.Object({
        percent: Type.Union([Type.Number(), Type.Null()]),
        stage: Type.Union([Type.String(), Type.Null()]),
        message: Type.Union([Type.String(), Type.Null()]),
      }),
      Type.Null(),
    ]),
    errors: Type.Array(
      Type.Object({
        attempt: Type.Integer(),
        at: Type.String(),
        message: Type.String(),
        code: Type.Optional(
          Type.String({ description: 'A code of the error catalog (docs/api.md, "Errors")' }),
        ),
      }),
    ),
    idempotencyKey: Type.Union([Type.String(), Type.Null()]),
    parentId: Type.Union([Type.String(), Type.Null()]),
    breakerKey: Type.Union([Type.String(), Type.Null()]),
    cost: Type.Integer(),
    createdAt: Type.String(),
    updatedAt: Type.String(),
    startedAt: Type.Union([Type.String(), Type.Null()]),
    finishedAt: Type.Union([Type.String(), Type.Null()]),
    links: Type.Object({ self: Type.String(), events: Type.String() }),
  },
  { $id: 'Job' },
);

const JobFilterQuery = Type.Object({
  ...PageQuery,
  state: Type.Optional(JobStateSchema),
  type: Type.Optional(Type.String({ maxLength: 64 })),
  priority: Type.Optional(LaneSchema),
});

const DeadFilter = Type.Object(
  {
    type: Type.Optional(Type.String({ maxLength: 64 })),
    priority: Type.Optional(LaneSchema),
    createdBefore: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);

/** The API's view of a job: `lane` is called `priority` there (as clients ask for it), plus links. */
export function jobView(job: Job) {
  const { lane, ...rest } = job;
  return {
    ...rest,
    priority: lane,
    links: { self: `/api/v1/jobs/${job.id}`, events: `/api/v1/jobs/${job.id}/events` },
  };
}

const toInput = (body: Static<typeof EnqueueBody>) => {
  let runAt: number | undefined;
  if (typeof body.runAt === 'string') {
    runAt = Date.parse(body.runAt);
    if (!Number.isFinite(runAt)) throw new ConveyorError('validation_failed', 'runAt is not a valid time');
  } else if (typeof body.runAt === 'number') runAt = body.runAt;
  return {
    type: body.type,
    payload: body.payload,
    ...(body.priority ? { lane: body.priority } : {}),
    ...(body.idempotencyKey ? { idempotencyKey: body.idempotencyKey } : {}),
    ...(runAt !== undefined ? { runAt } : {}),
    ...(body.parentId ? { parentId: body.parentId } : {}),
  };
};

/**
 * The fast-handoff API: enqueue answers as soon as the job row commits (202), never doing the work
 * itself; reads, cancel, retry and the dead-letter list.
 */
export async function jobRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { jobs, config } = opts.deps;
  const JobRef = Type.Ref('Job');

  /** A page of the tenant's jobs, newest first (the jobs list and the dead-letter list). */
  const listPage = async (
    tenantId: string,
    query: { limit?: number; cursor?: string; type?: string; priority?: string },
    state: string | undefined,
  ) => {
    const page = await jobs.admin.list(tenantId, {
      limit: Math.min(query.limit ?? 50, config.maxPageSize),
      cursor: query.cursor,
      state: state as Job['state'] | undefined,
      type: query.type,
      lane: query.priority as Job['lane'] | undefined,
    });
    return { items: page.items.map(jobView), nextCursor: page.nextCursor };
  };

  app.post(
    '/jobs',
    {
      schema: {
        operationId: 'enqueueJob',
        tags: ['jobs'],
        summary: 'Enqueue a job',
        description:
          'Answers 202 with the new job, or 200 with the existing one when the idempotency key was used before or an identical request succeeded within the type’s freshness window. 429 past the tenant’s daily limit, 402 when credits are short.',
        body: EnqueueBody,
        response: {
          200: withHeaders(JobRef, jobLocation),
          202: withHeaders(JobRef, jobLocation),
          ...problemResponses,
          402: problem(402),
        },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      requireRole(principal, 'editor');
      const { job, outcome } = await jobs.enqueuer.enqueue(principal.tenantId, toInput(request.body), {
        actor: principal.actor,
      });
      return reply
        .code(outcome === 'created' ? 202 : 200)
        .header('location', `/api/v1/jobs/${job.id}`)
        .send(jobView(job));
    },
  );

  app.post(
    '/jobs/batch',
    {
      schema: {
        operationId: 'enqueueJobs',
        tags: ['jobs'],
        summary: 'Enqueue many jobs in one transaction (all or none)',
        body: Type.Object(
          { jobs: Type.Array(EnqueueBody, { minItems: 1, maxItems: config.jobBatchMax }) },
          { additionalProperties: false },
        ),
        response: {
          202: Type.Object({ items: Type.Array(JobRef), created: Type.Integer(), existing: Type.Integer() }),
          ...problemResponses,
          402: problem(402),
        },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      requireRole(principal, 'editor');
      const results = await jobs.enqueuer.enqueueMany(principal.tenantId, request.body.jobs.map(toInput), {
        actor: principal.actor,
      });
      const created = results.filter((r) => r.outcome === 'created').length;
      return reply.code(202).send({
        items: results.map((r) => jobView(r.job)),
        created,
        existing: results.length - created,
      });
    },
  );

  app.get(
    '/jobs',
    {
      schema: {
        operationId: 'listJobs',
        tags: ['jobs'],
        summary: 'List jobs, newest first',
        querystring: JobFilterQuery,
        response: { 200: pageOf(JobRef), ...problemResponses },
      },
    },
    async (request) => listPage(request.principal!.tenantId, request.query, request.query.state),
  );

  app.get(
    '/jobs/:id',
    {
      schema: {
        operationId: 'getJob',
        tags: ['jobs'],
        summary: 'A job',
        params: IdParams,
        response: { 200: JobRef, ...problemResponses },
      },
    },
    async (request) => jobView(await jobs.admin.get(request.principal!.tenantId, request.params.id)),
  );

  // The job API shape of seed 004 (`GET /jobs/{id}/status`): the same view under the name its clients use.
  app.get(
    '/jobs/:id/status',
    {
      schema: {
        operationId: 'getJobStatus',
        tags: ['jobs'],
        summary: 'A job (the same view as GET /jobs/{id})',
        params: IdParams,
        response: { 200: JobRef, ...problemResponses },
      },
    },
    async (request) => jobView(await jobs.admin.get(request.principal!.tenantId, request.params.id)),
  );

  app.post(
    '/jobs/:id/cancel',
    {
      schema: {
        operationId: 'cancelJob',
        tags: ['jobs'],
        summary: 'Cancel a job; a running one is aborted',
        params: IdParams,
        response: { 200: JobRef, ...problemResponses, 409: problem(409) },
      },
    },
    async (request) => {
      requireRole(request.principal!, 'editor');
      return jobView(await jobs.admin.cancel(request.principal!.tenantId, request.params.id));
    },
  );

  app.post(
    '/jobs/:id/retry',
    {
      schema: {
        operationId: 'retryJob',
        tags: ['jobs'],
        summary: 'Run a failed, dead or cancelled job again now',
        params: IdParams,
        response: { 200: JobRef, ...problemResponses, 402: problem(402), 409: problem(409) },
      },
    },
    async (request) => {
      requireRole(request.principal!, 'editor');
      return jobView(await jobs.admin.retry(request.principal!.tenantId, request.params.id));
    },
  );

  app.get(
    '/dead-letters',
    {
      schema: {
        operationId: 'listDeadLetters',
        tags: ['jobs'],
        summary: 'Dead jobs with their error history, newest first',
        querystring: Type.Object({
          ...PageQuery,
          type: Type.Optional(Type.String({ maxLength: 64 })),
          priority: Type.Optional(LaneSchema),
        }),
        response: { 200: pageOf(JobRef), ...problemResponses },
      },
    },
    async (request) => listPage(request.principal!.tenantId, request.query, 'dead'),
  );

  const deadFilter = (body: Static<typeof DeadFilter>) => ({
    type: body.type,
    lane: body.priority as Job['lane'] | undefined,
    createdBefore: body.createdBefore === undefined ? undefined : Date.parse(body.createdBefore),
  });

  app.post(
    '/dead-letters/replay',
    {
      schema: {
        operationId: 'replayDeadLetters',
        tags: ['jobs'],
        summary: 'Replay dead jobs matching a filter (fresh attempts, history kept)',
        body: Type.Object(
          {
            ...DeadFilter.properties,
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: config.jobBatchMax })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ replayed: Type.Integer() }),
          ...problemResponses,
          402: problem(402),
        },
      },
    },
    async (request) => {
      const principal = request.principal!;
      requireRole(principal, 'editor');
      const { limit, ...filter } = request.body;
      const replayed = await jobs.admin.replayDead(
        principal.tenantId,
        deadFilter(filter),
        limit ?? config.jobBatchMax,
      );
      return { replayed };
    },
  );

  app.post(
    '/dead-letters/purge',
    {
      schema: {
        operationId: 'purgeDeadLetters',
        tags: ['jobs'],
        summary: 'Delete dead jobs matching a filter (admin; audit-logged)',
        body: DeadFilter,
        response: { 200: Type.Object({ purged: Type.Integer() }), ...problemResponses },
      },
    },
    async (request) => {
      const principal = request.principal!;
      requireRole(principal, 'admin');
      const filter = deadFilter(request.body);
      const purged = await jobs.admin.purgeDead(principal.tenantId, filter);
      await audit(jobs.context.db, {
        tenantId: principal.tenantId,
        actor: principal.actor,
        action: 'dead_letters.purge',
        details: { ...request.body, purged },
      });
      return { purged };
    },
  );
}
