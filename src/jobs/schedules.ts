import { CronExpressionParser } from 'cron-parser';
import type { Selectable } from 'kysely';
import { isId, newId } from '../db/ids.ts';
import type { JobSchedulesTable } from '../db/tables.ts';
import { ConveyorError, notFound } from '../errors.ts';
import { isLane, type Lane } from '../glossary.ts';
import type { EngineContext } from './context.ts';
import type { Enqueuer } from './enqueue.ts';
import {
  advanceSchedule,
  deleteSchedule,
  dueSchedules,
  insertSchedule,
  setLastJob,
  tenantSchedules,
} from './sql/schedules.ts';

export interface ScheduleInput {
  name: string;
  /** Five fields (minute precision) or six (seconds first), or a nickname such as `@hourly`. */
  cron: string;
  timezone?: string;
  type: string;
  payload?: unknown;
  lane?: Lane;
}

export interface Schedule {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  type: string;
  payload: unknown;
  priority: Lane;
  nextRunAt: string;
  lastRunAt: string | null;
  lastJobId: string | null;
  lastError: string | null;
  createdAt: string;
}

/**
 * Recurring jobs. Every worker process looks for due schedules; each tick fires exactly once however
 * many look, because firing is a conditional update that moves `next_run_at` from the tick being fired
 * to the next one (only one process can win it), and the job it enqueues in the same transaction carries
 * the idempotency key `schedule:<id>:<tick>` besides. Ticks missed while nothing ran are not made up:
 * the schedule fires once and moves to the next tick after now.
 */
export class Schedules {
  readonly #ctx: EngineContext;
  readonly #enqueuer: Enqueuer;

  constructor(ctx: EngineContext, enqueuer: Enqueuer) {
    this.#ctx = ctx;
    this.#enqueuer = enqueuer;
  }

  async create(tenantId: string, input: ScheduleInput): Promise<Schedule> {
    const timezone = input.timezone ?? 'UTC';
    const now = this.#ctx.now();
    const next = nextTick(input.cron, timezone, now);
    const definition = this.#ctx.registry.require(input.type);
    if (input.lane !== undefined && !isLane(input.lane))
      throw invalid(`Unknown lane ${JSON.stringify(input.lane)}`);
    const payload = JSON.parse(JSON.stringify(input.payload ?? {})) as unknown;
    if (!definition.validate(payload))
      throw invalid(`The payload does not match the schema of ${definition.type}`);
    const row = {
      id: newId('sch', now),
      tenant_id: tenantId,
      name: input.name,
      cron: input.cron,
      timezone,
      type: input.type,
      payload: JSON.stringify(payload),
      lane: input.lane ?? definition.lane ?? 'normal',
      next_run_at: next,
      created_at: now,
    };
    const inserted = await insertSchedule(this.#ctx.db, row);
    if (!inserted)
      throw new ConveyorError('conflict', `A schedule named ${JSON.stringify(input.name)} exists`);
    return view(inserted);
  }

  async list(tenantId: string): Promise<Schedule[]> {
    return (await tenantSchedules(this.#ctx.db, tenantId)).map(view);
  }

  async remove(tenantId: string, id: string): Promise<void> {
    if (!isId('sch', id)) throw notFound('schedule');
    if (!(await deleteSchedule(this.#ctx.db, tenantId, id))) throw notFound('schedule');
  }

  /** Fires every due schedule once; answers how many this process fired. */
  async fire(limit = 100): Promise<number> {
    const now = this.#ctx.now();
    const due = await dueSchedules(this.#ctx.db, now, limit);
    let fired = 0;
    for (const schedule of due) {
      const tick = schedule.next_run_at;
      const next = nextTick(schedule.cron, schedule.timezone, Math.max(now, tick));
      try {
        const won = await this.#ctx.db.transaction().execute(async (trx) => {
          if (!(await advanceSchedule(trx, schedule.id, tick, next, now, null))) return false;
          const { job } = await this.#enqueuer.enqueue(
            schedule.tenant_id,
            {
              type: schedule.type,
              payload: JSON.parse(schedule.payload),
              lane: schedule.lane as Lane,
              idempotencyKey: `schedule:${schedule.id}:${tick}`,
            },
            { trx, actor: `schedule:${schedule.id}` },
          );
          await setLastJob(trx, schedule.id, job.id);
          return true;
        });
        if (won) fired++;
      } catch (error) {
        // A refused enqueue (daily limit, credits, a type no longer registered) skips this tick rather
        // than retrying it every interval; the reason is kept on the schedule.
        const reason = (error as Error).message.slice(0, 1000);
        await advanceSchedule(this.#ctx.db, schedule.id, tick, next, now, reason);
      }
    }
    return fired;
  }
}

/** The first tick of `cron` strictly after `after`; 400 for an expression or time zone that is not valid. */
export function nextTick(cron: string, timezone: string, after: number): number {
  try {
    return CronExpressionParser.parse(cron, { currentDate: new Date(after), tz: timezone, strict: false })
      .next()
      .getTime();
  } catch (error) {
    throw invalid(`Invalid cron expression or time zone: ${(error as Error).message}`);
  }
}

const invalid = (detail: string) => new ConveyorError('validation_failed', detail);

function view(row: Selectable<JobSchedulesTable>): Schedule {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    id: row.id,
    name: row.name,
    cron: row.cron,
    timezone: row.timezone,
    type: row.type,
    payload: JSON.parse(row.payload),
    priority: row.lane as Lane,
    nextRunAt: iso(row.next_run_at)!,
    lastRunAt: iso(row.last_run_at),
    lastJobId: row.last_job_id,
    lastError: row.last_error,
    createdAt: iso(row.created_at)!,
  };
}
