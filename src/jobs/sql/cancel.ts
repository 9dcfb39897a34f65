import type { Selectable } from 'kysely';
import type { JobsTable } from '../../db/tables.ts';
import { type JobState, type Lane, OPEN_STATES } from '../../glossary.ts';
import type { Executor } from './executor.ts';

/** Cancelling jobs, the same statements on both dialects. */

/** Cancels the tenant's jobs `ids` that are in one of `states`; answers the rows it changed. */
export function markCancelled(
  trx: Executor,
  tenantId: string,
  ids: readonly string[],
  states: readonly JobState[],
  now: number,
): Promise<Selectable<JobsTable>[]> {
  return trx
    .updateTable('jobs')
    .set({ state: 'cancelled', finished_at: now, updated_at: now, lease_owner: null, lease_expires_at: null })
    .where('id', 'in', ids)
    .where('tenant_id', '=', tenantId)
    .where('state', 'in', states)
    .returningAll()
    .execute();
}

/** The ids of the tenant's jobs in `states` of that type and lane (when given), oldest first, at most `limit`. */
export async function jobIdsIn(
  trx: Executor,
  tenantId: string,
  states: readonly JobState[],
  filter: { type?: string | undefined; lane?: Lane | undefined },
  limit: number,
): Promise<string[]> {
  let query = trx
    .selectFrom('jobs')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('state', 'in', states);
  if (filter.type) query = query.where('type', '=', filter.type);
  if (filter.lane) query = query.where('lane', '=', filter.lane);
  const rows = await query.orderBy('id').limit(limit).execute();
  return rows.map((r) => r.id);
}

/** The ids of the tenant's unfinished jobs whose parent is `parentId`. */
export async function openChildren(trx: Executor, tenantId: string, parentId: string): Promise<string[]> {
  const rows = await trx
    .selectFrom('jobs')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('parent_id', '=', parentId)
    .where('state', 'in', OPEN_STATES)
    .execute();
  return rows.map((r) => r.id);
}
