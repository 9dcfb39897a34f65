/** A buffer on loan from a BufferPool; `release` it once nothing reads its bytes any more. */
export interface BufferLease {
  /** Exactly the requested length (a view of a possibly larger pooled buffer). */
  readonly bytes: Buffer;
  /** Returns the buffer to the pool. Idempotent: a second call does nothing. */
  release(): void;
}

const MIN_CLASS_BYTES = 16 * 1024;
/** What a released buffer holds when `BufferPool.poisonReleased` is on. */
export const POISON = 0xdb;

/**
 * Reusable buffers for response bodies read from storage. Allocating a fresh buffer per response makes V8
 * run a full mark-compact every few hundred milliseconds under load (the external memory of hundreds of
 * megabytes a second of short-lived buffers), about a third of the CPU of the 64 KiB range benchmark.
 *
 * Buffers come in power-of-two size classes from 16 KiB up to `maxBufferBytes`; at most `maxPooledBytes`
 * of idle buffers are kept, anything beyond is left to the garbage collector. A lease must only be released
 * once the socket is done with the bytes (for an HTTP response: its 'close' event), or another response
 * could overwrite bytes still queued for sending; the lease object makes a double release harmless.
 * With `BufferPool.poisonReleased` on, every released buffer is overwritten at once, so that a test
 * reading a response whose buffer was released too early sees it whether or not the buffer is reused.
 */
export class BufferPool {
  /**
   * Tests only: fill each buffer with POISON as it is released (an extra write of every byte served).
   * Process-wide, so that it reaches the pools a server builds for itself.
   */
  static poisonReleased = false;

  readonly #maxBufferBytes: number;
  readonly #maxPooledBytes: number;
  readonly #free = new Map<number, Buffer[]>();
  #pooledBytes = 0;

  constructor(limits: { maxBufferBytes: number; maxPooledBytes: number }) {
    this.#maxBufferBytes = limits.maxBufferBytes;
    this.#maxPooledBytes = limits.maxPooledBytes;
  }

  /** The largest length `acquire` accepts. */
  get maxBufferBytes(): number {
    return this.#maxBufferBytes;
  }

  /** Bytes of idle buffers kept for reuse. */
  get pooledBytes(): number {
    return this.#pooledBytes;
  }

  acquire(length: number): BufferLease {
    if (!(length >= 0 && length <= this.#maxBufferBytes)) {
      throw new RangeError(`cannot lend a buffer of ${length} bytes (at most ${this.#maxBufferBytes})`);
    }
    const size = sizeClass(length);
    const pooled = this.#free.get(size)?.pop();
    if (pooled) this.#pooledBytes -= size;
    // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool that others write into.
    const buffer = pooled ?? Buffer.allocUnsafeSlow(size);
    let released = false;
    return {
      bytes: buffer.subarray(0, length),
      release: () => {
        if (released) return;
        released = true;
        if (BufferPool.poisonReleased) buffer.fill(POISON);
        this.#give(buffer);
      },
    };
  }

  #give(buffer: Buffer): void {
    if (this.#pooledBytes + buffer.length > this.#maxPooledBytes) return;
    let list = this.#free.get(buffer.length);
    if (!list) {
      list = [];
      this.#free.set(buffer.length, list);
    }
    list.push(buffer);
    this.#pooledBytes += buffer.length;
  }
}

/** The smallest power of two of at least MIN_CLASS_BYTES that holds `length`. */
function sizeClass(length: number): number {
  let size = MIN_CLASS_BYTES;
  while (size < length) size *= 2;
  return size;
}
