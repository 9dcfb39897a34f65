import type { Config } from '../config/config.ts';
import type { Db } from '../db/database.ts';
import { JobAdmin } from './admin.ts';
import { Breakers } from './breakers.ts';
import { Claimer } from './claim.ts';
import { EngineContext, engineSettings } from './context.ts';
import { Enqueuer } from './enqueue.ts';
import { Outcomes } from './outcome.ts';
import type { JobRegistry } from './registry.ts';
import { Retention } from './retention.ts';
import { Schedules } from './schedules.ts';
import { WAKE_CHANNEL } from './sql/notify.ts';
import { Worker, type WorkerOptions } from './worker.ts';

/** The job engine of one process: enqueue, read and manage jobs, and run workers. */
export class JobEngine {
  readonly context: EngineContext;
  readonly enqueuer: Enqueuer;
  readonly admin: JobAdmin;
  readonly breakers: Breakers;
  readonly claimer: Claimer;
  readonly outcomes: Outcomes;
  readonly schedules: Schedules;
  readonly retention: Retention;
  readonly #db: Db;
  readonly #config: Config;

  constructor(db: Db, registry: JobRegistry, config: Config, options: { now?: () => number } = {}) {
    this.#db = db;
    this.#config = config;
    this.context = new EngineContext({
      db: db.kysely,
      dialect: db.dialect,
      registry,
      settings: engineSettings(config),
      ...(options.now ? { now: options.now } : {}),
    });
    this.enqueuer = new Enqueuer(this.context);
    this.admin = new JobAdmin(this.context);
    this.breakers = new Breakers(this.context);
    this.claimer = new Claimer(this.context, this.breakers);
    this.outcomes = new Outcomes(this.context, this.breakers);
    this.schedules = new Schedules(this.context, this.enqueuer);
    const hours = (h: number) => h * 3_600_000;
    this.retention = new Retention(this.context, {
      finishedMs: hours(config.jobRetentionHours),
      deadMs: hours(config.jobDeadRetentionHours),
      batch: config.jobCleanupBatch,
    });
  }

  /** Makes a job that deferred itself (JobDeferral) due now: what ends its wait. */
  wake(id: string): Promise<boolean> {
    return this.outcomes.wake(id);
  }

  get registry(): JobRegistry {
    return this.context.registry;
  }

  /** A worker with the config's settings; `overrides` for the CLI's flags and tests. */
  createWorker(log: WorkerOptions['log'], overrides: Partial<WorkerOptions> = {}): Worker {
    const config = this.#config;
    const listen = this.#db.listen;
    return new Worker(this.context, this.claimer, this.outcomes, {
      concurrency: config.workerConcurrency,
      lanes: config.workerLanes ?? null,
      types: config.workerTypes ?? null,
      pollMs: config.jobPollMs,
      heartbeatMs: config.jobHeartbeatMs,
      progressIntervalMs: config.jobProgressIntervalMs,
      schedules: this.schedules,
      scheduleIntervalMs: config.jobScheduleIntervalMs,
      ...(this.retention.enabled
        ? { retention: this.retention, retentionIntervalMs: config.jobCleanupIntervalMs }
        : {}),
      log,
      ...(listen
        ? {
            listen: (onWake: () => void) =>
              listen(WAKE_CHANNEL, (payload) => {
                if (!this.context.isOwnWake(payload)) onWake();
              }),
          }
        : {}),
      ...overrides,
    });
  }
}
