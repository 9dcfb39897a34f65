import type { JobState } from '../../glossary.ts';
import type { StatsRow } from '../statistics.ts';
import type { Executor } from './executor.ts';

/** The states of jobs that ran: the statistics count their starts, outcomes and failed attempts. */
const RAN: readonly JobState[] = ['succeeded', 'failed', 'dead', 'active'];

/**
 * The newest `max` jobs that ran (everyone's, or the tenant's) changed at `since` or later, with the
 * columns the statistics need; the same statement on both dialects.
 */
export async function statsRows(
  db: Executor,
  tenantId: string | undefined,
  since: number,
  max: number,
): Promise<StatsRow[]> {
  let query = db
    .selectFrom('jobs')
    .select(['state', 'run_at', 'started_at', 'finished_at', 'errors'])
    .where('updated_at', '>=', since)
    .where('state', 'in', RAN);
  if (tenantId !== undefined) query = query.where('tenant_id', '=', tenantId);
  const rows = await query.orderBy('updated_at', 'desc').limit(max).execute();
  return rows.map((r) => ({
    state: r.state,
    run_at: Number(r.run_at),
    started_at: r.started_at === null ? null : Number(r.started_at),
    finished_at: r.finished_at === null ? null : Number(r.finished_at),
    errors: r.errors,
  }));
}
