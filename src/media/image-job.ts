import type { Kysely, Transaction } from 'kysely';
import type { ContentAdded } from '../assets/service.ts';
import type { Config } from '../config/config.ts';
import type { Database, MediaInfoTable } from '../db/tables.ts';
import type { OutputFormat } from '../grammar/transform-spec.ts';
import type { JobEngine } from '../jobs/engine.ts';
import type { JobRegistry } from '../jobs/registry.ts';
import { type JobContext, PermanentJobError } from '../jobs/types.ts';
import { own } from '../own.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { BlobTooLargeForMemoryError, readBlob } from './blob-bytes.ts';
import { type DerivedBlobs, variantKey } from './derived.ts';
import { MemoryBudget } from './image/budget.ts';
import type { EncoderSettings, ImageLimits, ImageRuntime, VariantPreset } from './image/index.ts';
import { imageLibrary } from './image/lazy.ts';

/** The job type that analyses an image and renders its variants. */
export const IMAGE_JOB = 'image.process';

export interface ImagePayload {
  assetId: string;
  sha256: string;
}

/** Media types whose content is handed to image processing when it arrives. */
const IMAGE_TYPES: Record<string, string> = {
  'image/jpeg': 'jpeg',
  'image/png': 'png',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'image/avif': 'avif',
  'image/tiff': 'tiff',
  'image/svg+xml': 'svg',
};

/** The image settings of the config, in the library's shapes. */
export interface ImageSettings {
  limits: ImageLimits;
  maxInputBytes: number;
  maxOutputBytes: number;
  background: string;
  presets: VariantPreset[];
  formats: readonly OutputFormat[];
  variants: boolean;
  variantEncoders: EncoderSettings;
  transformEncoders: EncoderSettings;
  runtime: ImageRuntime;
}

export function imageSettings(config: Config): ImageSettings {
  const encoders = (avifEffort: number, pngLevel: number): EncoderSettings => ({
    jpeg: { quality: config.imageJpegQuality, mozjpeg: true },
    webp: { quality: config.imageWebpQuality, effort: 4 },
    avif: { quality: config.imageAvifQuality, effort: avifEffort },
    png: { compressionLevel: pngLevel },
  });
  const presets = Object.entries(config.imagePresets).map(
    ([name, spec]): VariantPreset => ({
      name,
      ...(spec.width !== undefined ? { width: spec.width } : {}),
      ...(spec.height !== undefined ? { height: spec.height } : {}),
      fit: spec.fit,
      gravity: spec.gravity,
    }),
  );
  return {
    limits: {
      maxInputPixels: config.imageMaxInputPixels,
      maxFrames: config.imageMaxFrames,
      inputFormats: config.imageInputFormats,
      failOn: 'error',
      timeoutSeconds: config.imageTimeoutSeconds,
      maxWorkingBytes: config.imageMemoryBudgetBytes,
    },
    maxInputBytes: config.imageMaxInputBytes,
    maxOutputBytes: config.imageMaxOutputBytes,
    background: config.imageBackground,
    presets,
    formats: config.imageVariantFormats,
    variants: config.imageVariants,
    variantEncoders: encoders(config.imageVariantAvifEffort, 9),
    transformEncoders: encoders(config.imageTransformAvifEffort, 6),
    runtime: {
      threads: config.imageThreads,
      cache: {
        memoryBytes: config.imageCacheMemoryBytes,
        files: config.imageCacheFiles,
        items: config.imageCacheItems,
      },
    },
  };
}

/**
 * Image processing: when an asset gets image content (upload, ingest, replaced content), an
 * `image.process` job joins the committing transaction. It probes the header (refusing decompression
 * bombs before any decode), analyses a small decode (dominant colour, ThumbHash, BlurHash, perceptual
 * hash), and renders every preset in every variant format from one decode. Results are keyed by the
 * content's SHA-256, so identical content is processed once whoever uploads it; every step is reported as
 * job progress. Failures of the image itself (corrupt, truncated, too large, unsupported) are permanent:
 * the job ends dead at once with the reason, and nothing half-made is stored (variants are all or nothing).
 *
 * The processor owns the process's image memory budget (`budget`), which the transforms share: the
 * analysis and the variant set each wait for room for their estimate (src/media/image/cost.ts), so a
 * burst of uploads, however hostile, holds at most `imageMemoryBudgetBytes` of libvips memory at once.
 */
export class ImageProcessor {
  readonly #db: Kysely<Database>;
  readonly #store: BlobStore;
  readonly #derived: DerivedBlobs;
  readonly #jobs: JobEngine;
  readonly settings: ImageSettings;
  /** Shared by every image pipeline of the process: jobs here, transforms in TransformService. */
  readonly budget: MemoryBudget;

  constructor(deps: {
    config: Config;
    db: Kysely<Database>;
    store: BlobStore;
    derived: DerivedBlobs;
    jobs: JobEngine;
  }) {
    this.#db = deps.db;
    this.#store = deps.store;
    this.#derived = deps.derived;
    this.#jobs = deps.jobs;
    this.settings = imageSettings(deps.config);
    this.budget = new MemoryBudget(this.settings.limits.maxWorkingBytes);
  }

  register(registry: JobRegistry): void {
    registry.register<ImagePayload>({
      type: IMAGE_JOB,
      schema: {
        type: 'object',
        properties: {
          assetId: { type: 'string', minLength: 1, maxLength: 100 },
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
        },
        required: ['assetId', 'sha256'],
        additionalProperties: false,
      },
      handler: (payload, context) => this.#process(payload, context),
      maxAttempts: 3,
    });
  }

  /** The asset service's content hook: queue processing of image content in the same transaction. */
  async contentAdded(tx: Transaction<Database>, added: ContentAdded): Promise<void> {
    const format = own(IMAGE_TYPES, added.contentType.split(';')[0]!.trim().toLowerCase());
    if (!format || !this.settings.limits.inputFormats.includes(format)) return;
    await this.#jobs.enqueuer.enqueue(
      added.tenantId,
      {
        type: IMAGE_JOB,
        payload: { assetId: added.assetId, sha256: added.sha256 } satisfies ImagePayload,
        ...(added.lane ? { lane: added.lane } : {}),
      },
      { trx: tx, actor: added.actor },
    );
  }

  /** What analysis found about some content, if it has run. */
  async info(sha256: string): Promise<MediaInfoTable | undefined> {
    return this.#db.selectFrom('media_info').selectAll().where('sha256', '=', sha256).executeTakeFirst();
  }

  async #process(payload: ImagePayload, context: JobContext) {
    const { settings } = this;
    context.progress({ stage: 'reading', percent: 0 });
    const bytes = await readBlob(this.#store, payload.sha256, settings.maxInputBytes).catch((error) => {
      if (error instanceof BlobTooLargeForMemoryError) {
        throw new PermanentJobError(error.message, 'image_too_large');
      }
      throw error;
    });
    context.progress({ stage: 'probing', percent: 5 });
    const { analyseImage, probeImage, renderVariants } = await imageLibrary(settings.runtime);
    const probe = await probeImage(bytes, settings.limits);
    context.progress({ stage: 'analysing', percent: 10 });
    const analysis = await analyseImage(bytes, settings.limits, {
      budget: this.budget,
      signal: context.signal,
    });
    await this.#db
      .insertInto('media_info')
      .values({
        sha256: payload.sha256,
        format: probe.format,
        width: probe.width,
        height: probe.height,
        orientation: probe.orientation,
        has_alpha: probe.hasAlpha ? 1 : 0,
        pages: probe.pages,
        dominant_color: analysis.dominantColour,
        thumbhash: analysis.thumbhash,
        blurhash: analysis.blurhash,
        phash: analysis.phash,
        exif: Object.keys(probe.exif).length > 0 ? JSON.stringify(probe.exif) : null,
        created_at: Date.now(),
      })
      .onConflict((oc) => oc.column('sha256').doNothing())
      .execute();

    let variants = 0;
    if (settings.variants && settings.presets.length > 0) {
      const wanted = settings.presets.flatMap((p) =>
        settings.formats.map((f) => variantKey(payload.sha256, p.name, f)),
      );
      const existing = new Set((await this.#derived.variantsOf(payload.sha256)).map((r) => r.key));
      if (wanted.some((key) => !existing.has(key))) {
        const total = wanted.length;
        const rendered = await renderVariants(bytes, settings.presets, settings.formats, {
          limits: settings.limits,
          maxOutputBytes: settings.maxOutputBytes,
          encoders: settings.variantEncoders,
          background: settings.background,
          signal: context.signal,
          budget: this.budget,
          onProgress: (done) =>
            context.progress({ stage: `rendering ${done}/${total}`, percent: 15 + (done / total) * 75 }),
        });
        context.progress({ stage: 'storing', percent: 90 });
        for (const output of rendered) {
          await this.#derived.put({
            key: variantKey(payload.sha256, output.preset, output.format),
            kind: 'variant',
            sourceSha256: payload.sha256,
            preset: output.preset,
            format: output.format,
            contentType: output.contentType,
            width: output.width,
            height: output.height,
            data: output.data,
          });
        }
      }
      variants = wanted.length;
    }
    context.progress({ stage: 'done', percent: 100 });
    return {
      assetId: payload.assetId,
      sha256: payload.sha256,
      format: probe.format,
      width: probe.width,
      height: probe.height,
      variants,
    };
  }
}
