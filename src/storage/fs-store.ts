import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BlobFiles, type BlobFilesOptions } from './blob-files.ts';
import {
  assertSha256,
  type BlobStat,
  type BlobStore,
  type ByteRange,
  type StagedBlob,
  type StageOptions,
} from './blob-store.ts';
import { FileSink } from './chunks.ts';
import { MeteringStream } from './metering.ts';

/**
 * Blobs as files under `<root>/blobs/ab/cd/<sha256>`, staged under `<root>/tmp`.
 *
 * Staging writes a temporary file and fsyncs it; commit hard-links it into place (atomic, and it never
 * replaces an existing blob, which already holds the same bytes) and fsyncs the directory so the name
 * survives a power cut. Both folders live on one filesystem, which link(2) needs.
 */
export class FsBlobStore implements BlobStore {
  readonly kind = 'fs' as const;
  readonly #blobs: string;
  readonly #tmp: string;
  readonly #files: BlobFiles;

  constructor(root: string, options: Partial<BlobFilesOptions> = {}) {
    this.#files = new BlobFiles((sha256) => this.#path(sha256), {
      openFiles: options.openFiles ?? 256,
      syncReadMaxBytes: options.syncReadMaxBytes ?? 0,
    });
    this.#blobs = join(root, 'blobs');
    this.#tmp = join(root, 'tmp');
  }

  async init(): Promise<this> {
    await mkdir(this.#blobs, { recursive: true });
    await mkdir(this.#tmp, { recursive: true });
    return this;
  }

  #path(sha256: string): string {
    assertSha256(sha256);
    return join(this.#blobs, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  async stage(body: Readable, options: StageOptions): Promise<StagedBlob> {
    const temp = join(this.#tmp, `${randomUUID()}.part`);
    const meter = new MeteringStream(options.maxBytes, options.onProgress);
    try {
      // The sink fsyncs before it finishes, and closes the file whether it finishes or fails.
      await pipeline(body, meter, new FileSink(temp, options.release));
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    return { sha256: meter.digest(), size: meter.bytes, temp };
  }

  async commit(staged: StagedBlob): Promise<void> {
    const target = this.#path(staged.sha256);
    const dir = join(target, '..');
    await mkdir(dir, { recursive: true });
    try {
      await link(staged.temp, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // EEXIST: the same content is already there (content addressing), so keep the existing copy.
      // ENOENT with the blob in place: this staged blob was committed before (its temporary is gone).
      if (code !== 'EEXIST' && !(code === 'ENOENT' && (await this.stat(staged.sha256)))) throw error;
    }
    await syncDirectory(dir);
    await rm(staged.temp, { force: true });
  }

  async discard(staged: StagedBlob): Promise<void> {
    await rm(staged.temp, { force: true });
  }

  async get(sha256: string, range?: ByteRange): Promise<Readable> {
    return this.#files.stream(sha256, range);
  }

  async readInto(sha256: string, range: ByteRange, target: Buffer): Promise<void> {
    await this.#files.readInto(sha256, range, target);
  }

  readIntoNow(sha256: string, range: ByteRange, target: Buffer): boolean {
    return this.#files.readIntoNow(sha256, range, target);
  }

  async stat(sha256: string): Promise<BlobStat | null> {
    try {
      const info = await stat(this.#path(sha256));
      return { sha256, size: info.size, modifiedAt: info.mtime };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  async delete(sha256: string): Promise<void> {
    const path = this.#path(sha256);
    this.#files.forget(sha256);
    await rm(path, { force: true });
  }

  async *list(prefix = ''): AsyncIterable<BlobStat> {
    for (const a of await readdirOrEmpty(this.#blobs)) {
      if (!sharesPrefix(a, prefix)) continue;
      for (const b of await readdirOrEmpty(join(this.#blobs, a))) {
        if (!sharesPrefix(a + b, prefix)) continue;
        for (const name of await readdirOrEmpty(join(this.#blobs, a, b))) {
          if (!name.startsWith(prefix)) continue;
          const found = await this.stat(name).catch(() => null);
          if (found) yield found;
        }
      }
    }
  }

  async sweepTemporary(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    for (const name of await readdirOrEmpty(this.#tmp)) {
      const path = join(this.#tmp, name);
      const info = await stat(path).catch(() => null);
      if (info && info.mtimeMs <= cutoff) {
        await unlink(path).catch(() => {});
        removed++;
      }
    }
    return removed;
  }

  async ping(): Promise<void> {
    await stat(this.#blobs);
  }

  async close(): Promise<void> {
    await this.#files.close();
  }
}

/** Whether a directory level named `segment` can hold hashes starting with `prefix`. */
function sharesPrefix(segment: string, prefix: string): boolean {
  return segment.startsWith(prefix) || prefix.startsWith(segment);
}

async function readdirOrEmpty(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
