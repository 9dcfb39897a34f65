import { FINAL_STATES, type JobState } from '../glossary.ts';
import type { EngineContext } from './context.ts';
import { deleteUnseenWorkers } from './sql/workers.ts';

/** The final states but dead, whose retention is `finishedMs`; dead jobs have a retention of their own. */
const FINISHED = FINAL_STATES.filter((state) => state !== 'dead');
const DEAD: readonly JobState[] = ['dead'];

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
      result.finished = await this.#delete(FINISHED, now - Math.max(finishedMs, freshest));
      result.workers = await deleteUnseenWorkers(this.#ctx.db, now - finishedMs);
    }
    if (deadMs > 0) result.dead = await this.#delete(DEAD, now - deadMs);
    return result;
  }

  #freshnessOf(type: string): number {
    return this.#ctx.registry.get(type)?.freshnessMs ?? 0;
  }

  /** Deletes jobs in `states` last changed before `cutoff`, oldest first, a batch per statement. */
  async #delete(states: readonly JobState[], cutoff: number): Promise<number> {
    const { batch } = this.#settings;
    let total = 0;
    for (;;) {
      const deleted = await this.#ctx.statements.deleteFinished(this.#ctx.db, states, cutoff, batch);
      total += deleted;
      if (deleted < batch) return total;
    }
  }
}
