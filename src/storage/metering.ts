import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { BlobTooLargeError } from './blob-store.ts';

/**
 * A pass-through stream that hashes (SHA-256) and counts the bytes flowing through it, and fails with
 * BlobTooLargeError as soon as more than `maxBytes` have passed, so an over-limit body is cut off
 * instead of being written out in full first.
 */
export class MeteringStream extends Transform {
  #hash: Hash = createHash('sha256');
  #bytes = 0;
  #maxBytes: number;
  #onProgress: ((bytes: number) => void) | undefined;

  constructor(maxBytes: number, onProgress?: (bytes: number) => void) {
    super();
    this.#maxBytes = maxBytes;
    this.#onProgress = onProgress;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The hex digest; only meaningful once the stream has finished. */
  digest(): string {
    return this.#hash.digest('hex');
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#maxBytes) {
      callback(new BlobTooLargeError(this.#maxBytes));
      return;
    }
    this.#hash.update(chunk);
    this.#onProgress?.(this.#bytes);
    callback(null, chunk);
  }
}
