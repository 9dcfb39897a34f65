import { OPEN_STATES } from '../../glossary.ts';
import type { Executor } from './executor.ts';

/**
 * What a tenant's unfinished jobs name (types, breaker keys), so that its views show those rate scopes
 * and breakers and no other tenant's; the same statements on both dialects.
 */

/** The distinct (type, breaker key) pairs of the tenant's unfinished jobs. */
export function openTypesAndKeys(
  db: Executor,
  tenantId: string,
): Promise<{ type: string; breaker_key: string | null }[]> {
  return db
    .selectFrom('jobs')
    .select(['type', 'breaker_key'])
    .distinct()
    .where('tenant_id', '=', tenantId)
    .where('state', 'in', OPEN_STATES)
    .execute();
}

/** The distinct breaker keys of the tenant's unfinished jobs. */
export async function openBreakerKeys(db: Executor, tenantId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('jobs')
    .select('breaker_key')
    .distinct()
    .where('tenant_id', '=', tenantId)
    .where('breaker_key', 'is not', null)
    .where('state', 'in', OPEN_STATES)
    .execute();
  return rows.map((r) => r.breaker_key!);
}
