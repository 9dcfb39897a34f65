import type { Selectable } from 'kysely';
import type { JobsTable } from '../../db/tables.ts';
import type { JobProgress } from '../types.ts';
import type { Executor } from './executor.ts';
import { type Fence, updateFenced } from './fence.ts';

/** What runs beside an attempt, the same on both dialects: leases, progress, release at shutdown, rescue. */

/** Extends the leases of `ids` that `owner` still holds to `until`; answers those ids. */
export async function extendLeases(
  db: Executor,
  owner: string,
  ids: readonly string[],
  until: number,
): Promise<string[]> {
  const rows = await db
    .updateTable('jobs')
    .set({ lease_expires_at: until })
    .where('id', 'in', ids)
    .where('state', '=', 'active')
    .where('lease_owner', '=', owner)
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

/** Writes an attempt's progress; undefined when the job is no longer this attempt's. */
export function writeProgress(
  db: Executor,
  id: string,
  fence: Fence,
  progress: JobProgress,
  now: number,
): Promise<Selectable<JobsTable> | undefined> {
  return updateFenced(db, id, fence)
    .set({
      progress_percent: progress.percent,
      progress_stage: progress.stage,
      progress_message: progress.message,
      updated_at: now,
    })
    .returningAll()
    .executeTakeFirst();
}

/** Queues `owner`'s active jobs `ids` again at once, the attempt not counted; answers the rows. */
export function releaseJobs(
  db: Executor,
  owner: string,
  ids: readonly string[],
  now: number,
): Promise<Selectable<JobsTable>[]> {
  return db
    .updateTable('jobs')
    .set((eb) => ({
      state: 'queued',
      attempts: eb('attempts', '-', 1),
      run_at: now,
      updated_at: now,
      lease_owner: null,
      lease_expires_at: null,
    }))
    .where('id', 'in', ids)
    .where('state', '=', 'active')
    .where('lease_owner', '=', owner)
    .returningAll()
    .execute();
}

/** Active jobs whose lease expired before `now`, at most `limit`. */
export function expiredLeases(
  db: Executor,
  now: number,
  limit: number,
): Promise<{ id: string; attempts: number; breaker_key: string | null }[]> {
  return db
    .selectFrom('jobs')
    .select(['id', 'attempts', 'breaker_key'])
    .where('state', '=', 'active')
    .where('lease_expires_at', '<', now)
    .limit(limit)
    .execute();
}

/**
 * Hands an attempt's job back to the queue to run again at `runAt`, the attempt not counted (a handler's
 * JobDeferral). A job woken while it ran (`wakeJob` moved its `run_at` past the claim) is due again at
 * once instead, so a wake-up that arrives between the handler's last look and this write is not lost.
 */
export function deferJob(
  db: Executor,
  id: string,
  fence: Fence,
  runAt: number,
  now: number,
): Promise<Selectable<JobsTable> | undefined> {
  return updateFenced(db, id, fence)
    .set((eb) => ({
      state: 'queued',
      attempts: eb('attempts', '-', 1),
      run_at: eb.case().when('run_at', '>', eb.ref('started_at')).then(now).else(runAt).end(),
      updated_at: now,
      lease_owner: null,
      lease_expires_at: null,
    }))
    .returningAll()
    .executeTakeFirst();
}

/**
 * Makes a waiting job due now: a queued one runs at the next claim; an active one (a deferring handler
 * still running) is marked so that its deferral does not wait (see deferJob). Answers whether it changed
 * a row.
 */
export async function wakeJob(db: Executor, id: string, now: number): Promise<boolean> {
  const rows = await db
    .updateTable('jobs')
    .set({ run_at: now })
    .where('id', '=', id)
    .where((eb) =>
      eb.or([
        eb.and([eb('state', '=', 'queued'), eb('run_at', '>', now)]),
        eb.and([eb('state', '=', 'active'), eb('started_at', '<', now)]),
      ]),
    )
    .returning('id')
    .execute();
  return rows.length > 0;
}
