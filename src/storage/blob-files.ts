import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { BlobNotFoundError, type ByteRange } from './blob-store.ts';
import { HandleCache } from './handle-cache.ts';

/** Ranges up to this size are streamed from one positional read into an exact-size buffer. */
const SINGLE_READ_BYTES = 1024 * 1024;
/**
 * Read size of streamed bodies. Larger chunks mean fewer thread-pool round trips (each costs about as much
 * CPU as copying 64 KiB); 256 KiB keeps the memory held per slow client modest.
 */
const STREAM_CHUNK_BYTES = 256 * 1024;

export interface BlobFilesOptions {
  /** Open file handles kept between requests. */
  openFiles: number;
  /** `readInto` of up to this many bytes from a warm handle reads on the event loop; 0 never does. */
  syncReadMaxBytes: number;
}

/**
 * Reading immutable blob files: the part the fs store and the local cache of the S3 store share. Files are
 * content-addressed and never change, so their handles stay open between requests (HandleCache) and every
 * read is positional.
 *
 * A read from a file read recently (its handle still open) is done synchronously, on the event loop, as
 * nginx does by default. Handing a read to libuv's thread pool costs two thread wake-ups, which on this
 * class of (virtualised) machine cost more than copying 1 MiB out of the page cache: 635 against 361 µs of
 * CPU per 1 MiB response, 109 against 80 µs per 64 KiB range (docs/benchmarks.md). The price is nginx's
 * too: if those pages have left the page cache, the disk read stalls this process's other requests for
 * its duration. A file's first read, and anything over `syncReadMaxBytes`, still goes to the thread pool.
 */
export class BlobFiles {
  readonly #handles: HandleCache;
  readonly #syncReadMaxBytes: number;

  /** `pathOf` names the file of a blob; handles are cached by the blob's SHA-256. */
  constructor(pathOf: (sha256: string) => string, options: BlobFilesOptions) {
    this.#handles = new HandleCache(options.openFiles, pathOf);
    this.#syncReadMaxBytes = options.syncReadMaxBytes;
  }

  /** Streams an inclusive range (or everything). A missing file rejects with BlobNotFoundError. */
  async stream(sha256: string, range?: ByteRange): Promise<Readable> {
    // Acquire first so a missing blob rejects here rather than erroring mid-response.
    const { handle, release } = await this.#acquire(sha256);
    if (range && range.end - range.start < SINGLE_READ_BYTES) {
      try {
        const length = range.end - range.start + 1;
        const bytes = Buffer.allocUnsafe(length);
        const read = await readFully(handle, bytes, range.start);
        return Readable.from([bytes.subarray(0, read)]);
      } finally {
        release();
      }
    }
    const stat = range
      ? null
      : await handle.stat().catch((error: unknown) => {
          release();
          throw error;
        });
    return new SharedHandleStream(handle, range?.start ?? 0, range ? range.end + 1 : stat!.size, release);
  }

  /**
   * Reads the inclusive `range` into the start of `target` (at least as long as the range). Rejects with
   * BlobNotFoundError for a missing file and with an Error when the file is shorter than the range.
   */
  async readInto(sha256: string, range: ByteRange, target: Buffer): Promise<void> {
    const length = range.end - range.start + 1;
    const { handle, warm, release } = await this.#acquire(sha256);
    try {
      const into = target.subarray(0, length);
      const read =
        warm && length <= this.#syncReadMaxBytes
          ? readFullySync(handle, into, range.start)
          : await readFully(handle, into, range.start);
      if (read !== length) throw new Error(`blob ${sha256} ended after ${read} of ${length} bytes`);
    } finally {
      release();
    }
  }

  /**
   * `readInto` done now, on the event loop, when it would be synchronous anyway (a warm handle and at most
   * `syncReadMaxBytes`): true once read; false, having done nothing, when it would have to wait. Throws
   * like `readInto` when the file is shorter than the range.
   */
  readIntoNow(sha256: string, range: ByteRange, target: Buffer): boolean {
    const length = range.end - range.start + 1;
    if (length > this.#syncReadMaxBytes) return false;
    // Only a name that was opened (and so checked) before is ever found here.
    const handle = this.#handles.acquireNow(sha256);
    if (handle === undefined) return false;
    const read = readFullySync(handle, target.subarray(0, length), range.start);
    if (read !== length) throw new Error(`blob ${sha256} ended after ${read} of ${length} bytes`);
    return true;
  }

  /** Drops the cached handle of a deleted blob so its space is released. */
  forget(sha256: string): void {
    this.#handles.forget(sha256);
  }

  async close(): Promise<void> {
    await this.#handles.close();
  }

  async #acquire(sha256: string): Promise<{ handle: FileHandle; warm: boolean; release: () => void }> {
    return this.#handles.acquire(sha256).catch((error: NodeJS.ErrnoException) => {
      throw error.code === 'ENOENT' ? new BlobNotFoundError(sha256) : error;
    });
  }
}

/** Fills `target` from `position` on; fewer bytes only at end of file. One read in the usual case. */
async function readFully(handle: FileHandle, target: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await handle.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

function readFullySync(handle: FileHandle, target: Buffer, position: number): number {
  let done = 0;
  while (done < target.length) {
    const bytesRead = readSync(handle.fd, target, done, target.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/**
 * Streams [start, end) of a cached handle with positional reads, and never closes the handle. Node's
 * fs.ReadStream closes the handle it reads from whenever it is destroyed, autoClose notwithstanding: a
 * client that went away mid-body (pipeline destroys the source) closed the handle shared by every other
 * reader of that blob, which then failed with EBADF until the cache evicted it.
 */
class SharedHandleStream extends Readable {
  readonly #handle: FileHandle;
  readonly #end: number;
  readonly #release: () => void;
  #position: number;

  constructor(handle: FileHandle, start: number, end: number, release: () => void) {
    super({ highWaterMark: STREAM_CHUNK_BYTES });
    this.#handle = handle;
    this.#position = start;
    this.#end = end;
    this.#release = release;
  }

  override _read(): void {
    const length = Math.min(STREAM_CHUNK_BYTES, this.#end - this.#position);
    if (length <= 0) {
      this.push(null);
      return;
    }
    const buffer = Buffer.allocUnsafe(length);
    this.#handle.read(buffer, 0, length, this.#position).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) {
          this.destroy(new Error(`blob file ended at byte ${this.#position}, before ${this.#end}`));
          return;
        }
        this.#position += bytesRead;
        this.push(bytesRead === length ? buffer : buffer.subarray(0, bytesRead));
      },
      (error: unknown) => this.destroy(error as Error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#release();
    callback(error);
  }
}
