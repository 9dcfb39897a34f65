import { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { BlobLedger } from '../assets/blobs.ts';
import type { Database, MediaDerivedTable } from '../db/tables.ts';
import type { DerivedBlob } from '../delivery/derive.ts';
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
  /** When it was made (milliseconds since the epoch); by default, when it is stored. */
  createdAt?: number;
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
 * finding them again by their canonical key. A key names one request of one content, so a row never
 * changes; the origin remembers what it found for a while (src/delivery/derive.ts), this asks the
 * database.
 */
export class DerivedBlobs {
  readonly #db: Kysely<Database>;
  readonly #store: BlobStore;
  readonly #ledger: BlobLedger;

  constructor(deps: { db: Kysely<Database>; store: BlobStore; ledger: BlobLedger }) {
    this.#db = deps.db;
    this.#store = deps.store;
    this.#ledger = deps.ledger;
  }

  async find(key: string): Promise<MediaDerivedTable | undefined> {
    return this.#db.selectFrom('media_derived').selectAll().where('key', '=', key).executeTakeFirst();
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
      created_at: output.createdAt ?? Date.now(),
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
}

/** A derived row as the origin serves it (src/delivery/derive.ts). */
export function derivedBlob(row: MediaDerivedTable): DerivedBlob {
  const suffix = row.preset ?? `${row.width}x${row.height}`;
  return {
    sha256: row.sha256,
    size: row.size,
    contentType: row.content_type,
    nameSuffix: `-${suffix}.${EXTENSIONS[row.format as OutputFormat] ?? row.format}`,
    createdAt: row.created_at,
  };
}
