import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BlobFiles } from './blob-files.ts';
import {
  assertSha256,
  BlobNotFoundError,
  type BlobStat,
  type BlobStore,
  type ByteRange,
  type StagedBlob,
  type StageOptions,
} from './blob-store.ts';
import { MeteringStream } from './metering.ts';

export interface DiskCacheOptions {
  /** Folder of the cache; created if missing. Several processes may share it. */
  dir: string;
  /** Bytes of cached blobs this process keeps; blobs over an eighth of it are never cached. */
  maxBytes: number;
  /** Open file handles kept between reads. */
  openFiles: number;
  /** See BlobFilesOptions. */
  syncReadMaxBytes: number;
}

/** After a failed fill, requests for that blob go straight to the store for this long before a retry. */
const FILL_RETRY_MS = 60_000;
const TEMP_SUFFIX = '.part';

/**
 * A read-through cache of a remote store's blobs (S3) on local disk, the way nginx's proxy_cache or
 * Varnish's file storage serve hot content of an object store. Blobs are content-addressed and never
 * change, so a cached copy can never be stale; the only questions are space and integrity.
 *
 * - Reads of a cached blob are local file reads (BlobFiles). A miss is answered from the store as before,
 *   and starts filling the cache in the background: one download per blob however many requests miss at
 *   once (requests arriving meanwhile are still answered from the store).
 * - A fill downloads into `tmp/<pid>-<uuid>.part`, checks the SHA-256 against the blob's name, fsyncs, and
 *   renames into `<ab>/<sha256>`: a crash at any point leaves at most a temporary, which the next start
 *   deletes once its process is gone, and never a partial file under a blob's name.
 * - Space: least recently read blobs are deleted once the total passes `maxBytes`. Each process accounts
 *   for the blobs it has read; blobs only other processes sharing the folder read count against theirs.
 * - Writes, listings and deletes go to the store; `delete` also drops the local copy.
 */
export class DiskCachedBlobStore implements BlobStore {
  readonly kind: BlobStore['kind'];
  readonly #store: BlobStore;
  readonly #dir: string;
  readonly #tmp: string;
  readonly #maxBytes: number;
  readonly #maxItemBytes: number;
  readonly #files: BlobFiles;
  /** Cached blobs and their sizes, least recently read first. */
  readonly #index = new Map<string, number>();
  readonly #filling = new Map<string, Promise<boolean>>();
  readonly #failed = new Map<string, number>();
  #bytes = 0;

  constructor(store: BlobStore, options: DiskCacheOptions) {
    this.kind = store.kind;
    this.#store = store;
    this.#dir = options.dir;
    this.#tmp = join(options.dir, 'tmp');
    this.#maxBytes = options.maxBytes;
    this.#maxItemBytes = Math.floor(options.maxBytes / 8);
    this.#files = new BlobFiles((sha256) => this.#path(sha256), {
      openFiles: options.openFiles,
      syncReadMaxBytes: options.syncReadMaxBytes,
    });
  }

  /** Creates the folder, deletes temporaries of dead processes, and indexes what earlier runs cached. */
  async init(): Promise<this> {
    await mkdir(this.#tmp, { recursive: true });
    for (const name of await readdir(this.#tmp)) {
      const pid = Number(name.slice(0, name.indexOf('-')));
      if (!isRunning(pid)) await rm(join(this.#tmp, name), { force: true });
    }
    const found: { sha256: string; size: number; mtimeMs: number }[] = [];
    for (const shard of await readdir(this.#dir)) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      for (const sha256 of await readdir(join(this.#dir, shard))) {
        const info = await stat(join(this.#dir, shard, sha256)).catch(() => null);
        if (info?.isFile() && /^[0-9a-f]{64}$/.test(sha256)) found.push({ sha256, ...info });
      }
    }
    // Oldest fills first, as the least recently used ones: the order of reads is not kept across runs.
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const blob of found) this.#add(blob.sha256, blob.size);
    await this.#evict();
    return this;
  }

  /** Bytes of blobs this process has in its index. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether the blob is in this process's index. */
  has(sha256: string): boolean {
    return this.#index.has(sha256);
  }

  async get(sha256: string, range?: ByteRange): Promise<Readable> {
    if (await this.#local(sha256)) {
      try {
        return await this.#files.stream(sha256, range);
      } catch (error) {
        if (!(error instanceof BlobNotFoundError)) throw error;
        this.#unindex(sha256); // evicted by another process sharing the folder
      }
    }
    this.#fillLater(sha256);
    return this.#store.get(sha256, range);
  }

  async readInto(sha256: string, range: ByteRange, target: Buffer): Promise<void> {
    if (await this.#local(sha256)) {
      try {
        return await this.#files.readInto(sha256, range, target);
      } catch (error) {
        if (!(error instanceof BlobNotFoundError)) throw error;
        this.#unindex(sha256);
      }
    }
    this.#fillLater(sha256);
    return this.#store.readInto(sha256, range, target);
  }

  /** Only from a local copy this process knows of; a miss is left to `readInto`, which fills the cache. */
  readIntoNow(sha256: string, range: ByteRange, target: Buffer): boolean {
    return this.#touch(sha256) && this.#files.readIntoNow(sha256, range, target);
  }

  /**
   * Downloads the blob into the cache unless it is there already; concurrent calls share one download.
   * Resolves true once it is cached, false when it cannot be (missing, too large, corrupt, I/O error).
   */
  warm(sha256: string): Promise<boolean> {
    if (this.#index.has(sha256)) return Promise.resolve(true);
    let filling = this.#filling.get(sha256);
    if (!filling) {
      filling = this.#fill(sha256).finally(() => this.#filling.delete(sha256));
      this.#filling.set(sha256, filling);
    }
    return filling;
  }

  stage(body: Readable, options: StageOptions): Promise<StagedBlob> {
    return this.#store.stage(body, options);
  }
  commit(staged: StagedBlob): Promise<void> {
    return this.#store.commit(staged);
  }
  discard(staged: StagedBlob): Promise<void> {
    return this.#store.discard(staged);
  }
  stat(sha256: string): Promise<BlobStat | null> {
    return this.#store.stat(sha256);
  }
  list(prefix?: string): AsyncIterable<BlobStat> {
    return this.#store.list(prefix);
  }
  sweepTemporary(olderThanMs: number): Promise<number> {
    return this.#store.sweepTemporary(olderThanMs);
  }
  ping(): Promise<void> {
    return this.#store.ping();
  }

  async delete(sha256: string): Promise<void> {
    await this.#store.delete(sha256);
    await this.#remove(sha256);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#filling.values());
    await this.#files.close();
    await this.#store.close();
  }

  #path(sha256: string): string {
    assertSha256(sha256);
    return join(this.#dir, sha256.slice(0, 2), sha256);
  }

  /** Whether a local copy exists, indexing one that another process sharing the folder made. */
  async #local(sha256: string): Promise<boolean> {
    if (this.#touch(sha256)) return true;
    if (this.#filling.has(sha256)) return false;
    const info = await stat(this.#path(sha256)).catch(() => null);
    if (!info) return false;
    this.#add(sha256, info.size);
    void this.#evict();
    return true;
  }

  /** Whether this process knows of a local copy; if so it becomes the most recently used. */
  #touch(sha256: string): boolean {
    const size = this.#index.get(sha256);
    if (size === undefined) return false;
    // Map iteration order is insertion order, so the first key is the coldest.
    this.#index.delete(sha256);
    this.#index.set(sha256, size);
    return true;
  }

  #fillLater(sha256: string): void {
    const retryAt = this.#failed.get(sha256);
    if (retryAt !== undefined && retryAt > Date.now()) return;
    void this.warm(sha256);
  }

  async #fill(sha256: string): Promise<boolean> {
    const target = this.#path(sha256);
    const temp = join(this.#tmp, `${process.pid}-${randomUUID()}${TEMP_SUFFIX}`);
    try {
      const info = await this.#store.stat(sha256);
      if (!info || info.size > this.#maxItemBytes) return this.#failedFill(sha256);
      const meter = new MeteringStream(info.size);
      await pipeline(await this.#store.get(sha256), meter, createWriteStream(temp, { flags: 'wx' }));
      // Content addressing makes the download self-checking: bytes that do not hash to their name are
      // never cached (a truncated or corrupted transfer, a wrong object).
      if (meter.bytes !== info.size || meter.digest() !== sha256) return this.#failedFill(sha256);
      await fsync(temp);
      await mkdir(join(target, '..'), { recursive: true });
      await rename(temp, target);
      this.#add(sha256, info.size);
      this.#failed.delete(sha256);
      await this.#evict();
      return true;
    } catch {
      return this.#failedFill(sha256);
    } finally {
      await rm(temp, { force: true });
    }
  }

  #failedFill(sha256: string): false {
    // Bounded: a flood of distinct failures only forgets when to retry, which costs extra downloads.
    if (this.#failed.size >= 10_000) this.#failed.clear();
    this.#failed.set(sha256, Date.now() + FILL_RETRY_MS);
    return false;
  }

  #add(sha256: string, size: number): void {
    if (this.#index.has(sha256)) return;
    this.#index.set(sha256, size);
    this.#bytes += size;
  }

  #unindex(sha256: string): void {
    const size = this.#index.get(sha256);
    if (size === undefined) return;
    this.#index.delete(sha256);
    this.#bytes -= size;
  }

  async #remove(sha256: string): Promise<void> {
    this.#unindex(sha256);
    const path = this.#path(sha256);
    // An open handle keeps serving the (identical) bytes to readers already under way.
    this.#files.forget(sha256);
    await rm(path, { force: true });
  }

  async #evict(): Promise<void> {
    while (this.#bytes > this.#maxBytes) {
      const coldest = this.#index.keys().next().value;
      if (coldest === undefined) return;
      await this.#remove(coldest);
    }
  }
}

async function fsync(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Whether a process with this id exists (signal 0 checks without signalling). */
function isRunning(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
