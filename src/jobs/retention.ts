import type { JobState } from '../glossary.ts';
import type { EngineContext } from './context.ts';

export interface RetentionSettings {
  /** Succeeded and cancelled jobs are deleted this long after their last change; 0 keeps them. */
  finishedMs: number;
  /** Dead jobs likewise; 0 keeps them. */
  deadMs: number;
  /** Most rows one DELETE removes: each statement is short, whatever the backlog. */
  batch: number;
}

export interface SweepResult {
  finished: number;
  dead: number;
  workers: number;
}

/**
 * Retention: a job table that only grows slows every scan that is not on a partial index and fills the
 * disk, so finished jobs are deleted once past their retention (as pg-boss's and BullMQ's are). Workers
 * sweep every `jobCleanupIntervalMs`; any number may do so at once (PostgreSQL skips rows another sweep
 * holds, SQLite serialises the writers).
 *
 * What deletion gives up, by design: an idempotency key is remembered while its job is, and a
 * freshness window never outlives it, so a type's window stretches the succeeded jobs' retention to
 * match. The credit ledger keeps its rows (it names jobs by id, without a foreign key). Workers' rows are
 * deleted once they have not been seen for the finished jobs' retention.
 */
export class Retention {
  readonly #ctx: EngineContext;
  readonly #settings: RetentionSettings;

  constructor(ctx: EngineContext, settings: RetentionSettings) {
    this.#ctx = ctx;
    this.#settings = settings;
  }

  get enabled(): boolean {
    return this.#settings.finishedMs > 0 || this.#settings.deadMs > 0;
  }

  async sweep(): Promise<SweepResult> {
    const now = this.#ctx.now();
    const { finishedMs, deadMs } = this.#settings;
    const result: SweepResult = { finished: 0, dead: 0, workers: 0 };
    if (finishedMs > 0) {
      const freshest = Math.max(0, ...this.#ctx.registry.types().map((t) => this.#freshnessOf(t)));
      result.finished = await this.#delete(['succeeded', 'cancelled'], now - Math.max(finishedMs, freshest));
      const workers = await this.#ctx.db
        .deleteFrom('job_workers')
        .where('seen_at', '<', now - finishedMs)
        .executeTakeFirst();
      result.workers = Number(workers.numDeletedRows);
    }
    if (deadMs > 0) result.dead = await this.#delete(['dead'], now - deadMs);
    return result;
  }

  #freshnessOf(type: string): number {
    return this.#ctx.registry.get(type)?.freshnessMs ?? 0;
  }

  /** Deletes jobs in `states` last changed before `cutoff`, oldest first, a batch per statement. */
  async #delete(states: JobState[], cutoff: number): Promise<number> {
    const { batch } = this.#settings;
    let total = 0;
    for (;;) {
      const result = await this.#ctx.db
        .deleteFrom('jobs')
        .where('id', 'in', (eb) => {
          const oldest = eb
            .selectFrom('jobs')
            .select('id')
            .where('state', 'in', states)
            .where('updated_at', '<', cutoff)
            .orderBy('updated_at')
            .limit(batch);
          return this.#ctx.dialect === 'postgres' ? oldest.forUpdate().skipLocked() : oldest;
        })
        .executeTakeFirst();
      const deleted = Number(result.numDeletedRows);
      total += deleted;
      if (deleted < batch) return total;
    }
  }
}
