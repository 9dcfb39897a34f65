import type { Selectable } from 'kysely';
import type { JobBreakersTable } from '../../db/tables.ts';
import { READY_STATES } from '../../glossary.ts';
import type { Executor } from './executor.ts';

/** Circuit breakers (`job_breakers`) and the jobs they defer, the same statements on both dialects. */

export type BreakerRow = Selectable<JobBreakersTable>;

/** What a breaker's bookkeeping writes: its state and count, and the open period and probe when it has them. */
export type BreakerState = Partial<Omit<BreakerRow, 'key' | 'updated_at'>> &
  Pick<BreakerRow, 'state' | 'failures'>;

export async function loadBreakers(trx: Executor, keys: readonly string[]): Promise<BreakerRow[]> {
  return trx.selectFrom('job_breakers').selectAll().where('key', 'in', keys).execute();
}

/** Every breaker, or those of `keys`, by key. */
export function listBreakers(db: Executor, keys?: readonly string[]): Promise<BreakerRow[]> {
  let query = db.selectFrom('job_breakers').selectAll().orderBy('key');
  // `in ()` is not SQL: no keys match no row.
  if (keys) query = query.where('key', 'in', keys.length > 0 ? keys : ['']);
  return query.execute();
}

/** Writes a breaker's state; `insert` for a key that has no row yet (a concurrent insert is overwritten). */
export async function saveBreaker(
  trx: Executor,
  key: string,
  values: BreakerState,
  now: number,
  insert: boolean,
): Promise<void> {
  if (insert) {
    await trx
      .insertInto('job_breakers')
      .values({ key, ...values, updated_at: now })
      .onConflict((oc) => oc.column('key').doUpdateSet({ ...values, updated_at: now }))
      .execute();
  } else {
    await trx
      .updateTable('job_breakers')
      .set({ ...values, updated_at: now })
      .where('key', '=', key)
      .execute();
  }
}

/** Marks the breaker half-open with `jobId` as its probe. */
export async function setProbe(trx: Executor, key: string, jobId: string, now: number): Promise<void> {
  await trx
    .updateTable('job_breakers')
    .set({ state: 'half_open', probe_job_id: jobId, updated_at: now })
    .where('key', '=', key)
    .execute();
}

/** Moves the ready jobs that need `key` and would be due before `until` to `until`; attempts untouched. */
export async function deferJobs(trx: Executor, key: string, until: number, now: number): Promise<void> {
  await trx
    .updateTable('jobs')
    .set({ run_at: until, updated_at: now })
    .where('breaker_key', '=', key)
    .where('state', 'in', READY_STATES)
    .where('run_at', '<', until)
    .execute();
}
