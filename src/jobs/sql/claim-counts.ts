import { sql } from 'kysely';
import type { Executor } from './executor.ts';
import { literal } from './literals.ts';

/** Active jobs of one (lane, type, tenant). */
export interface ActiveCount {
  lane: string;
  type: string;
  tenantId: string;
  n: number;
}

export interface TenantState {
  tier: string;
  /** When the tenant last had a job claimed (ms; 0: never). */
  turn: number;
}

const ACTIVE = literal('active');

/**
 * What the claim reads under its lock, in one statement (one round trip on PostgreSQL), the same on both
 * dialects: the active jobs counted by lane, type and tenant, and the tenants `tenantIds` with their tier
 * and when they last had a job claimed.
 */
export async function claimCounts(
  trx: Executor,
  tenantIds: readonly string[],
): Promise<{ tenants: Map<string, TenantState>; active: ActiveCount[] }> {
  const { rows } = await sql<{
    kind: 'held' | 'tenant';
    lane: string | null;
    type: string | null;
    tenant_id: string;
    n: number | null;
    tier: string | null;
    claimed_at: number | null;
  }>`
    select 'held' as kind, lane, type, tenant_id, count(*) as n,
           cast(null as text) as tier, cast(null as bigint) as claimed_at
    from jobs where state = ${ACTIVE} group by lane, type, tenant_id
    union all
    select 'tenant', cast(null as text), cast(null as text), t.id, cast(null as bigint), t.tier, j.claimed_at
    from tenants t left join job_turns j on j.tenant_id = t.id
    where t.id in (${sql.join(tenantIds)})`.execute(trx);
  const tenants = new Map<string, TenantState>();
  const active: ActiveCount[] = [];
  for (const r of rows) {
    if (r.kind === 'tenant') tenants.set(r.tenant_id, { tier: r.tier!, turn: Number(r.claimed_at ?? 0) });
    else active.push({ lane: r.lane!, type: r.type!, tenantId: r.tenant_id, n: Number(r.n) });
  }
  return { tenants, active };
}
