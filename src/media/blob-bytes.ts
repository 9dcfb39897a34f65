import type { BlobStore } from '../storage/blob-store.ts';

/** A blob larger than the caller's limit; the caller says what that means to its client. */
export class BlobTooLargeForMemoryError extends Error {
  constructor(sha256: string, limit: number) {
    super(`blob ${sha256} is larger than ${limit} bytes, the most read into memory for processing`);
  }
}

/**
 * A whole blob in memory, for decoders that need random access (libvips reads some formats' trailers
 * first). Bounded by `maxBytes`: the read stops, and rejects, as soon as more arrived.
 */
export async function readBlob(store: BlobStore, sha256: string, maxBytes: number): Promise<Buffer> {
  const stream = await store.get(sha256);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw new BlobTooLargeForMemoryError(sha256, maxBytes);
      chunks.push(chunk);
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks, total);
}
