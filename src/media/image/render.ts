/**
 * On-the-fly transforms: one source, one ResolvedSpec, one output.
 *
 * The output is a Buffer, not a stream, on purpose. Outputs are bounded (maxOutputDimension,
 * maxOutputBytes), and holding the whole body means (1) a decoding failure surfaces as a typed error
 * before any response header has been sent, instead of as a response cut off mid-body; (2) the caller
 * knows Content-Length and can hash an ETag; (3) the result can be written to a cache in one piece.
 * The source itself is never held decoded: libvips streams it through the pipeline.
 *
 * Order of operations: auto-orient (from EXIF), crop/resize (geometry.ts decides the size), blur,
 * sharpen, then flatten (JPEG only) and encode. Metadata is stripped except the ICC profile.
 */
import type { Sharp } from 'sharp';
import { MAX_IMAGE_SIDE, type OutputFormat, type ResolvedSpec } from '../../grammar/transform-spec.ts';
import type { MemoryBudget } from './budget.ts';
import { checkWorkingMemory, transformBytes } from './cost.ts';
import { ImageError } from './errors.ts';
import { planResize } from './geometry.ts';
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
  TRANSFORM_ENCODERS,
} from './libvips.ts';
import { probeImage } from './probe.ts';

export interface RenderOptions {
  limits: ImageLimits;
  /**
   * Longest side of any output, in device pixels, after dpr. Larger requests are scaled down
   * uniformly. Must not exceed MAX_IMAGE_SIDE, the largest WebP side.
   */
  maxOutputDimension: number;
  /** Encoded outputs larger than this are refused with image_output_too_large. */
  maxOutputBytes: number;
  /** Allow outputs larger than the source (see geometry.ts); off by default, like imgproxy. */
  enlarge: boolean;
  encoders: EncoderSettings;
  /** `#rrggbb`: what JPEG flattens transparency onto and pads contain with. */
  background: string;
  /** The process's image memory budget (budget.ts); without one the render runs at once. */
  budget?: MemoryBudget;
}

export const DEFAULT_RENDER_OPTIONS: RenderOptions = {
  limits: DEFAULT_IMAGE_LIMITS,
  maxOutputDimension: 4096,
  maxOutputBytes: 10 * 1024 * 1024,
  enlarge: false,
  encoders: TRANSFORM_ENCODERS,
  background: '#ffffff',
};

export interface RenderedImage {
  data: Buffer;
  format: OutputFormat;
  contentType: string;
  width: number;
  height: number;
  bytes: number;
}

/** Applies `spec` to `input`; throws an ImageError for anything wrong with the image or the result. */
export async function renderTransform(
  input: ImageInput,
  spec: ResolvedSpec,
  options: RenderOptions,
): Promise<RenderedImage> {
  if (options.maxOutputDimension > MAX_IMAGE_SIDE) {
    throw new RangeError(
      `maxOutputDimension ${options.maxOutputDimension} is above WebP's ${MAX_IMAGE_SIDE}`,
    );
  }
  const source = await probeImage(input, options.limits);
  const plan = planResize(
    source,
    { width: spec.width, height: spec.height, fit: spec.fit, dpr: spec.dpr },
    { maxDimension: options.maxOutputDimension, enlarge: options.enlarge },
  );
  const bytes = transformBytes(source, plan, spec.format);
  checkWorkingMemory(bytes, options.limits);
  const background = parseHexColour(options.background);

  let pipeline: Sharp = applyPlan(
    openInput(input, options.limits),
    source,
    plan,
    spec.gravity,
    padding(spec.format, background),
  );
  if (spec.blur !== undefined) pipeline = pipeline.blur(spec.blur);
  if (spec.sharpen !== undefined) pipeline = pipeline.sharpen({ sigma: spec.sharpen });
  pipeline = encode(pipeline, spec.format, options.encoders, spec.quality, background);

  const render = () => run(() => pipeline.toBuffer({ resolveWithObject: true }));
  const { data, info } = await (options.budget ? options.budget.run(bytes, render) : render());
  checkOutputSize(data.length, options.maxOutputBytes);
  return {
    data,
    format: spec.format,
    contentType: CONTENT_TYPES[spec.format],
    width: info.width,
    height: info.height,
    bytes: data.length,
  };
}

export function checkOutputSize(bytes: number, limit: number): void {
  if (bytes > limit) {
    throw new ImageError(
      'image_output_too_large',
      `The output is ${bytes} bytes; at most ${limit} are allowed`,
      {
        details: { bytes, limit },
      },
    );
  }
}
