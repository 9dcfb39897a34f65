import type { Kysely } from 'kysely';
import { type BlobLedger, contentGone } from '../assets/blobs.ts';
import type { AssetService } from '../assets/service.ts';
import type { Config } from '../config/config.ts';
import type { Database } from '../db/tables.ts';
import type { SigningKey } from '../delivery/signed-url.ts';
import type { JobEngine } from '../jobs/engine.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { MediaCatalog } from './catalog.ts';
import { DerivedBlobs } from './derived.ts';
import { ImageProcessor } from './image-job.ts';
import { IngestService } from './ingest/ingest.ts';
import { TransformService } from './transforms.ts';
import { VideoStore } from './video/store.ts';
import { VideoDelivery } from './video-delivery.ts';
import { VideoProcessor } from './video-job.ts';

export interface MediaDeps {
  config: Config;
  db: Kysely<Database>;
  store: BlobStore;
  ledger: BlobLedger;
  assets: AssetService;
  jobs: JobEngine;
  /** Keys that sign transform URLs (the delivery signing keys); none in a process that serves nothing. */
  signingKeys?: readonly SigningKey[];
  /** Where background failures (a transform that could not be stored) are reported. */
  log?: { error(obj: object, msg: string): void };
}

/** The media services of one process, their job types registered in its engine. */
export interface Media {
  ingest: IngestService;
  images: ImageProcessor;
  derived: DerivedBlobs;
  transforms: TransformService;
  catalog: MediaCatalog;
  video: VideoProcessor;
  /** The files of complete HLS ladders, as derive steps of delivery URLs. */
  videoDelivery: VideoDelivery;
}

/**
 * Tells the blob ledger what the media room keeps, so that garbage collection covers it. Derived blobs
 * (variants, cached transforms) and analysis results live as long as the content they were made from:
 * each collection first drops the rows of content no asset or version has any more, which leaves their
 * derived blobs unreferenced in the same pass; until then a derived blob is held by its row. Video ladders
 * and their files follow the same rule (`collectVideo`). Every process that collects calls this (through
 * `attachMedia`, or `conveyor gc` directly).
 */
export function collectMedia(ledger: BlobLedger): void {
  ledger.onCollect(async (db) => {
    await db.deleteFrom('media_derived').where(contentGone('media_derived.source_sha256')).execute();
    await db.deleteFrom('media_info').where(contentGone('media_info.sha256')).execute();
  });
  ledger.holdBlobs('media_derived', 'sha256');
  collectVideo(ledger);
}

/**
 * The video room's part of garbage collection (src/media/video/store.ts keeps it): a ladder's files hold
 * their blobs, and ladders and probe results live as long as their source content. Each collection first
 * drops the rows of content no asset or version has any more (files before their ladder), which leaves
 * their blobs unreferenced in the same pass. `collectMedia` calls it, so every process that collects does.
 */
export function collectVideo(ledger: BlobLedger): void {
  ledger.onCollect(async (db) => {
    await db.deleteFrom('video_files').where(contentGone('video_files.source_sha256')).execute();
    await db.deleteFrom('video_ladders').where(contentGone('video_ladders.source_sha256')).execute();
    await db.deleteFrom('video_info').where(contentGone('video_info.sha256')).execute();
  });
  ledger.holdBlobs('video_files', 'sha256');
}

/**
 * Wires the media pipeline into a process: registers its job types (every process that enqueues or runs
 * them must, `serve` and `worker` alike), hooks image and video processing to new asset content, and returns the
 * services the HTTP API calls. Registers the media room's part of garbage collection (`collectMedia`).
 */
export function attachMedia(deps: MediaDeps): Media {
  const { config, db, store, ledger, jobs } = deps;
  collectMedia(ledger);
  const derived = new DerivedBlobs({ db, store, ledger });
  const ingest = new IngestService(deps);
  ingest.register(jobs.registry);
  const images = new ImageProcessor({ config, db, store, derived, jobs });
  images.register(jobs.registry);
  const video = new VideoProcessor({
    config,
    db,
    blobs: store,
    jobs,
    store: new VideoStore({ db, store, ledger, config }),
  });
  video.register(jobs.registry);
  deps.assets.onContentAdded(async (tx, added) => {
    await images.contentAdded(tx, added);
    await video.contentAdded(tx, added);
  });
  const transforms = new TransformService({
    config,
    store,
    derived,
    images,
    signingKeys: deps.signingKeys ?? [],
    ...(deps.log ? { log: deps.log } : {}),
  });
  const videoDelivery = new VideoDelivery({ store: video.store, blobs: store });
  return { ingest, images, derived, transforms, catalog: new MediaCatalog(db), video, videoDelivery };
}
