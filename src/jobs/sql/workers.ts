import type { Insertable, Selectable } from 'kysely';
import type { JobWorkersTable } from '../../db/tables.ts';
import type { Executor } from './executor.ts';

/** Worker liveness (`job_workers`), the same statements on both dialects. */

export async function registerWorker(db: Executor, row: Insertable<JobWorkersTable>): Promise<void> {
  await db.insertInto('job_workers').values(row).execute();
}

/** The worker was seen now, running `running` jobs. */
export async function workerSeen(db: Executor, id: string, running: number, now: number): Promise<void> {
  await db.updateTable('job_workers').set({ seen_at: now, running }).where('id', '=', id).execute();
}

export async function workerStopped(db: Executor, id: string, now: number): Promise<void> {
  await db.updateTable('job_workers').set({ stopped_at: now, running: 0 }).where('id', '=', id).execute();
}

/** Workers that have not stopped and were seen at `since` or later, oldest first. */
export function liveWorkers(db: Executor, since: number): Promise<Selectable<JobWorkersTable>[]> {
  return db
    .selectFrom('job_workers')
    .selectAll()
    .where('stopped_at', 'is', null)
    .where('seen_at', '>=', since)
    .orderBy('started_at')
    .execute();
}

/** Deletes workers not seen since `before`; answers how many. */
export async function deleteUnseenWorkers(db: Executor, before: number): Promise<number> {
  const result = await db.deleteFrom('job_workers').where('seen_at', '<', before).executeTakeFirst();
  return Number(result.numDeletedRows);
}
