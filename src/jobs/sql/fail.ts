import type { Selectable } from 'kysely';
import type { JobsTable } from '../../db/tables.ts';
import type { JobState } from '../../glossary.ts';
import type { ByDialect, Executor } from './executor.ts';
import { type Fence, fenceOf, updateFenced } from './fence.ts';

type Attempt = (trx: Executor, id: string, fence: Fence) => Promise<Selectable<JobsTable> | undefined>;

/**
 * Reads the attempt `fence` names, to decide what its failure makes of it (retry or dead), and holds it
 * until the transaction ends: the decision and its update must see the same row.
 */
export const lockAttempt: ByDialect<Attempt> = {
  // The transaction holds SQLite's one write lock already.
  sqlite: (trx, id, fence) =>
    trx
      .selectFrom('jobs')
      .selectAll()
      .where((eb) => fenceOf(eb, id, fence))
      .executeTakeFirst(),
  postgres: (trx, id, fence) =>
    trx
      .selectFrom('jobs')
      .selectAll()
      .where((eb) => fenceOf(eb, id, fence))
      .forUpdate()
      .executeTakeFirst(),
};

export interface Failure {
  state: Extract<JobState, 'failed' | 'dead'>;
  /** Every attempt's error, as JSON. */
  errors: string;
  runAt: number;
  finishedAt: number | null;
}

/** Records a failed attempt: a retry at `runAt`, or dead; undefined when the job is no longer this attempt's. */
export function markFailed(
  trx: Executor,
  id: string,
  fence: Fence,
  failure: Failure,
  now: number,
): Promise<Selectable<JobsTable> | undefined> {
  return updateFenced(trx, id, fence)
    .set({
      state: failure.state,
      errors: failure.errors,
      run_at: failure.runAt,
      finished_at: failure.finishedAt,
      updated_at: now,
      lease_owner: null,
      lease_expires_at: null,
    })
    .returningAll()
    .executeTakeFirst();
}
