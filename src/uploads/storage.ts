/**
 * Storage of resumable (tus) uploads: the @tus/file-store and @tus/s3-store data stores, each extended
 * with the few things src/uploads/tus.ts needs beyond the tus DataStore contract:
 *
 *   record(id)       the upload's stored record (size, metadata, creation date) without touching its bytes
 *   open(id)         the finished upload's bytes, for the hand-over to the asset store
 *   remove(id)       termination that also works on a finished upload (see TusS3Store.remove)
 *   discard(id)      remove(id) that is quiet when the upload is already gone
 *   receipts         what a finished upload's hand-over answered, kept next to the uploads so that every
 *                    process serving the same storage can replay it ("Hand-over" in src/uploads/tus.ts)
 *   sweep(...)       removes uploads created before a cutoff and receipts written before another
 *
 * Layout. fs: `<directory>/<id>` (bytes), `<id>.json` (record, @tus/file-store's own), `<id>.done` (receipt).
 * S3: `<prefix><id>` (the multipart upload, then the object), `<prefix><id>.info` (record),
 * `<prefix><id>.part` (an incomplete trailing part), `<prefix><id>.done` (receipt). The S3 store has no key
 * prefix of its own, so the prefix is part of the store id; src/uploads/tus.ts strips it from URLs.
 */
import { mkdirSync } from 'node:fs';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FileStore } from '@tus/file-store';
import { S3Store } from '@tus/s3-store';
import { type DataStore, ERRORS, type Upload } from '@tus/server';
import { type S3Bucket, s3ClientSettings } from '../storage/s3-client-settings.ts';

export type TusStorageOptions =
  | { kind: 'fs'; directory: string }
  | (S3Bucket & {
      kind: 's3';
      /** Key prefix of every upload object, e.g. "tus/"; uploads never share keys with blobs. */
      prefix: string;
      /** Preferred part size in bytes; S3 refuses non-final parts under 5 MiB. */
      partSize?: number;
    });

/** What a finished upload's hand-over answered, remembered so a retried final request replays it. */
export interface TusReceipt {
  tenantId: string;
  size: number;
  metadata: Record<string, string | null>;
  headers: Record<string, string>;
  body?: object;
  completedAt: number;
}

export interface SweepCutoffs {
  /** Uploads (finished or not) created before this instant (ms) are removed. */
  uploadsBefore: number;
  /** Receipts written before this instant (ms) are removed. */
  receiptsBefore: number;
  /** Ids to leave alone, e.g. uploads whose hand-over is running. */
  keep(id: string): boolean;
}

export interface TusBackend extends DataStore {
  /** Prefix of every store id (see the layout above); '' on fs. */
  readonly idPrefix: string;
  record(id: string): Promise<Upload | undefined>;
  open(id: string): Promise<Readable>;
  discard(id: string): Promise<void>;
  readReceipt(id: string): Promise<TusReceipt | undefined>;
  writeReceipt(id: string, receipt: TusReceipt): Promise<void>;
  deleteReceipt(id: string): Promise<void>;
  /** Answers how many uploads it removed. */
  sweep(cutoffs: SweepCutoffs): Promise<number>;
  close(): void;
}

export function createTusBackend(storage: TusStorageOptions, expirationMs: number): TusBackend {
  // FileStore creates its folder in a callback that throws out of nowhere on failure; fail here instead.
  if (storage.kind === 'fs') mkdirSync(storage.directory, { recursive: true });
  return storage.kind === 'fs'
    ? new TusFileStore(storage.directory, expirationMs)
    : new TusS3Store(storage, expirationMs);
}

// Ids are validated by src/uploads/tus.ts before they reach a store; the sweep only acts on names of this
// shape, so foreign files in the folder or bucket are never touched.
const FS_NAME = /^([0-9a-f]{32})\.(json|done|done\.tmp)$/;
const S3_NAME = /^([0-9a-f]{32})\.(info|done)$/;

class TusFileStore extends FileStore implements TusBackend {
  readonly idPrefix = '';

  constructor(directory: string, expirationMs: number) {
    super({ directory, expirationPeriodInMilliseconds: expirationMs });
    // Deferred length is refused (src/uploads/tus.ts), so it is not advertised either.
    this.extensions = this.extensions.filter((name) => name !== 'creation-defer-length');
  }

  async record(id: string): Promise<Upload | undefined> {
    return this.configstore.get(id);
  }

  async open(id: string): Promise<Readable> {
    return this.read(id);
  }

  async discard(id: string): Promise<void> {
    await rm(join(this.directory, id), { force: true });
    await rm(join(this.directory, `${id}.json`), { force: true });
  }

  async readReceipt(id: string): Promise<TusReceipt | undefined> {
    try {
      return JSON.parse(await readFile(join(this.directory, `${id}.done`), 'utf8')) as TusReceipt;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async writeReceipt(id: string, receipt: TusReceipt): Promise<void> {
    // Renamed into place so that a reader never sees half a receipt.
    const temporary = join(this.directory, `${id}.done.tmp`);
    await writeFile(temporary, JSON.stringify(receipt));
    await rename(temporary, join(this.directory, `${id}.done`));
  }

  async deleteReceipt(id: string): Promise<void> {
    await rm(join(this.directory, `${id}.done`), { force: true });
  }

  async sweep(cutoffs: SweepCutoffs): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.directory)) {
      const match = FS_NAME.exec(name);
      if (!match) continue;
      const [, id, kind] = match as unknown as [string, string, string];
      // The record is written once, at creation (deferred length, the one thing that rewrites it, is
      // refused), so its mtime is the upload's creation time; a receipt's is its completion time.
      const written = await stat(join(this.directory, name)).then(
        (stats) => stats.mtimeMs,
        () => undefined,
      );
      if (written === undefined) continue;
      if (kind === 'json' && written < cutoffs.uploadsBefore && !cutoffs.keep(id)) {
        await this.discard(id);
        removed++;
      } else if (kind !== 'json' && written < cutoffs.receiptsBefore) {
        // A receipt, or one whose writer died before renaming it into place.
        await rm(join(this.directory, name), { force: true });
      }
    }
    return removed;
  }

  close(): void {}
}

type S3Storage = Extract<TusStorageOptions, { kind: 's3' }>;

class TusS3Store extends S3Store implements TusBackend {
  readonly idPrefix: string;

  constructor(storage: S3Storage, expirationMs: number) {
    super({
      partSize: storage.partSize,
      expirationPeriodInMilliseconds: expirationMs,
      // Tags only serve a bucket lifecycle rule; not every S3 look-alike has them, and sweep() cleans up.
      useTags: false,
      s3ClientConfig: { bucket: storage.bucket, ...s3ClientSettings(storage) },
    });
    this.idPrefix = storage.prefix;
    this.extensions = this.extensions.filter((name) => name !== 'creation-defer-length');
  }

  async record(id: string): Promise<Upload | undefined> {
    try {
      return (await this.getMetadata(id)).file;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async open(id: string): Promise<Readable> {
    return this.read(id);
  }

  /**
   * S3Store.remove aborts the multipart upload first and, when S3 answers NoSuchUpload (as it does once the
   * upload was completed), reports "not found" and leaves the object and its .info behind. A finished upload
   * whose hand-over failed must still be removable (termination, expiry), and the .part object too.
   */
  override async remove(id: string): Promise<void> {
    let uploadId: string | undefined;
    try {
      uploadId = (await this.getMetadata(id))['upload-id'];
    } catch (error) {
      if (isNotFound(error)) throw ERRORS.FILE_NOT_FOUND;
      throw error;
    }
    if (uploadId) {
      await this.client
        .abortMultipartUpload({ Bucket: this.bucket, Key: id, UploadId: uploadId })
        .catch(ignoreNotFound);
    }
    await this.client.deleteObjects({
      Bucket: this.bucket,
      Delete: { Objects: [{ Key: id }, { Key: this.infoKey(id) }, { Key: this.partKey(id, true) }] },
    });
    await this.clearCache(id);
  }

  async discard(id: string): Promise<void> {
    await this.remove(id).catch((error: unknown) => {
      if (error !== ERRORS.FILE_NOT_FOUND) throw error;
    });
  }

  async readReceipt(id: string): Promise<TusReceipt | undefined> {
    try {
      const object = await this.client.getObject({ Bucket: this.bucket, Key: `${id}.done` });
      return JSON.parse((await object.Body?.transformToString()) ?? '') as TusReceipt;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async writeReceipt(id: string, receipt: TusReceipt): Promise<void> {
    await this.client.putObject({
      Bucket: this.bucket,
      Key: `${id}.done`,
      Body: JSON.stringify(receipt),
      ContentType: 'application/json',
    });
  }

  async deleteReceipt(id: string): Promise<void> {
    await this.client.deleteObject({ Bucket: this.bucket, Key: `${id}.done` });
  }

  async sweep(cutoffs: SweepCutoffs): Promise<number> {
    let removed = 0;
    const receipts: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.listObjectsV2({
        Bucket: this.bucket,
        Prefix: this.idPrefix,
        ContinuationToken: token,
      });
      for (const object of page.Contents ?? []) {
        const key = object.Key ?? '';
        const match = key.startsWith(this.idPrefix) ? S3_NAME.exec(key.slice(this.idPrefix.length)) : null;
        const written = object.LastModified?.getTime();
        if (!match || written === undefined) continue;
        const id = this.idPrefix + match[1];
        // The .info record is written at creation (see TusFileStore.sweep on why that is enough).
        if (match[2] === 'done') {
          if (written < cutoffs.receiptsBefore) receipts.push(key);
        } else if (written < cutoffs.uploadsBefore && !cutoffs.keep(id)) {
          await this.discard(id);
          removed++;
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    for (let start = 0; start < receipts.length; start += 1000) {
      const batch = receipts.slice(start, start + 1000).map((Key) => ({ Key }));
      await this.client.deleteObjects({ Bucket: this.bucket, Delete: { Objects: batch } });
    }
    await this.#abortOrphans(cutoffs);
    return removed;
  }

  /** Multipart uploads whose .info was never written (a crash inside create()) are found only this way. */
  async #abortOrphans(cutoffs: SweepCutoffs): Promise<void> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.client.listMultipartUploads({
        Bucket: this.bucket,
        Prefix: this.idPrefix,
        KeyMarker: keyMarker,
        UploadIdMarker: uploadIdMarker,
      });
      for (const upload of page.Uploads ?? []) {
        const initiated = upload.Initiated?.getTime();
        if (!upload.Key || initiated === undefined || initiated >= cutoffs.uploadsBefore) continue;
        if (cutoffs.keep(upload.Key)) continue;
        await this.client
          .abortMultipartUpload({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId })
          .catch(ignoreNotFound);
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
  }

  close(): void {
    this.client.destroy();
  }
}

function isNotFound(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload';
}

function ignoreNotFound(error: unknown): void {
  if (!isNotFound(error)) throw error;
}
