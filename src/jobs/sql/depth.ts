import { sql } from 'kysely';
import { OPEN_STATES } from '../../glossary.ts';
import type { Executor } from './executor.ts';

/** Queue depth: unfinished jobs counted by GROUP BY, the same statements on both dialects. */

/** Unfinished jobs by (lane, type, state), with each group's oldest `run_at` that has passed `now`. */
export async function openJobCounts(
  db: Executor,
  tenantId: string | undefined,
  now: number,
): Promise<{ lane: string; type: string; state: string; n: number; oldestDue: number | null }[]> {
  let query = db
    .selectFrom('jobs')
    .select((eb) => [
      'lane',
      'type',
      'state',
      eb.fn.countAll().as('n'),
      sql<number | string | null>`min(case when run_at <= ${now} then run_at end)`.as('oldest'),
    ])
    .where('state', 'in', OPEN_STATES);
  if (tenantId !== undefined) query = query.where('tenant_id', '=', tenantId);
  const rows = await query.groupBy(['lane', 'type', 'state']).execute();
  return rows.map((r) => ({
    lane: r.lane,
    type: r.type,
    state: r.state,
    n: Number(r.n),
    oldestDue: r.oldest === null ? null : Number(r.oldest),
  }));
}

/** Unfinished jobs by lane and state only. */
export async function openJobCountsByLane(
  db: Executor,
): Promise<{ lane: string; state: string; count: number }[]> {
  const rows = await db
    .selectFrom('jobs')
    .select((eb) => ['lane', 'state', eb.fn.countAll().as('n')])
    .where('state', 'in', OPEN_STATES)
    .groupBy(['lane', 'state'])
    .execute();
  return rows.map((r) => ({ lane: r.lane, state: r.state, count: Number(r.n) }));
}
