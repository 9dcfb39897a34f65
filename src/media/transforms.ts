import { createHash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import { availableParallelism } from 'node:os';
import type { Config } from '../config/config.ts';
import { transformLimits } from '../config/media-settings.ts';
import type { MediaDerivedTable } from '../db/tables.ts';
import { type BufferLease, BufferPool } from '../delivery/buffer-pool.ts';
import type { Derive } from '../delivery/derive.ts';
import type { Representation } from '../delivery/lookup.ts';
import { Memo } from '../delivery/memo.ts';
import type { SigningKey } from '../delivery/signed-url.ts';
import { ConveyorError } from '../errors.ts';
import type { OutputFormat, ResolvedSpec } from '../grammar/transform-spec.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { type DerivedBlobs, derivedBlob, EXTENSIONS, variantKey } from './derived.ts';
import { ImageError } from './image/errors.ts';
import type { ImageRuntime, RenderOptions } from './image/index.ts';
import { imageLibrary } from './image/lazy.ts';
import { acceptSignature, resolveFormat, type SourceImage } from './image/negotiate.ts';
import {
  authorizeTransform,
  buildTransformUrl,
  cacheKey,
  type ParsedTransformPath,
  parseTransformPath,
  type TransformLimits,
  type TransformPresets,
  type TransformTarget,
} from './image/transform-url.ts';
import { type ImageProcessor, imageSettings } from './image-job.ts';
import { Slots } from './slots.ts';

/**
 * On-the-fly transforms (`/t/{signature}/{options}/{id}[.ext]`) and preset variants
 * (`/a/{id}/{preset}.{ext}`, `/v/{id}/{preset}.{ext}`), as `Derive` steps of the origin: the origin
 * looks the source up and checks access to it as for any delivery, then asks here for the blob to send
 * instead, and answers with its usual conditional, range and cache semantics. Output by version id is
 * immutable; by asset id it follows the mutable policy and changes with the content.
 *
 * A transform's result is stored as a derived blob under a canonical key (the source's SHA-256 plus every
 * option spelled out, the effective quality included), so each distinct output is rendered once per
 * installation; concurrent identical requests in one process share one render; what is found is
 * remembered by the origin (src/delivery/derive.ts), under each step's `key`; renders run at most
 * `transformConcurrency` at a time with `transformQueueSize` waiting, and past that the answer is 503 with
 * Retry-After, so a burst costs queueing, never memory. Inside its slot a render also waits for room in
 * the process's image memory budget (shared with the image jobs) for its estimated libvips memory.
 */
export class TransformService {
  readonly #store: BlobStore;
  readonly #derived: DerivedBlobs;
  readonly #images: ImageProcessor;
  readonly #keys: readonly SigningKey[];
  readonly #allowUnsigned: boolean;
  readonly #limits: TransformLimits;
  readonly #presets: TransformPresets;
  readonly #render: RenderOptions;
  readonly #runtime: ImageRuntime;
  readonly #maxInputBytes: number;
  readonly #sourcePool: BufferPool;
  readonly #slots: Slots;
  /**
   * Renders by cache key, from their start until their output is stored: identical requests meanwhile
   * share one, and get its bytes.
   */
  readonly #renders = new Memo<Rendered>();
  /** Each in-flight render until its output is stored (never rejects). */
  readonly #storing = new Set<Promise<unknown>>();
  readonly #log: { error(obj: object, msg: string): void };
  /**
   * Accepted transform paths. The keys and limits are fixed for the life of the process, so the answer
   * for a path never changes: a CDN asks for the same URLs over and over, and the HMAC alone was a quarter
   * of a cached transform's cost.
   */
  readonly #accepted = new Memo<ParsedTransformPath>({ maxEntries: ACCEPTED_PATHS });
  /** Source facts needed before the cache key is known (format, alpha), by content hash. */
  readonly #sources = new Memo<SourceImage>({ maxEntries: SOURCES });
  /** Renders started by this process (tests check that identical requests share one). */
  renders = 0;

  constructor(deps: {
    config: Config;
    store: BlobStore;
    derived: DerivedBlobs;
    images: ImageProcessor;
    signingKeys: readonly SigningKey[];
    log?: { error(obj: object, msg: string): void };
  }) {
    const { config } = deps;
    this.#store = deps.store;
    this.#derived = deps.derived;
    this.#images = deps.images;
    this.#keys = deps.signingKeys;
    this.#log = deps.log ?? { error() {} };
    this.#allowUnsigned = config.transformUnsignedPresets;
    this.#limits = transformLimits(config);
    this.#presets = config.imagePresets;
    const settings = imageSettings(config);
    this.#render = {
      limits: settings.limits,
      maxOutputDimension: config.transformMaxDimension,
      maxOutputBytes: settings.maxOutputBytes,
      enlarge: config.transformEnlarge,
      encoders: settings.transformEncoders,
      background: settings.background,
      // One budget for the process: renders wait behind image jobs' decodes, and the other way round.
      budget: deps.images.budget,
    };
    this.#runtime = settings.runtime;
    this.#maxInputBytes = settings.maxInputBytes;
    this.#sourcePool = new BufferPool({
      maxBufferBytes: settings.maxInputBytes,
      maxPooledBytes: SOURCE_POOL_BYTES,
    });
    this.#slots = new Slots(config.transformConcurrency || availableParallelism(), config.transformQueueSize);
  }

  /** Renders running and waiting now (for tests and metrics). */
  get load(): { running: number; waiting: number } {
    return this.#slots.load;
  }

  /**
   * The same as `parse`, for the delivery shortcut: null instead of an error, so that the request goes on
   * to the Fastify route, which answers the problem.
   */
  tryParse(pathname: string): ParsedTransformPath | null {
    try {
      return this.parse(pathname);
    } catch {
      return null;
    }
  }

  /**
   * Parses a `/t/...` path and checks its signature: 400 for a malformed URL, 403 for a bad signature.
   * Accepted paths are remembered.
   */
  parse(pathname: string): ParsedTransformPath {
    const known = this.#accepted.getNow(pathname);
    if (known) return known;
    const parsed = parseTransformPath(pathname, this.#limits, this.#presets);
    if (authorizeTransform(parsed, this.#keys, this.#allowUnsigned) === 'denied') {
      throw new ConveyorError('access_denied', 'The transform URL is not signed, or not signed correctly');
    }
    this.#accepted.set(pathname, parsed);
    return parsed;
  }

  /** A signed transform URL (path) for `id`, for clients that hold no key. */
  signedPath(request: TransformTarget, id: string): string {
    const key = this.#keys[0];
    if (!key) throw new ConveyorError('unavailable', 'No signing key is configured');
    const path = buildTransformUrl(request, id, key);
    this.parse(path); // the limits apply to signed URLs we hand out as to any other
    return path;
  }

  /**
   * The Derive step of a parsed transform: find or render the output for the negotiated format. Its key
   * is the signed part of the URL and the source's content, and for `f:auto` what the Accept header makes
   * acceptable, the only part of the request the choice reads.
   */
  transform(parsed: ParsedTransformPath): Derive {
    const negotiated = parsed.spec.format === 'auto';
    return {
      key: (source, request) =>
        negotiated
          ? `transform\n${parsed.signedPart}\n${source.sha256}\n${acceptSignature(request.headers.accept)}`
          : `transform\n${parsed.signedPart}\n${source.sha256}`,
      derive: async (source, request) => {
        const image = await this.#sourceImage(source);
        const { key, headers, spec } = this.#output(parsed, source, image, request.headers.accept);
        const stored = await this.#derived.find(key);
        if (stored) return { blob: derivedBlob(stored), headers };
        const rendered = await this.#rendering(source, spec, key);
        return { blob: derivedBlob(rendered.row), headers, bytes: rendered.bytes };
      },
    };
  }

  /** What a transform request makes of a source: the negotiated spec, its cache key, the extra headers. */
  #output(
    parsed: ParsedTransformPath,
    source: Representation,
    image: SourceImage,
    accept: string | undefined,
  ): { spec: ResolvedSpec; key: string; headers: OutgoingHttpHeaders } {
    const choice = resolveFormat(parsed.spec.format, accept, image, this.#limits.formats);
    const spec: ResolvedSpec = { ...parsed.spec, format: choice.format };
    const quality = spec.quality ?? defaultQuality(this.#render, choice.format);
    if (quality !== undefined) spec.quality = quality;
    const headers = choice.varyAccept ? VARY_ACCEPT : NO_HEADERS;
    return { spec, key: cacheKey(spec, source.sha256), headers };
  }

  /** The Derive step of a preset variant (`thumb.webp`): served once the image job has made it. */
  variant(file: string): Derive {
    const match = /^([A-Za-z0-9_-]{1,64})\.([a-z]{3,4})$/.exec(file);
    const format = match ? formatOfExtension(match[2]!) : undefined;
    if (!match || !format) return NO_SUCH_VARIANT;
    const preset = match[1]!;
    // The variant's key in the database names everything it depends on.
    const key = (source: Representation) => variantKey(source.sha256, preset, format);
    return {
      key,
      derive: async (source) => {
        const row = await this.#derived.find(key(source));
        // Not made (yet, or not an image, or not a configured preset): the same answer for all three.
        if (!row) throw new ConveyorError('not_found', 'No such variant (yet)');
        return { blob: derivedBlob(row) };
      },
    };
  }

  /** The source's format and alpha, from its analysis or else its header; probed once per content. */
  #sourceImage(source: Representation): Promise<SourceImage> {
    return this.#sources.get(source.sha256, async () => {
      const info = await this.#images.info(source.sha256);
      if (info) return { format: info.format, hasAlpha: info.has_alpha === 1 };
      // Not analysed (yet): probe the header.
      const lease = await this.#read(source);
      try {
        const { probeImage } = await imageLibrary(this.#runtime);
        const probe = await probeImage(lease.bytes, this.#render.limits).catch(imageProblem);
        return { format: probe.format, hasAlpha: probe.hasAlpha };
      } finally {
        lease.release();
      }
    });
  }

  /** Resolves once every render started so far is answered and stored (or has failed). */
  async settled(): Promise<void> {
    await Promise.all(this.#storing);
  }

  /**
   * The render of `key`, shared by every request that asks while it is made. The answer goes out as soon
   * as the bytes exist; storing them as a derived blob follows in the background, and the render stays
   * listed as in flight until it is stored, so that no request in between renders it again. (If storing
   * fails, the answer was still right, and the next request renders anew.)
   */
  #rendering(source: Representation, spec: ResolvedSpec, key: string): Promise<Rendered> {
    return this.#renders.get(key, () => this.#renderAndStore(source, spec, key));
  }

  #renderAndStore(source: Representation, spec: ResolvedSpec, key: string): Promise<Rendered> {
    const rendered = this.#renderOne(source, spec, key);
    const storing = rendered
      .then(
        ({ row, bytes }) =>
          this.#derived
            .put({
              key,
              kind: 'transform',
              sourceSha256: source.sha256,
              preset: null,
              format: row.format as OutputFormat,
              contentType: row.content_type,
              width: row.width,
              height: row.height,
              data: bytes,
              // The time its first answers gave as Last-Modified, so that later ones give the same.
              createdAt: row.created_at,
            })
            .catch((error: unknown) => this.#log.error({ err: error, key }, 'storing a transform failed')),
        // A failed render has been answered to the requests that waited for it.
        () => {},
      )
      .finally(() => {
        this.#renders.delete(key);
        this.#storing.delete(storing);
      });
    this.#storing.add(storing);
    return rendered;
  }

  /**
   * Reads the source and renders it in a render slot, which bounds the source bytes held, while the
   * memory budget (inside renderTransform) bounds libvips' buffers. The row describes the output as it
   * will be stored.
   */
  async #renderOne(source: Representation, spec: ResolvedSpec, key: string): Promise<Rendered> {
    const output = await this.#slots.run(async () => {
      this.renders++;
      const lease = await this.#read(source);
      try {
        const { renderTransform } = await imageLibrary(this.#runtime);
        return await renderTransform(lease.bytes, spec, this.#render).catch(imageProblem);
      } finally {
        // libvips is done with the input once the output exists.
        lease.release();
      }
    });
    const row: MediaDerivedTable = {
      key,
      kind: 'transform',
      source_sha256: source.sha256,
      preset: null,
      format: output.format,
      sha256: createHash('sha256').update(output.data).digest('hex'),
      size: output.data.length,
      content_type: output.contentType,
      width: output.width,
      height: output.height,
      created_at: Date.now(),
    };
    return { row, bytes: output.data };
  }

  /**
   * The whole source in memory, in one positional read (its size is known from the lookup), into a
   * pooled buffer: a fresh multi-megabyte buffer per render made V8 run full collections for the
   * external memory (4-5 mark-compacts per 40 renders of a 5 MB source).
   */
  async #read(source: Representation): Promise<BufferLease> {
    if (source.size > this.#maxInputBytes) {
      throw new ConveyorError('image_too_large', 'The source image is too large to transform');
    }
    const lease = this.#sourcePool.acquire(source.size);
    try {
      if (source.size > 0) {
        await this.#store.readInto(source.sha256, { start: 0, end: source.size - 1 }, lease.bytes);
      }
      return lease;
    } catch (error) {
      lease.release();
      throw error;
    }
  }
}

/** A fresh render: the row it will be stored as, and its bytes. */
interface Rendered {
  row: MediaDerivedTable;
  bytes: Buffer;
}

/** Idle source buffers kept for the next renders (a few sources of a typical photo's size). */
const SOURCE_POOL_BYTES = 64 * 1024 * 1024;

/** Accepted transform paths remembered per process. */
const ACCEPTED_PATHS = 10_000;
/** Sources whose format and alpha are remembered per process. */
const SOURCES = 10_000;

/** Extra response headers of a transform, shared by every response (the origin only reads them). */
const VARY_ACCEPT: OutgoingHttpHeaders = Object.freeze({ vary: 'Accept' });
const NO_HEADERS: OutgoingHttpHeaders = Object.freeze({});

/** A variant file name that no preset can produce (`thumb.gif`, `x`): 404 after the source's checks. */
const NO_SUCH_VARIANT: Derive = {
  key: () => 'no such variant',
  derive: async () => {
    throw new ConveyorError('not_found', 'No such variant');
  },
};

function formatOfExtension(ext: string): OutputFormat | undefined {
  return (
    (Object.entries(EXTENSIONS) as [OutputFormat, string][]).find(([, e]) => e === ext)?.[0] ??
    (ext === 'jpeg' ? 'jpeg' : undefined)
  );
}

function defaultQuality(render: RenderOptions, format: OutputFormat): number | undefined {
  const encoder = render.encoders[format] as { quality?: number };
  return encoder.quality;
}

/**
 * The image library's refusals, as problems under their own catalog codes: the source is the client's
 * choice, so each is a 4xx (src/errors.ts). Anything else (the store failing, say) stays as it is.
 */
function imageProblem(error: unknown): never {
  if (error instanceof ImageError) throw new ConveyorError(error.code, error.message, { cause: error });
  throw error;
}
