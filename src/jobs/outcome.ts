import { type ExpressionBuilder, type Selectable, sql } from 'kysely';
import type { Database, JobsTable } from '../db/tables.ts';
import type { Breakers } from './breakers.ts';
import { type EngineContext, type Executor, toJob } from './context.ts';
import { refund } from './credits.ts';
import { retryDelay } from './policy.ts';
import type { Job, JobError, JobProgress } from './types.ts';

/** Which attempt an outcome belongs to: the worker's lease, or (for the rescuer) an expired one. */
type Fence = { owner: string; attempts: number } | { expiredBefore: number; attempts: number };

export interface AttemptError {
  message: string;
  code?: JobError['code'];
  /** Retrying cannot help: straight to dead. */
  permanent?: boolean;
}

/**
 * What happens when an attempt ends (success, failure, timeout, a lost worker) and while it runs
 * (heartbeats, progress). Every write is fenced by the lease (owner and attempt number), so a worker
 * that lost its job (rescued, cancelled) cannot overwrite what happened since.
 */
export class Outcomes {
  readonly #ctx: EngineContext;
  readonly #breakers: Breakers;

  constructor(ctx: EngineContext, breakers: Breakers) {
    this.#ctx = ctx;
    this.#breakers = breakers;
  }

  /** Records a success; false when the job was no longer this worker's (its result is dropped). */
  async succeed(job: Job, owner: string, result: unknown): Promise<boolean> {
    const text = JSON.stringify(result ?? null);
    if (Buffer.byteLength(text) > this.#ctx.settings.maxPayloadBytes) {
      await this.fail(job, owner, {
        message: `The result is larger than ${this.#ctx.settings.maxPayloadBytes} bytes`,
        code: 'result_too_large',
        permanent: true,
      });
      return false;
    }
    const done = await this.#transaction(job.breakerKey, async (trx) => {
      const now = this.#ctx.now();
      const row = await this.#markSucceeded(trx, job.id, { owner, attempts: job.attempts }, text, now);
      if (row?.breaker_key) {
        const type = this.#ctx.typeOf(row.type);
        await this.#breakers.record(
          trx,
          row.breaker_key,
          { success: true, jobId: row.id, ...breakerOptions(type) },
          now,
        );
      }
      return row;
    });
    if (!done) return false;
    this.#ended('succeeded', done);
    return true;
  }

  /**
   * Records many successes of one worker in one transaction (the worker batches the completions that
   * arrive in the same turn of the event loop): per job, a transaction costs more than the update in it.
   * Jobs with a breaker or an oversized result take the single path. Answers, per item, whether the job
   * was still this worker's.
   */
  async succeedMany(owner: string, items: readonly { job: Job; result: unknown }[]): Promise<boolean[]> {
    const texts = items.map((i) => JSON.stringify(i.result ?? null));
    const simple = items
      .map((item, index) => ({ ...item, index, text: texts[index]! }))
      .filter(
        (i) => i.job.breakerKey === null && Buffer.byteLength(i.text) <= this.#ctx.settings.maxPayloadBytes,
      );
    const outcome = new Array<boolean>(items.length).fill(false);
    const simpleIndexes = new Set(simple.map((i) => i.index));
    await Promise.all(
      items.map(async (item, index) => {
        if (!simpleIndexes.has(index)) outcome[index] = await this.succeed(item.job, owner, item.result);
      }),
    );
    if (simple.length === 0) return outcome;
    const now = this.#ctx.now();
    // PostgreSQL: one statement, atomic on its own, so no transaction's BEGIN and COMMIT round trips.
    const rows =
      this.#ctx.dialect === 'postgres'
        ? (
            await sql<Selectable<JobsTable>>`
              update jobs set state = 'succeeded', result = v.result, finished_at = ${now},
                              updated_at = ${now}, lease_owner = null, lease_expires_at = null
              from unnest(${simple.map((i) => i.job.id)}::text[], ${simple.map((i) => i.job.attempts)}::int[],
                          ${simple.map((i) => i.text)}::text[]) as v(id, attempts, result)
              where jobs.id = v.id and jobs.attempts = v.attempts and jobs.state = 'active'
                and jobs.lease_owner = ${owner}
              returning jobs.*`.execute(this.#ctx.db)
          ).rows
        : await this.#ctx.db.transaction().execute(async (trx) => {
            const done: Selectable<JobsTable>[] = [];
            for (const item of simple) {
              const fence = { owner, attempts: item.job.attempts };
              const row = await this.#markSucceeded(trx, item.job.id, fence, item.text, now);
              if (row) done.push(row);
            }
            return done;
          });
    const succeeded = new Set(rows.map((r) => r.id));
    for (const item of simple) outcome[item.index] = succeeded.has(item.job.id);
    for (const row of rows) this.#ended('succeeded', row);
    return outcome;
  }

  /** Records a failed attempt: a retry after backoff, or dead. Answers what became of the job. */
  async fail(job: Job, owner: string, error: AttemptError): Promise<'failed' | 'dead' | 'lost'> {
    return this.#failAttempt(job.id, job.breakerKey, { owner, attempts: job.attempts }, error);
  }

  /**
   * Returns active jobs whose lease expired (their worker died or hung) to the queue, counting the
   * attempt. Any process may run it at any time; each job is rescued once (the update is fenced).
   */
  async rescue(limit = 100): Promise<number> {
    const now = this.#ctx.now();
    const expired = await this.#ctx.db
      .selectFrom('jobs')
      .select(['id', 'attempts', 'breaker_key'])
      .where('state', '=', 'active')
      .where('lease_expires_at', '<', now)
      .limit(limit)
      .execute();
    let rescued = 0;
    for (const row of expired) {
      const outcome = await this.#failAttempt(
        row.id,
        row.breaker_key,
        { expiredBefore: now, attempts: row.attempts },
        {
          message: 'The lease expired: the worker stopped heartbeating (it died, hung or lost the database)',
          code: 'lease_expired',
        },
      );
      if (outcome !== 'lost') rescued++;
    }
    return rescued;
  }

  /** Extends the leases of `ids`; answers the ids that are still this worker's. */
  async heartbeat(owner: string, ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const now = this.#ctx.now();
    const rows = await this.#ctx.db
      .updateTable('jobs')
      .set({ lease_expires_at: now + this.#ctx.settings.leaseMs })
      .where('id', 'in', ids)
      .where('state', '=', 'active')
      .where('lease_owner', '=', owner)
      .returning('id')
      .execute();
    return new Set(rows.map((r) => r.id));
  }

  /** Writes progress; false when the job is no longer this worker's. */
  async progress(job: Job, owner: string, progress: JobProgress): Promise<boolean> {
    const row = await this.#fenced(this.#ctx.db, job.id, { owner, attempts: job.attempts })
      .set({
        progress_percent: progress.percent,
        progress_stage: progress.stage,
        progress_message: progress.message,
        updated_at: this.#ctx.now(),
      })
      .returningAll()
      .executeTakeFirst();
    if (row) this.#ctx.emit('progress', toJob(row));
    return row !== undefined;
  }

  /**
   * Hands unfinished jobs back at shutdown: queued again at once, the attempt not counted (the job did
   * not fail; its worker stopped).
   */
  async release(owner: string, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const now = this.#ctx.now();
    const rows = await this.#ctx.db
      .updateTable('jobs')
      .set((eb) => ({
        state: 'queued',
        attempts: eb('attempts', '-', 1),
        run_at: now,
        updated_at: now,
        lease_owner: null,
        lease_expires_at: null,
      }))
      .where('id', 'in', ids)
      .where('state', '=', 'active')
      .where('lease_owner', '=', owner)
      .returningAll()
      .execute();
    for (const row of rows) this.#ctx.emit('released', toJob(row));
    if (rows.length > 0) {
      await this.#ctx.wakeOthers(this.#ctx.db);
      this.#ctx.wakeHere();
    }
    return rows.length;
  }

  async #failAttempt(id: string, breakerKey: string | null, fence: Fence, error: AttemptError) {
    const ended = await this.#transaction(breakerKey, async (trx) => {
      const now = this.#ctx.now();
      let current = this.#selectFenced(trx, id, fence);
      if (this.#ctx.dialect === 'postgres') current = current.forUpdate();
      const row = await current.executeTakeFirst();
      if (!row) return undefined;
      const type = this.#ctx.typeOf(row.type);
      const dead = error.permanent === true || row.attempts >= row.max_attempts;
      const errors = JSON.parse(row.errors) as JobError[];
      errors.push({
        attempt: row.attempts,
        at: new Date(now).toISOString(),
        message: error.message.slice(0, 4000),
        ...(error.code ? { code: error.code } : {}),
      });
      const updated = await this.#fenced(trx, id, fence)
        .set({
          state: dead ? 'dead' : 'failed',
          errors: JSON.stringify(errors),
          run_at: dead
            ? row.run_at
            : now + retryDelay(row.attempts, type?.backoff ?? this.#ctx.settings.backoff),
          finished_at: dead ? now : null,
          updated_at: now,
          lease_owner: null,
          lease_expires_at: null,
        })
        .returningAll()
        .executeTakeFirst();
      if (!updated) return undefined;
      if (dead && row.cost > 0) {
        await refund(trx, {
          tenantId: row.tenant_id,
          jobId: id,
          amount: row.cost,
          reason: `refund ${row.type}: dead`,
          now,
          actor: null,
        });
      }
      // A permanent error is about the job (bad input, a missing file), not about the dependency's health.
      if (row.breaker_key && !error.permanent) {
        await this.#breakers.record(
          trx,
          row.breaker_key,
          { success: false, jobId: id, ...breakerOptions(type) },
          now,
        );
      }
      return updated;
    });
    if (!ended) return 'lost';
    this.#ended(ended.state as 'failed' | 'dead', ended);
    return ended.state as 'failed' | 'dead';
  }

  #ended(kind: 'succeeded' | 'failed' | 'dead', row: Selectable<JobsTable>): void {
    this.#ctx.emit(kind, toJob(row));
    // A slot was freed (and a retry may be due soon): other workers of this process may claim.
    this.#ctx.events.emit('wake');
  }

  /** Breaker bookkeeping must not interleave between processes (two failures read as one). */
  #transaction<T>(breakerKey: string | null, work: (trx: Executor) => Promise<T>): Promise<T> {
    return breakerKey === null ? this.#ctx.db.transaction().execute(work) : this.#ctx.exclusive(work);
  }

  /** The fenced update that records a success; undefined when the job is no longer this attempt's. */
  #markSucceeded(trx: Executor, id: string, fence: Fence, result: string, now: number) {
    return this.#fenced(trx, id, fence)
      .set({
        state: 'succeeded',
        result,
        finished_at: now,
        updated_at: now,
        lease_owner: null,
        lease_expires_at: null,
      })
      .returningAll()
      .executeTakeFirst();
  }

  #fenced(executor: EngineContext['db'] | Executor, id: string, fence: Fence) {
    return executor.updateTable('jobs').where((eb) => fenceOf(eb, id, fence));
  }

  #selectFenced(trx: Executor, id: string, fence: Fence) {
    return trx
      .selectFrom('jobs')
      .selectAll()
      .where((eb) => fenceOf(eb, id, fence));
  }
}

/** The row of the attempt `fence` names, while it is still active under that lease (or expired lease). */
function fenceOf(eb: ExpressionBuilder<Database, 'jobs'>, id: string, fence: Fence) {
  return eb.and([
    eb('id', '=', id),
    eb('state', '=', 'active'),
    eb('attempts', '=', fence.attempts),
    'owner' in fence ? eb('lease_owner', '=', fence.owner) : eb('lease_expires_at', '<', fence.expiredBefore),
  ]);
}

function breakerOptions(type: { breaker?: { threshold?: number; openSeconds?: number } } | undefined) {
  return {
    ...(type?.breaker?.threshold !== undefined ? { threshold: type.breaker.threshold } : {}),
    ...(type?.breaker?.openSeconds !== undefined ? { openMs: type.breaker.openSeconds * 1000 } : {}),
  };
}
