import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not follow later table types
type Db = Kysely<any>;

/**
 * Media: what image processing learned about content, the blobs derived from it, and where ingested
 * assets came from.
 *
 * - `media_info` is keyed by the content's SHA-256, like `blobs`: it describes bytes, not an asset, so
 *   identical uploads are analysed once. It is reached only through an asset or version the caller may
 *   read, so sharing it across tenants reveals nothing.
 * - `media_derived` holds every blob made from another: a preset variant (`kind` = variant) or a cached
 *   on-the-fly transform (`kind` = transform). `key` names the request canonically, so identical
 *   requests share a row. A row lives as long as its source content is referenced by an asset or a
 *   version; the collector deletes the rows of unreferenced sources, which leaves their blobs
 *   unreferenced in turn (docs/architecture.md, "Blob lifecycle").
 * - `asset_sources` records the URL an asset was ingested from and the validators it answered with, so a
 *   re-ingest can ask `If-None-Match` / `If-Modified-Since`.
 */
export async function up(db: Db): Promise<void> {
  await db.schema
    .createTable('media_info')
    .addColumn('sha256', 'text', (c) => c.primaryKey())
    .addColumn('format', 'text', (c) => c.notNull())
    .addColumn('width', 'integer', (c) => c.notNull())
    .addColumn('height', 'integer', (c) => c.notNull())
    .addColumn('orientation', 'integer')
    .addColumn('has_alpha', 'integer', (c) => c.notNull())
    .addColumn('pages', 'integer', (c) => c.notNull())
    .addColumn('dominant_color', 'text')
    .addColumn('thumbhash', 'text')
    .addColumn('blurhash', 'text')
    .addColumn('phash', 'text')
    .addColumn('exif', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('media_derived')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('source_sha256', 'text', (c) => c.notNull())
    .addColumn('preset', 'text')
    .addColumn('format', 'text', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull().references('blobs.sha256'))
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('width', 'integer', (c) => c.notNull())
    .addColumn('height', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('media_derived_source')
    .on('media_derived')
    .columns(['source_sha256', 'kind'])
    .execute();
  await db.schema.createIndex('media_derived_sha256').on('media_derived').column('sha256').execute();

  await db.schema
    .createTable('asset_sources')
    .addColumn('asset_id', 'text', (c) => c.primaryKey().references('assets.id').onDelete('cascade'))
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('final_url', 'text', (c) => c.notNull())
    .addColumn('etag', 'text')
    .addColumn('last_modified', 'text')
    .addColumn('fetched_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Db): Promise<void> {
  await db.schema.dropTable('asset_sources').ifExists().execute();
  await db.schema.dropTable('media_derived').ifExists().execute();
  await db.schema.dropTable('media_info').ifExists().execute();
}
