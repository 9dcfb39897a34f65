import type { Selectable } from 'kysely';
import type { JobsTable } from '../../db/tables.ts';
import type { Executor } from './executor.ts';

/** What live job events read, the same statements on both dialects. */

/** The jobs `ids` (any tenant's; the caller routes them). */
export function jobsById(db: Executor, ids: readonly string[]): Promise<Selectable<JobsTable>[]> {
  return db.selectFrom('jobs').selectAll().where('id', 'in', ids).execute();
}

/** The jobs of `tenantIds` changed after `since`, in order of change (the first `limit` of them). */
export function jobsChangedSince(
  db: Executor,
  tenantIds: readonly string[],
  since: number,
  limit?: number,
): Promise<Selectable<JobsTable>[]> {
  const query = db
    .selectFrom('jobs')
    .selectAll()
    .where('tenant_id', 'in', tenantIds)
    .where('updated_at', '>', since)
    .orderBy('updated_at')
    .orderBy('id');
  return (limit === undefined ? query : query.limit(limit)).execute();
}
