/**
 * Words every room uses in one sense: the job engine's lanes and job states, and the tenants' tiers. The
 * settings parse lane and tier maps against these, the metrics label by them, the API validates them, and
 * the engine's SQL filters by them; src/jobs/types.ts explains what the job words mean.
 */

/** A job's priority class, most urgent first. */
export const LANES = ['critical', 'high', 'normal', 'low'] as const;
export type Lane = (typeof LANES)[number];

export function isLane(value: unknown): value is Lane {
  return typeof value === 'string' && (LANES as readonly string[]).includes(value);
}

export const JOB_STATES = ['queued', 'active', 'succeeded', 'failed', 'dead', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** States from which a job can still start: the claim's (and the `jobs_ready` index's) domain. */
export const READY_STATES: readonly JobState[] = ['queued', 'failed'];
/** States of a job that is not finished: waiting to start, or running. */
export const OPEN_STATES: readonly JobState[] = ['queued', 'failed', 'active'];
/** States a job never leaves by itself. */
export const FINAL_STATES: readonly JobState[] = ['succeeded', 'dead', 'cancelled'];

/** A tenant's service tier: it picks the tenant's job concurrency and daily job limit. */
export const TIERS = ['free', 'standard', 'premium', 'enterprise'] as const;
export type Tier = (typeof TIERS)[number];
