import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/tables.ts';
import { PermanentJobError } from '../../jobs/types.ts';
import { type BlobStore, BlobTooLargeError, type StagedBlob } from '../../storage/blob-store.ts';
import type { OutputFile } from './store-views.ts';

/**
 * The part of the blob ledger (`BlobLedger`, src/assets/blobs.ts) the store writes through. Named here
 * rather than imported: src/ops imports this room (encoder health) and the assets room imports src/ops,
 * so an import of assets from here would close a cycle between rooms. Garbage collection of what the
 * store keeps is registered beside `collectMedia` (`collectVideo`, src/media/wiring.ts).
 */
export interface LedgerWrites {
  /** Registers and commits a staged blob. */
  store(staged: StagedBlob): Promise<void>;
  /** Inside the transaction that references the blob: confirms it is live and not being collected. */
  claimInTransaction(tx: Kysely<Database>, sha256: string): Promise<void>;
}

/** A file registered as a blob, not yet referenced by a row. */
export type StoredFile = { path: string; contentType: string; sha256: string; size: number };

export interface StoreFilesOptions {
  store: BlobStore;
  ledger: LedgerWrites;
  /** Largest file accepted (`videoStoreMaxFileBytes`). */
  maxFileBytes: number;
  /** Files stored at once (`videoStoreConcurrency`). */
  concurrency: number;
  signal?: AbortSignal | undefined;
}

/**
 * Streams files into the blob store and registers them, `videoStoreConcurrency` at a time. On the first
 * failure no new file starts; those under way finish, and the failure is thrown. What was registered
 * stays unreferenced, for the collector.
 */
export async function storeFiles(
  files: readonly OutputFile[],
  options: StoreFilesOptions,
): Promise<StoredFile[]> {
  const stored: StoredFile[] = [];
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (!failure && next < files.length) {
      const file = files[next++]!;
      try {
        stored.push(await storeFile(file, options));
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, files.length) }, lane));
  if (failure) throw failure.error;
  return stored;
}

/** Streams one file from disk into the store (never reading it whole) and registers it. */
async function storeFile(file: OutputFile, options: StoreFilesOptions): Promise<StoredFile> {
  const { store, ledger, maxFileBytes, signal } = options;
  signal?.throwIfAborted();
  const { size } = await stat(file.file);
  if (size > maxFileBytes) throw tooLarge(file.path, maxFileBytes);
  let staged: StagedBlob | undefined;
  try {
    staged = await store.stage(createReadStream(file.file, signal ? { signal } : {}), {
      maxBytes: maxFileBytes,
    });
    await ledger.store(staged);
  } catch (error) {
    if (staged) await store.discard(staged).catch(() => {});
    if (error instanceof BlobTooLargeError) throw tooLarge(file.path, maxFileBytes);
    throw error;
  }
  return { path: file.path, contentType: file.contentType, sha256: staged.sha256, size: staged.size };
}

function tooLarge(path: string, limit: number): PermanentJobError {
  return new PermanentJobError(
    `${path} is larger than CONVEYOR_VIDEO_STORE_MAX_FILE_BYTES (${limit} bytes)`,
    'video_output_too_large',
  );
}
