import type { Insertable, Selectable } from 'kysely';
import type { JobSchedulesTable } from '../../db/tables.ts';
import type { Executor } from './executor.ts';

/** Recurring jobs (`job_schedules`), the same statements on both dialects. */

type ScheduleRow = Selectable<JobSchedulesTable>;

/** Inserts a schedule unless the tenant has one of that name; undefined when it had. */
export function insertSchedule(
  db: Executor,
  row: Insertable<JobSchedulesTable>,
): Promise<ScheduleRow | undefined> {
  return db
    .insertInto('job_schedules')
    .values(row)
    .onConflict((oc) => oc.columns(['tenant_id', 'name']).doNothing())
    .returningAll()
    .executeTakeFirst();
}

export function tenantSchedules(db: Executor, tenantId: string): Promise<ScheduleRow[]> {
  return db
    .selectFrom('job_schedules')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('name')
    .execute();
}

/** Deletes the tenant's schedule `id`; answers whether there was one. */
export async function deleteSchedule(db: Executor, tenantId: string, id: string): Promise<boolean> {
  const result = await db
    .deleteFrom('job_schedules')
    .where('id', '=', id)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** Schedules whose next tick is at `now` or earlier, at most `limit`. */
export function dueSchedules(db: Executor, now: number, limit: number): Promise<ScheduleRow[]> {
  return db.selectFrom('job_schedules').selectAll().where('next_run_at', '<=', now).limit(limit).execute();
}

/**
 * Moves the schedule from the tick `tick` to `next`, recording that it ran at `now` and why it did not
 * enqueue (`error`; null when it did), only if it is still at `tick`: of every process firing the same
 * tick, one wins. Answers whether this one did.
 */
export async function advanceSchedule(
  db: Executor,
  id: string,
  tick: number,
  next: number,
  now: number,
  error: string | null,
): Promise<boolean> {
  const moved = await db
    .updateTable('job_schedules')
    .set({ next_run_at: next, last_run_at: now, last_error: error })
    .where('id', '=', id)
    .where('next_run_at', '=', tick)
    .executeTakeFirst();
  return Number(moved.numUpdatedRows) > 0;
}

export async function setLastJob(trx: Executor, id: string, jobId: string): Promise<void> {
  await trx.updateTable('job_schedules').set({ last_job_id: jobId }).where('id', '=', id).execute();
}
