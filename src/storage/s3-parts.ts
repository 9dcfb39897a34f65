import {
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

/** S3 allows at most this many parts per multipart upload. */
export const MAX_PARTS = 10_000;

export interface PartOptions {
  /** Bytes per part (the last may be shorter); at least 5 MiB, as S3 requires of all but the last. */
  partSize: number;
  /** Parts in flight at once. */
  queueSize: number;
  /** Called with each chunk of `source` once it has been copied into a part. */
  release?: ((chunk: Buffer) => void) | undefined;
}

/**
 * Streams `source` to one object, in parts held in buffers that are reused from part to part: at most
 * `queueSize + 1` buffers of `partSize` bytes exist per upload (one filling, the rest in flight), whatever
 * the object's size. A body that fits in one part is a single PutObject.
 *
 * Why not `@aws-sdk/lib-storage`'s Upload: it builds every part with `Buffer.concat` of the incoming
 * chunks and keeps the previous part alive through a `subarray` remainder. With V8's young generation
 * shrunk for memory (`--max-semi-space-size=2`), a 1 GiB upload peaked 93 MB above idle with it and 74 MB
 * with this loop (docs/benchmarks.md, "Memory and the 1 GiB upload"); the bound is also exact.
 *
 * On failure it throws, and `upload.id` (set as soon as a multipart upload exists) tells the caller what
 * to abort.
 */
export async function putInParts(
  client: S3Client,
  target: { Bucket: string; Key: string; ContentType: string },
  source: AsyncIterable<Buffer>,
  options: PartOptions,
  upload: { id?: string | undefined },
): Promise<void> {
  const { partSize, queueSize } = options;
  const free: Buffer<ArrayBuffer>[] = [];
  const inFlight = new Set<Promise<void>>();
  const parts: CompletedPart[] = [];
  let failure: { error: unknown } | undefined;
  let creating: Promise<string> | undefined;
  let partNumber = 0;

  const uploadId = () =>
    (creating ??= client.send(new CreateMultipartUploadCommand(target)).then((created) => {
      if (!created.UploadId) throw new Error('CreateMultipartUpload answered no UploadId');
      upload.id = created.UploadId;
      return created.UploadId;
    }));

  const dispatch = async (buffer: Buffer<ArrayBuffer>, length: number) => {
    while (inFlight.size >= queueSize) await Promise.race(inFlight);
    if (failure) throw failure.error;
    if (partNumber === MAX_PARTS) {
      throw new RangeError(`the body needs more than ${MAX_PARTS} parts of ${partSize} bytes`);
    }
    const number = ++partNumber;
    const sent = (async () => {
      const response = await client.send(
        new UploadPartCommand({
          Bucket: target.Bucket,
          Key: target.Key,
          UploadId: await uploadId(),
          PartNumber: number,
          Body: buffer.subarray(0, length),
          ContentLength: length,
        }),
      );
      parts.push({ PartNumber: number, ETag: response.ETag });
      free.push(buffer);
    })().catch((error: unknown) => {
      failure ??= { error };
    });
    inFlight.add(sent);
    void sent.finally(() => inFlight.delete(sent));
  };

  let current = Buffer.allocUnsafeSlow(partSize);
  let filled = 0;
  try {
    for await (const chunk of source) {
      let offset = 0;
      while (offset < chunk.length) {
        const n = Math.min(chunk.length - offset, partSize - filled);
        current.set(chunk.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
        if (filled === partSize) {
          await dispatch(current, filled);
          current = free.pop() ?? Buffer.allocUnsafeSlow(partSize);
          filled = 0;
        }
      }
      options.release?.(chunk);
    }
  } catch (error) {
    // Let what is in flight settle first, so that `upload.id` names any upload created meanwhile and the
    // caller's abort finds it (and no part lands after the abort).
    await Promise.allSettled([...inFlight, creating]);
    throw error;
  }

  if (partNumber === 0) {
    // The whole body fits in one part (or is empty): one request, no multipart upload to clean up.
    await client.send(
      new PutObjectCommand({ ...target, Body: current.subarray(0, filled), ContentLength: filled }),
    );
    return;
  }
  if (filled > 0) await dispatch(current, filled);
  await Promise.all(inFlight);
  if (failure) throw failure.error;
  parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
  await client.send(
    new CompleteMultipartUploadCommand({
      Bucket: target.Bucket,
      Key: target.Key,
      UploadId: await uploadId(),
      MultipartUpload: { Parts: parts },
    }),
  );
}
