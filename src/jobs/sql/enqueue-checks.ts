import type { Selectable } from 'kysely';
import type { JobsTable } from '../../db/tables.ts';
import type { Executor } from './executor.ts';

/**
 * The lookups an enqueue makes before it inserts, the same statements on both dialects: the tenant, the
 * parents, the idempotency key, a fresh success, an open breaker.
 */

/** The tenant's tier and credit balance (null: it does not use credits); undefined if there is none. */
export function enqueueTenant(
  trx: Executor,
  tenantId: string,
): Promise<{ tier: string; credit_balance: number | null } | undefined> {
  return trx
    .selectFrom('tenants')
    .select(['tier', 'credit_balance'])
    .where('id', '=', tenantId)
    .executeTakeFirst();
}

/** Which of `ids` are jobs of the tenant. */
export async function tenantJobIds(
  executor: Executor,
  tenantId: string,
  ids: readonly string[],
): Promise<string[]> {
  const rows = await executor
    .selectFrom('jobs')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('id', 'in', ids)
    .execute();
  return rows.map((r) => r.id);
}

/** The tenant's job with this idempotency key. */
export function jobByIdempotencyKey(
  trx: Executor,
  tenantId: string,
  key: string,
): Promise<Selectable<JobsTable> | undefined> {
  return trx
    .selectFrom('jobs')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('idempotency_key', '=', key)
    .executeTakeFirst();
}

/** The tenant's newest success of `type` with this payload hash that finished at `since` or later. */
export function freshSuccess(
  trx: Executor,
  tenantId: string,
  type: string,
  hash: string,
  since: number,
): Promise<Selectable<JobsTable> | undefined> {
  return trx
    .selectFrom('jobs')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('type', '=', type)
    .where('payload_hash', '=', hash)
    .where('state', '=', 'succeeded')
    .where('finished_at', '>=', since)
    .orderBy('finished_at', 'desc')
    .limit(1)
    .executeTakeFirst();
}

/** Until when the breaker `key` is open; null when it is not open (or has no end). */
export async function openBreakerUntil(trx: Executor, key: string): Promise<number | null> {
  const breaker = await trx
    .selectFrom('job_breakers')
    .select('open_until')
    .where('key', '=', key)
    .where('state', '=', 'open')
    .executeTakeFirst();
  return breaker?.open_until ?? null;
}
