import { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { BlobLedger } from '../assets/blobs.ts';
import type { Database, MediaDerivedTable } from '../db/tables.ts';
import type { Representation } from '../delivery/lookup.ts';
import type { OutputFormat } from '../grammar/transform-spec.ts';
import type { BlobStore } from '../storage/blob-store.ts';

/** One rendered output, ready to store. */
export interface DerivedOutput {
  key: string;
  kind: MediaDerivedTable['kind'];
  sourceSha256: string;
  preset: string | null;
  format: OutputFormat;
  contentType: string;
  width: number;
  height: number;
  data: Buffer;
}

/** The file extension of each output format in delivery URLs and filenames. */
export const EXTENSIONS: Record<OutputFormat, string> = {
  jpeg: 'jpg',
  png: 'png',
  webp: 'webp',
  avif: 'avif',
};

/** The key of a preset variant of some content: one per (content, preset, format). */
export function variantKey(sourceSha256: string, preset: string, format: OutputFormat): string {
  return `v1/${sourceSha256}/${preset}/${format}`;
}

/**
 * Blobs made from other blobs (variants, cached transforms): storing them through the blob ledger, and
 * finding them again by their canonical key. Found rows are remembered in memory (they never change: a
 * key names one request of one content), up to `maxEntries`, oldest first out.
 */
export class DerivedBlobs {
  readonly #db: Kysely<Database>;
  readonly #store: BlobStore;
  readonly #ledger: BlobLedger;
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #known = new Map<string, { row: MediaDerivedTable; expires: number }>();

  constructor(deps: {
    db: Kysely<Database>;
    store: BlobStore;
    ledger: BlobLedger;
    maxEntries: number;
    /**
     * How long a found row is trusted without asking the database again. Rows never change, but garbage
     * collection (in any process) deletes those of content nothing refers to any more, with their blobs;
     * if the same content is uploaded again, a row remembered for ever would name a deleted blob.
     */
    ttlMs: number;
    now?: () => number;
  }) {
    this.#db = deps.db;
    this.#store = deps.store;
    this.#ledger = deps.ledger;
    this.#maxEntries = deps.maxEntries;
    this.#ttlMs = deps.ttlMs;
    this.#now = deps.now ?? Date.now;
  }

  /** The row of `key` if this process has it in memory (and it is fresh), without a query. */
  known(key: string): MediaDerivedTable | undefined {
    const entry = this.#known.get(key);
    return entry && entry.expires > this.#now() ? entry.row : undefined;
  }

  async find(key: string): Promise<MediaDerivedTable | undefined> {
    const known = this.known(key);
    if (known) return known;
    const row = await this.#db
      .selectFrom('media_derived')
      .selectAll()
      .where('key', '=', key)
      .executeTakeFirst();
    if (row) this.#remember(row);
    return row;
  }

  /** The variants of some content, by preset then format. */
  async variantsOf(sourceSha256: string): Promise<MediaDerivedTable[]> {
    return this.#db
      .selectFrom('media_derived')
      .selectAll()
      .where('source_sha256', '=', sourceSha256)
      .where('kind', '=', 'variant')
      .orderBy('key')
      .execute();
  }

  /**
   * Stores an output: the bytes first (staged, registered and committed through the ledger), then the row
   * in a transaction that also confirms the blob is live. A crash in between leaves an unreferenced blob,
   * which garbage collection removes. Storing a key twice keeps the first row.
   */
  async put(output: DerivedOutput): Promise<MediaDerivedTable> {
    const staged = await this.#store.stage(Readable.from([output.data]), { maxBytes: output.data.length });
    try {
      await this.#ledger.store(staged);
    } catch (error) {
      await this.#store.discard(staged).catch(() => {});
      throw error;
    }
    const row: MediaDerivedTable = {
      key: output.key,
      kind: output.kind,
      source_sha256: output.sourceSha256,
      preset: output.preset,
      format: output.format,
      sha256: staged.sha256,
      size: staged.size,
      content_type: output.contentType,
      width: output.width,
      height: output.height,
      created_at: Date.now(),
    };
    await this.#db.transaction().execute(async (tx) => {
      await this.#ledger.claimInTransaction(tx, staged.sha256);
      await tx
        .insertInto('media_derived')
        .values(row)
        .onConflict((oc) => oc.column('key').doNothing())
        .execute();
    });
    const stored = await this.find(output.key);
    return stored ?? row;
  }

  #remember(row: MediaDerivedTable): void {
    if (this.#maxEntries === 0 || this.#ttlMs === 0) return;
    // A refreshed row goes to the back, so the first key is always the oldest.
    this.#known.delete(row.key);
    if (this.#known.size >= this.#maxEntries) this.#known.delete(this.#known.keys().next().value!);
    this.#known.set(row.key, { row, expires: this.#now() + this.#ttlMs });
  }
}

/**
 * What the origin serves for a derived blob requested through `source`'s URL: the derived bytes, under
 * the source's access rules and caching kind. Last-Modified is when the derived blob was made (never
 * before the source's content), so a date validator can not match bytes rendered under older settings.
 */
export function derivedRepresentation(source: Representation, row: MediaDerivedTable): Representation {
  const base = source.filename.replace(/\.[^.]*$/, '');
  const suffix = row.preset ?? `${row.width}x${row.height}`;
  return {
    kind: source.kind,
    assetId: source.assetId,
    tenantId: source.tenantId,
    sha256: row.sha256,
    size: row.size,
    contentType: row.content_type,
    filename: `${base}-${suffix}.${EXTENSIONS[row.format as OutputFormat] ?? row.format}`,
    lastModified: new Date(Math.max(source.lastModified.getTime(), Math.floor(row.created_at / 1000) * 1000)),
    visibility: source.visibility,
  };
}
