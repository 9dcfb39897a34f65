import type { Config } from '../config/config.ts';

/** Where and how to reach an S3-compatible endpoint; the shape both S3 clients of Conveyor are given. */
export interface S3Endpoint {
  /** Omit for AWS S3; set for R2, MinIO and other S3-compatible servers. */
  endpoint?: string | undefined;
  region: string;
  forcePathStyle: boolean;
  /** Both or neither; without them the SDK's default credential chain applies. */
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
}

/** An endpoint and a bucket on it. */
export interface S3Bucket extends S3Endpoint {
  bucket: string;
}

/**
 * The bucket the settings name (`CONVEYOR_S3_*`): the one mapping from config to S3, for the blob store
 * and the resumable-upload store alike. Each adds its own key prefix and part size.
 */
export function configuredBucket(config: Config): S3Bucket {
  return {
    ...(config.s3Endpoint ? { endpoint: config.s3Endpoint } : {}),
    region: config.s3Region,
    bucket: config.s3Bucket,
    forcePathStyle: config.s3ForcePathStyle,
    ...(config.s3AccessKeyId ? { accessKeyId: config.s3AccessKeyId } : {}),
    ...(config.s3SecretAccessKey ? { secretAccessKey: config.s3SecretAccessKey } : {}),
  };
}

/**
 * The S3Client settings shared by the blob store (s3-store.ts) and the resumable-upload store
 * (src/uploads/storage.ts), so that the two cannot drift apart. No SDK import: the SDK stays loaded on
 * demand.
 *
 * Checksums only when required: since 3.729 the SDK adds a CRC32 checksum to every upload and validates
 * one on every download. S3 look-alikes lag behind: R2 answered 501 to the x-amz-checksum-crc32 header
 * when that shipped, and s3rver stores the aws-chunked framing used for streamed bodies as if it were
 * object bytes (it copes with buffered parts, so the tests pass either way; the shim test pins this
 * setting). The blob store keeps its integrity without it: each buffered part's SHA-256 is signed into the
 * request, and every blob is named by the SHA-256 we computed ourselves.
 */
export function s3ClientSettings(target: S3Endpoint) {
  return {
    endpoint: target.endpoint,
    region: target.region,
    forcePathStyle: target.forcePathStyle,
    credentials:
      target.accessKeyId && target.secretAccessKey
        ? { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey }
        : undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  };
}
