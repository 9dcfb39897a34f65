import type { Selectable } from 'kysely';
import type { JobsTable } from '../db/tables.ts';
import type { Breakers } from './breakers.ts';
import { type EngineContext, toJob } from './context.ts';
import { refund } from './credits.ts';
import { retryDelay } from './policy.ts';
import type { Executor } from './sql/executor.ts';
import { markFailed } from './sql/fail.ts';
import type { Fence } from './sql/fence.ts';
import { deferJob, expiredLeases, extendLeases, releaseJobs, wakeJob, writeProgress } from './sql/leases.ts';
import { markSucceeded } from './sql/succeed.ts';
import type { Job, JobError, JobProgress } from './types.ts';

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
      const row = await markSucceeded(trx, job.id, { owner, attempts: job.attempts }, text, now);
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
    const rows = await this.#ctx.statements.markSucceededMany(
      this.#ctx.db,
      owner,
      simple.map((i) => ({ id: i.job.id, attempts: i.job.attempts, result: i.text })),
      this.#ctx.now(),
    );
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
    const expired = await expiredLeases(this.#ctx.db, now, limit);
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
    const until = this.#ctx.now() + this.#ctx.settings.leaseMs;
    return new Set(await extendLeases(this.#ctx.db, owner, ids, until));
  }

  /** Writes progress; false when the job is no longer this worker's. */
  async progress(job: Job, owner: string, progress: JobProgress): Promise<boolean> {
    const fence = { owner, attempts: job.attempts };
    const row = await writeProgress(this.#ctx.db, job.id, fence, progress, this.#ctx.now());
    if (row) this.#ctx.emit('progress', toJob(row));
    return row !== undefined;
  }

  /**
   * Hands unfinished jobs back at shutdown: queued again at once, the attempt not counted (the job did
   * not fail; its worker stopped).
   */
  async release(owner: string, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const rows = await releaseJobs(this.#ctx.db, owner, ids, this.#ctx.now());
    for (const row of rows) this.#ctx.emit('released', toJob(row));
    if (rows.length > 0) {
      await this.#ctx.wakeOthers(this.#ctx.db);
      this.#ctx.wakeHere();
    }
    return rows.length;
  }

  /**
   * Hands a job whose handler deferred (JobDeferral) back to the queue, due after `delayMs` (or at once
   * when it was woken while it ran), the attempt not counted. Answers false when the job was no longer
   * this worker's.
   */
  async defer(job: Job, owner: string, delayMs: number): Promise<boolean> {
    const now = this.#ctx.now();
    const fence = { owner, attempts: job.attempts };
    const row = await deferJob(this.#ctx.db, job.id, fence, now + delayMs, now);
    if (!row) return false;
    this.#ctx.emit('released', toJob(row));
    if (row.run_at <= now) {
      await this.#ctx.wakeOthers(this.#ctx.db);
      this.#ctx.wakeHere();
    }
    return true;
  }

  /** Makes a deferred job due now (see JobDeferral); answers whether it was waiting. */
  async wake(id: string): Promise<boolean> {
    const woken = await wakeJob(this.#ctx.db, id, this.#ctx.now());
    if (woken) {
      await this.#ctx.wakeOthers(this.#ctx.db);
      this.#ctx.wakeHere();
    }
    return woken;
  }

  async #failAttempt(id: string, breakerKey: string | null, fence: Fence, error: AttemptError) {
    const ended = await this.#transaction(breakerKey, async (trx) => {
      const now = this.#ctx.now();
      const row = await this.#ctx.statements.lockAttempt(trx, id, fence);
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
      const updated = await markFailed(
        trx,
        id,
        fence,
        {
          state: dead ? 'dead' : 'failed',
          errors: JSON.stringify(errors),
          runAt: dead
            ? row.run_at
            : now + retryDelay(row.attempts, type?.backoff ?? this.#ctx.settings.backoff),
          finishedAt: dead ? now : null,
        },
        now,
      );
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
}

function breakerOptions(type: { breaker?: { threshold?: number; openSeconds?: number } } | undefined) {
  return {
    ...(type?.breaker?.threshold !== undefined ? { threshold: type.breaker.threshold } : {}),
    ...(type?.breaker?.openSeconds !== undefined ? { openMs: type.breaker.openSeconds * 1000 } : {}),
  };
}
