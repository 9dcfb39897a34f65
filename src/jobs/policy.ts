import { createHash } from 'node:crypto';
import { fullJitterGenerator, noJitterGenerator } from 'cockatiel';
import { LANES, type Lane } from '../glossary.ts';

/**
 * The scheduling policy as pure functions: which due jobs a claim takes, in which order, and how long a
 * retry waits. The claim (claim.ts) reads the inputs from the database and applies the answer there.
 */

export interface Candidate {
  id: string;
  lane: Lane;
  type: string;
  tenantId: string;
  runAt: number;
  breakerKey: string | null;
}

/** The group a job belongs to, as stored in `jobs.queue`: `lane/type/tenant`. */
export function queueKey(lane: Lane, type: string, tenantId: string): string {
  return `${lane}/${type}/${tenantId}`;
}

export function parseQueueKey(queue: string): { lane: Lane; type: string; tenantId: string } {
  const [lane, type, tenantId] = queue.split('/') as [Lane, string, string];
  return { lane, type, tenantId };
}

/**
 * A lane's rank after aging: 0 is `critical`. Every `agingMs` a due job has waited lifts it one lane,
 * so strict priority holds between jobs that became due at about the same time, and a `low` job beats
 * fresh `critical` work after waiting 3 x agingMs at most.
 */
export function effectiveRank(lane: Lane, runAt: number, now: number, agingMs: number): number {
  const waited = Math.max(0, now - runAt);
  return Math.max(0, LANES.indexOf(lane) - Math.floor(waited / agingMs));
}

/**
 * Orders candidates for a claim: by effective lane first (priority with aging), then round-robin between
 * tenants (each tenant's best job, then each tenant's second best, ...), then oldest first. So a tenant
 * with 10,000 due jobs and a tenant with one get their first jobs into the same claim, and neither's
 * `normal` jobs get ahead of anyone's `critical` ones. Among equal turns, the tenant whose last claim is
 * longest ago goes first (`lastTurn`), so turns carry over when one claim cannot serve every tenant.
 */
export function orderCandidates(
  candidates: readonly Candidate[],
  now: number,
  agingMs: number,
  lastTurn: ReadonlyMap<string, number> = new Map(),
): Candidate[] {
  const rank = new Map<string, number>();
  for (const c of candidates) rank.set(c.id, effectiveRank(c.lane, c.runAt, now, agingMs));
  const byAge = (a: Candidate, b: Candidate) => a.runAt - b.runAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const best = (a: Candidate, b: Candidate) => rank.get(a.id)! - rank.get(b.id)! || byAge(a, b);

  const turn = new Map<string, number>();
  const perTenant = new Map<string, Candidate[]>();
  for (const c of candidates) {
    const list = perTenant.get(c.tenantId);
    if (list) list.push(c);
    else perTenant.set(c.tenantId, [c]);
  }
  for (const list of perTenant.values()) {
    list.sort(best);
    for (const [i, c] of list.entries()) turn.set(c.id, i);
  }
  const served = (c: Candidate) => lastTurn.get(c.tenantId) ?? 0;
  return [...candidates].sort(
    (a, b) =>
      rank.get(a.id)! - rank.get(b.id)! ||
      turn.get(a.id)! - turn.get(b.id)! ||
      served(a) - served(b) ||
      byAge(a, b),
  );
}

/**
 * What a claim may still start. A missing entry means unlimited; the maps are keyed by lane, type, tenant
 * id, rate scope (see `rateScopes`) and breaker key.
 */
export interface Capacity {
  slots: number;
  lanes: Map<string, number>;
  types: Map<string, number>;
  tenants: Map<string, number>;
  rates: Map<string, number>;
  breakers: Map<string, number>;
  /** The lanes that have a tenant fair share (see `selectClaims`), by lane; a lane without one has none. */
  shares: Map<string, LaneShare>;
  /**
   * Groups (queue keys, see `queueKey`) that may hold due jobs besides their candidates: fetched up to
   * their limit, or not fetched at all although nothing but the claim's size kept them out.
   */
  moreDue: Set<string>;
}

/** A lane's tenant fair share, and what each tenant holds of the lane now. */
export interface LaneShare {
  /** The most active jobs one tenant may hold in the lane while a tenant under this share waits. */
  cap: number;
  /** Active jobs per tenant in the lane (a missing tenant: none). */
  held: Map<string, number>;
}

/**
 * The fair share of one tenant in a lane of `laneLimit` slots: `percent` of them rounded down, at least
 * one; undefined (no share) when the lane is unlimited or the share is off (0, or 100 and more: the
 * whole lane).
 */
export function tenantShareCap(laneLimit: number, percent: number): number | undefined {
  if (laneLimit <= 0 || percent <= 0 || percent >= 100) return undefined;
  return Math.max(1, Math.floor((laneLimit * percent) / 100));
}

/**
 * The start-rate scopes a candidate counts against: its type (`type:<type>`) and, when it names one, its
 * breaker key (`key:<breaker key>`), so that e.g. every job fetching from one origin host shares that
 * host's rate whatever its type or tenant. The names are also the rows of job_rate_limits.
 */
export function rateScopes(c: Pick<Candidate, 'type' | 'breakerKey'>): string[] {
  return c.breakerKey === null ? [`type:${c.type}`] : [`type:${c.type}`, `key:${c.breakerKey}`];
}

/**
 * Takes candidates in order while every limit they fall under has room; the rest stay queued.
 *
 * Fair share: a tenant that holds its lane's share (`capacity.shares`) is passed over while a tenant
 * under the share waits in that lane, so that one tenant's long jobs cannot take every slot of a lane
 * others need. It is work-conserving: the slots nobody under the share can use go to the tenants over it,
 * in order. In two passes: the first takes what is within every limit and the share and sets aside the
 * candidates over their share; then a tenant under the share still waits in a lane only if it has due
 * jobs that are not candidates (`moreDue`: every candidate of its group was taken and more may be due)
 * and its type and tier limits have room, and the second pass takes the set-aside candidates of the
 * lanes where none waits. (A tenant under the share whose candidates a limit of their own refused, such
 * as its tier, a rate or a breaker, is not waiting for the lane: it could not use a slot.)
 */
export function selectClaims(ordered: readonly Candidate[], capacity: Capacity): Candidate[] {
  const left = {
    lanes: new Map(capacity.lanes),
    types: new Map(capacity.types),
    tenants: new Map(capacity.tenants),
    rates: new Map(capacity.rates),
    breakers: new Map(capacity.breakers),
  };
  const held = new Map([...capacity.shares].map(([lane, share]) => [lane, new Map(share.held)]));
  const heldBy = (lane: string, tenantId: string) => held.get(lane)?.get(tenantId) ?? 0;
  const overShare = (c: Candidate) => {
    const share = capacity.shares.get(c.lane);
    return share !== undefined && heldBy(c.lane, c.tenantId) >= share.cap;
  };
  type Scopes = [Map<string, number>, string][];
  const scopesOf = (c: Candidate): Scopes => {
    const scopes: Scopes = [
      [left.lanes, c.lane],
      [left.types, c.type],
      [left.tenants, c.tenantId],
    ];
    for (const scope of rateScopes(c)) scopes.push([left.rates, scope]);
    if (c.breakerKey !== null) scopes.push([left.breakers, c.breakerKey]);
    return scopes;
  };
  const fits = (scopes: Scopes) => scopes.every(([map, key]) => (map.get(key) ?? Infinity) > 0);
  const chosen: Candidate[] = [];
  const take = (c: Candidate, scopes: Scopes) => {
    for (const [map, key] of scopes) {
      const room = map.get(key);
      if (room !== undefined) map.set(key, room - 1);
    }
    held.get(c.lane)?.set(c.tenantId, heldBy(c.lane, c.tenantId) + 1);
    chosen.push(c);
  };

  const overTheirShare: { c: Candidate; scopes: Scopes }[] = [];
  /** Groups of fair-share lanes with a candidate a limit refused. */
  const refused = new Set<string>();
  for (const c of ordered) {
    if (chosen.length >= capacity.slots) return chosen;
    const scopes = scopesOf(c);
    if (!fits(scopes)) {
      if (capacity.shares.has(c.lane)) refused.add(queueOf(c));
    } else if (overShare(c)) overTheirShare.push({ c, scopes });
    else take(c, scopes);
  }
  if (overTheirShare.length === 0) return chosen;
  // Who may wait under the share is settled by now: tenants over it do not count (else two of them would
  // hold each other's slots back), and the second pass takes only theirs. A tenant under the share had
  // none of its candidates set aside, so each of them was taken or refused. Whether a waiting tenant
  // could still use a slot (its type and tier have room) can change as the second pass takes jobs.
  const waiters = new Map<string, { type: string; tenantId: string }[]>();
  for (const queue of capacity.moreDue) {
    const { lane, type, tenantId } = parseQueueKey(queue);
    const share = capacity.shares.get(lane);
    if (!share || refused.has(queue) || heldBy(lane, tenantId) >= share.cap) continue;
    const list = waiters.get(lane);
    if (list) list.push({ type, tenantId });
    else waiters.set(lane, [{ type, tenantId }]);
  }
  const waited = (lane: string) =>
    (waiters.get(lane) ?? []).some(
      (w) => (left.types.get(w.type) ?? Infinity) > 0 && (left.tenants.get(w.tenantId) ?? Infinity) > 0,
    );
  // Rooms only shrink, so a lane's waiters only go away: sweep again while a sweep took something, so a
  // candidate passed over early is taken once its lane's last waiter can no longer use a slot.
  let rest = overTheirShare;
  for (let took = true; took && rest.length > 0; ) {
    took = false;
    const passed: typeof rest = [];
    for (const item of rest) {
      if (chosen.length < capacity.slots && fits(item.scopes) && !waited(item.c.lane)) {
        take(item.c, item.scopes);
        took = true;
      } else passed.push(item);
    }
    rest = passed;
  }
  return chosen;
}

/** The group of a candidate (its `queue`). */
export function queueOf(c: Pick<Candidate, 'lane' | 'type' | 'tenantId'>): string {
  return queueKey(c.lane, c.type, c.tenantId);
}

/**
 * The wait before attempt `attempt + 1`, after `attempt` failures: exponential from `baseMs`, capped at
 * `maxMs`, with full jitter (uniform in [0, cap)), the variant that spreads a thundering herd best
 * (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/). cockatiel does the maths.
 */
export function retryDelay(attempt: number, backoff: { baseMs: number; maxMs: number }): number {
  return exponentialDelay(fullJitterGenerator, attempt, backoff);
}

/** The cap of `retryDelay` for this attempt (the jitter's upper bound), for docs and tests. */
export function retryDelayCap(attempt: number, backoff: { baseMs: number; maxMs: number }): number {
  return exponentialDelay(noJitterGenerator, attempt, backoff);
}

function exponentialDelay(
  generator: typeof fullJitterGenerator,
  attempt: number,
  backoff: { baseMs: number; maxMs: number },
): number {
  const options = { initialDelay: backoff.baseMs, maxDelay: backoff.maxMs, exponent: 2, generator };
  return generator(Math.max(0, attempt - 1), options)[0];
}

/**
 * Start-rate limiting with GCRA (the generic cell rate algorithm): `tat` is the theoretical arrival time
 * of the next start. At `ratePerSecond`, starts are spaced 1000/rate ms apart, with a burst of at most a
 * tenth of a second's worth (at least one). Answers how many of `wanted` starts are allowed now, the new
 * tat, and when the next start would be allowed.
 */
export function takeStarts(
  tat: number,
  now: number,
  ratePerSecond: number,
  wanted: number,
): { granted: number; tat: number; nextAt: number } {
  const interval = 1000 / ratePerSecond;
  const burst = Math.max(1, Math.ceil(ratePerSecond / 10));
  const tolerance = interval * (burst - 1);
  let next = Math.max(tat, now);
  let granted = 0;
  while (granted < wanted && next - now <= tolerance) {
    next += interval;
    granted++;
  }
  return { granted, tat: next, nextAt: Math.max(now, next - tolerance) };
}

/** The UTC day of a time, `YYYY-MM-DD`: the unit of tenants' daily job limits. */
export function utcDay(now: number): string {
  return new Date(now).toISOString().slice(0, 10);
}

/** Seconds until the next UTC midnight, when daily limits reset (Retry-After of a 429). */
export function secondsToNextUtcDay(now: number): number {
  const next = new Date(now);
  next.setUTCHours(24, 0, 0, 0);
  return Math.max(1, Math.ceil((next.getTime() - now) / 1000));
}

/** JSON with object keys sorted at every level, so equal payloads have equal text and hash. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function payloadHash(type: string, payload: unknown): string {
  return createHash('sha256').update(type).update('\n').update(canonicalJson(payload)).digest('hex');
}
