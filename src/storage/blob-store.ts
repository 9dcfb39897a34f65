import type { Readable } from 'node:stream';

/**
 * Content-addressed blob storage.
 *
 * Every blob is named by the lowercase hex SHA-256 of its bytes, so identical content is stored once.
 * Writing is two-phase so that the metadata database can protect a blob before it becomes visible
 * (see docs/architecture.md, "Blob lifecycle and garbage collection"):
 *
 *   const staged = await store.stage(body, { maxBytes });   // bytes durable in a temporary place
 *   ... record the blob row in the database ...
 *   await store.commit(staged);                             // now readable under staged.sha256
 *
 * Contract (checked by test/storage/contract.ts against every implementation):
 * - `stage` consumes the whole stream, computing SHA-256 and size as the bytes pass; nothing is buffered
 *   whole. If the stream errors, or more than `maxBytes` arrive (BlobTooLargeError), the temporary data is
 *   removed and the promise rejects; nothing becomes visible.
 * - `commit` is idempotent and atomic: readers see either no blob or the whole blob, never a prefix.
 *   Committing content that already exists keeps one copy.
 * - `discard` removes a staged temporary; safe to call after commit (no-op) or twice.
 * - `get` streams the blob or an inclusive byte range of it; a missing blob rejects with BlobNotFoundError.
 * - `readInto` reads an inclusive byte range into the start of a caller's buffer (delivery reuses its
 *   buffers, see src/delivery/buffer-pool.ts); it rejects like `get`, and when the blob is shorter.
 * - `readIntoNow`, where a store offers it, is `readInto` done before it returns: true once exactly the
 *   range's bytes are in the buffer; false, having written nothing, whenever it would have to wait. It
 *   throws where `readInto` would reject, or answers false.
 * - `stage` hands each chunk of the body to `release` once it is done with it, and never reads it after.
 * - `stat` answers null for a missing blob. `delete` of a missing blob succeeds.
 * - `list` yields every committed blob whose hash starts with `prefix` (hex), in no particular order.
 * - `sweepTemporary` removes staged temporaries older than `olderThanMs` (left behind by a crash).
 */
export interface BlobStore {
  readonly kind: 'fs' | 's3';
  stage(body: Readable, options: StageOptions): Promise<StagedBlob>;
  commit(staged: StagedBlob): Promise<void>;
  discard(staged: StagedBlob): Promise<void>;
  get(sha256: string, range?: ByteRange): Promise<Readable>;
  readInto(sha256: string, range: ByteRange, target: Buffer): Promise<void>;
  /**
   * `readInto` without waiting, for stores that can (the one synchronous twin in storage; such twins are
   * named `<method>Now`): true once the bytes are in `target`; false, having done nothing, when the read
   * would have to wait (not on local disk, a cold file, a large range). The origin tries it before
   * `readInto` (src/delivery/bodies.ts) so that a warm range needs no promise: without it a 64 KiB range
   * cost 4-8 % more CPU (docs/architecture.md, "Answered at once"). Bytes live outside the process's
   * memos, in the page cache, so no memo in delivery can stand in for it.
   */
  readIntoNow?(sha256: string, range: ByteRange, target: Buffer): boolean;
  stat(sha256: string): Promise<BlobStat | null>;
  delete(sha256: string): Promise<void>;
  list(prefix?: string): AsyncIterable<BlobStat>;
  sweepTemporary(olderThanMs: number): Promise<number>;
  /** Cheap reachability probe for /readyz. Rejects when the backend cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface StageOptions {
  /** Reject with BlobTooLargeError once more than this many bytes have arrived. */
  maxBytes: number;
  /** Called as bytes are written, at most every few hundred milliseconds or so by the caller's taste. */
  onProgress?: (bytesWritten: number) => void;
  /**
   * Called with each chunk of the body once the store is done with it (its bytes written or copied), and
   * the store reads it no more (the contract suite poisons released chunks to check). The HTTP upload
   * route passes `releaseChunk` (chunks.ts) for the socket's buffers, which nothing else holds; a caller
   * whose chunks are shared must not.
   */
  release?: (chunk: Buffer) => void;
}

export interface StagedBlob {
  readonly sha256: string;
  readonly size: number;
  /** Implementation-private handle to the temporary data (a path, an object key). */
  readonly temp: string;
}

/** Inclusive byte positions, as in an HTTP Range (`bytes=start-end`). */
export interface ByteRange {
  start: number;
  end: number;
}

export interface BlobStat {
  sha256: string;
  size: number;
  /** When the blob was last written (file mtime, object LastModified). */
  modifiedAt: Date;
}

export class BlobNotFoundError extends Error {
  constructor(sha256: string) {
    super(`blob ${sha256} not found`);
    this.name = 'BlobNotFoundError';
  }
}

export class BlobTooLargeError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`content exceeds the limit of ${limit} bytes`);
    this.name = 'BlobTooLargeError';
    this.limit = limit;
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function assertSha256(value: string): void {
  if (!SHA256_HEX.test(value)) throw new TypeError(`not a SHA-256 hex digest: ${JSON.stringify(value)}`);
}

/**
 * Copies a stream of exactly `length` bytes into the start of `target`: `readInto` for stores whose reads
 * are streams. More or fewer bytes than `length` reject, so a short object never passes for a whole one.
 */
export async function readStreamInto(stream: Readable, target: Buffer, length: number): Promise<void> {
  let offset = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (offset + chunk.length > length) {
      stream.destroy();
      throw new Error(`storage delivered more than the ${length} bytes asked for`);
    }
    chunk.copy(target, offset);
    offset += chunk.length;
  }
  if (offset !== length) throw new Error(`storage delivered ${offset} of ${length} bytes`);
}
