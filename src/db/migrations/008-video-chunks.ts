import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not follow later table types
type Db = Kysely<any>;

/**
 * Chunked encoding: a ladder encoded in chunks keeps its plan (the chunk spans on the segment grid, the
 * renditions and preset each chunk job encodes) on its row, written once by the ladder job before it
 * queues the chunk jobs, so that every chunk job, in any process, encodes exactly what the join expects.
 * The chunk files themselves are rows of `video_files` under `chunks/`, deleted when the ladder completes.
 */
export async function up(db: Db): Promise<void> {
  await db.schema.alterTable('video_ladders').addColumn('chunk_plan', 'text').execute();
}

export async function down(db: Db): Promise<void> {
  await db.schema.alterTable('video_ladders').dropColumn('chunk_plan').execute();
}
