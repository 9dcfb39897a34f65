import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Kysely, Selectable } from 'kysely';
import type { Config } from '../config/config.ts';
import type { Dialect } from '../db/database.ts';
import type { Database, JobsTable } from '../db/tables.ts';
import type { JobState, Lane } from '../glossary.ts';
import { own } from '../own.ts';
import type { JobRegistry, RegisteredType } from './registry.ts';
import type { Executor } from './sql/executor.ts';
import { WAKE_CHANNEL } from './sql/notify.ts';
import { type JobStatements, statementsFor } from './sql/statements.ts';
import type { Job, JobError } from './types.ts';

/** The engine's limits and timings, read once from the config. */
export interface EngineSettings {
  laneConcurrency: Readonly<Record<string, number>>;
  laneTimeoutMs: Readonly<Record<string, number>>;
  /** Per lane, the percentage of its slots one tenant may hold while another waits (0: no share). */
  laneTenantSharePercent: ReadonlyMap<string, number>;
  typeConcurrency: Readonly<Record<string, number>>;
  typeRatePerSecond: Readonly<Record<string, number>>;
  tierConcurrency: Readonly<Record<string, number>>;
  tierDailyLimit: Readonly<Record<string, number>>;
  agingMs: number;
  maxAttempts: number;
  backoff: { baseMs: number; maxMs: number };
  leaseMs: number;
  breakerThreshold: number;
  breakerOpenMs: number;
  maxPayloadBytes: number;
  maxDelayMs: number;
  batchMax: number;
  claimBatch: number;
}

export function engineSettings(config: Config): EngineSettings {
  const seconds = (limits: Readonly<Record<string, number>>) =>
    Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, v * 1000]));
  return {
    laneConcurrency: config.jobLaneConcurrency,
    laneTimeoutMs: seconds(config.jobLaneTimeoutSeconds),
    laneTenantSharePercent: new Map(Object.entries(config.jobLaneTenantSharePercent)),
    typeConcurrency: config.jobTypeConcurrency,
    typeRatePerSecond: config.jobTypeRatePerSecond,
    tierConcurrency: config.jobTierConcurrency,
    tierDailyLimit: config.jobTierDailyLimit,
    agingMs: config.jobAgingSeconds * 1000,
    maxAttempts: config.jobMaxAttempts,
    backoff: { baseMs: config.jobRetryBaseMs, maxMs: config.jobRetryMaxMs },
    leaseMs: config.jobLeaseMs,
    breakerThreshold: config.jobBreakerThreshold,
    breakerOpenMs: config.jobBreakerOpenSeconds * 1000,
    maxPayloadBytes: config.jobMaxPayloadBytes,
    maxDelayMs: config.jobMaxDelaySeconds * 1000,
    batchMax: config.jobBatchMax,
    claimBatch: config.jobClaimBatch,
  };
}

/** A change to a job, for live progress streams and for waking workers. */
export interface JobEvent {
  kind: 'enqueued' | 'started' | 'progress' | 'succeeded' | 'failed' | 'dead' | 'cancelled' | 'released';
  job: Job;
}

/** What every part of the engine shares: the database, the registered types, settings and the event bus. */
export class EngineContext {
  readonly db: Kysely<Database>;
  /** The statements whose SQL differs by dialect, as this database runs them (src/jobs/sql/). */
  readonly statements: JobStatements;
  readonly registry: JobRegistry;
  readonly settings: EngineSettings;
  /** In-process events: `wake` (work may be due), `cancel` (job id), `job` (a JobEvent). */
  readonly events = new EventEmitter();
  readonly now: () => number;
  /** Names this engine in wake-up notifications. */
  readonly instanceId = randomUUID();

  constructor(options: {
    db: Kysely<Database>;
    dialect: Dialect;
    registry: JobRegistry;
    settings: EngineSettings;
    now?: () => number;
  }) {
    this.db = options.db;
    this.statements = statementsFor(options.dialect);
    this.registry = options.registry;
    this.settings = options.settings;
    this.now = options.now ?? Date.now;
    this.events.setMaxListeners(0);
  }

  /**
   * Runs `work` in a transaction that no other claim runs alongside. SQLite's BEGIN IMMEDIATE already
   * serialises writers; on PostgreSQL a transaction-scoped advisory lock does, because the limits are
   * counts (active jobs per lane, type and tenant) that two concurrent claims would both read as "room
   * for one more" under READ COMMITTED. Claims are short, so the lock costs throughput only past
   * thousands of claims per second; the jobs themselves are still taken with FOR UPDATE SKIP LOCKED,
   * so a claim never waits on a row another statement (cancel, replay) holds.
   *
   * On PostgreSQL the commit does not wait for its WAL flush (sql/exclusive.ts). What these transactions
   * record (a claim, a failed attempt, a breaker's count) is safe to lose in a crash: the job's lease
   * expires and it runs again, which at-least-once delivery allows. Enqueues, which answer 202 only once
   * durable, do not come through here. (Waiting for the flush costs 2-3 ms of the enqueue-to-start p99.)
   */
  exclusive<T>(work: (trx: Executor) => Promise<T>): Promise<T> {
    return this.statements.exclusive(this.db, work);
  }

  /**
   * Tells workers that work may be due once `executor`'s transaction commits, when that commit is not
   * ours to await (the caller's transaction). PostgreSQL: NOTIFY reaches every process, this one too, at
   * the commit. SQLite: this process's workers are woken now; their claim runs on the same connection,
   * so after the commit, and other processes poll.
   */
  async wake(executor: Executor): Promise<void> {
    const { notify } = this.statements;
    if (notify) await notify(executor, WAKE_CHANNEL, '');
    else this.wakeHere();
  }

  /**
   * Tells other processes' workers (PostgreSQL NOTIFY, at `executor`'s commit) that work may be due; the
   * notification names this engine, so that its own listener skips the echo. Call `wakeHere()` once the
   * commit is done: woken earlier, a worker could look before the rows are visible and go back to sleep.
   */
  async wakeOthers(executor: Executor): Promise<void> {
    await this.statements.notify?.(executor, WAKE_CHANNEL, this.instanceId);
  }

  /** Wakes this process's workers. */
  wakeHere(): void {
    this.events.emit('wake');
  }

  /** Whether a wake-up notification (its payload) came from this very engine. */
  isOwnWake(payload: string): boolean {
    return payload === this.instanceId;
  }

  emit(kind: JobEvent['kind'], job: Job): void {
    this.events.emit('job', { kind, job } satisfies JobEvent);
  }

  typeOf(type: string): RegisteredType | undefined {
    return this.registry.get(type);
  }

  maxAttemptsOf(type: string): number {
    return this.typeOf(type)?.maxAttempts ?? this.settings.maxAttempts;
  }

  /** The run-time limit of one attempt of `job` (ms; 0 = none). */
  timeoutOf(job: Pick<Job, 'type' | 'lane' | 'payload'>): number {
    const ofType = this.typeOf(job.type)?.timeoutMs;
    if (typeof ofType === 'function') return ofType(job.payload);
    return ofType ?? own(this.settings.laneTimeoutMs, job.lane) ?? 0;
  }
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function toJob(row: Selectable<JobsTable>): Job {
  const hasProgress =
    row.progress_percent !== null || row.progress_stage !== null || row.progress_message !== null;
  return {
    id: row.id,
    tenantId: row.tenant_id,
    type: row.type,
    lane: row.lane as Lane,
    state: row.state as JobState,
    payload: JSON.parse(row.payload),
    result: row.result === null ? null : JSON.parse(row.result),
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    runAt: iso(row.run_at)!,
    progress: hasProgress
      ? { percent: row.progress_percent, stage: row.progress_stage, message: row.progress_message }
      : null,
    errors: JSON.parse(row.errors) as JobError[],
    idempotencyKey: row.idempotency_key,
    parentId: row.parent_id,
    breakerKey: row.breaker_key,
    cost: row.cost,
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
  };
}
