import type { Lane } from '../glossary.ts';
import { own } from '../own.ts';
import type { EngineContext } from './context.ts';
import { type Capacity, effectiveRank, tenantShareCap } from './policy.ts';
import type { ActiveCount, TenantState } from './sql/claim-counts.ts';

/**
 * What a claim plans before it reads a candidate: the room under every concurrency limit, how many jobs
 * to fetch from each due group, and which fair-share groups may hold more due jobs than were fetched.
 * Functions of what the claim read (groups, active counts, tenants) and the settings; no I/O.
 */

/** A group (lane/type/tenant) with ready jobs. */
export interface Group {
  queue: string;
  lane: Lane;
  type: string;
  tenantId: string;
  /** run_at of the group's oldest job. */
  head: number;
}

type Context = Pick<EngineContext, 'settings' | 'typeOf'>;

/**
 * Room under the lane, type and tenant concurrency limits (a missing entry: unlimited), and the lanes'
 * tenant fair shares with what each tenant holds of them.
 */
export function capacityOf(
  ctx: Context,
  due: readonly Group[],
  tenants: ReadonlyMap<string, TenantState>,
  active: readonly ActiveCount[],
  slots: number,
): Capacity {
  const count = (pick: (r: ActiveCount) => string) => {
    const out = new Map<string, number>();
    for (const r of active) out.set(pick(r), (out.get(pick(r)) ?? 0) + r.n);
    return out;
  };
  const room = (limit: number | undefined, used: number | undefined) =>
    limit === undefined || limit === 0 ? undefined : Math.max(0, limit - (used ?? 0));
  const { settings } = ctx;
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
    const limit = own(settings.typeConcurrency, type) ?? ctx.typeOf(type)?.concurrency;
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
 * tenant's last turn (longest ago first), then of age; each group gets a share of the slots, never more
 * than its lane, type and tenant have room for. Asking a little more than will be taken is harmless;
 * asking every group for every slot is not (a thousand tenants would mean fetching a thousand times the
 * batch).
 */
export function fetchLimits(
  ctx: Context,
  due: readonly Group[],
  capacity: Capacity,
  tenants: ReadonlyMap<string, TenantState>,
  now: number,
): Map<string, number> {
  const turn = (tenantId: string) => tenants.get(tenantId)?.turn ?? 0;
  const { agingMs } = ctx.settings;
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
export function moreDue(
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

export function unique<T>(values: readonly (T | null)[]): T[] {
  return [...new Set(values.filter((v): v is T => v !== null))];
}
