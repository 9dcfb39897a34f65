import { buffer } from 'node:stream/consumers';
import type { BlobStore } from '../storage/blob-store.ts';

/**
 * Keeps the bytes of small, popular blobs in memory. Blobs are content-addressed and therefore immutable,
 * so an entry never needs invalidating: the hash that names it is its version. This saves an open, read
 * and close per request on disk and a round trip per request on S3, which dominate the cost of serving
 * small files. Memory is bounded by `maxBytes` (least recently used entries go first), and only blobs up
 * to `maxItemBytes` are cached so one large file can't push out thousands of small ones.
 * Concurrent misses for the same blob share one read.
 */
export class BlobCache {
  readonly #store: BlobStore;
  readonly #maxBytes: number;
  readonly #maxItemBytes: number;
  readonly #entries = new Map<string, Buffer>();
  readonly #loading = new Map<string, Promise<Buffer>>();
  #bytes = 0;

  constructor(store: BlobStore, limits: { maxBytes: number; maxItemBytes: number }) {
    this.#store = store;
    this.#maxBytes = limits.maxBytes;
    this.#maxItemBytes = Math.min(limits.maxItemBytes, limits.maxBytes);
  }

  /** Whether a blob of this size is served from memory. */
  accepts(size: number): boolean {
    return size <= this.#maxItemBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The whole blob if it is in memory, without waiting; undefined otherwise. */
  peek(sha256: string): Buffer | undefined {
    const hit = this.#entries.get(sha256);
    if (hit) {
      // Refresh recency: Map iteration order is insertion order, so the first key is the coldest.
      this.#entries.delete(sha256);
      this.#entries.set(sha256, hit);
    }
    return hit;
  }

  /** The whole blob; call only when `accepts(size)`. */
  async get(sha256: string): Promise<Buffer> {
    const hit = this.peek(sha256);
    if (hit) return hit;
    let loading = this.#loading.get(sha256);
    if (!loading) {
      loading = this.#load(sha256).finally(() => this.#loading.delete(sha256));
      this.#loading.set(sha256, loading);
    }
    return loading;
  }

  async #load(sha256: string): Promise<Buffer> {
    const bytes = await buffer(await this.#store.get(sha256));
    if (bytes.length <= this.#maxItemBytes) {
      this.#entries.set(sha256, bytes);
      this.#bytes += bytes.length;
      while (this.#bytes > this.#maxBytes) {
        const [coldest, value] = this.#entries.entries().next().value!;
        this.#entries.delete(coldest);
        this.#bytes -= value.length;
      }
    }
    return bytes;
  }
}
