import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not follow later table types
type Db = Kysely<any>;

/** Recurring jobs: a cron expression per row; `next_run_at` is the tick that fires next. */
export async function up(db: Db): Promise<void> {
  await db.schema
    .createTable('job_schedules')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('cron', 'text', (c) => c.notNull())
    .addColumn('timezone', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('lane', 'text', (c) => c.notNull())
    .addColumn('next_run_at', 'bigint', (c) => c.notNull())
    .addColumn('last_run_at', 'bigint')
    .addColumn('last_job_id', 'text')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addUniqueConstraint('job_schedules_name', ['tenant_id', 'name'])
    .execute();
  await db.schema.createIndex('job_schedules_due').on('job_schedules').column('next_run_at').execute();
}

export async function down(db: Db): Promise<void> {
  await db.schema.dropTable('job_schedules').ifExists().execute();
}
