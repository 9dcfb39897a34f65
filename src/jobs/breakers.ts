import { ConsecutiveBreaker } from 'cockatiel';
import type { Selectable } from 'kysely';
import type { JobBreakersTable } from '../db/tables.ts';
import { READY_STATES } from '../glossary.ts';
import type { EngineContext, Executor } from './context.ts';

type BreakerRow = Selectable<JobBreakersTable>;

export interface BreakerView {
  key: string;
  state: 'closed' | 'open' | 'half_open';
  failures: number;
  openedAt: string | null;
  openUntil: string | null;
  probeJobId: string | null;
}

/**
 * Circuit breakers per dependency key, kept in the database because every worker process must agree on
 * them. The counting rule is cockatiel's ConsecutiveBreaker (N failures in a row open it); we hydrate it
 * from the row, feed it the outcome and store its state back, inside the transaction that records the
 * job's outcome. Opening, the open period and the single half-open probe are ours, because they have to
 * act on queued jobs in the database (deferring them) rather than on calls in one process.
 */
export class Breakers {
  readonly #ctx: EngineContext;

  constructor(ctx: EngineContext) {
    this.#ctx = ctx;
  }

  async load(trx: Executor, keys: readonly string[]): Promise<Map<string, BreakerRow>> {
    if (keys.length === 0) return new Map();
    const rows = await trx.selectFrom('job_breakers').selectAll().where('key', 'in', keys).execute();
    return new Map(rows.map((r) => [r.key, r]));
  }

  /**
   * How many jobs needing `row`'s breaker this claim may start: unlimited while closed; none while open
   * (and the queued ones are deferred); one probe once the open period is over, unless a probe is
   * already running.
   */
  async allowance(trx: Executor, row: BreakerRow | undefined, now: number): Promise<number> {
    if (!row || row.state === 'closed') return Infinity;
    if (row.state === 'open' && row.open_until !== null && row.open_until > now) {
      await this.#defer(trx, row.key, row.open_until, now);
      return 0;
    }
    if (row.state === 'half_open' && row.probe_job_id !== null) {
      const probe = await trx
        .selectFrom('jobs')
        .select('state')
        .where('id', '=', row.probe_job_id)
        .executeTakeFirst();
      // A probe that was cancelled or deleted proved nothing: let another through.
      if (probe?.state === 'active') return 0;
    }
    return 1;
  }

  /** Marks the breaker half-open with `jobId` as its probe (the claim chose it). */
  async startProbe(trx: Executor, key: string, jobId: string, now: number): Promise<void> {
    await trx
      .updateTable('job_breakers')
      .set({ state: 'half_open', probe_job_id: jobId, updated_at: now })
      .where('key', '=', key)
      .execute();
  }

  /** Records a job's outcome for its breaker; a failure that trips it opens it and defers the queue. */
  async record(
    trx: Executor,
    key: string,
    outcome: { success: boolean; jobId: string; threshold?: number; openMs?: number },
    now: number,
  ): Promise<void> {
    const row = (await this.load(trx, [key])).get(key);
    const breaker = new ConsecutiveBreaker(outcome.threshold ?? this.#ctx.settings.breakerThreshold);
    breaker.state = row?.failures ?? 0;
    if (outcome.success) {
      breaker.success();
      if (!row || (row.state === 'closed' && row.failures === 0)) return;
      await this.#save(
        trx,
        key,
        { state: 'closed', failures: breaker.state, opened_at: null, open_until: null, probe_job_id: null },
        now,
        !row,
      );
      return;
    }
    const wasProbe = row?.state === 'half_open';
    const trips = breaker.failure() || wasProbe;
    if (!trips) {
      await this.#save(trx, key, { state: row?.state ?? 'closed', failures: breaker.state }, now, !row);
      return;
    }
    const openUntil = now + (outcome.openMs ?? this.#ctx.settings.breakerOpenMs);
    await this.#save(
      trx,
      key,
      { state: 'open', failures: breaker.state, opened_at: now, open_until: openUntil, probe_job_id: null },
      now,
      !row,
    );
    await this.#defer(trx, key, openUntil, now);
  }

  async list(keys?: readonly string[]): Promise<BreakerView[]> {
    let query = this.#ctx.db.selectFrom('job_breakers').selectAll().orderBy('key');
    if (keys) query = query.where('key', 'in', keys.length > 0 ? keys : ['']);
    const rows = await query.execute();
    const now = this.#ctx.now();
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    return rows.map((r) => ({
      key: r.key,
      // An open breaker whose period is over lets the next claim's probe through: report it half-open.
      state: r.state === 'open' && r.open_until !== null && r.open_until <= now ? 'half_open' : r.state,
      failures: r.failures,
      openedAt: iso(r.opened_at),
      openUntil: iso(r.open_until),
      probeJobId: r.probe_job_id,
    }));
  }

  /** Moves the due jobs that need `key` past `until`; their attempts are untouched. */
  async #defer(trx: Executor, key: string, until: number, now: number): Promise<void> {
    await trx
      .updateTable('jobs')
      .set({ run_at: until, updated_at: now })
      .where('breaker_key', '=', key)
      .where('state', 'in', READY_STATES)
      .where('run_at', '<', until)
      .execute();
  }

  async #save(
    trx: Executor,
    key: string,
    values: Partial<Omit<BreakerRow, 'key' | 'updated_at'>> & Pick<BreakerRow, 'state' | 'failures'>,
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
}
