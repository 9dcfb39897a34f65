import type { Selectable } from 'kysely';
import type { JobsTable } from '../../db/tables.ts';
import type { JobState } from '../../glossary.ts';
import type { Executor } from './executor.ts';

/** Running failed, dead or cancelled jobs again (retry, dead-letter replay), the same statements on both dialects. */

/** The tenant's jobs among `ids` that are in one of `states`. */
export function requeueable(
  trx: Executor,
  tenantId: string,
  ids: readonly string[],
  states: readonly JobState[],
): Promise<{ id: string; state: string; cost: number; type: string }[]> {
  return trx
    .selectFrom('jobs')
    .select(['id', 'state', 'cost', 'type'])
    .where('id', 'in', ids)
    .where('tenant_id', '=', tenantId)
    .where('state', 'in', states)
    .execute();
}

/**
 * Queues the job again now, if it is still in state `from`; with `freshAttempts`, its attempts start
 * over at that maximum, else they stay. Answers the row, undefined when its state changed meanwhile.
 */
export function requeueJob(
  trx: Executor,
  id: string,
  from: string,
  freshAttempts: number | null,
  now: number,
): Promise<Selectable<JobsTable> | undefined> {
  return trx
    .updateTable('jobs')
    .set((eb) => ({
      state: 'queued',
      run_at: now,
      updated_at: now,
      finished_at: null,
      ...(freshAttempts !== null
        ? { attempts: 0, max_attempts: freshAttempts }
        : { attempts: eb.ref('attempts') }),
    }))
    .where('id', '=', id)
    .where('state', '=', from)
    .returningAll()
    .executeTakeFirst();
}
