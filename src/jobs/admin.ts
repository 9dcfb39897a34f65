import type { Selectable, SelectQueryBuilder, Transaction } from 'kysely';
import { isId } from '../db/ids.ts';
import type { Database, JobsTable } from '../db/tables.ts';
import { ConveyorError, notFound } from '../errors.ts';
import { type JobState, type Lane, OPEN_STATES } from '../glossary.ts';
import { type EngineContext, toJob } from './context.ts';
import { charge, refund } from './credits.ts';
import type { Job } from './types.ts';

export interface JobFilter {
  state?: JobState | undefined;
  type?: string | undefined;
  lane?: Lane | undefined;
  /** Jobs created before this time (epoch ms). */
  createdBefore?: number | undefined;
}

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
  const updated = await trx
    .updateTable('jobs')
    .set({ state: 'cancelled', finished_at: now, updated_at: now, lease_owner: null, lease_expires_at: null })
    .where('id', 'in', ids)
    .where('tenant_id', '=', tenantId)
    .where('state', 'in', states)
    .returningAll()
    .execute();
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
    const row = await this.#ctx.db
      .selectFrom('jobs')
      .selectAll()
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    if (!row) throw notFound('job');
    return toJob(row);
  }

  /** Newest first, by cursor (the last id of the previous page). */
  async list(
    tenantId: string,
    filter: JobFilter & { limit: number; cursor?: string | undefined },
  ): Promise<{ items: Job[]; nextCursor: string | null }> {
    let query = this.#filtered(this.#ctx.db.selectFrom('jobs').selectAll(), tenantId, filter);
    if (filter.cursor) query = query.where('id', '<', filter.cursor);
    const rows = await query
      .orderBy('id', 'desc')
      .limit(filter.limit + 1)
      .execute();
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
    const [row] = await this.#ctx.db
      .transaction()
      .execute((trx) => cancelJobs(trx, tenantId, [job.id], OPEN_STATES, now));
    if (!row) {
      throw new ConveyorError(
        'conflict',
        `The job is ${job.state}; only queued, failed or active jobs can be cancelled`,
        {
          extra: { state: job.state },
        },
      );
    }
    this.#ctx.events.emit('cancel', id);
    this.#ctx.emit('cancelled', toJob(row));
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
    const rows = await this.#filtered(this.#ctx.db.selectFrom('jobs').select('id'), tenantId, {
      ...filter,
      state: 'dead',
    })
      .orderBy('id')
      .limit(limit)
      .execute();
    if (rows.length === 0) return 0;
    const replayed = await this.#ctx.db.transaction().execute((trx) =>
      this.#requeue(
        trx,
        tenantId,
        rows.map((r) => r.id),
      ),
    );
    return replayed.length;
  }

  /** Deletes dead jobs matching the filter; answers how many. */
  async purgeDead(tenantId: string, filter: Omit<JobFilter, 'state'>): Promise<number> {
    let query = this.#ctx.db.deleteFrom('jobs').where('tenant_id', '=', tenantId).where('state', '=', 'dead');
    if (filter.type) query = query.where('type', '=', filter.type);
    if (filter.lane) query = query.where('lane', '=', filter.lane);
    if (filter.createdBefore !== undefined) query = query.where('created_at', '<', filter.createdBefore);
    const result = await query.executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async #requeue(trx: Transaction<Database>, tenantId: string, ids: readonly string[]): Promise<Job[]> {
    const now = this.#ctx.now();
    const before = await trx
      .selectFrom('jobs')
      .select(['id', 'state', 'cost', 'type'])
      .where('id', 'in', ids)
      .where('tenant_id', '=', tenantId)
      .where('state', 'in', ['failed', 'dead', 'cancelled'])
      .execute();
    const out: Job[] = [];
    for (const job of before) {
      const fresh = job.state !== 'failed';
      const row = await trx
        .updateTable('jobs')
        .set((eb) => ({
          state: 'queued',
          run_at: now,
          updated_at: now,
          finished_at: null,
          ...(fresh
            ? { attempts: 0, max_attempts: this.#ctx.maxAttemptsOf(job.type) }
            : { attempts: eb.ref('attempts') }),
        }))
        .where('id', '=', job.id)
        .where('state', '=', job.state)
        .returningAll()
        .executeTakeFirst();
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

  #filtered<O>(query: SelectQueryBuilder<Database, 'jobs', O>, tenantId: string, filter: JobFilter) {
    let q = query.where('tenant_id', '=', tenantId);
    if (filter.state) q = q.where('state', '=', filter.state);
    if (filter.type) q = q.where('type', '=', filter.type);
    if (filter.lane) q = q.where('lane', '=', filter.lane);
    if (filter.createdBefore !== undefined) q = q.where('created_at', '<', filter.createdBefore);
    return q;
  }
}
