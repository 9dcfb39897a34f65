import { hostname } from 'node:os';
import { newId } from '../db/ids.ts';
import { catalog, type ErrorCode } from '../errors.ts';
import type { Lane } from '../glossary.ts';
import type { Claimer } from './claim.ts';
import { CompletionBatch } from './completions.ts';
import type { EngineContext } from './context.ts';
import type { Outcomes } from './outcome.ts';
import { ProgressWriter } from './progress.ts';
import { jobState } from './sql/job-reads.ts';
import { registerWorker, workerSeen, workerStopped } from './sql/workers.ts';
import { type AbortCause, type Job, JobAbort, JobDeferral, PermanentJobError } from './types.ts';

export interface WorkerOptions {
  concurrency: number;
  /** Lanes to claim from; null for all. */
  lanes: readonly Lane[] | null;
  /** Types to claim; null for every registered type. */
  types: readonly string[] | null;
  pollMs: number;
  heartbeatMs: number;
  progressIntervalMs: number;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
  /** Fires due recurring jobs every `scheduleIntervalMs` (every worker does; each tick fires once). */
  schedules?: { fire(): Promise<number> };
  scheduleIntervalMs?: number;
  /** Deletes jobs past their retention every `retentionIntervalMs` (every worker does; any number may). */
  retention?: { sweep(): Promise<{ finished: number; dead: number; workers: number }> };
  retentionIntervalMs?: number;
  /** Subscribes to cross-process wake-ups (PostgreSQL LISTEN); answers an unsubscribe. */
  listen?: (onWake: () => void) => Promise<() => Promise<void>>;
}

interface Running {
  job: Job;
  controller: AbortController;
  /** Settles when the attempt's outcome is recorded (or dropped). */
  done: Promise<void>;
  progress: ProgressWriter;
}

/**
 * One worker process's runtime: claims up to `concurrency` jobs, runs their handlers, heartbeats their
 * leases, rescues other workers' expired ones, and shuts down gracefully (stop claiming, let running jobs
 * finish within a grace period, release the rest).
 */
export class Worker {
  readonly id = newId('wkr');
  readonly #ctx: EngineContext;
  readonly #claimer: Claimer;
  readonly #outcomes: Outcomes;
  readonly #options: WorkerOptions;
  readonly #running = new Map<string, Running>();
  #stopping = false;
  /** Set by endGrace(): a stop in progress (or to come) waits no longer for running jobs. */
  #graceEnded = false;
  #endGrace: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #woken = false;
  /** The last claim left due jobs behind (no free slot, or a limit held them back). */
  #more = false;
  #heartbeat: NodeJS.Timeout | undefined;
  #scheduler: NodeJS.Timeout | undefined;
  #cleanup: NodeJS.Timeout | undefined;
  #sweeping = false;
  #unlisten: (() => Promise<void>) | undefined;
  #beats = 0;
  readonly #completions: CompletionBatch;
  readonly #onWake = () => this.#signal();
  readonly #onCancel = (id: string) => this.#running.get(id)?.controller.abort(new JobAbort('cancelled'));

  constructor(ctx: EngineContext, claimer: Claimer, outcomes: Outcomes, options: WorkerOptions) {
    this.#ctx = ctx;
    this.#claimer = claimer;
    this.#outcomes = outcomes;
    this.#options = options;
    this.#completions = new CompletionBatch((items) => outcomes.succeedMany(this.id, items));
  }

  get running(): number {
    return this.#running.size;
  }

  async start(): Promise<void> {
    const now = this.#ctx.now();
    await registerWorker(this.#ctx.db, {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      lanes: JSON.stringify(this.#options.lanes ?? []),
      types: JSON.stringify(this.#options.types ?? []),
      concurrency: this.#options.concurrency,
      running: 0,
      started_at: now,
      seen_at: now,
    });
    this.#ctx.events.on('wake', this.#onWake);
    this.#ctx.events.on('cancel', this.#onCancel);
    if (this.#options.listen) this.#unlisten = await this.#options.listen(this.#onWake);
    this.#heartbeat = setInterval(() => void this.#beat(), this.#options.heartbeatMs);
    this.#heartbeat.unref();
    const { schedules, scheduleIntervalMs } = this.#options;
    if (schedules && scheduleIntervalMs) {
      this.#scheduler = setInterval(() => {
        schedules.fire().catch((error) => this.#options.log.warn({ err: error }, 'firing schedules failed'));
      }, scheduleIntervalMs);
      this.#scheduler.unref();
    }
    const { retention, retentionIntervalMs } = this.#options;
    if (retention && retentionIntervalMs) {
      this.#cleanup = setInterval(() => void this.#sweep(retention), retentionIntervalMs);
      this.#cleanup.unref();
    }
    this.#loop = this.#claimLoop();
  }

  /** One retention sweep at a time: a sweep through a large backlog may outlast the interval. */
  async #sweep(retention: NonNullable<WorkerOptions['retention']>): Promise<void> {
    if (this.#sweeping) return;
    this.#sweeping = true;
    try {
      const deleted = await retention.sweep();
      if (deleted.finished + deleted.dead > 0)
        this.#options.log.info(deleted, 'deleted jobs past their retention');
    } catch (error) {
      this.#options.log.warn({ err: error }, 'deleting jobs past their retention failed');
    } finally {
      this.#sweeping = false;
    }
  }

  /**
   * Stops claiming, waits up to `graceMs` for running jobs, then aborts the rest and hands them back to
   * the queue (their attempt not counted).
   */
  async stop(graceMs: number): Promise<{ finished: number; released: number }> {
    if (this.#stopping) return { finished: 0, released: 0 };
    this.#stopping = true;
    clearInterval(this.#scheduler);
    clearInterval(this.#cleanup);
    this.#signal();
    await this.#loop;
    const before = this.#running.size;
    const all = Promise.all([...this.#running.values()].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    if (!this.#graceEnded) {
      await Promise.race([
        all,
        new Promise<void>((resolve) => {
          this.#endGrace = resolve;
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
    }
    clearTimeout(timer);
    const left = [...this.#running.values()];
    for (const r of left) r.controller.abort(new JobAbort('shutdown'));
    const released = await this.#outcomes.release(
      this.id,
      left.map((r) => r.job.id),
    );
    clearInterval(this.#heartbeat);
    this.#ctx.events.off('wake', this.#onWake);
    this.#ctx.events.off('cancel', this.#onCancel);
    await this.#unlisten?.();
    await workerStopped(this.#ctx.db, this.id, this.#ctx.now());
    return { finished: before - left.length, released };
  }

  /**
   * Ends the grace period of a stop in progress at once (a second SIGTERM): the running jobs are aborted
   * and handed back to the queue, as when the grace period runs out.
   */
  endGrace(): void {
    this.#graceEnded = true;
    this.#endGrace?.();
  }

  #signal(): void {
    this.#woken = true;
    this.#wake?.();
  }

  async #claimLoop(): Promise<void> {
    const types = this.#options.types ?? this.#ctx.registry.types();
    while (!this.#stopping) {
      const slots = this.#options.concurrency - this.#running.size;
      let nextWakeAt: number | null = null;
      // Cleared before looking, so a wake-up that arrives during the claim is not lost. With no free slot
      // the loop sleeps until a job ends (which wakes it) or the poll interval passes.
      this.#woken = false;
      if (slots > 0) {
        try {
          const claimed = await this.#claimer.claim({
            workerId: this.id,
            slots,
            lanes: this.#options.lanes,
            types,
          });
          nextWakeAt = claimed.nextWakeAt;
          this.#more = claimed.more;
          for (const job of claimed.jobs) this.#start(job);
          // A full claim may have left more behind: go again at once while there is room.
          if (claimed.jobs.length > 0 && claimed.jobs.length === slots) continue;
        } catch (error) {
          this.#options.log.error({ err: error }, 'claim failed; retrying after the poll interval');
        }
      } else {
        // Woken (or polled) while full: work may be waiting, so the first job to end claims again.
        this.#more = true;
      }
      if (this.#stopping || this.#woken) continue;
      const wait =
        nextWakeAt === null
          ? this.#options.pollMs
          : Math.max(0, Math.min(this.#options.pollMs, nextWakeAt - this.#ctx.now()));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  #start(job: Job): void {
    const controller = new AbortController();
    const progress = new ProgressWriter(this.#options.progressIntervalMs, (p) =>
      this.#outcomes.progress(job, this.id, p).then((mine) => {
        if (!mine) controller.abort(new JobAbort('lease_lost'));
      }),
    );
    const running: Running = { job, controller, progress, done: Promise.resolve() };
    this.#running.set(job.id, running);
    running.done = this.#attempt(running).finally(() => {
      this.#running.delete(job.id);
      // A free slot matters only if the last claim left due work behind; otherwise the next enqueue's
      // wake-up (or the poll) brings the worker back, and a claim now would find nothing.
      if (this.#more) this.#signal();
    });
    this.#ctx.emit('started', job);
  }

  async #attempt({ job, controller, progress }: Running): Promise<void> {
    const definition = this.#ctx.typeOf(job.type);
    const timeoutMs = this.#ctx.timeoutOf(job);
    const timer =
      timeoutMs > 0 ? setTimeout(() => controller.abort(new JobAbort('timeout')), timeoutMs) : undefined;
    // The handler is raced against its abort signal: a handler that ignores the signal must not hold the
    // slot (or the outcome) hostage.
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    aborted.catch(() => {});
    let result: unknown;
    try {
      if (!definition)
        throw new PermanentJobError(`No handler for job type ${job.type} in this worker`, 'unknown_type');
      const context = {
        job: {
          id: job.id,
          tenantId: job.tenantId,
          type: job.type,
          lane: job.lane,
          attempts: job.attempts,
          maxAttempts: job.maxAttempts,
          parentId: job.parentId,
        },
        signal: controller.signal,
        progress: (update: { percent?: number; stage?: string; message?: string }) => progress.update(update),
      };
      result = await Promise.race([definition.handler(job.payload, context), aborted]);
      await progress.flush();
    } catch (error) {
      clearTimeout(timer);
      await progress.flush().catch(() => {});
      const cause: AbortCause | undefined = error instanceof JobAbort ? error.reason : undefined;
      // Cancelled, lost or released jobs are no longer ours to record anything about.
      if (cause === 'cancelled' || cause === 'lease_lost' || cause === 'shutdown') return;
      if (error instanceof JobDeferral) {
        await this.#record(job, () => this.#outcomes.defer(job, this.id, error.delayMs));
        return;
      }
      const permanent = error instanceof PermanentJobError;
      await this.#record(job, () =>
        this.#outcomes.fail(job, this.id, {
          message: cause === 'timeout' ? `The attempt ran longer than ${timeoutMs} ms` : errorMessage(error),
          ...(cause === 'timeout' ? { code: 'timeout' } : codeOf(error)),
          permanent,
        }),
      );
      return;
    }
    clearTimeout(timer);
    await this.#record(job, () => this.#completions.add(job, result));
  }

  /**
   * Records an outcome. When the database refuses (it is down, say), the job is left to its lease: the
   * rescuer returns it once the lease expires and it runs again, which at-least-once delivery allows.
   */
  async #record(job: Job, write: () => Promise<unknown>): Promise<void> {
    try {
      await write();
    } catch (error) {
      this.#options.log.error(
        { err: error, job: job.id },
        'could not record the outcome; the job runs again after its lease',
      );
    }
  }

  /** Extends leases (aborting jobs that are no longer ours), records liveness, and rescues now and then. */
  async #beat(): Promise<void> {
    try {
      const ids = [...this.#running.keys()];
      const mine = await this.#outcomes.heartbeat(this.id, ids);
      for (const id of ids) {
        const running = this.#running.get(id);
        if (!running || mine.has(id) || running.controller.signal.aborted) continue;
        const state = await jobState(this.#ctx.db, id);
        running.controller.abort(new JobAbort(state === 'cancelled' ? 'cancelled' : 'lease_lost'));
      }
      await workerSeen(this.#ctx.db, this.id, this.#running.size, this.#ctx.now());
      // Rescue about twice per lease period: often enough that a dead worker's jobs come back soon after
      // their lease ends, rarely enough to cost nothing.
      const every = Math.max(1, Math.floor(this.#ctx.settings.leaseMs / 2 / this.#options.heartbeatMs));
      if (++this.#beats % every === 0) {
        const rescued = await this.#outcomes.rescue();
        if (rescued > 0) {
          this.#options.log.warn({ rescued }, 'returned jobs with expired leases to the queue');
          this.#signal();
        }
      }
    } catch (error) {
      this.#options.log.warn({ err: error }, 'heartbeat failed; leases are retried at the next beat');
    }
  }
}

/**
 * The catalog code an error names: a PermanentJobError's, or the `code` of any error that carries one from
 * the catalog (a retryable download or video failure), so that a retried attempt's record says what went
 * wrong as well as a final one's. Codes of other kinds (ECONNRESET) are left to the message.
 */
function codeOf(error: unknown): { code?: ErrorCode } {
  if (error instanceof PermanentJobError) return { code: error.code };
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && Object.hasOwn(catalog, code) ? { code: code as ErrorCode } : {};
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
