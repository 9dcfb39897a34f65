import type { OutgoingHttpHeaders } from 'node:http';
import { availableParallelism } from 'node:os';
import type { Config } from '../config/config.ts';
import { parseFormats, parsePresets } from '../config/media-settings.ts';
import type { Representation } from '../delivery/lookup.ts';
import type { SigningKey } from '../delivery/signed-url.ts';
import { ConveyorError } from '../errors.ts';
import type { Derive } from '../http/origin.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { readBlob } from './blob-bytes.ts';
import { type DerivedBlobs, derivedRepresentation, EXTENSIONS, variantKey } from './derived.ts';
import { probeImage, type RenderOptions, renderTransform } from './image/index.ts';
import { resolveFormat, type SourceImage } from './image/negotiate.ts';
import type { OutputFormat, ResolvedSpec } from './image/transform-spec.ts';
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
import { type ImageProcessor, imageSettings } from './images.ts';
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
 * installation; concurrent identical requests in one process share one render; renders run at most
 * `transformConcurrency` at a time with `transformQueueSize` waiting, and past that the answer is 503 with
 * Retry-After, so a burst costs queueing, never memory.
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
  readonly #maxInputBytes: number;
  readonly #slots: Slots;
  /** Renders in progress, by cache key: identical requests arriving together are computed once. */
  readonly #inflight = new Map<string, Promise<unknown>>();
  /** Renders started by this process (tests check that identical requests share one). */
  renders = 0;
  /** Source facts needed before the cache key is known (format, alpha), by content hash. */
  readonly #sources = new Map<string, SourceImage>();

  constructor(deps: {
    config: Config;
    store: BlobStore;
    derived: DerivedBlobs;
    images: ImageProcessor;
    signingKeys: readonly SigningKey[];
  }) {
    const { config } = deps;
    this.#store = deps.store;
    this.#derived = deps.derived;
    this.#images = deps.images;
    this.#keys = deps.signingKeys;
    this.#allowUnsigned = config.transformUnsignedPresets;
    const max = config.transformMaxDimension;
    this.#limits = {
      maxWidth: max,
      maxHeight: max,
      maxDpr: config.transformMaxDpr,
      maxBlur: 100,
      maxSharpen: 10,
      maxOptionsLength: 256,
      formats: parseFormats(config.transformFormats),
    };
    this.#presets = parsePresets(config.imagePresets, { ...this.#limits, maxWidth: 16383, maxHeight: 16383 });
    const settings = imageSettings(config);
    this.#render = {
      limits: settings.limits,
      maxOutputDimension: max,
      maxOutputBytes: settings.maxOutputBytes,
      enlarge: config.transformEnlarge,
      encoders: settings.transformEncoders,
      background: settings.background,
    };
    this.#maxInputBytes = settings.maxInputBytes;
    this.#slots = new Slots(config.transformConcurrency || availableParallelism(), config.transformQueueSize);
  }

  /** Renders running and waiting now (for tests and metrics). */
  get load(): { running: number; waiting: number } {
    return this.#slots.load;
  }

  /** Parses a `/t/...` path and checks its signature: 400 for a malformed URL, 403 for a bad signature. */
  parse(pathname: string): ParsedTransformPath {
    const parsed = parseTransformPath(pathname, this.#limits, this.#presets);
    if (authorizeTransform(parsed, this.#keys, this.#allowUnsigned) === 'denied') {
      throw new ConveyorError('access_denied', 'The transform URL is not signed, or not signed correctly');
    }
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

  /** The Derive step of a parsed transform: find or render the output for the negotiated format. */
  transform(parsed: ParsedTransformPath): Derive {
    return async (source, request) => {
      const image = await this.#sourceImage(source);
      const accept = request.headers.accept;
      const choice = resolveFormat(parsed.spec.format, accept, image, this.#limits.formats);
      const spec: ResolvedSpec = { ...parsed.spec, format: choice.format };
      const quality = spec.quality ?? defaultQuality(this.#render, choice.format);
      if (quality !== undefined) spec.quality = quality;
      const key = cacheKey(spec, source.sha256);
      const row =
        (await this.#derived.find(key)) ?? (await this.#once(key, () => this.#renderOne(source, spec, key)));
      const headers: OutgoingHttpHeaders = choice.varyAccept ? { vary: 'Accept' } : {};
      return { rep: derivedRepresentation(source, row), headers };
    };
  }

  /** The Derive step of a preset variant (`thumb.webp`): served once the image job has made it. */
  variant(file: string): Derive {
    const match = /^([A-Za-z0-9_-]{1,64})\.([a-z]{3,4})$/.exec(file);
    const format = match ? formatOfExtension(match[2]!) : undefined;
    return async (source) => {
      if (!match || !format) throw new ConveyorError('not_found', 'No such variant');
      const row = await this.#derived.find(variantKey(source.sha256, match[1]!, format));
      // Not made (yet, or not an image, or not a configured preset): the same answer for all three.
      if (!row) throw new ConveyorError('not_found', 'No such variant (yet)');
      return { rep: derivedRepresentation(source, row) };
    };
  }

  async #sourceImage(source: Representation): Promise<SourceImage> {
    const known = this.#sources.get(source.sha256);
    if (known) return known;
    const info = await this.#images.info(source.sha256);
    let image: SourceImage;
    if (info) {
      image = { format: info.format, hasAlpha: info.has_alpha === 1 };
    } else {
      // Not analysed (yet): read the header only.
      const bytes = await this.#read(source.sha256);
      const probe = await probeImage(bytes, this.#render.limits).catch(imageProblem);
      image = { format: probe.format, hasAlpha: probe.hasAlpha };
    }
    if (this.#sources.size >= 10_000) this.#sources.delete(this.#sources.keys().next().value!);
    this.#sources.set(source.sha256, image);
    return image;
  }

  async #renderOne(source: Representation, spec: ResolvedSpec, key: string) {
    return this.#slots.run(async () => {
      this.renders++;
      const bytes = await this.#read(source.sha256);
      const output = await renderTransform(bytes, spec, this.#render).catch(imageProblem);
      return this.#derived.put({
        key,
        kind: 'transform',
        sourceSha256: source.sha256,
        preset: null,
        format: output.format,
        contentType: output.contentType,
        width: output.width,
        height: output.height,
        data: output.data,
      });
    });
  }

  async #read(sha256: string): Promise<Buffer> {
    return readBlob(this.#store, sha256, this.#maxInputBytes).catch((error) => {
      if ((error as { code?: string }).code !== 'too_large') throw error;
      throw new ConveyorError('payload_too_large', 'The source image is too large to transform');
    });
  }

  #once<T>(key: string, work: () => Promise<T>): Promise<T> {
    const running = this.#inflight.get(key) as Promise<T> | undefined;
    if (running) return running;
    const started = work().finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, started);
    return started;
  }
}

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

/** The image library's refusals, as problems: the source is the client's choice, so 4xx. */
function imageProblem(error: unknown): never {
  const code = (error as { code?: string }).code;
  if (code === 'IMAGE_UNSUPPORTED') {
    throw new ConveyorError('unsupported_media_type', 'The source is not an image this server transforms');
  }
  if (code === 'IMAGE_TOO_LARGE' || code === 'IMAGE_TOO_MANY_FRAMES' || code === 'IMAGE_OUTPUT_TOO_LARGE') {
    throw new ConveyorError('payload_too_large', (error as Error).message);
  }
  if (code === 'IMAGE_CORRUPT') {
    throw new ConveyorError('unprocessable_content', (error as Error).message);
  }
  throw error;
}
