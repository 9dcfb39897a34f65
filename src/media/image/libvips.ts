/**
 * What every sharp pipeline in this library shares: the input limits handed to libvips, the
 * per-format encoder settings, and the step that turns a ResizePlan into sharp operations.
 * Internal to src/media/image; index.ts re-exports only the types and defaults.
 */
import sharp, { type Sharp, type SharpOptions } from 'sharp';
import type { Gravity, OutputFormat } from '../../grammar/transform-spec.ts';
import { classifySharpError } from './errors.ts';
import { focalCrop, type ResizePlan, type Size } from './geometry.ts';

/** A file path or the whole file in memory. Paths let libvips read sequentially from disk. */
export type ImageInput = Buffer | string;

/**
 * Input formats as this library names them: sharp's decoder names, except that HEIF is split by its
 * codec into `avif` (AV1) and `heic` (HEVC, which the prebuilt libvips cannot decode).
 */
export type InputFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'avif' | 'tiff' | 'heic' | 'svg' | (string & {});

export interface ImageLimits {
  /** Pixels of one frame (width x height as stored). Checked from the header, and by libvips again. */
  maxInputPixels: number;
  /** Pages of a multi-page TIFF / frames of an animation. */
  maxFrames: number;
  /**
   * Formats accepted as input. SVG is off by default: rendering it runs librsvg over an untrusted
   * document, and a vector original is better served as it is.
   */
  inputFormats: readonly InputFormat[];
  /**
   * How picky the decoders are (libvips fail-on): 'truncated' and stricter refuse a truncated file;
   * 'warning' also refuses files with minor recoverable damage that browsers display without
   * complaint, which is why the default stops at 'error'.
   */
  failOn: 'none' | 'truncated' | 'error' | 'warning';
  /** Seconds of libvips work allowed per pipeline before it is abandoned; 0 for no limit. */
  timeoutSeconds: number;
  /**
   * Estimated working memory (cost.ts) one step on one image may need; more is refused with
   * image_too_large. It is also the capacity of the process's MemoryBudget, which every step fits in.
   */
  maxWorkingBytes: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = {
  maxInputPixels: 50_000_000,
  maxFrames: 500,
  inputFormats: ['jpeg', 'png', 'webp', 'gif', 'avif', 'tiff'],
  failOn: 'error',
  timeoutSeconds: 60,
  maxWorkingBytes: 1024 * 1024 * 1024,
};

/**
 * Encoder settings per output format. AVIF effort is the expensive knob. Measured on a detailed 12 MP
 * photo with one libvips thread: a 2048 px AVIF takes 1.1 s at effort 2, 1.5 s at 3 and 9.9 s at 4,
 * for files 19% / 14% larger than effort 4's (on smooth graphics effort 4 can halve the file). A
 * 512 px AVIF takes 0.14 s at effort 2 and 0.76 s at 4 for a 2% difference. Hence effort 3 for
 * variants (a whole upload's set: 4.2 s instead of 14.8 s) and 2 for renders a client waits for.
 */
export interface EncoderSettings {
  jpeg: { quality: number; mozjpeg: boolean };
  webp: { quality: number; effort: number };
  avif: { quality: number; effort: number };
  png: { compressionLevel: number };
}

/** For variants, rendered once in a background job: smaller files are worth the CPU. */
export const VARIANT_ENCODERS: EncoderSettings = {
  jpeg: { quality: 82, mozjpeg: true },
  webp: { quality: 80, effort: 4 },
  avif: { quality: 50, effort: 3 },
  png: { compressionLevel: 9 },
};

/** For on-the-fly transforms, rendered while a client waits (then cached by the CDN). */
export const TRANSFORM_ENCODERS: EncoderSettings = {
  jpeg: { quality: 82, mozjpeg: true },
  webp: { quality: 80, effort: 4 },
  avif: { quality: 50, effort: 2 },
  png: { compressionLevel: 6 },
};

export const CONTENT_TYPES: Record<OutputFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
};

/**
 * Every pipeline opens its input through here, so libvips enforces the pixel cap itself even if a
 * header lied to the probe, decodes only the first page/frame, and streams rows top to bottom
 * (sequential access keeps memory at a few scanlines for formats that allow it; sharp switches to
 * random access on its own when an operation such as a rotation needs it).
 */
export function openInput(input: ImageInput, limits: ImageLimits): Sharp {
  const options: SharpOptions = {
    limitInputPixels: limits.maxInputPixels,
    failOn: limits.failOn,
    sequentialRead: true,
    autoOrient: true,
    pages: 1,
  };
  const pipeline = sharp(input, options);
  return limits.timeoutSeconds > 0 ? pipeline.timeout({ seconds: limits.timeoutSeconds }) : pipeline;
}

/** Runs a sharp promise, turning failures that are about the image into ImageErrors. */
export async function run<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw classifySharpError(error);
  }
}

/**
 * Adds the resize described by `plan` to `pipeline`, whose image is `source` in size (as displayed).
 * Focal-point cover crops are cut by our own arithmetic (focalCrop); compass gravities and the
 * attention/entropy strategies are left to libvips. Gravity means nothing to scale and fill, and
 * content-aware strategies mean nothing to contain, which centres instead.
 */
export function applyPlan(
  pipeline: Sharp,
  source: Size,
  plan: ResizePlan,
  gravity: Gravity,
  background: Rgba,
): Sharp {
  const { width, height } = plan;
  switch (plan.mode) {
    case 'scale':
    case 'fill':
      return pipeline.resize(width, height, { fit: 'fill' });
    case 'contain':
      return pipeline.resize(width, height, {
        fit: 'contain',
        position: typeof gravity === 'string' && isCompass(gravity) ? gravity : 'center',
        background,
      });
    case 'cover': {
      if (typeof gravity === 'object') {
        const crop = focalCrop(source.width, source.height, width, height, gravity.x, gravity.y);
        return pipeline.extract(crop).resize(width, height, { fit: 'fill' });
      }
      const position =
        gravity === 'attention'
          ? sharp.strategy.attention
          : gravity === 'entropy'
            ? sharp.strategy.entropy
            : gravity;
      return pipeline.resize(width, height, { fit: 'cover', position });
    }
  }
}

/**
 * Adds the encoder for `format`. JPEG has no alpha channel, so transparency is flattened onto
 * `background` first (otherwise transparent pixels come out as whatever colour they hide, often
 * black). The ICC profile is kept (CMYK sources are converted to sRGB and tagged as such); every
 * other piece of metadata, EXIF included, is dropped because sharp writes none unless asked.
 */
export function encode(
  pipeline: Sharp,
  format: OutputFormat,
  settings: EncoderSettings,
  quality: number | undefined,
  background: Rgba,
): Sharp {
  const withProfile = pipeline.keepIccProfile();
  switch (format) {
    case 'jpeg':
      return withProfile
        .flatten({ background: { r: background.r, g: background.g, b: background.b } })
        .jpeg({ quality: quality ?? settings.jpeg.quality, mozjpeg: settings.jpeg.mozjpeg });
    case 'webp':
      return withProfile.webp({ quality: quality ?? settings.webp.quality, effort: settings.webp.effort });
    case 'avif':
      return withProfile.avif({ quality: quality ?? settings.avif.quality, effort: settings.avif.effort });
    case 'png':
      // PNG is lossless: a quality would only mean palette quantisation, which is not what a
      // transform URL's `q` suggests, so it is ignored.
      return withProfile.png({ compressionLevel: settings.png.compressionLevel });
  }
}

/** A colour with channels 0-255 and alpha 0-1, as sharp takes it. */
export interface Rgba {
  r: number;
  g: number;
  b: number;
  alpha: number;
}

/** `#rrggbb` to the opaque colour it names. */
export function parseHexColour(hex: string): Rgba {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (m === null) throw new RangeError(`expected a colour like #ffffff, got ${JSON.stringify(hex)}`);
  return {
    r: Number.parseInt(m[1]!, 16),
    g: Number.parseInt(m[2]!, 16),
    b: Number.parseInt(m[3]!, 16),
    alpha: 1,
  };
}

/** Padding for contain: the background colour for JPEG, transparent for formats that have alpha. */
export function padding(format: OutputFormat, background: Rgba): Rgba {
  return format === 'jpeg' ? { ...background, alpha: 1 } : { ...background, alpha: 0 };
}

function isCompass(gravity: string): boolean {
  return gravity !== 'attention' && gravity !== 'entropy';
}
