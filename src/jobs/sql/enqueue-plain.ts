import { type Insertable, type Kysely, type Selectable, sql } from 'kysely';
import type { Database, JobsTable } from '../../db/tables.ts';
import type { ByDialect } from './executor.ts';
import { WAKE_CHANNEL } from './notify.ts';

export interface PlainEnqueue {
  tenantId: string;
  /** The tier the tenant was last seen with, and without a credit balance. */
  tier: string;
  rows: readonly Insertable<JobsTable>[];
  /** The tier's daily limit (0: none) and the UTC day it counts in. */
  dailyLimit: number;
  day: string;
  /** Names the enqueuing engine in the wake-up, so that its own listener skips the echo. */
  instanceId: string;
}

/**
 * The common enqueue in one statement: jobs that need no lookup first, for a tenant last seen without
 * credits. The statement re-checks everything the enqueue transaction would: the tenant still has that
 * tier and no credit balance, and the daily count (when the tier has a limit) has room. When any check
 * fails it inserts nothing and answers no row. It NOTIFYs the other processes' workers at its commit.
 *
 * PostgreSQL only: it needs data-modifying CTEs and NOTIFY, and a round trip is what it saves. SQLite
 * runs in-process, where a transaction's statements cost microseconds.
 */
export const insertPlainJobs: ByDialect<
  ((db: Kysely<Database>, enqueue: PlainEnqueue) => Promise<Selectable<JobsTable>[]>) | undefined
> = {
  sqlite: undefined,
  postgres: async (db, { tenantId, tier, rows, dailyLimit, day, instanceId }) => {
    const columns = sql.join(Object.keys(rows[0]!).map((c) => sql.ref(c)));
    // With a daily limit, the jobs go in only if the count took them (the upsert's WHERE refuses past
    // the limit, and then returns no row); without one, only if the tenant is as remembered.
    const admitted =
      dailyLimit > 0
        ? sql`counted as (
            insert into tenant_job_usage (tenant_id, day, jobs)
            select id, ${day}, ${rows.length} from tenant
            on conflict (tenant_id, day) do update set jobs = tenant_job_usage.jobs + excluded.jobs
            where tenant_job_usage.jobs + excluded.jobs <= ${dailyLimit}
            returning jobs),`
        : sql`counted as (select 1 from tenant),`;
    // pg_notify per row is harmless: PostgreSQL delivers identical notifications of one transaction once.
    const { rows: inserted } = await sql<Selectable<JobsTable>>`
      with tenant as (
        select id from tenants where id = ${tenantId} and tier = ${tier} and credit_balance is null
      ),
      ${admitted}
      inserted as (
        insert into jobs (${columns})
        select ${columns} from jsonb_populate_recordset(null::jobs, ${JSON.stringify(rows)}::jsonb)
        where exists (select 1 from counted)
        returning *
      )
      select inserted.*, pg_notify(${WAKE_CHANNEL}, ${instanceId}) as woken from inserted`.execute(db);
    return inserted;
  },
};
