import type { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { Database } from '../db/tables.ts';
import { ConveyorError } from '../errors.ts';
import type { Lane } from '../glossary.ts';
import { type BlobStore, BlobTooLargeError, type StagedBlob } from '../storage/blob-store.ts';
import type { BlobLedger } from './blobs.ts';
import { peek, sniffContentType } from './sniff.ts';

export interface ContentInput {
  body: Readable;
  declaredType: string | undefined;
  onProgress?: (bytes: number) => void;
  /** See StageOptions.release: only for chunks that nothing else holds. */
  release?: (chunk: Buffer) => void;
  /** Where the bytes were fetched from (remote ingest), recorded for conditional re-ingest. */
  source?: AssetSource;
  /** Lane of the processing the new content starts (see ContentAdded); default the processor's own. */
  lane?: Lane;
  /** Largest content accepted here; default and ceiling: the upload limit. */
  maxBytes?: number;
}

export interface AssetSource {
  url: string;
  finalUrl: string;
  etag: string | null;
  lastModified: string | null;
}

/**
 * Content on its way into an asset: its type sniffed, its bytes staged in the blob store and registered
 * with the ledger, before the transaction that points an asset at it.
 */
export class ContentIntake {
  readonly #store: BlobStore;
  readonly #ledger: BlobLedger;
  readonly #maxUploadBytes: number;

  constructor(deps: { store: BlobStore; ledger: BlobLedger; maxUploadBytes: number }) {
    this.#store = deps.store;
    this.#ledger = deps.ledger;
    this.#maxUploadBytes = deps.maxUploadBytes;
  }

  /** Sniffs, stages and registers the bytes; on any failure nothing is left but collectable data. */
  async stage(input: ContentInput): Promise<{ staged: StagedBlob; contentType: string }> {
    let staged: StagedBlob | undefined;
    try {
      const { head, body } = await peek(input.body);
      const contentType = await sniffContentType(head, input.declaredType);
      staged = await this.#store.stage(body, {
        maxBytes: Math.min(input.maxBytes ?? Infinity, this.#maxUploadBytes),
        ...(input.onProgress ? { onProgress: input.onProgress } : {}),
        ...(input.release ? { release: input.release } : {}),
      });
      await this.#ledger.store(staged);
      return { staged, contentType };
    } catch (error) {
      if (staged) await this.#store.discard(staged).catch(() => {});
      if (error instanceof BlobTooLargeError) {
        throw new ConveyorError(
          'payload_too_large',
          `The content exceeds the limit of ${error.limit} bytes`,
          {
            extra: { limit: error.limit },
          },
        );
      }
      throw error;
    }
  }
}

/**
 * The Last-Modified of new content: now, but always in a later whole second than the previous content's.
 * HTTP dates have one-second resolution, so two contents within one second would share a Last-Modified
 * and a client resuming with `If-Range: <date>` could be sent the tail of the wrong content. Moving the
 * time on keeps each Last-Modified unique to one content, which makes it a strong validator
 * (RFC 9110 §8.8.2.2) and If-Range by date safe.
 */
export function nextContentTime(previous: number, now = Date.now()): number {
  return Math.max(now, (Math.floor(previous / 1000) + 1) * 1000);
}

/** Records where an asset's bytes were fetched from (remote ingest), for conditional re-ingest. */
export async function recordSource(tx: Kysely<Database>, assetId: string, source: AssetSource, now: number) {
  const row = {
    url: source.url,
    final_url: source.finalUrl,
    etag: source.etag,
    last_modified: source.lastModified,
    fetched_at: now,
  };
  await tx
    .insertInto('asset_sources')
    .values({ asset_id: assetId, ...row })
    .onConflict((oc) => oc.column('asset_id').doUpdateSet(row))
    .execute();
}
