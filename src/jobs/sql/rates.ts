import type { Executor } from './executor.ts';

/**
 * Start-rate state (`job_rate_limits`): one GCRA theoretical arrival time per rate scope (policy.ts
 * `rateScopes`), the same statements on both dialects.
 */

/** The scope's theoretical arrival time (ms); 0 for a scope that never started a job. */
export async function readRate(trx: Executor, scope: string): Promise<number> {
  const row = await trx
    .selectFrom('job_rate_limits')
    .select('tat')
    .where('key', '=', scope)
    .executeTakeFirst();
  return row?.tat ?? 0;
}

export async function writeRate(trx: Executor, scope: string, tat: number): Promise<void> {
  await trx
    .insertInto('job_rate_limits')
    .values({ key: scope, tat })
    .onConflict((oc) => oc.column('key').doUpdateSet({ tat }))
    .execute();
}

/** Every scope's state, or those of `scopes`, by scope. */
export function listRates(db: Executor, scopes?: readonly string[]): Promise<{ key: string; tat: number }[]> {
  let query = db.selectFrom('job_rate_limits').select(['key', 'tat']);
  if (scopes) query = query.where('key', 'in', scopes);
  return query.orderBy('key').execute();
}
