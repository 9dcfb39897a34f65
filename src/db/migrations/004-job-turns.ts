import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not follow later table types
type Db = Kysely<any>;

/**
 * When each tenant last had a job claimed: claims serve the tenants that waited longest first, so that
 * with more tenants than one claim can serve, turns carry over from claim to claim.
 */
export async function up(db: Db): Promise<void> {
  await db.schema
    .createTable('job_turns')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id').onDelete('cascade'))
    .addColumn('claimed_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Db): Promise<void> {
  await db.schema.dropTable('job_turns').ifExists().execute();
}
