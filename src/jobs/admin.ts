import type { Selectable, Transaction } from 'kysely';
import { isId } from '../db/ids.ts';
import type { Database, JobsTable } from '../db/tables.ts';
import { ConveyorError, notFound } from '../errors.ts';
import { type JobState, OPEN_STATES } from '../glossary.ts';
import { type EngineContext, toJob } from './context.ts';
import { charge, refund } from './credits.ts';
import { markCancelled, openChildren } from './sql/cancel.ts';
import { type JobFilter, jobIds, listJobs, tenantJob } from './sql/job-reads.ts';
import { purgeDead } from './sql/purge.ts';
import { requeueable, requeueJob } from './sql/requeue.ts';
import type { Job } from './types.ts';

/** The jobs a retry or replay runs again: finished without success, or waiting for a retry. */
const REQUEUEABLE: readonly JobState[] = ['failed', 'dead', 'cancelled'];

/**
 * Cancels `ids` of the tenant that are in one of `states`, giving reserved credits back; answers the rows
 * it changed. (The one way to cancel, for a single job and for clearing a queue.)
 */
export async function cancelJobs(
  trx: Transaction<Database>,
  tenantId: string,
  ids: readonly string[],
  states: readonly JobState[],
  now: number,
): Promise<Selectable<JobsTable>[]> {
  if (ids.length === 0) return [];
  const updated = await markCancelled(trx, tenantId, ids, states, now);
  for (const row of updated) {
    if (row.cost > 0) {
      const reason = `refund ${row.type}: cancelled`;
      await refund(trx, { tenantId, jobId: row.id, amount: row.cost, reason, now, actor: null });
    }
  }
  return updated;
}

/** Reading jobs, and the operator's actions on them: cancel, retry, dead-letter replay and purge. */
export class JobAdmin {
  readonly #ctx: EngineContext;

  constructor(ctx: EngineContext) {
    this.#ctx = ctx;
  }

  /** The tenant's job, or 404 (also for another tenant's job: its existence is not revealed). */
  async get(tenantId: string, id: string): Promise<Job> {
    if (!isId('job', id)) throw notFound('job');
    const row = await tenantJob(this.#ctx.db, tenantId, id);
    if (!row) throw notFound('job');
    return toJob(row);
  }

  /** Newest first, by cursor (the last id of the previous page). */
  async list(
    tenantId: string,
    filter: JobFilter & { limit: number; cursor?: string | undefined },
  ): Promise<{ items: Job[]; nextCursor: string | null }> {
    const rows = await listJobs(this.#ctx.db, tenantId, filter, {
      cursor: filter.cursor,
      limit: filter.limit + 1,
    });
    const page = rows.slice(0, filter.limit);
    return { items: page.map(toJob), nextCursor: rows.length > filter.limit ? page.at(-1)!.id : null };
  }

  /**
   * Cancels a job that has not finished. A running job's lease is taken away at once; its worker aborts
   * the handler (at once in this process, at its next heartbeat in another) and its outcome is dropped.
   * Reserved credits go back.
   */
  async cancel(tenantId: string, id: string): Promise<Job> {
    const job = await this.get(tenantId, id);
    const now = this.#ctx.now();
    const [row, ...children] = await this.#ctx.db.transaction().execute(async (trx) => {
      const cancelled = await cancelJobs(trx, tenantId, [job.id], OPEN_STATES, now);
      if (cancelled.length === 0) return [];
      // Its unfinished children go with it: they exist only to serve it (a video's chunks).
      const childIds = await openChildren(trx, tenantId, job.id);
      return [...cancelled, ...(await cancelJobs(trx, tenantId, childIds, OPEN_STATES, now))];
    });
    if (!row) {
      throw new ConveyorError(
        'conflict',
        `The job is ${job.state}; only queued, failed or active jobs can be cancelled`,
        {
          extra: { state: job.state },
        },
      );
    }
    for (const cancelled of [row, ...children]) {
      this.#ctx.events.emit('cancel', cancelled.id);
      this.#ctx.emit('cancelled', toJob(cancelled));
    }
    return toJob(row);
  }

  /**
   * Runs a job again now: a `failed` one without waiting for its backoff, a `dead` or `cancelled` one
   * with a fresh set of attempts (its error history is kept). Credits are reserved again where they
   * were given back.
   */
  async retry(tenantId: string, id: string): Promise<Job> {
    const job = await this.get(tenantId, id);
    const [row] = await this.#ctx.db.transaction().execute((trx) => this.#requeue(trx, tenantId, [job.id]));
    if (!row) {
      throw new ConveyorError(
        'conflict',
        `The job is ${job.state}; only failed, dead or cancelled jobs can be retried`,
        {
          extra: { state: job.state },
        },
      );
    }
    return row;
  }

  /** Replays dead jobs matching the filter (at most `limit` per call); answers how many. */
  async replayDead(tenantId: string, filter: Omit<JobFilter, 'state'>, limit: number): Promise<number> {
    const ids = await jobIds(this.#ctx.db, tenantId, { ...filter, state: 'dead' }, limit);
    if (ids.length === 0) return 0;
    const replayed = await this.#ctx.db.transaction().execute((trx) => this.#requeue(trx, tenantId, ids));
    return replayed.length;
  }

  /** Deletes dead jobs matching the filter; answers how many. */
  async purgeDead(tenantId: string, filter: Omit<JobFilter, 'state'>): Promise<number> {
    return purgeDead(this.#ctx.db, tenantId, filter);
  }

  async #requeue(trx: Transaction<Database>, tenantId: string, ids: readonly string[]): Promise<Job[]> {
    const now = this.#ctx.now();
    const before = await requeueable(trx, tenantId, ids, REQUEUEABLE);
    const out: Job[] = [];
    for (const job of before) {
      const fresh = job.state !== 'failed';
      const row = await requeueJob(
        trx,
        job.id,
        job.state,
        fresh ? this.#ctx.maxAttemptsOf(job.type) : null,
        now,
      );
      if (!row) continue;
      // Dead and cancelled jobs had their credits refunded; running again costs again.
      if (fresh && job.cost > 0) {
        await charge(trx, {
          tenantId,
          jobId: job.id,
          amount: job.cost,
          reason: `reserve ${job.type}: retry`,
          now,
          actor: null,
        });
      }
      out.push(toJob(row));
    }
    if (out.length > 0) await this.#ctx.wake(trx);
    return out;
  }
}
