import type { Insertable, Selectable } from 'kysely';
import type { JobsTable } from '../../db/tables.ts';
import type { Executor } from './executor.ts';

/** Inserts jobs in one multi-row statement, the same on both dialects; answers the rows. */
export function insertJobs(
  trx: Executor,
  rows: readonly Insertable<JobsTable>[],
): Promise<Selectable<JobsTable>[]> {
  return trx.insertInto('jobs').values(rows).returningAll().execute();
}

/**
 * Inserts one job unless the tenant has a job with its idempotency key; undefined when it had one. Two
 * enqueues with one key racing past their lookups: the loser inserts nothing (on PostgreSQL it waits for
 * the winner's commit first).
 */
export function insertJobOnce(
  trx: Executor,
  row: Insertable<JobsTable>,
): Promise<Selectable<JobsTable> | undefined> {
  return trx
    .insertInto('jobs')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['tenant_id', 'idempotency_key']).where('idempotency_key', 'is not', null).doNothing(),
    )
    .returningAll()
    .executeTakeFirst();
}
