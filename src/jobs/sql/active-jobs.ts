import type { Executor } from './executor.ts';

export interface ActiveRow {
  id: string;
  tenant_id: string;
  type: string;
  lane: string;
  attempts: number;
  max_attempts: number;
  started_at: number | null;
  lease_owner: string | null;
  lease_expires_at: number | null;
}

/** The longest-running active jobs (everyone's, or the tenant's), at most `limit`; the same on both dialects. */
export function longestActive(
  db: Executor,
  tenantId: string | undefined,
  limit: number,
): Promise<ActiveRow[]> {
  let query = db
    .selectFrom('jobs')
    .select([
      'id',
      'tenant_id',
      'type',
      'lane',
      'attempts',
      'max_attempts',
      'started_at',
      'lease_owner',
      'lease_expires_at',
    ])
    .where('state', '=', 'active');
  if (tenantId !== undefined) query = query.where('tenant_id', '=', tenantId);
  return query.orderBy('started_at').orderBy('id').limit(limit).execute();
}
