import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not follow later table types
type Db = Kysely<any>;

/** The job engine's tables; their meaning is in src/jobs/types.ts and docs/architecture.md ("Job engine"). */
export async function up(db: Db): Promise<void> {
  await db.schema
    .createTable('jobs')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('lane', 'text', (c) => c.notNull())
    .addColumn('queue', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('payload_hash', 'text', (c) => c.notNull())
    .addColumn('result', 'text')
    .addColumn('errors', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('max_attempts', 'integer', (c) => c.notNull())
    .addColumn('run_at', 'bigint', (c) => c.notNull())
    .addColumn('lease_owner', 'text')
    .addColumn('lease_expires_at', 'bigint')
    .addColumn('progress_percent', 'real')
    .addColumn('progress_stage', 'text')
    .addColumn('progress_message', 'text')
    .addColumn('idempotency_key', 'text')
    .addColumn('parent_id', 'text')
    .addColumn('breaker_key', 'text')
    .addColumn('cost', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('started_at', 'bigint')
    .addColumn('finished_at', 'bigint')
    .execute();

  // The claim walks this index group by group (`queue` = lane/type/tenant) with a loose index scan and
  // takes each group's oldest due jobs; partial, so finished jobs (the vast majority of rows over time)
  // cost the claim nothing.
  await db.schema
    .createIndex('jobs_ready')
    .on('jobs')
    .columns(['queue', 'run_at', 'id'])
    .where(sql.raw<boolean>(`state in ('queued', 'failed')`))
    .execute();
  // Active jobs: counted by every claim (limits) and scanned by the rescuer for expired leases.
  await db.schema
    .createIndex('jobs_active')
    .on('jobs')
    .columns(['lease_expires_at'])
    .where(sql.raw<boolean>(`state = 'active'`))
    .execute();
  await db.schema
    .createIndex('jobs_idempotency')
    .on('jobs')
    .columns(['tenant_id', 'idempotency_key'])
    .unique()
    .where(sql.raw<boolean>('idempotency_key is not null'))
    .execute();
  await db.schema.createIndex('jobs_tenant').on('jobs').columns(['tenant_id', 'id']).execute();
  await db.schema.createIndex('jobs_tenant_state').on('jobs').columns(['tenant_id', 'state', 'id']).execute();
  await db.schema.createIndex('jobs_state').on('jobs').columns(['state', 'id']).execute();
  // Statistics and health read the jobs that changed in the last hour or day.
  await db.schema.createIndex('jobs_updated').on('jobs').column('updated_at').execute();
  // Live event streams on SQLite poll a tenant's recently changed jobs (other processes cannot notify).
  await db.schema
    .createIndex('jobs_tenant_updated')
    .on('jobs')
    .columns(['tenant_id', 'updated_at'])
    .execute();
  await db.schema
    .createIndex('jobs_fresh')
    .on('jobs')
    .columns(['tenant_id', 'type', 'payload_hash', 'finished_at'])
    .where(sql.raw<boolean>(`state = 'succeeded'`))
    .execute();
  await db.schema
    .createIndex('jobs_breaker')
    .on('jobs')
    .columns(['breaker_key', 'run_at'])
    .where(sql.raw<boolean>(`breaker_key is not null and state in ('queued', 'failed')`))
    .execute();
  await db.schema
    .createIndex('jobs_parent')
    .on('jobs')
    .columns(['parent_id'])
    .where(sql.raw<boolean>('parent_id is not null'))
    .execute();

  await db.schema
    .createTable('job_breakers')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('failures', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('opened_at', 'bigint')
    .addColumn('open_until', 'bigint')
    .addColumn('probe_job_id', 'text')
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();

  // GCRA state of each start-rate limit (per job type, per origin host): the theoretical arrival time.
  await db.schema
    .createTable('job_rate_limits')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('tat', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('tenant_job_usage')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('day', 'text', (c) => c.notNull())
    .addColumn('jobs', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('tenant_job_usage_pk', ['tenant_id', 'day'])
    .execute();

  // Null: the tenant does not use credits; billable jobs then run without a charge.
  await db.schema.alterTable('tenants').addColumn('credit_balance', 'bigint').execute();
  await db.schema
    .createTable('credit_ledger')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('job_id', 'text')
    .addColumn('amount', 'bigint', (c) => c.notNull())
    .addColumn('balance', 'bigint', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('actor', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('credit_ledger_tenant')
    .on('credit_ledger')
    .columns(['tenant_id', 'id'])
    .execute();

  await db.schema
    .createTable('job_workers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('pid', 'integer', (c) => c.notNull())
    .addColumn('lanes', 'text', (c) => c.notNull())
    .addColumn('types', 'text', (c) => c.notNull())
    .addColumn('concurrency', 'integer', (c) => c.notNull())
    .addColumn('running', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('seen_at', 'bigint', (c) => c.notNull())
    .addColumn('stopped_at', 'bigint')
    .execute();
}

export async function down(db: Db): Promise<void> {
  for (const table of [
    'job_workers',
    'credit_ledger',
    'tenant_job_usage',
    'job_rate_limits',
    'job_breakers',
  ]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
  await db.schema.alterTable('tenants').dropColumn('credit_balance').execute();
  await db.schema.dropTable('jobs').ifExists().execute();
}
