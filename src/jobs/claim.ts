import type { Lane } from '../glossary.ts';
import { own } from '../own.ts';
import type { Breakers } from './breakers.ts';
import { type EngineContext, toJob } from './context.ts';
import {
  type Candidate,
  type Capacity,
  effectiveRank,
  orderCandidates,
  parseQueueKey,
  queueOf,
  rateScopes,
  selectClaims,
  takeStarts,
  tenantShareCap,
} from './policy.ts';
import { type ActiveCount, claimCounts, type TenantState } from './sql/claim-counts.ts';
import type { Executor } from './sql/executor.ts';
import { readRate, writeRate } from './sql/rates.ts';
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

interface Group {
  queue: string;
  lane: Lane;
  type: string;
  tenantId: string;
  /** run_at of the group's oldest job. */
  head: number;
}

/**
 * The claim: a read, then one short exclusive transaction (see EngineContext.exclusive), in four steps.
 *
 * 1. List the groups (lane/type/tenant) that hold ready jobs, with each group's oldest run_at, by a loose
 *    index scan (sql/ready-groups.ts). Its cost grows with the number of groups, not with the number of
 *    queued jobs. Nothing due: no transaction at all.
 * 2. Under the lock, read the active counts per lane, type and tenant, and the tenants' tiers: the room left under every
 *    concurrency limit, and what each tenant holds of the lanes that have a fair share. Decide how many jobs to fetch from each due group: each group's first job before
 *    any group's second, best lane (after aging) first.
 * 3. Fetch those candidates (on PostgreSQL with FOR UPDATE SKIP LOCKED), apply start rates and breakers,
 *    order them (policy.orderCandidates) and take what every limit allows (policy.selectClaims).
 * 4. Mark the chosen jobs active under the worker's lease and count the attempt.
 */
export class Claimer {
  readonly #ctx: EngineContext;
  readonly #breakers: Breakers;

  constructor(ctx: EngineContext, breakers: Breakers) {
    this.#ctx = ctx;
    this.#breakers = breakers;
  }

  async claim(request: ClaimRequest): Promise<ClaimResult> {
    if (request.slots <= 0) return { jobs: [], nextWakeAt: null, more: false };
    const now = this.#ctx.now();
    const types = new Set(request.types);
    const lanes = request.lanes ? new Set<string>(request.lanes) : null;
    // Step 1 runs before the exclusive transaction: most claims of an idle or lightly loaded queue find
    // nothing due, and then cost one read instead of a locked transaction. What it reads may be a moment
    // old by the time the lock is held, which is harmless: it only says where to look. The candidates are
    // read again under the lock, and a group that appears meanwhile is found by the next claim (its
    // enqueue wakes the worker).
    const groups: Group[] = (await this.#ctx.statements.readyGroups(this.#ctx.db))
      .map((g) => ({ ...g, ...parseQueueKey(g.queue) }))
      .filter((g) => types.has(g.type) && (!lanes || lanes.has(g.lane)));
    const due = groups.filter((g) => g.head <= now);
    const waiting = min(groups.filter((g) => g.head > now).map((g) => g.head));
    if (due.length === 0) return { jobs: [], nextWakeAt: waiting, more: false };
    return this.#ctx.exclusive(async (trx) => {
      let nextWakeAt = waiting;
      const { tenants, active } = await claimCounts(trx, unique(due.map((g) => g.tenantId)));
      const capacity = this.#capacity(due, tenants, active, request.slots);
      const limits = this.#fetchLimits(due, capacity, tenants, now);
      if (limits.size === 0) return { jobs: [], nextWakeAt, more: true };
      const candidates = await this.#ctx.statements.candidates(trx, limits, now);
      const fetched = new Map<string, number>();
      for (const c of candidates) fetched.set(queueOf(c), (fetched.get(queueOf(c)) ?? 0) + 1);
      // More may be due than this claim takes: a group that was left out or gave all it was asked for, or
      // candidates that a limit held back. The worker then claims again when one of its jobs ends.
      const more =
        limits.size < due.length || [...limits].some(([queue, n]) => (fetched.get(queue) ?? 0) >= n);
      capacity.moreDue = this.#moreDue(due, limits, fetched, capacity);

      for (const [scope, rate] of this.#rates(candidates)) {
        const wanted = candidates.filter((c) => rateScopes(c).includes(scope)).length;
        const starts = takeStarts(await readRate(trx, scope), now, rate, wanted);
        capacity.rates.set(scope, starts.granted);
        if (starts.granted < wanted) nextWakeAt = min([nextWakeAt, starts.nextAt]);
      }
      const breakerRows = await this.#breakers.load(trx, unique(candidates.map((c) => c.breakerKey)));
      for (const key of unique(candidates.map((c) => c.breakerKey))) {
        capacity.breakers.set(key, await this.#breakers.allowance(trx, breakerRows.get(key), now));
      }

      const turns = new Map([...tenants].map(([id, t]) => [id, t.turn]));
      const ordered = orderCandidates(candidates, now, this.#ctx.settings.agingMs, turns);
      const chosen = selectClaims(ordered, capacity);
      if (chosen.length === 0) return { jobs: [], nextWakeAt, more: candidates.length > 0 || more };
      await this.#spendRates(trx, chosen, now);
      for (const c of chosen) {
        if (
          c.breakerKey !== null &&
          capacity.breakers.get(c.breakerKey) === 1 &&
          breakerRows.get(c.breakerKey)
        ) {
          await this.#breakers.startProbe(trx, c.breakerKey, c.id, now);
        }
      }
      const rows = await this.#ctx.statements.startJobs(trx, {
        ids: chosen.map((c) => c.id),
        tenants: unique(chosen.map((c) => c.tenantId)),
        workerId: request.workerId,
        leaseExpiresAt: now + this.#ctx.settings.leaseMs,
        now,
      });
      return { jobs: rows.map(toJob), nextWakeAt, more: more || chosen.length < candidates.length };
    });
  }

  /**
   * Step 2: room under the lane, type and tenant concurrency limits (a missing entry: unlimited), and the
   * lanes' tenant fair shares with what each tenant holds of them.
   */
  #capacity(
    due: readonly Group[],
    tenants: ReadonlyMap<string, TenantState>,
    active: readonly ActiveCount[],
    slots: number,
  ): Capacity {
    const count = (pick: (r: (typeof active)[number]) => string) => {
      const out = new Map<string, number>();
      for (const r of active) out.set(pick(r), (out.get(pick(r)) ?? 0) + r.n);
      return out;
    };
    const room = (limit: number | undefined, used: number | undefined) =>
      limit === undefined || limit === 0 ? undefined : Math.max(0, limit - (used ?? 0));
    const { settings } = this.#ctx;
    const capacity: Capacity = {
      slots,
      lanes: new Map(),
      types: new Map(),
      tenants: new Map(),
      rates: new Map(),
      breakers: new Map(),
      shares: new Map(),
      moreDue: new Set(),
    };
    const laneUse = count((r) => r.lane);
    const typeUse = count((r) => r.type);
    const tenantUse = count((r) => r.tenantId);
    for (const lane of unique(due.map((g) => g.lane))) {
      const limit = own(settings.laneConcurrency, lane);
      const r = room(limit, laneUse.get(lane));
      if (r !== undefined) capacity.lanes.set(lane, r);
      const cap = tenantShareCap(limit ?? 0, settings.laneTenantSharePercent.get(lane) ?? 0);
      if (cap === undefined) continue;
      const held = new Map<string, number>();
      for (const a of active) if (a.lane === lane) held.set(a.tenantId, (held.get(a.tenantId) ?? 0) + a.n);
      capacity.shares.set(lane, { cap, held });
    }
    for (const type of unique(due.map((g) => g.type))) {
      const limit = own(settings.typeConcurrency, type) ?? this.#ctx.typeOf(type)?.concurrency;
      const r = room(limit, typeUse.get(type));
      if (r !== undefined) capacity.types.set(type, r);
    }
    for (const [id, t] of tenants) {
      const r = room(own(settings.tierConcurrency, t.tier), tenantUse.get(id));
      if (r !== undefined) capacity.tenants.set(id, r);
    }
    return capacity;
  }

  /**
   * How many jobs to fetch per due group: groups in order of their head's lane after aging, then of their
   * tenant's last turn (longest ago first), then of age; each group gets a share of the slots, never more than its lane, type and tenant have room
   * for. Asking a little more than will be taken is harmless; asking every group for every slot is not
   * (a thousand tenants would mean fetching a thousand times the batch).
   */
  #fetchLimits(
    due: readonly Group[],
    capacity: Capacity,
    tenants: ReadonlyMap<string, TenantState>,
    now: number,
  ): Map<string, number> {
    const turn = (tenantId: string) => tenants.get(tenantId)?.turn ?? 0;
    const { agingMs } = this.#ctx.settings;
    const open = due
      .filter((g) =>
        [capacity.lanes.get(g.lane), capacity.types.get(g.type), capacity.tenants.get(g.tenantId)].every(
          (r) => r === undefined || r > 0,
        ),
      )
      .sort(
        (a, b) =>
          effectiveRank(a.lane, a.head, now, agingMs) - effectiveRank(b.lane, b.head, now, agingMs) ||
          turn(a.tenantId) - turn(b.tenantId) ||
          a.head - b.head,
      )
      .slice(0, capacity.slots);
    const share = Math.ceil(capacity.slots / Math.max(1, open.length)) + 1;
    const limits = new Map<string, number>();
    for (const g of open) {
      const room = Math.min(
        capacity.slots,
        share,
        capacity.lanes.get(g.lane) ?? Infinity,
        capacity.types.get(g.type) ?? Infinity,
        capacity.tenants.get(g.tenantId) ?? Infinity,
      );
      limits.set(g.queue, room);
    }
    return limits;
  }

  /**
   * The due groups of fair-share lanes that may hold due jobs besides the candidates fetched (see
   * `Capacity.moreDue`): fetched up to their limit, or left out although their type and tenant had room
   * (the claim asked only so many groups). Their tenants are waiting for the lane.
   */
  #moreDue(
    due: readonly Group[],
    limits: ReadonlyMap<string, number>,
    fetched: ReadonlyMap<string, number>,
    capacity: Capacity,
  ): Set<string> {
    const out = new Set<string>();
    const open = (r: number | undefined) => r === undefined || r > 0;
    for (const g of due) {
      if (!capacity.shares.has(g.lane)) continue;
      const asked = limits.get(g.queue);
      if (asked === undefined) {
        if (open(capacity.types.get(g.type)) && open(capacity.tenants.get(g.tenantId))) out.add(g.queue);
      } else if ((fetched.get(g.queue) ?? 0) >= asked) out.add(g.queue);
    }
    return out;
  }

  /**
   * Start-rate limits of the candidates' rate scopes (policy.ts `rateScopes`): a type's from config first,
   * then the type's own; a breaker key's from the types naming it (the strictest when several do).
   */
  #rates(candidates: readonly Candidate[]): Map<string, number> {
    const out = new Map<string, number>();
    for (const type of unique(candidates.map((c) => c.type))) {
      const rate = own(this.#ctx.settings.typeRatePerSecond, type) ?? this.#ctx.typeOf(type)?.ratePerSecond;
      if (rate) out.set(`type:${type}`, rate);
    }
    for (const c of candidates) {
      const rate = c.breakerKey === null ? undefined : this.#ctx.typeOf(c.type)?.keyRatePerSecond;
      if (!rate) continue;
      const scope = `key:${c.breakerKey}`;
      out.set(scope, Math.min(rate, out.get(scope) ?? Infinity));
    }
    return out;
  }

  async #spendRates(trx: Executor, chosen: readonly Candidate[], now: number): Promise<void> {
    for (const [key, rate] of this.#rates(chosen)) {
      const wanted = chosen.filter((c) => rateScopes(c).includes(key)).length;
      const { tat } = takeStarts(await readRate(trx, key), now, rate, wanted);
      await writeRate(trx, key, Math.ceil(tat));
    }
  }
}

function unique<T>(values: readonly (T | null)[]): T[] {
  return [...new Set(values.filter((v): v is T => v !== null))];
}

function min(values: readonly (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : Math.min(...present);
}
