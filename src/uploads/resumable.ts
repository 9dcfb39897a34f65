import { readdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';
import type { AssetService } from '../assets/service.ts';
import type { Config } from '../config/config.ts';
import type { Visibility } from '../db/tables.ts';
import type { FreeSpace } from '../storage/free-space.ts';
import { configuredBucket } from '../storage/s3-client-settings.ts';
import type { Principal } from '../tenancy/principal.ts';
import { UPLOADS_PATH } from './protocol.ts';
import type { TusStorageOptions, TusUploads, TusUploadsOptions } from './tus.ts';

/** The folder of unfinished resumable uploads on the fs backend. */
export function uploadsDirectory(config: Config): string {
  return resolve(config.uploadsDir ?? join(config.dataDir, 'uploads'));
}

/**
 * Resumable uploads (tus 1.0) of this installation: unfinished uploads live beside the blob store (a
 * folder, or an `uploads/` prefix in the bucket); a finished one becomes an asset of the uploading tenant
 * through the same AssetService path as a plain upload (sniffed type, size limit, SHA-256, and the image
 * processing hook), and the final PATCH names that asset in Asset-Id. Client metadata understood:
 * `filename`, `filetype` (or `contentType`), `visibility` (`public` | `private`).
 *
 * An upload is created only if `space` has room for it twice (on the fs backend the unfinished upload
 * and the blob it becomes are both on disk while it is handed over; on S3 neither is).
 */
export function createResumableUploads(
  config: Config,
  assets: AssetService,
  log: { error(obj: object, msg: string): void },
  space?: FreeSpace,
): TusUploads {
  const storage: TusStorageOptions =
    config.storage === 's3'
      ? {
          kind: 's3',
          ...configuredBucket(config),
          prefix: config.uploadsS3Prefix ?? `${config.s3Prefix}uploads/`,
          partSize: config.uploadsS3PartSizeBytes,
        }
      : { kind: 'fs', directory: uploadsDirectory(config) };
  return lazyUploads(storage, {
    path: UPLOADS_PATH,
    storage,
    maxSize: config.maxUploadBytes,
    expirationMs: config.uploadsExpirationSeconds * 1000,
    log,
    ...(space ? { admit: (length: number) => space.admit({ uploads: length, blobs: length }) } : {}),
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

/**
 * The tus component, loaded on the first upload request: @tus/server and its stores cost a process about
 * 20-60 MB of RSS, which a server that never receives a resumable upload should not carry. Sweeping
 * expired uploads loads it only when there can be something to sweep (on S3 it cannot tell cheaply, and
 * the S3 client is loaded anyway).
 */
function lazyUploads(storage: TusStorageOptions, options: TusUploadsOptions): TusUploads {
  let loaded: Promise<TusUploads> | undefined;
  const load = () => {
    loaded ??= import('./tus.ts').then(({ createTusUploads }) => createTusUploads(options));
    return loaded;
  };
  return {
    async handle(
      req: IncomingMessage,
      res: ServerResponse,
      principal: Principal | null,
      context?: { requestId?: string },
    ) {
      return (await load()).handle(req, res, principal, context);
    },
    async cleanupExpired() {
      if (!loaded && storage.kind === 'fs') {
        const names = await readdir(storage.directory).catch(() => []);
        if (names.length === 0) return 0;
      }
      return (await load()).cleanupExpired();
    },
    async close() {
      if (loaded) await (await loaded).close();
    },
  };
}
