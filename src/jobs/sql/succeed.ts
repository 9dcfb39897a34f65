import { type Kysely, type Selectable, sql } from 'kysely';
import type { Database, JobsTable } from '../../db/tables.ts';
import type { ByDialect, Executor } from './executor.ts';
import { type Fence, updateFenced } from './fence.ts';
import { literal } from './literals.ts';

/** Records a success; undefined when the job is no longer this attempt's. */
export function markSucceeded(
  executor: Executor,
  id: string,
  fence: Fence,
  result: string,
  now: number,
): Promise<Selectable<JobsTable> | undefined> {
  return updateFenced(executor, id, fence)
    .set({
      state: 'succeeded',
      result,
      finished_at: now,
      updated_at: now,
      lease_owner: null,
      lease_expires_at: null,
    })
    .returningAll()
    .executeTakeFirst();
}

/** One success of a batch: the attempt (job id and attempt number) and its result as JSON. */
export interface Success {
  id: string;
  attempts: number;
  result: string;
}

const SUCCEEDED = literal('succeeded');
const ACTIVE = literal('active');

/** Records many successes of one worker at once; answers the rows that were still this worker's. */
export const markSucceededMany: ByDialect<
  (
    db: Kysely<Database>,
    owner: string,
    items: readonly Success[],
    now: number,
  ) => Promise<Selectable<JobsTable>[]>
> = {
  // One transaction around the fenced updates: its statements cost no round trip.
  sqlite: (db, owner, items, now) =>
    db.transaction().execute(async (trx) => {
      const done: Selectable<JobsTable>[] = [];
      for (const item of items) {
        const row = await markSucceeded(trx, item.id, { owner, attempts: item.attempts }, item.result, now);
        if (row) done.push(row);
      }
      return done;
    }),
  // One statement, atomic on its own, so no transaction's BEGIN and COMMIT round trips.
  postgres: async (db, owner, items, now) => {
    const { rows } = await sql<Selectable<JobsTable>>`
      update jobs set state = ${SUCCEEDED}, result = v.result, finished_at = ${now},
                      updated_at = ${now}, lease_owner = null, lease_expires_at = null
      from unnest(${items.map((i) => i.id)}::text[], ${items.map((i) => i.attempts)}::int[],
                  ${items.map((i) => i.result)}::text[]) as v(id, attempts, result)
      where jobs.id = v.id and jobs.attempts = v.attempts and jobs.state = ${ACTIVE}
        and jobs.lease_owner = ${owner}
      returning jobs.*`.execute(db);
    return rows;
  },
};
