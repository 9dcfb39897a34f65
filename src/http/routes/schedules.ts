import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Lane } from '../../glossary.ts';
import { audit } from '../../tenancy/audit.ts';
import { requireRole } from '../../tenancy/principal.ts';
import type { AppDeps } from '../app.ts';
import { IdParams, LaneSchema, noContent, problem, problemResponses } from '../schemas.ts';

const ScheduleSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  cron: Type.String(),
  timezone: Type.String(),
  type: Type.String(),
  payload: Type.Unknown(),
  priority: LaneSchema,
  nextRunAt: Type.String(),
  lastRunAt: Type.Union([Type.String(), Type.Null()]),
  lastJobId: Type.Union([Type.String(), Type.Null()]),
  lastError: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
});

/** Recurring jobs (cron). Admin-only to change, since a schedule spends the tenant's quota on its own. */
export async function scheduleRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { jobs } = opts.deps;

  app.post(
    '/schedules',
    {
      schema: {
        operationId: 'createSchedule',
        tags: ['jobs'],
        summary: 'Create a recurring job',
        description:
          'cron: five fields (minute precision), six (seconds first) or a nickname (@hourly, @daily, ...), read in `timezone` (IANA, default UTC). Each tick enqueues one job, however many worker processes run.',
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 200 }),
            cron: Type.String({ minLength: 1, maxLength: 200 }),
            timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
            type: Type.String({ minLength: 1, maxLength: 64 }),
            payload: Type.Optional(Type.Unknown()),
            priority: Type.Optional(LaneSchema),
          },
          { additionalProperties: false },
        ),
        response: { 201: ScheduleSchema, ...problemResponses, 409: problem(409) },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      requireRole(principal, 'admin');
      const { priority, ...rest } = request.body;
      const schedule = await jobs.schedules.create(principal.tenantId, {
        ...rest,
        ...(priority ? { lane: priority as Lane } : {}),
      });
      await audit(jobs.context.db, {
        tenantId: principal.tenantId,
        actor: principal.actor,
        action: 'schedule.create',
        target: schedule.id,
        details: { name: schedule.name, cron: schedule.cron, type: schedule.type },
      });
      return reply.code(201).send(schedule);
    },
  );

  app.get(
    '/schedules',
    {
      schema: {
        operationId: 'listSchedules',
        tags: ['jobs'],
        summary: 'Recurring jobs',
        response: { 200: Type.Object({ items: Type.Array(ScheduleSchema) }), ...problemResponses },
      },
    },
    async (request) => ({ items: await jobs.schedules.list(request.principal!.tenantId) }),
  );

  app.delete(
    '/schedules/:id',
    {
      schema: {
        operationId: 'deleteSchedule',
        tags: ['jobs'],
        summary: 'Delete a recurring job',
        params: IdParams,
        response: { 204: noContent('The schedule is deleted'), ...problemResponses },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      requireRole(principal, 'admin');
      await jobs.schedules.remove(principal.tenantId, request.params.id);
      await audit(jobs.context.db, {
        tenantId: principal.tenantId,
        actor: principal.actor,
        action: 'schedule.delete',
        target: request.params.id,
      });
      return reply.code(204).send();
    },
  );
}
