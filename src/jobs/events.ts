import { randomUUID } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { Db } from '../db/database.ts';
import type { JobsTable } from '../db/tables.ts';
import type { JobState } from '../glossary.ts';
import { type EngineContext, type JobEvent, toJob } from './context.ts';
import { jobsById, jobsChangedSince } from './sql/events.ts';
import { JOB_EVENTS_CHANNEL } from './sql/notify.ts';
import type { JobStatements } from './sql/statements.ts';
import type { Job } from './types.ts';

/**
 * Live job events for API streams, from every process that changes jobs.
 *
 * - In this process, events come straight from the engine's bus (`context.events` 'job').
 * - PostgreSQL: every process publishes its own events with `pg_notify(JOB_EVENTS_CHANNEL, …)` (batched per
 *   event-loop turn, through the pool, never inside an engine transaction) and LISTENs; a notification
 *   names the job, and the receiver loads the row. Notifications from this very process are skipped:
 *   they were delivered in-process already.
 * - SQLite cannot notify another process (a `conveyor worker` on the same file), so while anyone is
 *   subscribed the hub polls the jobs of the subscribed tenants changed since the last poll.
 */
/**
 * How far back each SQLite poll looks again: `updated_at` is taken before its transaction commits, so a
 * row can become visible with an older time than one already seen. Rows delivered once are remembered
 * (by id and `updated_at`) and not delivered twice.
 */
const POLL_LOOKBACK_MS = 5_000;

/** What changed for a resuming stream (`changedSince`). */
export interface Changes {
  /** The tenant's jobs changed since the time asked for, as they are now, in order of change. */
  jobs: Job[];
  /** False when more changed than the limit allowed: `jobs` holds the oldest of them only. */
  complete: boolean;
  /** When this was read (engine clock): where a stream that gives up on the rest resumes from. */
  at: number;
}

export interface JobEventFilter {
  tenantId: string;
  /** Only this job's events. */
  jobId?: string;
}

export type JobEventListener = (event: JobEvent) => void;

interface Subscription {
  filter: JobEventFilter;
  listener: JobEventListener;
  /** When it subscribed (engine clock): polls, which look back a little, deliver nothing older. */
  since: number;
}

interface Log {
  warn(obj: object, msg: string): void;
}

/** What one process tells the others: enough to load the job and route it to subscribers. */
interface Notice {
  /** The publishing hub's instance. */
  i: string;
  k: JobEvent['kind'];
  j: string;
  t: string;
}

export class JobEventHub {
  readonly instanceId = randomUUID();
  readonly #ctx: EngineContext;
  readonly #db: Db;
  readonly #log: Log;
  readonly #pollMs: number;
  readonly #flushMs: number;
  /** Publishes notices to other processes; undefined without NOTIFY (SQLite), where subscribers poll. */
  readonly #notifyEach: JobStatements['notifyEach'];
  readonly #subscriptions = new Set<Subscription>();
  readonly #onJob = (event: JobEvent) => this.#local(event);
  /** Publisher: notices waiting for the next flush. */
  #outbox: Notice[] = [];
  #flushing: Promise<void> | undefined;
  #flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** Receiver (PostgreSQL): notices waiting to be loaded, one load at a time so order is kept. */
  #inbox: Notice[] = [];
  #loading: Promise<void> | undefined;
  #unlisten: Promise<(() => Promise<void>) | undefined> | undefined;
  /** Poller (SQLite). */
  #pollTimer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #cursor = 0;
  /** Job id -> the `updated_at` (ms) last delivered, so that polls do not repeat events. */
  readonly #seen = new Map<string, number>();
  #closed = false;

  constructor(options: {
    context: EngineContext;
    db: Db;
    /** Receive other processes' events (PostgreSQL LISTEN); a `conveyor worker` only publishes. */
    subscribeRemote?: boolean;
    pollMs: number;
    /** PostgreSQL: publish this process's events at most this often (0: every event-loop turn). */
    flushMs?: number;
    log: Log;
  }) {
    this.#ctx = options.context;
    this.#db = options.db;
    this.#log = options.log;
    this.#pollMs = options.pollMs;
    this.#flushMs = options.flushMs ?? 0;
    this.#notifyEach = this.#ctx.statements.notifyEach;
    this.#ctx.events.on('job', this.#onJob);
    if (this.#db.listen && options.subscribeRemote) {
      this.#unlisten = this.#db
        .listen(JOB_EVENTS_CHANNEL, (payload) => this.#remote(payload))
        .catch((error) => {
          this.#log.warn({ err: error }, 'job events: LISTEN failed; only in-process events are delivered');
          return undefined;
        });
    }
  }

  /** Resolves once this process receives other processes' events (PostgreSQL LISTEN is set up). */
  async ready(): Promise<void> {
    await this.#unlisten;
  }

  /**
   * The jobs of `tenantId` changed after `since` (engine ms), at most `limit` of them: what a stream that
   * resumes from `since` missed. Looks back as far as the polls do (a change is stamped before it commits,
   * so it can appear with an older time than one already seen), so a job may come twice; each comes as
   * its current row, so a client that applies them in order ends up where it would have been.
   */
  async changedSince(tenantId: string, since: number, limit: number): Promise<Changes> {
    const at = this.#ctx.now();
    const rows = await jobsChangedSince(this.#db.kysely, [tenantId], since - POLL_LOOKBACK_MS, limit + 1);
    return { jobs: rows.slice(0, limit).map(toJob), complete: rows.length <= limit, at };
  }

  /** Delivers matching events to `listener` until the answered function is called. */
  subscribe(filter: JobEventFilter, listener: JobEventListener): () => void {
    const subscription = { filter, listener, since: this.#ctx.now() };
    this.#subscriptions.add(subscription);
    if (!this.#notifyEach && !this.#pollTimer && !this.#closed) {
      this.#cursor = this.#ctx.now();
      this.#pollTimer = setInterval(() => {
        this.#polling ??= this.#poll()
          .catch((error) => this.#log.warn({ err: error }, 'job events: poll failed'))
          .finally(() => {
            this.#polling = undefined;
          });
      }, this.#pollMs);
      this.#pollTimer.unref();
    }
    return () => {
      this.#subscriptions.delete(subscription);
      if (this.#subscriptions.size === 0 && this.#pollTimer) {
        clearInterval(this.#pollTimer);
        this.#pollTimer = undefined;
        this.#seen.clear();
      }
    };
  }

  get subscriberCount(): number {
    return this.#subscriptions.size;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#ctx.events.off('job', this.#onJob);
    clearInterval(this.#pollTimer);
    this.#subscriptions.clear();
    await this.#flush();
    await this.#flushing;
    await this.#polling;
    await this.#loading;
    const unlisten = await this.#unlisten;
    await unlisten?.();
  }

  #deliver(event: JobEvent, polled = false): void {
    const updatedAt = Date.parse(event.job.updatedAt);
    if (this.#pollTimer) this.#seen.set(event.job.id, updatedAt);
    for (const { filter, listener, since } of this.#subscriptions) {
      if (filter.tenantId !== event.job.tenantId) continue;
      if (polled && updatedAt < since) continue;
      if (filter.jobId !== undefined && filter.jobId !== event.job.id) continue;
      try {
        listener(event);
      } catch (error) {
        this.#log.warn({ err: error }, 'job events: a subscriber failed');
      }
    }
  }

  #wants(tenantId: string): boolean {
    for (const { filter } of this.#subscriptions) if (filter.tenantId === tenantId) return true;
    return false;
  }

  /** An event of this process: delivered here, and published to the others on PostgreSQL. */
  #local(event: JobEvent): void {
    if (this.#wants(event.job.tenantId)) this.#deliver(event);
    if (!this.#notifyEach || this.#closed) return;
    this.#outbox.push({ i: this.instanceId, k: event.kind, j: event.job.id, t: event.job.tenantId });
    // One statement per flush interval, whatever the number of events in it; off the engine's path. At
    // hundreds of jobs a second, a NOTIFY per event-loop turn would be a good part of the database's work.
    if (this.#outbox.length === 1) {
      this.#flushTimer =
        this.#flushMs === 0
          ? setImmediate(() => void this.#flush())
          : setTimeout(() => void this.#flush(), this.#flushMs);
    }
  }

  async #flush(): Promise<void> {
    clearTimeout(this.#flushTimer as NodeJS.Timeout);
    clearImmediate(this.#flushTimer as NodeJS.Immediate);
    this.#flushTimer = undefined;
    await this.#flushing;
    if (this.#outbox.length === 0 || !this.#notifyEach) return;
    const notices = this.#outbox.map((n) => JSON.stringify(n));
    this.#outbox = [];
    this.#flushing = this.#notifyEach(this.#db.kysely, JOB_EVENTS_CHANNEL, notices).then(
      () => undefined,
      (error) => this.#log.warn({ err: error, lost: notices.length }, 'job events: NOTIFY failed'),
    );
    await this.#flushing;
  }

  /** A notification from any process (PostgreSQL). */
  #remote(payload: string): void {
    let notice: Notice;
    try {
      notice = JSON.parse(payload) as Notice;
    } catch {
      return;
    }
    if (notice.i === this.instanceId || this.#closed || !this.#wants(notice.t)) return;
    this.#inbox.push(notice);
    this.#loading ??= this.#load().finally(() => {
      this.#loading = undefined;
    });
  }

  /** Loads the jobs named by waiting notices, a batch per query, and delivers them in arrival order. */
  async #load(): Promise<void> {
    while (this.#inbox.length > 0 && !this.#closed) {
      const batch = this.#inbox;
      this.#inbox = [];
      try {
        const ids = [...new Set(batch.map((n) => n.j))];
        const rows = await jobsById(this.#db.kysely, ids);
        const byId = new Map(rows.map((row) => [row.id, row]));
        // One event per job and batch, the latest: each would carry the same (latest) row.
        const latest = new Map(batch.map((notice) => [notice.j, notice]));
        for (const notice of latest.values()) {
          const row = byId.get(notice.j);
          // Absent: another schema's job on the same database (channels are database-wide), or purged.
          if (row && row.tenant_id === notice.t) this.#deliver({ kind: notice.k, job: toJob(row) });
        }
      } catch (error) {
        this.#log.warn({ err: error }, 'job events: loading notified jobs failed');
      }
    }
  }

  /** SQLite: the subscribed tenants' jobs changed since the last poll, by any process. */
  async #poll(): Promise<void> {
    const tenants = [...new Set([...this.#subscriptions].map((s) => s.filter.tenantId))];
    if (tenants.length === 0) return;
    const since = this.#cursor - POLL_LOOKBACK_MS;
    const rows = await jobsChangedSince(this.#db.kysely, tenants, since);
    for (const row of rows) {
      this.#cursor = Math.max(this.#cursor, row.updated_at);
      const last = this.#seen.get(row.id);
      if (last !== undefined && last >= row.updated_at) continue;
      this.#deliver({ kind: kindOf(row, last !== undefined), job: toJob(row) }, true);
    }
    for (const [id, at] of this.#seen) if (at <= since) this.#seen.delete(id);
  }
}

/** The event a polled row most likely stands for (polls see states, not the transitions between them). */
function kindOf(row: Selectable<JobsTable>, known: boolean): JobEvent['kind'] {
  const state = row.state as JobState;
  switch (state) {
    case 'queued':
      return row.attempts > 0 ? 'released' : 'enqueued';
    case 'active':
      return known && row.started_at !== null && row.updated_at > row.started_at ? 'progress' : 'started';
    default:
      return state;
  }
}
