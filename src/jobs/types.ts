/**
 * The job engine's vocabulary. Every other file in src/jobs uses these words in exactly these senses.
 *
 * - **job**: one unit of background work: a `type` (which handler runs it), a tenant, a JSON payload.
 * - **lane**: a job's priority class, `critical` > `high` > `normal` > `low`. Claims serve lanes strictly
 *   in that order, except for **aging**: a job that has been due for a while moves up one lane per
 *   `jobAgingSeconds`, so a `low` job is never starved. Each lane also has its own concurrency limit, and
 *   a **fair share**: the part of that limit one tenant may hold while another tenant waits in the lane.
 * - **group**: the jobs of one (lane, type, tenant). The claim walks groups, not jobs, so that one
 *   tenant's 10,000 queued jobs cost it one step, and so that every tenant's first job is seen in every claim.
 * - **due**: `run_at` has passed. A job is not due while it waits for a requested delay, a retry backoff
 *   or an open breaker.
 * - **claim**: a worker atomically takes due jobs, making them `active` under a lease. All policy
 *   (lanes, aging, fairness, concurrency limits, start rates, breakers) is enforced inside the claim,
 *   with counts read from the database, so it holds across any number of worker processes.
 * - **lease**: a claimed job's ownership: the worker's id and an expiry the worker keeps pushing forward
 *   (the **heartbeat**). A worker that finds a lease gone (rescued, cancelled) aborts the handler.
 * - **attempt**: one run of a job, counted when it is claimed. `maxAttempts` bounds them.
 * - **retry**: after a failed attempt the job waits in state `failed` for an exponential backoff with full
 *   jitter, then is due again.
 * - **dead**: out of attempts, or failed with a permanent error. A dead job keeps every attempt's error
 *   (the dead-letter list) and can be replayed.
 * - **rescue**: returning an `active` job whose lease expired (its worker died) to the queue. The attempt
 *   counts, so a job that kills its worker every time ends `dead` rather than looping.
 * - **timeout**: the longest an attempt may run; then its handler is aborted and the attempt fails.
 * - **breaker**: a circuit breaker per dependency key (an origin host, a storage region, a CDN provider)
 *   shared by every job naming that key. After N consecutive failures it **opens** for T seconds: the jobs
 *   that need it are **deferred** (their `run_at` moved past the opening) without consuming an attempt.
 *   Then it is **half-open**: one job (the **probe**) runs; its success closes the breaker, its failure
 *   opens it again.
 * - **freshness**: a job type may reuse a succeeded job's result for an identical request (same tenant,
 *   type and canonical payload) for a while instead of running again.
 * - **credits**: a tenant's balance for billable job types; the cost is reserved at enqueue and refunded
 *   when the job ends `dead` or is cancelled before it succeeds.
 * - **idempotency key**: a client's name for one intended job; enqueueing it again returns the same job.
 * - **deferral**: a handler that must wait for other jobs (a video's chunks) hands its job back to the
 *   queue (JobDeferral) without consuming the attempt or holding a slot; a **wake** (`JobEngine.wake`,
 *   from the job it waits for) makes it due again, and its delay bounds the wait if no wake comes.
 * - **children**: jobs enqueued with a `parentId`; cancelling the parent cancels its unfinished children.
 */

import type { ErrorCode } from '../errors.ts';
import type { JobState, Lane } from '../glossary.ts';

export interface JobError {
  attempt: number;
  at: string;
  message: string;
  /**
   * The catalog code (src/errors.ts) of the failure, when it named one: a failure that ends the job, the
   * engine's own (`timeout`, `lease_expired`), or a retried one whose error carries a catalog `code` (a
   * download timeout, say); other failures keep only their message.
   */
  code?: ErrorCode;
}

export interface JobProgress {
  percent: number | null;
  stage: string | null;
  message: string | null;
}

/** A job as services and the API see it. Times are ISO 8601. */
export interface Job {
  id: string;
  tenantId: string;
  type: string;
  lane: Lane;
  state: JobState;
  payload: unknown;
  result: unknown;
  attempts: number;
  maxAttempts: number;
  runAt: string;
  progress: JobProgress | null;
  errors: JobError[];
  idempotencyKey: string | null;
  parentId: string | null;
  breakerKey: string | null;
  cost: number;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface EnqueueInput {
  type: string;
  payload?: unknown;
  /** Default: the job type's lane, else `normal`. */
  lane?: Lane;
  idempotencyKey?: string;
  /** Epoch milliseconds; default now. */
  runAt?: number;
  parentId?: string;
  /** Overrides the dependency key the job type derives from the payload. */
  breakerKey?: string;
}

/** What enqueue did: `created` (201), or returned an existing job (200) by idempotency key or freshness. */
export interface EnqueueResult {
  job: Job;
  outcome: 'created' | 'existing' | 'fresh';
}

/** What a handler gets besides its payload. */
export interface JobContext {
  readonly job: Readonly<
    Pick<Job, 'id' | 'tenantId' | 'type' | 'lane' | 'attempts' | 'maxAttempts' | 'parentId'>
  >;
  /**
   * Aborted when the attempt must stop: timeout, cancellation, a lost lease, or shutdown past its grace.
   * `signal.reason` says which (a JobAbort).
   */
  readonly signal: AbortSignal;
  /** Reports progress; writes are throttled to `jobProgressIntervalMs`, the last one always lands. */
  progress(update: { percent?: number; stage?: string; message?: string }): void;
}

export type AbortCause = 'timeout' | 'cancelled' | 'lease_lost' | 'shutdown';

/** The reason on an aborted JobContext signal. */
export class JobAbort extends Error {
  readonly reason: AbortCause;
  constructor(reason: AbortCause) {
    super(`job aborted: ${reason}`);
    this.name = 'JobAbort';
    this.reason = reason;
  }
}

/**
 * Thrown by a handler whose job must wait for other jobs (a video's chunks): the job goes back to the
 * queue, due again after `delayMs` or as soon as something wakes it (`JobEngine.wake`), without counting
 * the attempt and without holding a worker slot while it waits. The delay is the longest wait; the wake
 * is what normally ends it. Its progress stays as last reported.
 */
export class JobDeferral extends Error {
  readonly delayMs: number;
  constructor(delayMs: number, reason = 'waiting') {
    super(`job deferred: ${reason}`);
    this.name = 'JobDeferral';
    this.delayMs = delayMs;
  }
}

/**
 * Thrown by a handler when retrying cannot help (bad input, 404 at the origin): the job goes straight to
 * dead, its error recorded with `code`, a catalog code.
 */
export class PermanentJobError extends Error {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'permanent') {
    super(message);
    this.name = 'PermanentJobError';
    this.code = code;
  }
}
