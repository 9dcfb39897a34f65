import { join } from 'node:path';
import type { AssetService } from '../assets/service.ts';
import type { Config } from '../config/config.ts';
import type { Visibility } from '../db/tables.ts';
import { createTusUploads, type TusStorageOptions, type TusUploads } from './tus.ts';

/** Where the tus routes live. */
export const UPLOADS_PATH = '/api/v1/uploads';

/**
 * Resumable uploads (tus 1.0) of this installation: unfinished uploads live beside the blob store (a
 * folder, or an `uploads/` prefix in the bucket); a finished one becomes an asset of the uploading tenant
 * through the same AssetService path as a plain upload (sniffed type, size limit, SHA-256, and the image
 * processing hook), and the final PATCH answers with that asset. Client metadata understood:
 * `filename`, `filetype` (or `contentType`), `visibility` (`public` | `private`).
 */
export function createResumableUploads(
  config: Config,
  assets: AssetService,
  log: { error(obj: object, msg: string): void },
): TusUploads {
  const storage: TusStorageOptions =
    config.storage === 's3'
      ? {
          kind: 's3',
          ...(config.s3Endpoint ? { endpoint: config.s3Endpoint } : {}),
          region: config.s3Region,
          bucket: config.s3Bucket,
          prefix: config.uploadsS3Prefix ?? `${config.s3Prefix}uploads/`,
          forcePathStyle: config.s3ForcePathStyle,
          ...(config.s3AccessKeyId ? { accessKeyId: config.s3AccessKeyId } : {}),
          ...(config.s3SecretAccessKey ? { secretAccessKey: config.s3SecretAccessKey } : {}),
          partSize: config.uploadsS3PartSizeBytes,
        }
      : { kind: 'fs', directory: config.uploadsDir ?? join(config.dataDir, 'uploads') };
  return createTusUploads({
    path: UPLOADS_PATH,
    storage,
    maxSize: config.maxUploadBytes,
    expirationMs: config.uploadsExpirationSeconds * 1000,
    log,
    async onComplete(done) {
      const visibility: Visibility = done.metadata['visibility'] === 'private' ? 'private' : 'public';
      const asset = await assets.upload(done.principal, {
        body: await done.open(),
        declaredType: done.metadata['filetype'] ?? done.metadata['contentType'] ?? undefined,
        filename: done.metadata['filename'] ?? 'upload',
        visibility,
      });
      return { headers: { 'asset-id': asset.id }, body: asset };
    },
  });
}
