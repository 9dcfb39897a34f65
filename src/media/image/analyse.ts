/**
 * Placeholders and fingerprints, all from ONE small decode: the source is auto-oriented (so a
 * placeholder has the shape viewers will see) and shrunk to fit 100 x 100 in a single pipeline;
 * everything below is computed from those at most 10,000 RGBA pixels, in milliseconds. JPEG sources
 * decode at 1/8 scale on the way (libvips shrink-on-load), so even a 12 MP photo costs little.
 *
 *   dominantColour  `#rrggbb`, libvips' most populated bin of a 4096-bin RGB histogram (sharp
 *                   stats().dominant), of the image flattened onto white
 *   thumbhash       ThumbHash (https://evanw.github.io/thumbhash/), base64: ~25 bytes that decode to a
 *                   blurred preview with the image's aspect ratio and alpha
 *   blurhash        BlurHash with 4 x 3 components (28 characters), of the image flattened onto white
 *   phash           64-bit perceptual hash, 16 hex digits; see phash.ts for the algorithm and how to
 *                   compare two of them (Hamming distance)
 *
 * The decode doubles as a cheap integrity check: a truncated file fails here with image_corrupt.
 * Small as its output is, the decode itself can be large (an AVIF or a progressive JPEG is decoded
 * whole before it is shrunk), so it reserves its estimate in the memory budget like any render.
 */
import { encode as blurhashEncode } from 'blurhash';
import sharp from 'sharp';
import { rgbaToThumbHash } from 'thumbhash';
import type { MemoryBudget } from './budget.ts';
import { analysisBytes, checkWorkingMemory } from './cost.ts';
import { type ImageInput, type ImageLimits, openInput, run } from './libvips.ts';
import { PHASH_SIZE, phashFromGrey } from './phash.ts';
import { probeImage } from './probe.ts';

export interface ImageAnalysis {
  dominantColour: string;
  thumbhash: string;
  blurhash: string;
  phash: string;
}

/** ThumbHash's own input limit. */
const THUMB = 100;

export interface AnalyseOptions {
  /** The process's image memory budget; without one the decode runs at once. */
  budget?: MemoryBudget;
  /** Stops the wait for the budget (a cancelled or timed-out job). */
  signal?: AbortSignal;
}

export async function analyseImage(
  input: ImageInput,
  limits: ImageLimits,
  options: AnalyseOptions = {},
): Promise<ImageAnalysis> {
  const source = await probeImage(input, limits);
  const bytes = analysisBytes(source);
  checkWorkingMemory(bytes, limits);
  const decode = () =>
    run(() =>
      openInput(input, limits)
        .resize(THUMB, THUMB, { fit: 'inside' })
        .toColourspace('srgb')
        .ensureAlpha()
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true }),
    );
  const { data, info } = await (options.budget
    ? options.budget.run(bytes, decode, options.signal)
    : decode());
  const { width, height } = info;
  if (info.channels !== 4 || data.length !== width * height * 4) {
    throw new Error(
      `expected ${width}x${height} RGBA, got ${info.channels} channels and ${data.length} bytes`,
    );
  }

  const flat = flattenOnWhite(data);
  const raw = { raw: { width, height, channels: 4 as const }, limitInputPixels: limits.maxInputPixels };
  const [stats, grey] = await Promise.all([
    sharp(flat, raw).removeAlpha().stats(),
    sharp(flat, raw)
      .removeAlpha()
      .greyscale()
      .resize(PHASH_SIZE, PHASH_SIZE, { fit: 'fill' })
      .raw()
      .toBuffer(),
  ]);

  return {
    dominantColour: hex(stats.dominant),
    thumbhash: Buffer.from(rgbaToThumbHash(width, height, data)).toString('base64'),
    blurhash: blurhashEncode(
      new Uint8ClampedArray(flat.buffer, flat.byteOffset, flat.length),
      width,
      height,
      4,
      3,
    ),
    phash: phashFromGrey(grey),
  };
}

/** RGBA composited onto opaque white: what a viewer sees on a white page. */
export function flattenOnWhite(rgba: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(rgba.length);
  for (let i = 0; i < rgba.length; i += 4) {
    const a = rgba[i + 3]! / 255;
    out[i] = Math.round(rgba[i]! * a + 255 * (1 - a));
    out[i + 1] = Math.round(rgba[i + 1]! * a + 255 * (1 - a));
    out[i + 2] = Math.round(rgba[i + 2]! * a + 255 * (1 - a));
    out[i + 3] = 255;
  }
  return out;
}

function hex({ r, g, b }: { r: number; g: number; b: number }): string {
  return `#${[r, g, b].map((c) => Math.round(c).toString(16).padStart(2, '0')).join('')}`;
}
