import type { Executor } from './executor.ts';

/** Deletes the tenant's dead jobs of that type and lane (when given) created before a time (when given). */
export async function purgeDead(
  db: Executor,
  tenantId: string,
  filter: { type?: string | undefined; lane?: string | undefined; createdBefore?: number | undefined },
): Promise<number> {
  let query = db.deleteFrom('jobs').where('tenant_id', '=', tenantId).where('state', '=', 'dead');
  if (filter.type) query = query.where('type', '=', filter.type);
  if (filter.lane) query = query.where('lane', '=', filter.lane);
  if (filter.createdBefore !== undefined) query = query.where('created_at', '<', filter.createdBefore);
  const result = await query.executeTakeFirst();
  return Number(result.numDeletedRows);
}
