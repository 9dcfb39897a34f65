import { LANES, type Lane, READY_STATES } from '../glossary.ts';
import { own } from '../own.ts';
import { cancelJobs } from './admin.ts';
import type { Breakers, BreakerView } from './breakers.ts';
import { type EngineContext, toJob } from './context.ts';
import { rateScopes } from './policy.ts';
import { longestActive } from './sql/active-jobs.ts';
import { jobIdsIn } from './sql/cancel.ts';
import { openJobCounts, openJobCountsByLane } from './sql/depth.ts';
import { openBreakerKeys, openTypesAndKeys } from './sql/open-keys.ts';
import { listRates } from './sql/rates.ts';
import { statsRows } from './sql/stats-rows.ts';
import { liveWorkers } from './sql/workers.ts';
import { failuresSince, type StatsRow, summarise, type WindowStats, windowOf } from './statistics.ts';

/** Whose jobs a view covers: one tenant's (tenant keys), or everyone's (operator keys, the alerter, metrics). */
export type Scope = { tenantId: string } | 'all';

export interface MonitorSettings {
  /** Workers heartbeat this often; one unseen for 3 heartbeats is not live. */
  heartbeatMs: number;
  /** Most finished jobs one statistics or health read takes (the newest). */
  statsMaxRows: number;
}

/** Jobs still to finish, by one (lane, type, state). */
export interface DepthRow {
  lane: Lane;
  type: string;
  state: 'queued' | 'failed' | 'active';
  count: number;
  /** Epoch ms of the oldest due (`run_at` passed) job in this group; null if none is due. */
  oldestDueAt: number | null;
}

export interface Counts {
  queued: number;
  failed: number;
  active: number;
}

export interface LaneStatus extends Counts {
  lane: Lane;
  /** Seconds the longest-waiting due job of the lane has been due (queued or retrying); null if none. */
  oldestDueAgeSeconds: number | null;
}

export interface WorkerView {
  id: string;
  host: string;
  pid: number;
  lanes: string[];
  types: string[];
  concurrency: number;
  running: number;
  startedAt: string;
  seenAt: string;
}

export interface ActiveJobView {
  id: string;
  tenantId: string;
  type: string;
  lane: Lane;
  attempts: number;
  maxAttempts: number;
  startedAt: string | null;
  leaseOwner: string | null;
  leaseExpiresAt: string | null;
}

export interface QueueStatus {
  scope: 'tenant' | 'all';
  generatedAt: string;
  totals: Counts;
  lanes: LaneStatus[];
  types: (Counts & { type: string })[];
  depth: { lane: Lane; type: string; state: DepthRow['state']; count: number }[];
  /** The longest-running active jobs, at most ACTIVE_LIMIT; `activeTotal` counts them all. */
  active: ActiveJobView[];
  activeTotal: number;
  liveWorkers: number;
  /** Live workers (operator scope only: hosts and pids are the platform's, not a tenant's). */
  workers: WorkerView[];
  breakers: BreakerView[];
  /** Start-rate scopes with their rate and when the next start is allowed (policy.ts `rateScopes`). */
  rateLimits: RateLimitView[];
}

export interface RateLimitView {
  /** `type:<job type>` or `key:<breaker key>` (e.g. `key:host:cdn.example.com`). */
  scope: string;
  ratePerSecond: number | null;
  /** The GCRA's theoretical arrival time: starts are spaced from here on. */
  nextStartAt: string;
}

export interface Statistics {
  scope: 'tenant' | 'all';
  generatedAt: string;
  /** Most job rows read (monitorStatsMaxRows); `truncated` when the window held more. */
  maxRows: number;
  rowsRead: number;
  truncated: boolean;
  hour: WindowStats;
  day: WindowStats;
}

export interface AttemptCounts {
  succeeded: number;
  failed: number;
  /** succeeded / (succeeded + failed); null when no attempt finished in the window. */
  successRate: number | null;
}

const ACTIVE_LIMIT = 100;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const CLEAR_BATCH = 500;

/**
 * Read-only views of the queue for the monitoring API, the health check, the alerter and /metrics, and
 * the one bulk action they need (clear). Everything is read from the database, so it covers every
 * worker process; the counts are GROUP BYs over unfinished jobs, which the partial indexes keep small.
 */
export class JobMonitor {
  readonly #ctx: EngineContext;
  readonly #breakers: Breakers;
  readonly #settings: MonitorSettings;

  constructor(ctx: EngineContext, breakers: Breakers, settings: MonitorSettings) {
    this.#ctx = ctx;
    this.#breakers = breakers;
    this.#settings = settings;
  }

  /** Unfinished jobs by (lane, type, state), with each group's oldest due time: one GROUP BY. */
  async depth(scope: Scope): Promise<DepthRow[]> {
    const rows = await openJobCounts(this.#ctx.db, tenantOf(scope), this.#ctx.now());
    return rows.map((r) => ({
      lane: r.lane as Lane,
      type: r.type,
      state: r.state as DepthRow['state'],
      count: r.n,
      // Only waiting jobs are "due"; an active job's run_at is in the past by definition.
      oldestDueAt: r.state === 'active' ? null : r.oldestDue,
    }));
  }

  /** Unfinished jobs by lane and state only: what /metrics exposes on every scrape. */
  async depthByLane(): Promise<{ lane: string; state: string; count: number }[]> {
    return openJobCountsByLane(this.#ctx.db);
  }

  async status(scope: Scope): Promise<QueueStatus> {
    const now = this.#ctx.now();
    const depth = await this.depth(scope);
    const zero = (): Counts => ({ queued: 0, failed: 0, active: 0 });
    const totals = zero();
    const lanes = new Map<Lane, LaneStatus>(
      LANES.map((lane) => [lane, { lane, ...zero(), oldestDueAgeSeconds: null }]),
    );
    const types = new Map<string, Counts & { type: string }>();
    const oldest = new Map<Lane, number>();
    for (const row of depth) {
      totals[row.state] += row.count;
      const lane = lanes.get(row.lane) ?? { lane: row.lane, ...zero(), oldestDueAgeSeconds: null };
      lanes.set(row.lane, lane);
      lane[row.state] += row.count;
      let type = types.get(row.type);
      if (!type) {
        type = { type: row.type, ...zero() };
        types.set(row.type, type);
      }
      type[row.state] += row.count;
      if (row.oldestDueAt !== null)
        oldest.set(row.lane, Math.min(oldest.get(row.lane) ?? Infinity, row.oldestDueAt));
    }
    for (const [lane, at] of oldest) lanes.get(lane)!.oldestDueAgeSeconds = Math.max(0, (now - at) / 1000);

    const active = await longestActive(this.#ctx.db, tenantOf(scope), ACTIVE_LIMIT);

    const workers = await this.liveWorkers();
    const breakers = await this.breakers(scope);
    const rateLimits = await this.rateLimits(scope);
    const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());
    return {
      scope: scope === 'all' ? 'all' : 'tenant',
      generatedAt: new Date(now).toISOString(),
      totals,
      lanes: [...lanes.values()],
      types: [...types.values()].sort((a, b) => a.type.localeCompare(b.type)),
      depth: depth
        .map(({ lane, type, state, count }) => ({ lane, type, state, count }))
        .sort((a, b) => `${a.lane}/${a.type}/${a.state}`.localeCompare(`${b.lane}/${b.type}/${b.state}`)),
      active: active.map((r) => ({
        id: r.id,
        tenantId: r.tenant_id,
        type: r.type,
        lane: r.lane as Lane,
        attempts: r.attempts,
        maxAttempts: r.max_attempts,
        startedAt: iso(r.started_at),
        leaseOwner: r.lease_owner,
        leaseExpiresAt: iso(r.lease_expires_at),
      })),
      activeTotal: totals.active,
      liveWorkers: workers.length,
      workers: scope === 'all' ? workers : [],
      breakers,
      rateLimits,
    };
  }

  /**
   * Start-rate scopes: all for the operator; for a tenant, those of the types and breaker keys its
   * waiting or running jobs name (as for breakers, another tenant's origin hosts stay hidden).
   */
  async rateLimits(scope: Scope): Promise<RateLimitView[]> {
    let scopes: string[] | undefined;
    if (scope !== 'all') {
      const rows = await openTypesAndKeys(this.#ctx.db, scope.tenantId);
      const keys = rows.flatMap((r) => rateScopes({ type: r.type, breakerKey: r.breaker_key }));
      if (keys.length === 0) return [];
      scopes = [...new Set(keys)];
    }
    const rows = await listRates(this.#ctx.db, scopes);
    return rows.map((r) => ({
      scope: r.key,
      ratePerSecond: this.#rateOf(r.key),
      nextStartAt: new Date(Number(r.tat)).toISOString(),
    }));
  }

  #rateOf(scope: string): number | null {
    const { registry, settings } = this.#ctx;
    if (scope.startsWith('type:')) {
      const type = scope.slice('type:'.length);
      return own(settings.typeRatePerSecond, type) ?? registry.get(type)?.ratePerSecond ?? null;
    }
    // A key's rate is set by the types that name keys; the strictest applies (claim-rates.ts).
    const rates = registry
      .types()
      .map((t) => registry.get(t)?.keyRatePerSecond)
      .filter((r): r is number => r !== undefined);
    return rates.length > 0 ? Math.min(...rates) : null;
  }

  /** Workers seen within 3 heartbeats that have not stopped. */
  async liveWorkers(): Promise<WorkerView[]> {
    const since = this.#ctx.now() - 3 * this.#settings.heartbeatMs;
    const rows = await liveWorkers(this.#ctx.db, since);
    return rows.map((r) => ({
      id: r.id,
      host: r.host,
      pid: r.pid,
      lanes: JSON.parse(r.lanes) as string[],
      types: JSON.parse(r.types) as string[],
      concurrency: r.concurrency,
      running: r.running,
      startedAt: new Date(Number(r.started_at)).toISOString(),
      seenAt: new Date(Number(r.seen_at)).toISOString(),
    }));
  }

  /**
   * Breakers: all of them for the operator; for a tenant, those its waiting or running jobs name (a
   * breaker key is an origin host, which another tenant's jobs should not reveal).
   */
  async breakers(scope: Scope): Promise<BreakerView[]> {
    if (scope === 'all') return this.#breakers.list();
    return this.#breakers.list(await openBreakerKeys(this.#ctx.db, scope.tenantId));
  }

  /**
   * Throughput and latency over the last hour (1-minute buckets) and day (1-hour buckets). Reads the
   * newest `statsMaxRows` jobs touched in the last day (succeeded, failed, dead or active) and computes
   * the buckets and percentiles from them; started counts the last attempt of each job only.
   */
  async statistics(scope: Scope): Promise<Statistics> {
    const now = this.#ctx.now();
    const hour = windowOf(now, MINUTE, 60);
    const day = windowOf(now, HOUR, 24);
    const rows = await this.#rows(scope, day.from);
    const max = this.#settings.statsMaxRows;
    return {
      scope: scope === 'all' ? 'all' : 'tenant',
      generatedAt: new Date(now).toISOString(),
      maxRows: max,
      rowsRead: rows.length,
      truncated: rows.length >= max,
      hour: summarise(rows, hour, now),
      day: summarise(rows, day, now),
    };
  }

  /** Attempts that ended since `since`: succeeded jobs and failed attempts (each recorded error). */
  async attempts(since: number, scope: Scope = 'all'): Promise<AttemptCounts> {
    const rows = await this.#rows(scope, since);
    let succeeded = 0;
    let failed = 0;
    for (const row of rows) {
      if (row.state === 'succeeded' && row.finished_at !== null && Number(row.finished_at) >= since)
        succeeded++;
      failed += failuresSince(row, since).length;
    }
    const total = succeeded + failed;
    return { succeeded, failed, successRate: total === 0 ? null : succeeded / total };
  }

  /**
   * Cancels the tenant's waiting (queued, or failed awaiting a retry) jobs matching the filter, with the
   * same refund a cancel gives, in batches; answers how many. Cancelling rather than deleting keeps the
   * rows the credit ledger, idempotency keys and child jobs refer to, and costs the claim nothing: the
   * partial indexes hold unfinished jobs only.
   */
  async clear(
    tenantId: string,
    filter: { type?: string | undefined; lane?: Lane | undefined },
  ): Promise<number> {
    let cleared = 0;
    for (;;) {
      const now = this.#ctx.now();
      const rows = await this.#ctx.db.transaction().execute(async (trx) => {
        const ids = await jobIdsIn(trx, tenantId, READY_STATES, filter, CLEAR_BATCH);
        return cancelJobs(trx, tenantId, ids, READY_STATES, now);
      });
      if (rows.length === 0) return cleared;
      cleared += rows.length;
      for (const row of rows) this.#ctx.emit('cancelled', toJob(row));
    }
  }

  #rows(scope: Scope, since: number): Promise<StatsRow[]> {
    return statsRows(this.#ctx.db, tenantOf(scope), since, this.#settings.statsMaxRows);
  }
}

function tenantOf(scope: Scope): string | undefined {
  return scope === 'all' ? undefined : scope.tenantId;
}
