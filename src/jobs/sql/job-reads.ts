import type { Selectable, SelectQueryBuilder } from 'kysely';
import type { Database, JobsTable } from '../../db/tables.ts';
import type { JobState, Lane } from '../../glossary.ts';
import type { Executor } from './executor.ts';

/** Reading one tenant's jobs, the same statements on both dialects. */

export interface JobFilter {
  state?: JobState | undefined;
  type?: string | undefined;
  lane?: Lane | undefined;
  /** Jobs created before this time (epoch ms). */
  createdBefore?: number | undefined;
  /** Children of this job (enqueued with its id as parentId). */
  parentId?: string | undefined;
}

/** A job's state, whoever's it is; undefined when there is no such job. */
export async function jobState(executor: Executor, id: string): Promise<string | undefined> {
  const row = await executor.selectFrom('jobs').select('state').where('id', '=', id).executeTakeFirst();
  return row?.state;
}

/** The tenant's job `id`; undefined for another tenant's. */
export function tenantJob(
  db: Executor,
  tenantId: string,
  id: string,
): Promise<Selectable<JobsTable> | undefined> {
  return db
    .selectFrom('jobs')
    .selectAll()
    .where('id', '=', id)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
}

/** A page of the tenant's jobs matching `filter`, newest first, after the id `cursor`; at most `limit`. */
export function listJobs(
  db: Executor,
  tenantId: string,
  filter: JobFilter,
  page: { cursor?: string | undefined; limit: number },
): Promise<Selectable<JobsTable>[]> {
  let query = filtered(db.selectFrom('jobs').selectAll(), tenantId, filter);
  if (page.cursor) query = query.where('id', '<', page.cursor);
  return query.orderBy('id', 'desc').limit(page.limit).execute();
}

/** The ids of the tenant's jobs matching `filter`, oldest first, at most `limit`. */
export async function jobIds(
  db: Executor,
  tenantId: string,
  filter: JobFilter,
  limit: number,
): Promise<string[]> {
  const rows = await filtered(db.selectFrom('jobs').select('id'), tenantId, filter)
    .orderBy('id')
    .limit(limit)
    .execute();
  return rows.map((r) => r.id);
}

function filtered<O>(query: SelectQueryBuilder<Database, 'jobs', O>, tenantId: string, filter: JobFilter) {
  let q = query.where('tenant_id', '=', tenantId);
  if (filter.state) q = q.where('state', '=', filter.state);
  if (filter.type) q = q.where('type', '=', filter.type);
  if (filter.lane) q = q.where('lane', '=', filter.lane);
  if (filter.createdBefore !== undefined) q = q.where('created_at', '<', filter.createdBefore);
  if (filter.parentId !== undefined) q = q.where('parent_id', '=', filter.parentId);
  return q;
}
