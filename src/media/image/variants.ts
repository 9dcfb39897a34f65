/**
 * Variants: the fixed set of renditions made for every uploaded image, in a background job.
 *
 * Decode once, fan out. The source is decoded a single time, auto-oriented, and shrunk to the
 * smallest size every preset can still be cut from without upscaling (geometry.intermediateScale);
 * that intermediate is kept as an uncompressed TIFF in memory, which preserves the ICC profile, alpha
 * and bit depth, and every (preset, format) pair is a sharp clone() of it. Opening an uncompressed
 * TIFF is a memory copy, whereas cloning the original would re-decode the JPEG for each of the
 * 12 outputs. For a 12 MP source the intermediate is 2048 px wide, about 9 MB.
 *
 * Outputs are rendered one after the other: libvips already spreads one pipeline over its threads,
 * and running a dozen at once would only multiply peak memory. The whole set reserves its estimate
 * (cost.ts: the decode, the intermediate, the costliest output) in the memory budget once, before the
 * decode, and keeps it until the last output exists. They come back as Buffers, all or
 * nothing: either every variant exists or an ImageError says why none does, so a job never stores
 * half a set. Each is bounded by maxOutputBytes.
 *
 * Animated inputs (GIF, animated WebP) yield still variants of their first frame, in every format.
 * Variants are thumbnails and previews; an animation is better served by the video pipeline (an
 * MP4 is a fraction of an animated WebP's size), and animated AVIF is not supported by sharp.
 */
import sharp, { type Sharp } from 'sharp';
import { type Fit, type Gravity, MAX_IMAGE_SIDE, type OutputFormat } from '../../grammar/transform-spec.ts';
import type { MemoryBudget } from './budget.ts';
import { checkWorkingMemory, variantsBytes } from './cost.ts';
import {
  type GeometryLimits,
  intermediateScale,
  planResize,
  type ResizePlan,
  type Size,
  scaledSize,
} from './geometry.ts';
import {
  applyPlan,
  CONTENT_TYPES,
  DEFAULT_IMAGE_LIMITS,
  type EncoderSettings,
  encode,
  type ImageInput,
  type ImageLimits,
  openInput,
  padding,
  parseHexColour,
  run,
  VARIANT_ENCODERS,
} from './libvips.ts';
import { type ProbeResult, probeImage } from './probe.ts';
import { checkOutputSize } from './render.ts';

export interface VariantPreset {
  /** Stable name, part of the stored variant's key: `thumb`, `small`, ... */
  name: string;
  /** Device pixels; absent means "follow the other side". */
  width?: number;
  height?: number;
  fit: Fit;
  gravity: Gravity;
}

export const DEFAULT_VARIANT_PRESETS: readonly VariantPreset[] = [
  { name: 'thumb', width: 150, height: 150, fit: 'cover', gravity: 'attention' },
  { name: 'small', width: 480, fit: 'inside', gravity: 'center' },
  { name: 'medium', width: 1080, fit: 'inside', gravity: 'center' },
  { name: 'large', width: 2048, fit: 'inside', gravity: 'center' },
];

export const DEFAULT_VARIANT_FORMATS: readonly OutputFormat[] = ['webp', 'avif', 'jpeg'];

export interface VariantOptions {
  limits: ImageLimits;
  maxOutputBytes: number;
  encoders: EncoderSettings;
  /** `#rrggbb`: what JPEG flattens transparency onto. */
  background: string;
  /** Called after each output, e.g. to feed a job's progress report. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Checked between outputs (libvips cannot stop a pipeline half-way): a cancelled or timed-out job
   * stops within one encode, with the signal's reason thrown. It also ends a wait for the budget.
   */
  signal?: AbortSignal;
  /** The process's image memory budget (budget.ts); without one the set is rendered at once. */
  budget?: MemoryBudget;
}

export const DEFAULT_VARIANT_OPTIONS: VariantOptions = {
  limits: DEFAULT_IMAGE_LIMITS,
  maxOutputBytes: 10 * 1024 * 1024,
  encoders: VARIANT_ENCODERS,
  background: '#ffffff',
};

export interface RenderedVariant {
  preset: string;
  format: OutputFormat;
  contentType: string;
  width: number;
  height: number;
  bytes: number;
  data: Buffer;
}

// Presets never enlarge (a variant larger than its source is wasted storage); the dimension cap is
// only a backstop against a mistyped preset, at libvips' WebP ceiling.
const VARIANT_GEOMETRY: GeometryLimits = { maxDimension: MAX_IMAGE_SIDE, enlarge: false };

/**
 * Renders every preset in every format, presets in the order given and formats within each preset
 * in the order given. Throws an ImageError (and returns nothing) if the input is refused, fails to
 * decode, or any output exceeds maxOutputBytes.
 */
export async function renderVariants(
  input: ImageInput,
  presets: readonly VariantPreset[],
  formats: readonly OutputFormat[],
  options: VariantOptions,
): Promise<RenderedVariant[]> {
  checkUnique(
    presets.map((p) => p.name),
    'preset name',
  );
  checkUnique(formats, 'format');
  const source = await probeImage(input, options.limits);
  const plans = presets.map((preset) => planResize(source, preset, VARIANT_GEOMETRY));
  const background = parseHexColour(options.background);
  const total = presets.length * formats.length;
  if (total === 0) return [];

  const size = scaledSize(source, intermediateScale(source, plans));
  const bytes = variantSetBytes(source, plans, formats);
  checkWorkingMemory(bytes, options.limits);
  options.signal?.throwIfAborted();
  const render = async (): Promise<RenderedVariant[]> => {
    const base = await decodeIntermediate(input, source, size, options.limits);
    const variants: RenderedVariant[] = [];
    for (const [i, preset] of presets.entries()) {
      const plan = plans[i]!;
      for (const format of formats) {
        options.signal?.throwIfAborted();
        const pipeline = encode(
          applyPlan(base.pipeline.clone(), base.size, plan, preset.gravity, padding(format, background)),
          format,
          options.encoders,
          undefined,
          background,
        );
        const { data, info } = await run(() => pipeline.toBuffer({ resolveWithObject: true }));
        checkOutputSize(data.length, options.maxOutputBytes);
        variants.push({
          preset: preset.name,
          format,
          contentType: CONTENT_TYPES[format],
          width: info.width,
          height: info.height,
          bytes: data.length,
          data,
        });
        options.onProgress?.(variants.length, total);
      }
    }
    return variants;
  };
  return options.budget ? options.budget.run(bytes, render, options.signal) : render();
}

/** The estimated working memory (cost.ts) of rendering `plans` in `formats` from `source`. */
export function variantSetBytes(
  source: ProbeResult,
  plans: readonly ResizePlan[],
  formats: readonly OutputFormat[],
): number {
  return variantsBytes(
    source,
    scaledSize(source, intermediateScale(source, plans)),
    plans.flatMap((plan) => formats.map((format) => ({ size: plan, format }))),
  );
}

/** The one decode of the source: oriented, shrunk to `size`, as a clonable pipeline. */
async function decodeIntermediate(
  input: ImageInput,
  source: Size,
  size: Size,
  limits: ImageLimits,
): Promise<{ pipeline: Sharp; size: Size }> {
  let decoder = openInput(input, limits);
  if (size.width !== source.width || size.height !== source.height) {
    decoder = decoder.resize(size.width, size.height, { fit: 'fill' });
  }
  const tiff = await run(() => decoder.keepIccProfile().tiff({ compression: 'none' }).toBuffer());
  // Our own TIFF, so no orientation or limits to apply beyond the ones already enforced; the cap is
  // set anyway so that no pipeline in this library runs without one.
  const pipeline = sharp(tiff, { limitInputPixels: limits.maxInputPixels, failOn: 'error' });
  return {
    pipeline: limits.timeoutSeconds > 0 ? pipeline.timeout({ seconds: limits.timeoutSeconds }) : pipeline,
    size,
  };
}

function checkUnique(values: readonly string[], what: string): void {
  const seen = new Set<string>();
  for (const value of values) {
    if (seen.has(value)) throw new RangeError(`duplicate ${what}: ${value}`);
    seen.add(value);
  }
}
