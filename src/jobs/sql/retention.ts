import type { JobState } from '../../glossary.ts';
import type { ByDialect, Executor } from './executor.ts';

type DeleteBatch = (
  db: Executor,
  states: readonly JobState[],
  cutoff: number,
  batch: number,
) => Promise<number>;

/**
 * Deletes at most `batch` jobs in `states` last changed before `cutoff`, oldest first; answers how many.
 * Any number of sweeps may run at once.
 */
function deleteOldest(skipLocked: boolean): DeleteBatch {
  return async (db, states, cutoff, batch) => {
    const result = await db
      .deleteFrom('jobs')
      .where('id', 'in', (eb) => {
        const oldest = eb
          .selectFrom('jobs')
          .select('id')
          .where('state', 'in', states)
          .where('updated_at', '<', cutoff)
          .orderBy('updated_at')
          .limit(batch);
        return skipLocked ? oldest.forUpdate().skipLocked() : oldest;
      })
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  };
}

export const deleteFinished: ByDialect<DeleteBatch> = {
  // SQLite serialises writers: two sweeps take turns.
  sqlite: deleteOldest(false),
  // Concurrent sweeps split the work: each skips the rows another one holds.
  postgres: deleteOldest(true),
};
