/**
 * Working memory: how much RSS one pipeline may add, estimated from the image's header before
 * anything is decoded. The process-wide MemoryBudget (budget.ts) admits pipelines by these figures,
 * and an image whose figure alone exceeds the budget is refused with image_too_large.
 *
 * The pixel limit alone does not bound memory, because at the same 50 MP the decoders differ by two
 * orders of magnitude (docs/benchmarks.md, "Hostile images", measured on sharp 0.35 / libvips 8.18):
 *
 *   streams rows     baseline JPEG, non-interlaced PNG, TIFF: a band of rows at a time; 75 MB for
 *                    the analysis of a 16-bit RGBA 50 MP PNG, a fifth of its decoded size
 *   whole frame      AVIF (libheif and libaom: YUV planes, reference buffers, the RGB result; 930 MB
 *                    for a 1 KB 50 MP AVIF), WebP and GIF (the RGBA canvas), interlaced PNG (libpng
 *                    needs the whole image before the first row), progressive JPEG (every DCT
 *                    coefficient, 2 bytes per sample, until the last scan)
 *   rotated          an EXIF orientation of 5-8 turns the image a quarter, which needs it whole
 *
 * Outputs add what their encoder holds: AVIF (libheif takes the whole image, and aom's encoder its
 * own buffers) up to 60 bytes per output pixel, the others about 12 with the resize before them.
 *
 * The constants are upper bounds of the measurements, with some margin, not exact: what they
 * protect is the total, and a generous estimate only costs some concurrency.
 */

import type { OutputFormat } from '../../grammar/transform-spec.ts';
import { ImageError } from './errors.ts';
import type { Size } from './geometry.ts';
import type { ImageLimits, InputFormat } from './libvips.ts';

/** What the estimate needs to know of a source, all from its header (see probe.ts). */
export interface DecodeFacts {
  format: InputFormat;
  /** One frame, as stored. */
  rawWidth: number;
  rawHeight: number;
  channels: number;
  /** libvips' sample format: uchar, ushort, float, ... */
  depth: string;
  /** A progressive JPEG or an interlaced PNG (or GIF). */
  progressive: boolean;
  /** JPEG only: `4:2:0`, `4:4:4`, `4:4:4:4` (CMYK), ... */
  chromaSubsampling?: string | undefined;
  orientation: number;
}

const MB = 1024 * 1024;

/** Everything a pipeline holds whatever the image: libvips' buffers, the small analysis decode. */
const FIXED = 16 * MB;
/** Rows in flight while streaming: shrink buffers and libvips' line cache, relative to the whole. */
const STREAMING_SHARE = 0.3;
/** AVIF / HEIF decode, per pixel and channel: 1 KB of 8-bit 4:4:4 AVIF at 50 MP measured 930 MB. */
const HEIF_PER_CHANNEL = { narrow: 7, wide: 9.5 };
/** WebP and GIF: the RGBA canvas plus libvips' copy of it (measured 4.8-5 bytes per pixel). */
const CANVAS_PER_PIXEL = 5.5;
/** Progressive JPEG: 2-byte coefficients per sample at full resolution (measured 6.1 for 4:4:4). */
const COEFFICIENT_BYTES = 2.2;
/** Whole decoded images (interlaced PNG: 444 MB for 400 MB of pixels, 488 MB with a transform). */
const WHOLE_OVERHEAD = 1.2;
/**
 * Encoding, per output pixel, the resize before it included. AVIF: a 12 MP photo's variant set, whose
 * largest output is a 2048 x 1536 AVIF, measured 228 MB; transforms to 1024-4096 px, 35-55 bytes.
 */
const ENCODE_PER_PIXEL: Record<OutputFormat, number> = { avif: 60, webp: 12, jpeg: 12, png: 12 };

const SAMPLE_BYTES: Record<string, number> = {
  uchar: 1,
  char: 1,
  ushort: 2,
  short: 2,
  uint: 4,
  int: 4,
  float: 4,
  complex: 8,
  double: 8,
  dpcomplex: 16,
};

function sampleBytes(depth: string): number {
  return SAMPLE_BYTES[depth] ?? 8;
}

/** Memory the decoder (and the orientation) needs for one frame, beyond the FIXED share. */
export function decodeBytes(source: DecodeFacts): number {
  const pixels = source.rawWidth * source.rawHeight;
  const sample = sampleBytes(source.depth);
  const decoded = pixels * source.channels * sample;
  switch (source.format) {
    case 'avif':
    case 'heic':
      return pixels * source.channels * (sample > 1 ? HEIF_PER_CHANNEL.wide : HEIF_PER_CHANNEL.narrow);
    case 'webp':
    case 'gif':
      return pixels * CANVAS_PER_PIXEL;
    case 'jpeg':
      if (source.progressive) {
        return Math.max(
          pixels * fullResolutionSamples(source) * COEFFICIENT_BYTES,
          streamed(source, decoded),
        );
      }
      return streamed(source, decoded);
    case 'png':
      return source.progressive ? decoded * WHOLE_OVERHEAD : streamed(source, decoded);
    default:
      // TIFF (libvips reads large strips a few rows at a time), and anything else libvips streams.
      return streamed(source, decoded);
  }
}

function streamed(source: DecodeFacts, decoded: number): number {
  return source.orientation >= 5 ? decoded * WHOLE_OVERHEAD : decoded * STREAMING_SHARE;
}

/** Components per pixel at full resolution: 4:2:0 keeps a quarter of each chroma plane, 4:2:2 half. */
function fullResolutionSamples(source: DecodeFacts): number {
  const match = /^4:(\d):(\d)(?::4)?$/.exec(source.chromaSubsampling ?? '');
  if (!match) return source.channels;
  const chroma = (Number(match[1]) + Number(match[2])) / 8; // 4:4:4 -> 1, 4:2:2 -> 0.5, 4:2:0 -> 0.25
  const extra = source.channels === 4 ? 1 : 0; // CMYK's K (or alpha) at full resolution
  return 1 + 2 * chroma + extra;
}

/** The analysis: one decode, shrunk to 100 x 100. */
export function analysisBytes(source: DecodeFacts): number {
  return FIXED + decodeBytes(source);
}

/** An on-the-fly transform: the decode, and the encode of `output`. */
export function transformBytes(source: DecodeFacts, output: Size, format: OutputFormat): number {
  return FIXED + decodeBytes(source) + output.width * output.height * ENCODE_PER_PIXEL[format];
}

/**
 * A variant set: the decode, the intermediate (held as an uncompressed TIFF, and decoded again by each
 * output, see variants.ts) and the costliest output. Summed rather than the larger of the phases:
 * the decoder's memory, freed, mostly stays with the allocator (glibc keeps per-thread arenas), so RSS
 * does not come down in between.
 */
export function variantsBytes(
  source: DecodeFacts,
  intermediate: Size,
  outputs: readonly { size: Size; format: OutputFormat }[],
): number {
  const held = intermediate.width * intermediate.height * source.channels * sampleBytes(source.depth) * 3;
  const encode = Math.max(
    0,
    ...outputs.map((o) => o.size.width * o.size.height * ENCODE_PER_PIXEL[o.format]),
  );
  return FIXED + decodeBytes(source) + held + encode;
}

/** Refuses work whose estimate exceeds `limits.maxWorkingBytes`: it could never be admitted. */
export function checkWorkingMemory(bytes: number, limits: ImageLimits): void {
  if (bytes > limits.maxWorkingBytes) {
    const mb = (n: number) => Math.ceil(n / MB);
    throw new ImageError(
      'image_too_large',
      `Processing the image would need about ${mb(bytes)} MiB of memory; at most ${mb(limits.maxWorkingBytes)} MiB are allowed`,
      { details: { estimatedBytes: Math.ceil(bytes), limit: limits.maxWorkingBytes } },
    );
  }
}
