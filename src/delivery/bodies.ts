import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import type { Config } from '../config/config.ts';
import type { BlobStore, ByteRange } from '../storage/blob-store.ts';
import { type BufferLease, BufferPool } from './buffer-pool.ts';
import type { Representation } from './lookup.ts';
import { Memo } from './memo.ts';

/**
 * Where the origin's response bodies come from (origin.ts decides what to answer; this decides how the
 * bytes get there):
 * - blobs up to `blobCacheItemBytes`, whole, from memory (a Memo bounded by `blobCacheBytes`, least
 *   recently used out). Blobs are content-addressed and so immutable: an entry never needs invalidating,
 *   the hash that names it is its version. This saves an open, read and close per request on disk and a
 *   round trip on S3, which dominate the cost of small files; the item limit keeps one large file from
 *   pushing out thousands of small ones;
 * - other bodies and single ranges up to `deliveryBufferMaxBytes` as one read into a pooled buffer, sent
 *   with the head in one write and returned to the pool when the response closes;
 * - anything larger streamed from the store.
 * A body is a Buffer when its bytes were at hand (in memory, or a read the store could do at once, see
 * `BlobStore.readIntoNow`), so that a warm response needs no promise at all.
 */
export class Bodies {
  readonly #store: BlobStore;
  readonly #blobs: Memo<Buffer>;
  readonly #blobItemBytes: number;
  readonly #pool: BufferPool;

  constructor(
    store: BlobStore,
    settings: Pick<
      Config,
      'blobCacheBytes' | 'blobCacheItemBytes' | 'deliveryBufferMaxBytes' | 'deliveryBufferPoolBytes'
    >,
  ) {
    this.#store = store;
    const itemBytes = Math.min(settings.blobCacheItemBytes, settings.blobCacheBytes);
    this.#blobItemBytes = itemBytes;
    this.#blobs = new Memo({
      maxWeight: settings.blobCacheBytes,
      weigh: (bytes) => bytes.length,
      keep: (bytes) => bytes.length <= itemBytes,
    });
    this.#pool = new BufferPool({
      maxBufferBytes: settings.deliveryBufferMaxBytes,
      maxPooledBytes: settings.deliveryBufferPoolBytes,
    });
  }

  /** The body of a 200 or single-range 206 of `rep` on `res`. */
  body(res: ServerResponse, rep: Representation, r: ByteRange): Buffer | Promise<Buffer | Readable> {
    if (rep.size <= this.#blobItemBytes) {
      const whole = this.#blobs.getNow(rep.sha256);
      if (whole) return whole.subarray(r.start, r.end + 1);
      return this.#whole(rep.sha256).then((loaded) => loaded.subarray(r.start, r.end + 1));
    }
    const length = r.end - r.start + 1;
    if (length > this.#pool.maxBufferBytes) return this.#store.get(rep.sha256, r);
    const lease = this.#pool.acquire(length);
    try {
      if (this.#store.readIntoNow?.(rep.sha256, r, lease.bytes)) return lend(res, lease);
    } catch (error) {
      lease.release();
      throw error;
    }
    return this.#store.readInto(rep.sha256, r, lease.bytes).then(
      () => lend(res, lease),
      (error: unknown) => {
        lease.release();
        throw error;
      },
    );
  }

  /** One part of a multipart/byteranges body: from memory for small blobs, else streamed from storage. */
  async part(rep: Representation, r: ByteRange): Promise<Readable> {
    if (rep.size > this.#blobItemBytes) return this.#store.get(rep.sha256, r);
    return Readable.from([(await this.#whole(rep.sha256)).subarray(r.start, r.end + 1)]);
  }

  /** A small blob's bytes, whole: from memory, or read once however many requests want them meanwhile. */
  #whole(sha256: string): Promise<Buffer> {
    return this.#blobs.get(sha256, async () => buffer(await this.#store.get(sha256)));
  }
}

/** The leased bytes, returned to the pool once the response closes. */
function lend(res: ServerResponse, lease: BufferLease): Buffer {
  // Not before 'close': until then the socket may still be sending these bytes. A response that closed
  // already never emits it again, and its buffer is simply left to the garbage collector.
  res.once('close', lease.release);
  return lease.bytes;
}
