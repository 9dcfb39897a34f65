import { sql } from 'kysely';
import type { ByDialect, Executor } from './executor.ts';

/** The channel of wake-ups: work may be due (the payload names the engine that sent it, or is empty). */
export const WAKE_CHANNEL = 'conveyor_jobs';

/** The channel of live job events (events.ts): each payload is a batch's notice naming one job. */
export const JOB_EVENTS_CHANNEL = 'conveyor_job_events';

/**
 * Cross-process notifications, delivered at the commit of `executor`'s transaction to every process that
 * LISTENs, this one included (PostgreSQL delivers identical notifications of one transaction once).
 * SQLite has no such channel: other processes poll.
 */
export const notify: ByDialect<
  ((executor: Executor, channel: string, payload: string) => Promise<void>) | undefined
> = {
  sqlite: undefined,
  postgres: async (executor, channel, payload) => {
    await sql`select pg_notify(${channel}, ${payload})`.execute(executor);
  },
};

/** Many notifications on one channel in one statement, whatever their number. */
export const notifyEach: ByDialect<
  ((executor: Executor, channel: string, payloads: readonly string[]) => Promise<void>) | undefined
> = {
  sqlite: undefined,
  postgres: async (executor, channel, payloads) => {
    await sql`select pg_notify(${channel}, n) from unnest(${payloads}::text[]) as n`.execute(executor);
  },
};
