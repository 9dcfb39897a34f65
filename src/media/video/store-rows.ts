import type { Kysely } from 'kysely';
import type { Database, VideoLaddersTable } from '../../db/tables.ts';
import { assertSha256 } from '../../storage/blob-store.ts';
import { checkLadderKey } from './keys.ts';
import { fileView, type OutputFile, type VideoFile, VideoStoreError } from './store-views.ts';

/**
 * The ladder store's reads and row locks (store.ts): which files a put still has to store, the rows at
 * some paths, the ladder's lock, its stored renditions, and the refusals they lead to.
 */

/** Rows per statement, well inside SQLite's and PostgreSQL's limits on bound parameters. */
export const BATCH = 100;

/**
 * The files still to store: none when the rendition has rows (they were inserted together); for files
 * of the whole ladder, those whose path has no row yet. A path taken by another rendition's file, or
 * one of the whole ladder taken by a rendition's, is refused (VideoStoreError `path_taken`).
 */
export async function pendingFiles(
  db: Kysely<Database>,
  source: string,
  ladder: string,
  rendition: string | null,
  files: readonly OutputFile[],
): Promise<OutputFile[]> {
  if (rendition !== null) {
    const any = await db
      .selectFrom('video_files')
      .select('path')
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .where('rendition', '=', rendition)
      .limit(1)
      .executeTakeFirst();
    if (any) return [];
  }
  const existing = await rowsAt(
    db,
    source,
    ladder,
    files.map((f) => f.path),
  );
  const taken = existing.filter((f) => rendition !== null || f.rendition !== null);
  if (taken.length > 0) {
    throw new VideoStoreError(
      'path_taken',
      `ladder ${ladder} of ${source} already has ${taken.map((f) => `${f.path} (${f.rendition ?? 'ladder'})`).join(', ')}`,
    );
  }
  const have = new Set(existing.map((f) => f.path));
  return files.filter((f) => !have.has(f.path));
}

export async function rowsAt(
  db: Kysely<Database>,
  source: string,
  ladder: string,
  paths: string[],
): Promise<VideoFile[]> {
  const found: VideoFile[] = [];
  for (let i = 0; i < paths.length; i += BATCH) {
    const rows = await db
      .selectFrom('video_files')
      .selectAll()
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .where('path', 'in', paths.slice(i, i + BATCH))
      .execute();
    found.push(...rows.map(fileView));
  }
  return found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Locks a ladder's row until the transaction ends (an update that changes nothing still takes the row
 * lock on PostgreSQL; SQLite's transactions hold the database's write lock from their start), so writers
 * of one ladder take turns, and answers it.
 */
export async function lock(tx: Kysely<Database>, source: string, ladder: string): Promise<VideoLaddersTable> {
  const row = await tx
    .updateTable('video_ladders')
    .set((eb) => ({ state: eb.ref('state') }))
    .where('source_sha256', '=', source)
    .where('ladder', '=', ladder)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw noLadder(source, ladder);
  return row;
}

/** The renditions of a ladder that have their files. */
export async function storedRenditions(
  db: Kysely<Database>,
  source: string,
  ladder: string,
): Promise<Set<string>> {
  const rows = await db
    .selectFrom('video_files')
    .select('rendition')
    .distinct()
    .where('source_sha256', '=', source)
    .where('ladder', '=', ladder)
    .where('rendition', 'is not', null)
    .execute();
  return new Set(rows.map((r) => r.rendition!));
}

export function checkKeys(source: string, ladder: string): void {
  assertSha256(source);
  checkLadderKey(ladder);
}

export function noLadder(source: string, ladder: string): VideoStoreError {
  return new VideoStoreError('no_ladder', `no ladder ${ladder} of ${source}: begin it first`);
}

export function notEncoding(row: VideoLaddersTable): VideoStoreError {
  return new VideoStoreError(
    'not_encoding',
    `ladder ${row.ladder} of ${row.source_sha256} is ${row.state}, not encoding: begin it again first`,
  );
}
