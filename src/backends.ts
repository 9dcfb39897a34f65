import { join, resolve } from 'node:path';
import type { Kysely } from 'kysely';
import { BlobLedger } from './assets/blobs.ts';
import { AssetService } from './assets/service.ts';
import type { Config } from './config/config.ts';
import { type Db, migrate, openDatabase, sqlitePath } from './db/database.ts';
import type { Database } from './db/tables.ts';
import { deliveryPath } from './delivery/lookup.ts';
import type { BlobStore } from './storage/blob-store.ts';
import { DiskCachedBlobStore } from './storage/disk-cache.ts';
import type { Volume } from './storage/free-space.ts';
import { FsBlobStore } from './storage/fs-store.ts';
import { configuredBucket } from './storage/s3-client-settings.ts';
import { uploadsDirectory } from './uploads/resumable.ts';

/** Blob files kept open between reads (see src/storage/handle-cache.ts). */
const OPEN_FILES = 256;

/*
 * Opening the two backends, kept apart from server.ts so that commands which need only the database and
 * storage (the CLI, the cluster primary) do not load the HTTP stack.
 */

export async function openStore(config: Config): Promise<BlobStore> {
  if (config.storage === 's3') {
    // Loaded on demand: the AWS SDK costs ~13 MB of memory that a filesystem install never needs.
    const { S3BlobStore } = await import('./storage/s3-store.ts');
    const s3 = new S3BlobStore({
      ...configuredBucket(config),
      prefix: config.s3Prefix,
      partSizeBytes: config.s3PartSizeBytes,
      queueSize: config.s3QueueSize,
      maxSockets: config.s3MaxSockets,
    });
    if (config.blobDiskCacheMaxBytes === 0) return s3;
    return new DiskCachedBlobStore(s3, {
      dir: resolve(config.blobDiskCacheDir ?? join(config.dataDir, 'blob-cache')),
      maxBytes: config.blobDiskCacheMaxBytes,
      openFiles: OPEN_FILES,
      syncReadMaxBytes: config.blobSyncReadMaxBytes,
    }).init();
  }
  return new FsBlobStore(resolve(config.dataDir), {
    openFiles: OPEN_FILES,
    syncReadMaxBytes: config.blobSyncReadMaxBytes,
  }).init();
}

/** The local folders `config` writes to, for the free-space checks (src/storage/free-space.ts). */
export function localVolumes(config: Config): Volume[] {
  const volumes: Volume[] = [];
  if (config.storage === 'fs') {
    volumes.push({ name: 'blobs', path: resolve(config.dataDir) });
    volumes.push({ name: 'uploads', path: uploadsDirectory(config) });
  } else if (config.blobDiskCacheMaxBytes > 0) {
    volumes.push({
      name: 'blob-cache',
      path: resolve(config.blobDiskCacheDir ?? join(config.dataDir, 'blob-cache')),
    });
  }
  const database = sqlitePath(config);
  if (database !== undefined && database !== ':memory:')
    volumes.push({ name: 'database', path: resolve(database) });
  return volumes;
}

/** Opens the database and applies pending migrations (also what `conveyor migrate` does). */
export async function openMigratedDatabase(config: Config): Promise<Db> {
  const db = openDatabase(config);
  try {
    await migrate(db);
  } catch (error) {
    await db.close();
    throw error;
  }
  return db;
}

/**
 * The blob ledger and the asset service over an opened database and store: what `serve` and `worker`
 * both need. `baseUrl` makes the delivery URLs in API answers; `changed` hears every committed change
 * (a serve process's delivery caches).
 */
export function openAssets(
  config: Config,
  db: Kysely<Database>,
  store: BlobStore,
  options: { baseUrl: () => string; changed?: () => void },
): { ledger: BlobLedger; assets: AssetService } {
  const ledger = new BlobLedger(db, store);
  const assets = new AssetService({
    db,
    store,
    ledger,
    urls: {
      latest: (id) => options.baseUrl() + deliveryPath.latest(id),
      version: (id) => options.baseUrl() + deliveryPath.version(id),
    },
    limits: { maxUploadBytes: config.maxUploadBytes, maxFilenameBytes: config.maxFilenameBytes },
    ...(options.changed ? { changed: options.changed } : {}),
  });
  return { ledger, assets };
}
