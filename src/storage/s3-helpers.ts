import { Readable } from 'node:stream';
import { S3ServiceException } from '@aws-sdk/client-s3';

/* Helpers of S3BlobStore (s3-store.ts) that need none of its state. */

/**
 * A missing object: NoSuchKey from GET, a bare 404 from HEAD (which has no body to name the error).
 * NoSuchBucket is a configuration fault, not a missing blob, so it propagates.
 */
export function isMissingKey(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  if (error.name === 'NoSuchKey' || error.name === 'NotFound') return true;
  return error.$metadata.httpStatusCode === 404 && error.name !== 'NoSuchBucket';
}

/** NotImplemented (501) or MethodNotAllowed (405): the server lacks the operation. */
export function isUnsupported(error: unknown): boolean {
  return error instanceof S3ServiceException && [405, 501].includes(error.$metadata.httpStatusCode ?? 0);
}

/** The first byte position of a `Content-Range: bytes a-b/n` header, or null when absent. */
export function parseContentRange(header: string | undefined): number | null {
  const match = header && /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header.trim());
  return match ? Number(match[1]) : null;
}

/** Skips `skip` bytes of `source`, passes `length` bytes, then stops reading (destroying `source`). */
export function slice(source: Readable, skip: number, length: number): Readable {
  async function* sliced(): AsyncGenerator<Buffer> {
    let offset = 0;
    for await (const chunk of source as AsyncIterable<Buffer>) {
      const from = Math.max(0, skip - offset);
      const to = Math.min(chunk.length, skip + length - offset);
      offset += chunk.length;
      if (to > from) yield chunk.subarray(from, to);
      if (offset >= skip + length) return;
    }
  }
  return Readable.from(sliced(), { objectMode: false });
}

/** Runs task(0..count-1) with at most `concurrency` in flight; stops starting new ones after a failure. */
export async function runPool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < count) {
      const index = next++;
      try {
        await task(index);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  // Wait for every worker so nothing is still in flight when the caller starts cleaning up.
  const results = await Promise.allSettled(Array.from({ length: Math.min(concurrency, count) }, worker));
  const failure = results.find((result) => result.status === 'rejected');
  if (failure) throw failure.reason;
}
