import { ConsecutiveBreaker } from 'cockatiel';
import type { EngineContext } from './context.ts';
import {
  type BreakerRow,
  type BreakerState,
  deferJobs,
  listBreakers,
  loadBreakers,
  saveBreaker,
  setProbe,
} from './sql/breakers.ts';
import type { Executor } from './sql/executor.ts';
import { jobState } from './sql/job-reads.ts';

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
    const rows = await loadBreakers(trx, keys);
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
      await deferJobs(trx, row.key, row.open_until, now);
      return 0;
    }
    if (row.state === 'half_open' && row.probe_job_id !== null) {
      // A probe that was cancelled or deleted proved nothing: let another through.
      if ((await jobState(trx, row.probe_job_id)) === 'active') return 0;
    }
    return 1;
  }

  /** Marks the breaker half-open with `jobId` as its probe (the claim chose it). */
  async startProbe(trx: Executor, key: string, jobId: string, now: number): Promise<void> {
    await setProbe(trx, key, jobId, now);
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
      await saveBreaker(
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
      await saveBreaker(trx, key, { state: row?.state ?? 'closed', failures: breaker.state }, now, !row);
      return;
    }
    const openUntil = now + (outcome.openMs ?? this.#ctx.settings.breakerOpenMs);
    const open: BreakerState = {
      state: 'open',
      failures: breaker.state,
      opened_at: now,
      open_until: openUntil,
      probe_job_id: null,
    };
    await saveBreaker(trx, key, open, now, !row);
    await deferJobs(trx, key, openUntil, now);
  }

  async list(keys?: readonly string[]): Promise<BreakerView[]> {
    const rows = await listBreakers(this.#ctx.db, keys);
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
}
