import { randomUUID } from 'node:crypto';
import { pipeline, Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import {
  assertSha256,
  BlobNotFoundError,
  type BlobStat,
  type BlobStore,
  type ByteRange,
  readStreamInto,
  type StagedBlob,
  type StageOptions,
} from './blob-store.ts';
import { MeteringStream } from './metering.ts';
import { type S3Bucket, s3ClientSettings } from './s3-client-settings.ts';
import { isMissingKey, isUnsupported, parseContentRange, runPool, slice } from './s3-helpers.ts';
import { MAX_PARTS, putInParts } from './s3-parts.ts';

export interface S3BlobStoreOptions extends S3Bucket {
  /** Prepended verbatim to every key, e.g. `conveyor/`; may be empty. */
  prefix: string;
  /** Multipart upload part size for `stage`; at least 5 MiB. Memory per upload is about partSize x queueSize. */
  partSizeBytes: number;
  /** Parts uploaded (or copied) concurrently per blob. */
  queueSize: number;
  /** Blobs larger than this are committed with a multipart copy. Defaults to 5 GiB, the CopyObject limit. */
  multipartCopyThresholdBytes?: number;
  /** Part size for the multipart copy; raised automatically to stay within 10,000 parts. Defaults to 512 MiB. */
  copyPartSizeBytes?: number;
  /** MaxKeys per ListObjectsV2 page. Defaults to 1000, the server maximum. */
  listPageSize?: number;
  /**
   * Connections to the S3 endpoint. A delivery stream holds one until its body has been read, so this
   * bounds concurrent downloads from storage (the SDK's default of 50 would queue the 51st). Default 256.
   */
  maxSockets?: number;
}

const MIB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MIB;
const PING_TIMEOUT_MS = 5_000;

/**
 * Blobs as objects under `<prefix>blobs/<ab>/<sha256>`, staged under `<prefix>tmp/<uuid>`.
 *
 * Staging streams into a multipart upload of a temporary key; commit copies it server-side to the final key
 * (a copy appears whole or not at all, which gives the atomicity the contract asks for) and then deletes the
 * temporary. Nothing is ever renamed because S3 has no rename.
 */
export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #partSize: number;
  readonly #queueSize: number;
  readonly #multipartCopyThreshold: number;
  readonly #copyPartSize: number;
  readonly #listPageSize: number;

  constructor(options: S3BlobStoreOptions) {
    if (options.partSizeBytes < MIN_PART_SIZE) throw new RangeError('partSizeBytes must be at least 5 MiB');
    if (!(options.queueSize >= 1)) throw new RangeError('queueSize must be at least 1');
    if (Boolean(options.accessKeyId) !== Boolean(options.secretAccessKey)) {
      throw new TypeError('set both accessKeyId and secretAccessKey, or neither');
    }
    this.#bucket = options.bucket;
    this.#prefix = options.prefix;
    this.#partSize = options.partSizeBytes;
    this.#queueSize = options.queueSize;
    this.#multipartCopyThreshold = options.multipartCopyThresholdBytes ?? 5 * 1024 * MIB;
    this.#copyPartSize = options.copyPartSizeBytes ?? 512 * MIB;
    this.#listPageSize = options.listPageSize ?? 1000;
    this.#client = new S3Client({
      ...s3ClientSettings(options),
      requestHandler: {
        httpAgent: { keepAlive: true, maxSockets: options.maxSockets ?? 256 },
        httpsAgent: { keepAlive: true, maxSockets: options.maxSockets ?? 256 },
      },
    });
  }

  #blobKey(sha256: string): string {
    assertSha256(sha256);
    return `${this.#prefix}blobs/${sha256.slice(0, 2)}/${sha256}`;
  }

  /** The staged handle may have round-tripped through storage; refuse to touch anything outside tmp/. */
  #tempKey(staged: StagedBlob): string {
    if (!staged.temp.startsWith(`${this.#prefix}tmp/`)) {
      throw new TypeError(`not a temporary of this store: ${JSON.stringify(staged.temp)}`);
    }
    return staged.temp;
  }

  async stage(body: Readable, options: StageOptions): Promise<StagedBlob> {
    const temp = `${this.#prefix}tmp/${randomUUID()}`;
    const meter = new MeteringStream(options.maxBytes, options.onProgress);
    // The part loop only sees the symptom of a failing body (a stream error), so keep the first error the
    // streams themselves raised: the size limit's 413, or the client's disconnect.
    let sourceError: unknown;
    const remember = (error: unknown) => {
      sourceError ??= error;
    };
    body.on('error', remember);
    meter.on('error', remember);
    pipeline(body, meter, () => {});
    const upload: { id?: string } = {};
    try {
      await putInParts(
        this.#client,
        { Bucket: this.#bucket, Key: temp, ContentType: 'application/octet-stream' },
        meter,
        { partSize: this.#partSize, queueSize: this.#queueSize, release: options.release },
        upload,
      );
    } catch (error) {
      meter.destroy();
      await this.#abortUpload(temp, upload.id).catch(() => {});
      // A single-request upload may have landed even though the call failed (lost response).
      await this.#deleteKey(temp).catch(() => {});
      throw sourceError ?? error;
    }
    return { sha256: meter.digest(), size: meter.bytes, temp };
  }

  async commit(staged: StagedBlob): Promise<void> {
    const temp = this.#tempKey(staged);
    const key = this.#blobKey(staged.sha256);
    const existing = await this.#head(key);
    // Same hash and size means same content, so a second commit (or a duplicate upload) costs no copy.
    if (existing?.size !== staged.size) {
      if (staged.size > this.#multipartCopyThreshold) {
        await this.#multipartCopy(temp, key, staged.size);
      } else {
        await this.#client.send(
          new CopyObjectCommand({ Bucket: this.#bucket, Key: key, CopySource: this.#copySource(temp) }),
        );
      }
    }
    await this.#deleteKey(temp);
  }

  async discard(staged: StagedBlob): Promise<void> {
    await this.#deleteKey(this.#tempKey(staged));
  }

  async get(sha256: string, range?: ByteRange): Promise<Readable> {
    const Range = range ? `bytes=${range.start}-${range.end}` : undefined;
    let response: GetObjectCommandOutput;
    try {
      response = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.#blobKey(sha256), Range }),
      );
    } catch (error) {
      if (isMissingKey(error)) throw new BlobNotFoundError(sha256);
      throw error;
    }
    const body = response.Body;
    if (!(body instanceof Readable)) throw new TypeError('expected a Node stream from GetObject');
    if (!range) return body;
    // HTTP lets a server ignore Range (200 with everything), and some S3 look-alikes answer more than was
    // asked (s3rver turns `bytes=0-0` into the whole object), so trim to what the caller asked for.
    const served = parseContentRange(response.ContentRange) ?? 0;
    const wanted = range.end - range.start + 1;
    if (served === range.start && response.ContentLength !== undefined && response.ContentLength <= wanted) {
      return body;
    }
    if (served > range.start) {
      body.destroy();
      throw new Error(`storage served bytes from ${served} for a range starting at ${range.start}`);
    }
    return slice(body, range.start - served, wanted);
  }

  async readInto(sha256: string, range: ByteRange, target: Buffer): Promise<void> {
    await readStreamInto(await this.get(sha256, range), target, range.end - range.start + 1);
  }

  async stat(sha256: string): Promise<BlobStat | null> {
    const found = await this.#head(this.#blobKey(sha256));
    return found && { sha256, ...found };
  }

  async delete(sha256: string): Promise<void> {
    await this.#deleteKey(this.#blobKey(sha256));
  }

  async *list(prefix = ''): AsyncIterable<BlobStat> {
    const blobs = `${this.#prefix}blobs/`;
    const keyPrefix = prefix.length >= 2 ? `${blobs}${prefix.slice(0, 2)}/${prefix}` : `${blobs}${prefix}`;
    for await (const object of this.#listObjects(keyPrefix)) {
      const sha256 = object.key.slice(object.key.lastIndexOf('/') + 1);
      // Skip anything else that happens to live under blobs/ (a stray upload, a misplaced name).
      if (!/^[0-9a-f]{64}$/.test(sha256) || object.key !== this.#blobKey(sha256)) continue;
      yield { sha256, size: object.size, modifiedAt: object.modifiedAt };
    }
  }

  async sweepTemporary(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    const stale: string[] = [];
    for await (const object of this.#listObjects(`${this.#prefix}tmp/`)) {
      if (object.modifiedAt.getTime() <= cutoff) stale.push(object.key);
    }
    await runPool(stale.length, this.#queueSize, (index) => this.#deleteKey(stale[index]!));
    // Uploads interrupted by a crash hold parts that are invisible to listings but still billed. That
    // includes multipart copies into blobs/, which are safe to abort once they are older than any commit.
    const aborted =
      (await this.#abortStaleUploads(`${this.#prefix}tmp/`, cutoff)) +
      (await this.#abortStaleUploads(`${this.#prefix}blobs/`, cutoff));
    return stale.length + aborted;
  }

  async ping(): Promise<void> {
    await this.#client.send(new HeadBucketCommand({ Bucket: this.#bucket }), {
      abortSignal: AbortSignal.timeout(PING_TIMEOUT_MS),
    });
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  async #head(key: string): Promise<{ size: number; modifiedAt: Date } | null> {
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }));
      return { size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) };
    } catch (error) {
      if (isMissingKey(error)) return null;
      throw error;
    }
  }

  async #deleteKey(key: string): Promise<void> {
    // S3 answers 204 for a missing key too, so this is idempotent without a check.
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }));
  }

  async #abortUpload(key: string, uploadId: string | undefined): Promise<void> {
    if (!uploadId) return;
    await this.#client.send(
      new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: key, UploadId: uploadId }),
    );
  }

  #copySource(key: string): string {
    return `${this.#bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** CopyObject refuses sources over 5 GiB; UploadPartCopy moves the bytes in ranges, still server-side. */
  async #multipartCopy(source: string, key: string, size: number): Promise<void> {
    const partSize = Math.max(this.#copyPartSize, Math.ceil(size / MAX_PARTS));
    const count = Math.ceil(size / partSize);
    const created = await this.#client.send(
      new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: key }),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error('CreateMultipartUpload returned no UploadId');
    const parts: { PartNumber: number; ETag: string }[] = [];
    try {
      await runPool(count, this.#queueSize, async (index) => {
        const start = index * partSize;
        const end = Math.min(size, start + partSize) - 1;
        const result = await this.#client.send(
          new UploadPartCopyCommand({
            Bucket: this.#bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: index + 1,
            CopySource: this.#copySource(source),
            CopySourceRange: `bytes=${start}-${end}`,
          }),
        );
        const etag = result.CopyPartResult?.ETag;
        if (!etag) throw new Error(`UploadPartCopy returned no ETag for part ${index + 1}`);
        parts[index] = { PartNumber: index + 1, ETag: etag };
      });
      await this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    } catch (error) {
      await this.#abortUpload(key, uploadId).catch(() => {});
      throw error;
    }
  }

  async #abortStaleUploads(prefix: string, cutoff: number): Promise<number> {
    let aborted = 0;
    let page: ListMultipartUploadsCommandOutput | undefined;
    do {
      const markers = { KeyMarker: page?.NextKeyMarker, UploadIdMarker: page?.NextUploadIdMarker };
      try {
        page = await this.#client.send(
          new ListMultipartUploadsCommand({ Bucket: this.#bucket, Prefix: prefix, ...markers }),
        );
      } catch (error) {
        // Some S3 look-alikes have no ListMultipartUploads; their leftovers are theirs to expire.
        if (isUnsupported(error)) return aborted;
        throw error;
      }
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated.getTime() > cutoff)
          continue;
        try {
          await this.#abortUpload(upload.Key, upload.UploadId);
          aborted++;
        } catch (error) {
          // Completed or aborted by someone else since the listing.
          if (!(error instanceof S3ServiceException && error.name === 'NoSuchUpload')) throw error;
        }
      }
      // A server that claims truncation without markers would otherwise have us loop forever.
    } while (page.IsTruncated && (page.NextKeyMarker || page.NextUploadIdMarker));
    return aborted;
  }

  async *#listObjects(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: Date }> {
    let token: string | undefined;
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: prefix,
          MaxKeys: this.#listPageSize,
          ContinuationToken: token,
        }),
      );
      for (const object of page.Contents ?? []) {
        if (!object.Key) continue;
        yield { key: object.Key, size: object.Size ?? 0, modifiedAt: object.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }
}
