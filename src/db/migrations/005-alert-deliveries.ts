import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not follow later table types
type Db = Kysely<any>;

/**
 * When each alert (rule/subject) last reached the webhook, shared by every process that evaluates the
 * rules: the cooldown holds across processes, so N servers send one alert, not N.
 */
export async function up(db: Db): Promise<void> {
  await db.schema
    .createTable('alert_deliveries')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('sent_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Db): Promise<void> {
  await db.schema.dropTable('alert_deliveries').ifExists().execute();
}
