import type { Lane } from '../glossary.ts';
import type { Breakers } from './breakers.ts';
import { capacityOf, fetchLimits, type Group, moreDue, unique } from './claim-plan.ts';
import { StartRates } from './claim-rates.ts';
import { type EngineContext, toJob } from './context.ts';
import { orderCandidates, parseQueueKey, queueOf, selectClaims } from './policy.ts';
import { claimCounts } from './sql/claim-counts.ts';
import type { Job } from './types.ts';

export interface ClaimRequest {
  workerId: string;
  /** Free slots of the worker: the most jobs to take. */
  slots: number;
  /** Lanes the worker serves; null for all. */
  lanes: readonly Lane[] | null;
  /** Types the worker has handlers for. */
  types: readonly string[];
}

export interface ClaimResult {
  jobs: Job[];
  /** When a job that is not due yet (delay, backoff, start rate) becomes due; null if none is known. */
  nextWakeAt: number | null;
  /** Due jobs may be left that this claim did not take (no room, or a limit): worth claiming again soon. */
  more: boolean;
}

/**
 * The claim: a read, then one short exclusive transaction (see EngineContext.exclusive), in four steps.
 *
 * 1. List the groups (lane/type/tenant) that hold ready jobs, with each group's oldest run_at, by a loose
 *    index scan (sql/ready-groups.ts). Its cost grows with the number of groups, not with the number of
 *    queued jobs. Nothing due: no transaction at all.
 * 2. Under the lock, read the active counts per lane, type and tenant, and the tenants' tiers: the room
 *    left under every concurrency limit, and what each tenant holds of the lanes that have a fair share.
 *    Decide how many jobs to fetch from each due group: each group's first job before any group's second,
 *    best lane (after aging) first (claim-plan.ts).
 * 3. Fetch those candidates (on PostgreSQL with FOR UPDATE SKIP LOCKED), apply start rates
 *    (claim-rates.ts) and breakers, order them (policy.orderCandidates) and take what every limit allows
 *    (policy.selectClaims).
 * 4. Mark the chosen jobs active under the worker's lease and count the attempt.
 */
export class Claimer {
  readonly #ctx: EngineContext;
  readonly #breakers: Breakers;
  readonly #rates: StartRates;

  constructor(ctx: EngineContext, breakers: Breakers) {
    this.#ctx = ctx;
    this.#breakers = breakers;
    this.#rates = new StartRates(ctx);
  }

  async claim(request: ClaimRequest): Promise<ClaimResult> {
    if (request.slots <= 0) return { jobs: [], nextWakeAt: null, more: false };
    const now = this.#ctx.now();
    const { statements } = this.#ctx;
    const types = new Set(request.types);
    const lanes = request.lanes ? new Set<string>(request.lanes) : null;
    // Step 1 runs before the exclusive transaction: most claims of an idle or lightly loaded queue find
    // nothing due, and then cost one read instead of a locked transaction. What it reads may be a moment
    // old by the time the lock is held, which is harmless: it only says where to look. The candidates are
    // read again under the lock, and a group that appears meanwhile is found by the next claim (its
    // enqueue wakes the worker).
    const groups: Group[] = (await statements.readyGroups(this.#ctx.db))
      .map((g) => ({ ...g, ...parseQueueKey(g.queue) }))
      .filter((g) => types.has(g.type) && (!lanes || lanes.has(g.lane)));
    const due = groups.filter((g) => g.head <= now);
    const waiting = min(groups.filter((g) => g.head > now).map((g) => g.head));
    if (due.length === 0) return { jobs: [], nextWakeAt: waiting, more: false };
    return this.#ctx.exclusive(async (trx) => {
      const { tenants, active } = await claimCounts(trx, unique(due.map((g) => g.tenantId)));
      const capacity = capacityOf(this.#ctx, due, tenants, active, request.slots);
      const limits = fetchLimits(this.#ctx, due, capacity, tenants, now);
      if (limits.size === 0) return { jobs: [], nextWakeAt: waiting, more: true };
      const candidates = await statements.candidates(trx, limits, now);
      const fetched = new Map<string, number>();
      for (const c of candidates) fetched.set(queueOf(c), (fetched.get(queueOf(c)) ?? 0) + 1);
      // More may be due than this claim takes: a group that was left out or gave all it was asked for, or
      // candidates that a limit held back. The worker then claims again when one of its jobs ends.
      const more =
        limits.size < due.length || [...limits].some(([queue, n]) => (fetched.get(queue) ?? 0) >= n);
      capacity.moreDue = moreDue(due, limits, fetched, capacity);

      const starts = await this.#rates.grant(trx, candidates, now);
      capacity.rates = starts.granted;
      const nextWakeAt = min([waiting, starts.nextAt]);
      const breakerKeys = unique(candidates.map((c) => c.breakerKey));
      const breakerRows = await this.#breakers.load(trx, breakerKeys);
      for (const key of breakerKeys) {
        capacity.breakers.set(key, await this.#breakers.allowance(trx, breakerRows.get(key), now));
      }

      const turns = new Map([...tenants].map(([id, t]) => [id, t.turn]));
      const ordered = orderCandidates(candidates, now, this.#ctx.settings.agingMs, turns);
      const chosen = selectClaims(ordered, capacity);
      if (chosen.length === 0) return { jobs: [], nextWakeAt, more: candidates.length > 0 || more };
      await this.#rates.spend(trx, chosen, now);
      for (const c of chosen) {
        if (
          c.breakerKey !== null &&
          capacity.breakers.get(c.breakerKey) === 1 &&
          breakerRows.get(c.breakerKey)
        ) {
          await this.#breakers.startProbe(trx, c.breakerKey, c.id, now);
        }
      }
      const rows = await statements.startJobs(trx, {
        ids: chosen.map((c) => c.id),
        tenants: unique(chosen.map((c) => c.tenantId)),
        workerId: request.workerId,
        leaseExpiresAt: now + this.#ctx.settings.leaseMs,
        now,
      });
      return { jobs: rows.map(toJob), nextWakeAt, more: more || chosen.length < candidates.length };
    });
  }
}

function min(values: readonly (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : Math.min(...present);
}
