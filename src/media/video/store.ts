import type { Kysely } from 'kysely';
import type { Config } from '../../config/config.ts';
import type { Database } from '../../db/tables.ts';
import { assertSha256, type BlobStore } from '../../storage/blob-store.ts';
import type { Fallback } from './fallback.ts';
import { CHUNKS_DIR, checkFilePath, checkRenditionName } from './keys.ts';
import { type LedgerWrites, storeFiles } from './store-files.ts';
import {
  BATCH,
  checkKeys,
  lock,
  noLadder,
  notEncoding,
  pendingFiles,
  rowsAt,
  storedRenditions,
} from './store-rows.ts';
import {
  fileView,
  infoRow,
  infoView,
  ladderView,
  type OutputFile,
  type RenditionRecord,
  type VideoFile,
  type VideoInfo,
  type VideoLadder,
  VideoStoreError,
} from './store-views.ts';

export type { LedgerWrites } from './store-files.ts';
export type {
  LadderState,
  OutputFile,
  RenditionRecord,
  VideoFile,
  VideoInfo,
  VideoLadder,
} from './store-views.ts';
export { VideoStoreError } from './store-views.ts';

/**
 * Where a video's outputs are kept: per source content and ladder, a row with the ladder's state and
 * master playlist, and one row per file (segment, playlist, poster...), each a blob in the blob store.
 *
 * Writes follow the ledger (docs/architecture.md, "Blob lifecycle"): every file is streamed from disk
 * into the store and registered first; then one transaction locks the ladder row, claims the blobs and
 * inserts all the rows of a rendition (or of a set of other files). A crash or failure in between
 * leaves only unreferenced blobs, which the collector removes, so a rendition is wholly there or not at
 * all: a job resumed after a kill starts after the renditions `begin` reports. A registered blob is
 * unreferenced until that transaction, so storing one rendition must take less than
 * `CONVEYOR_GC_GRACE_SECONDS`; past it the claim fails (`unavailable`) and the job stores it again.
 */
export class VideoStore {
  readonly #db: Kysely<Database>;
  readonly #store: BlobStore;
  readonly #ledger: LedgerWrites;
  readonly #maxFileBytes: number;
  readonly #concurrency: number;

  constructor(deps: {
    db: Kysely<Database>;
    store: BlobStore;
    ledger: LedgerWrites;
    config: Pick<Config, 'videoStoreMaxFileBytes' | 'videoStoreConcurrency'>;
  }) {
    this.#db = deps.db;
    this.#store = deps.store;
    this.#ledger = deps.ledger;
    this.#maxFileBytes = deps.config.videoStoreMaxFileBytes;
    this.#concurrency = deps.config.videoStoreConcurrency;
  }

  /**
   * Starts (or resumes) encoding a ladder: creates its row in `encoding` if there is none, and puts a
   * `failed` one back to `encoding` (its stored renditions stay); a complete ladder is answered as it is.
   * Answers the ladder and the renditions already stored, which a resumed job skips.
   */
  async begin(
    source: string,
    ladder: string,
  ): Promise<{ ladder: VideoLadder; completeRenditions: string[] }> {
    checkKeys(source, ladder);
    const now = Date.now();
    await this.#db
      .insertInto('video_ladders')
      .values({
        source_sha256: source,
        ladder,
        state: 'encoding',
        master: null,
        renditions: null,
        encoder: null,
        fallbacks: null,
        error: null,
        chunk_plan: null,
        created_at: now,
        updated_at: now,
        completed_at: null,
      })
      .onConflict((oc) => oc.columns(['source_sha256', 'ladder']).doNothing())
      .execute();
    await this.#db
      .updateTable('video_ladders')
      .set({ state: 'encoding', error: null, updated_at: now })
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .where('state', '=', 'failed')
      .execute();
    const done = await storedRenditions(this.#db, source, ladder);
    const row = await this.find(source, ladder);
    // Only the collector deletes ladders, and only those of content nothing has any more.
    if (!row) throw new VideoStoreError('no_ladder', `ladder ${ladder} of ${source} was collected`);
    return { ladder: row, completeRenditions: [...done].sort() };
  }

  /**
   * Stores every file of a rendition, all or none (see the class comment). A rendition already stored
   * is left as it is, and its rows answered. The signal stops the storing between and inside files.
   */
  async putRendition(
    source: string,
    ladder: string,
    rendition: string,
    files: readonly OutputFile[],
    options: { signal?: AbortSignal } = {},
  ): Promise<VideoFile[]> {
    checkRenditionName(rendition);
    await this.#put(source, ladder, rendition, files, options.signal);
    return this.files(source, ladder, rendition);
  }

  /**
   * Stores files of the whole ladder (poster, sprite, its WebVTT index, the MP4 fallback), all or none;
   * a path already stored keeps its first file. Answers the rows of the given paths.
   */
  async putFiles(
    source: string,
    ladder: string,
    files: readonly OutputFile[],
    options: { signal?: AbortSignal } = {},
  ): Promise<VideoFile[]> {
    await this.#put(source, ladder, null, files, options.signal);
    return rowsAt(
      this.#db,
      source,
      ladder,
      files.map((f) => f.path),
    );
  }

  /**
   * Completes a ladder: records the master playlist and the renditions' measurements, and flips it to
   * `complete`, but only when every rendition named has its files (VideoStoreError `missing_renditions`
   * otherwise): a master playlist is never served listing fewer renditions than it will end with. A
   * ladder already complete keeps its first master.
   */
  async complete<R extends RenditionRecord>(
    source: string,
    ladder: string,
    result: { master: string; renditions: readonly R[]; encoder: string; fallbacks?: readonly Fallback[] },
  ): Promise<VideoLadder<R>> {
    checkKeys(source, ladder);
    const names = result.renditions.map((r) => r.name);
    for (const name of names) checkRenditionName(name);
    if (names.length === 0 || new Set(names).size !== names.length) {
      throw new TypeError(`a ladder completes with distinct renditions, not ${JSON.stringify(names)}`);
    }
    await this.#db.transaction().execute(async (tx) => {
      const row = await lock(tx, source, ladder);
      if (row.state === 'complete') return;
      if (row.state !== 'encoding') throw notEncoding(row);
      const have = await storedRenditions(tx, source, ladder);
      const missing = names.filter((name) => !have.has(name));
      if (missing.length > 0) {
        throw new VideoStoreError(
          'missing_renditions',
          `ladder ${ladder} of ${source} has no files for ${missing.join(', ')}`,
          missing,
        );
      }
      // The chunks a ladder was joined from are done with: their blobs go to the collector.
      await tx
        .deleteFrom('video_files')
        .where('source_sha256', '=', source)
        .where('ladder', '=', ladder)
        .where('path', 'like', `${CHUNKS_DIR}/%`)
        .execute();
      const now = Date.now();
      await tx
        .updateTable('video_ladders')
        .set({
          state: 'complete',
          master: result.master,
          renditions: JSON.stringify(result.renditions),
          encoder: result.encoder,
          fallbacks: JSON.stringify(result.fallbacks ?? []),
          error: null,
          chunk_plan: null,
          updated_at: now,
          completed_at: now,
        })
        .where('source_sha256', '=', source)
        .where('ladder', '=', ladder)
        .execute();
    });
    return (await this.find<R>(source, ladder))!;
  }

  /**
   * Records that encoding a ladder failed. Only an `encoding` ladder fails: a late report from a worker
   * that lost its job never undoes a complete one. Stored renditions stay for the next `begin`.
   */
  async fail(source: string, ladder: string, error: string): Promise<VideoLadder | undefined> {
    checkKeys(source, ladder);
    await this.#db
      .updateTable('video_ladders')
      .set({ state: 'failed', error, updated_at: Date.now() })
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .where('state', '=', 'encoding')
      .execute();
    return this.find(source, ladder);
  }

  /**
   * The chunk plan of an `encoding` ladder, once one is set (a complete ladder has none). Plans are JSON the store keeps as given: the
   * chunk module (chunks.ts) reads and writes them.
   */
  async chunkPlan(source: string, ladder: string): Promise<unknown> {
    checkKeys(source, ladder);
    const row = await this.#db
      .selectFrom('video_ladders')
      .select('chunk_plan')
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .where('state', '=', 'encoding')
      .executeTakeFirst();
    return row?.chunk_plan ? JSON.parse(row.chunk_plan) : undefined;
  }

  /**
   * Sets an `encoding` ladder's chunk plan unless it has one: the first plan stays, so that every chunk
   * job encodes for the same join. Answers the plan the ladder has.
   */
  async setChunkPlan(source: string, ladder: string, plan: unknown): Promise<unknown> {
    checkKeys(source, ladder);
    await this.#db
      .updateTable('video_ladders')
      .set({ chunk_plan: JSON.stringify(plan), updated_at: Date.now() })
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .where('state', '=', 'encoding')
      .where('chunk_plan', 'is', null)
      .execute();
    return this.chunkPlan(source, ladder);
  }

  async find<R extends RenditionRecord = RenditionRecord>(
    source: string,
    ladder: string,
  ): Promise<VideoLadder<R> | undefined> {
    const row = await this.#db
      .selectFrom('video_ladders')
      .selectAll()
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .executeTakeFirst();
    return row && ladderView<R>(row);
  }

  /**
   * The complete ladder of some content that delivery serves: the newest (`newest`, for an asset's latest
   * URL, which follows new settings) or the first completed (`first`, for a version's immutable URL: a
   * complete ladder stays until its content is collected, so that one never changes).
   */
  async completeLadder(source: string, which: 'newest' | 'first'): Promise<VideoLadder | undefined> {
    const order = which === 'newest' ? 'desc' : 'asc';
    const row = await this.#db
      .selectFrom('video_ladders')
      .selectAll()
      .where('source_sha256', '=', source)
      .where('state', '=', 'complete')
      .orderBy('completed_at', order)
      .orderBy('ladder', order)
      .limit(1)
      .executeTakeFirst();
    return row && ladderView(row);
  }

  /** One file of a ladder, for delivery (its blob, size and content type). */
  async file(source: string, ladder: string, path: string): Promise<VideoFile | undefined> {
    const row = await this.#db
      .selectFrom('video_files')
      .selectAll()
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .where('path', '=', path)
      .executeTakeFirst();
    return row && fileView(row);
  }

  /** The files of a ladder, or of one of its renditions, by path. */
  async files(source: string, ladder: string, rendition?: string): Promise<VideoFile[]> {
    let query = this.#db
      .selectFrom('video_files')
      .selectAll()
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder);
    if (rendition !== undefined) query = query.where('rendition', '=', rendition);
    return (await query.orderBy('path').execute()).map(fileView);
  }

  /** Records (or replaces) what a probe learned about some content. */
  async putInfo(info: Omit<VideoInfo, 'createdAt'> & { createdAt?: number }): Promise<void> {
    assertSha256(info.sha256);
    const row = infoRow(info);
    const { sha256: _, created_at: __, ...changes } = row;
    await this.#db
      .insertInto('video_info')
      .values(row)
      .onConflict((oc) => oc.column('sha256').doUpdateSet(changes))
      .execute();
  }

  async getInfo(sha256: string): Promise<VideoInfo | undefined> {
    const row = await this.#db
      .selectFrom('video_info')
      .selectAll()
      .where('sha256', '=', sha256)
      .executeTakeFirst();
    return row && infoView(row);
  }

  /**
   * The write path of `putRendition` (rendition named) and `putFiles` (null). What is still missing is
   * found first, so nothing already stored is uploaded again, and again under the ladder's lock, where a
   * concurrent writer may have stored it meanwhile (its rows win; our blobs are left to the collector).
   */
  async #put(
    source: string,
    ladder: string,
    rendition: string | null,
    files: readonly OutputFile[],
    signal: AbortSignal | undefined,
  ): Promise<void> {
    checkKeys(source, ladder);
    for (const file of files) checkFilePath(file.path);
    const paths = new Set(files.map((f) => f.path));
    if (files.length === 0 || paths.size !== files.length) {
      throw new TypeError('a put stores at least one file, each at its own path');
    }
    const todo = await pendingFiles(this.#db, source, ladder, rendition, files);
    if (todo.length === 0) return;
    const row = await this.#db
      .selectFrom('video_ladders')
      .selectAll()
      .where('source_sha256', '=', source)
      .where('ladder', '=', ladder)
      .executeTakeFirst();
    if (!row) throw noLadder(source, ladder);
    if (row.state !== 'encoding') throw notEncoding(row);

    const stored = await storeFiles(todo, {
      store: this.#store,
      ledger: this.#ledger,
      maxFileBytes: this.#maxFileBytes,
      concurrency: this.#concurrency,
      signal,
    });
    await this.#db.transaction().execute(async (tx) => {
      const locked = await lock(tx, source, ladder);
      const still = new Set((await pendingFiles(tx, source, ladder, rendition, todo)).map((f) => f.path));
      if (still.size === 0) return;
      if (locked.state !== 'encoding') throw notEncoding(locked);
      const rows = stored.filter((f) => still.has(f.path));
      // In one order, so two transactions claiming blobs they share cannot wait for each other.
      for (const sha256 of [...new Set(rows.map((f) => f.sha256))].sort()) {
        await this.#ledger.claimInTransaction(tx, sha256);
      }
      const now = Date.now();
      for (let i = 0; i < rows.length; i += BATCH) {
        await tx
          .insertInto('video_files')
          .values(
            rows.slice(i, i + BATCH).map((f) => ({
              source_sha256: source,
              ladder,
              path: f.path,
              rendition,
              sha256: f.sha256,
              size: f.size,
              content_type: f.contentType,
              created_at: now,
            })),
          )
          .execute();
      }
    });
  }
}
