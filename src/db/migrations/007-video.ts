import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not follow later table types
type Db = Kysely<any>;

/**
 * Video: what ffprobe learned about content, and the HLS ladders encoded from it with every file they
 * consist of (src/media/video/store.ts).
 *
 * - `video_info` is keyed by the content's SHA-256, like `media_info`: it describes bytes, not an asset,
 *   so identical uploads are probed once. `probe` is the whole typed probe as JSON; the columns beside it
 *   are what lists and limits read without parsing it. `width` and `height` are as displayed (rotation
 *   applied). `loudness` (JSON) is filled when a loudness-normalising preset measured it.
 * - `video_ladders` has one row per (source content, ladder): `ladder` is a short hash of everything that
 *   shapes the outputs (codec, preset, heights, segment length, container), so identical content
 *   encoded with identical settings shares one ladder, and changed settings make a new one beside the
 *   old. `state` is `encoding`, `complete` or `failed`; `master` (the master playlist) and `renditions`
 *   (JSON, what the job measured of each rung) are null until `complete`, and the store sets `complete`
 *   only once every rendition the master names has its files: a master playlist is never served listing
 *   fewer renditions than it will end with.
 * - `video_files` holds every file of a ladder under its relative path (`720p/seg_00001.m4s`,
 *   `poster.jpg`), each a blob. `rendition` names the rung a file belongs to (null for the poster,
 *   sprite and MP4 fallback); a rendition's rows are inserted in one transaction, so a rendition that
 *   has any row has all of them: that is the checkpoint a resumed job starts after.
 *
 * Rows live as long as their source content is referenced by an asset or a version: the collector
 * deletes the rows of unreferenced sources, which leaves their blobs unreferenced in turn
 * (docs/architecture.md, "Blob lifecycle"). No foreign key names the source, for the same reason as in
 * `media_derived`: the rows describe content, which may be gone by the time the collector runs.
 */
export async function up(db: Db): Promise<void> {
  await db.schema
    .createTable('video_info')
    .addColumn('sha256', 'text', (c) => c.primaryKey())
    .addColumn('probe', 'text', (c) => c.notNull())
    .addColumn('duration_ms', 'bigint', (c) => c.notNull())
    .addColumn('width', 'integer', (c) => c.notNull())
    .addColumn('height', 'integer', (c) => c.notNull())
    .addColumn('has_audio', 'integer', (c) => c.notNull())
    .addColumn('container', 'text', (c) => c.notNull())
    .addColumn('video_codec', 'text', (c) => c.notNull())
    .addColumn('audio_codec', 'text')
    .addColumn('loudness', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('video_ladders')
    .addColumn('source_sha256', 'text', (c) => c.notNull())
    .addColumn('ladder', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('master', 'text')
    .addColumn('renditions', 'text')
    .addColumn('encoder', 'text')
    .addColumn('fallbacks', 'text')
    .addColumn('error', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('completed_at', 'bigint')
    .addPrimaryKeyConstraint('video_ladders_pk', ['source_sha256', 'ladder'])
    .execute();

  await db.schema
    .createTable('video_files')
    .addColumn('source_sha256', 'text', (c) => c.notNull())
    .addColumn('ladder', 'text', (c) => c.notNull())
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('rendition', 'text')
    .addColumn('sha256', 'text', (c) => c.notNull().references('blobs.sha256'))
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('video_files_pk', ['source_sha256', 'ladder', 'path'])
    .addForeignKeyConstraint(
      'video_files_ladder',
      ['source_sha256', 'ladder'],
      'video_ladders',
      ['source_sha256', 'ladder'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();
  await db.schema.createIndex('video_files_sha256').on('video_files').column('sha256').execute();
  await db.schema
    .createIndex('video_files_rendition')
    .on('video_files')
    .columns(['source_sha256', 'ladder', 'rendition'])
    .execute();
}

export async function down(db: Db): Promise<void> {
  await db.schema.dropTable('video_files').ifExists().execute();
  await db.schema.dropTable('video_ladders').ifExists().execute();
  await db.schema.dropTable('video_info').ifExists().execute();
}
