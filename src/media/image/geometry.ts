/**
 * Output geometry: pure arithmetic that decides how large an output is and which part of the source it
 * shows, before any pixel is touched. Keeping it out of the sharp pipelines makes every fit mode's
 * dimensions exactly predictable (and testable without encoding anything), and lets the renderer
 * report the output size before it has finished encoding.
 *
 * Conventions: all sizes are of the source AS DISPLAYED, i.e. after its EXIF orientation is applied;
 * a requested box is in CSS pixels and multiplied by `dpr`.
 *
 * Enlargement. By default nothing is ever scaled up (imgproxy's default too): upscaling adds bytes,
 * not detail, and a browser upscales for free. Without enlargement a request whose box would need
 * upscaling has its box shrunk, uniformly, until it no longer does, so the output keeps the
 * requested aspect ratio: a 400x400 cover of a 300x200 image is 200x200, not 300x200. Layouts that
 * reserve a square get a square. Boxless requests ("inside", "outside", one side only) simply stop
 * at the source's own size.
 */
import type { Fit } from '../../grammar/transform-spec.ts';

export interface Size {
  width: number;
  height: number;
}

export interface ResizeRequest {
  /** CSS pixels; absent means "follow the other side" (or the source's size if both are absent). */
  width?: number;
  height?: number;
  fit: Fit;
  /** Device pixel ratio the box is multiplied by; 1 when absent. */
  dpr?: number;
}

export interface GeometryLimits {
  /** No output side exceeds this; larger results are scaled down uniformly. */
  maxDimension: number;
  /** Allow scaling the source up (see above). */
  enlarge: boolean;
}

/**
 * How the source maps onto the output:
 *   scale    the whole source, uniformly scaled to width x height (aspect ratio kept up to rounding)
 *   fill     the whole source, stretched to width x height
 *   cover    scaled to cover width x height, the excess cropped according to the gravity
 *   contain  scaled to fit inside width x height, the rest padded with the background
 */
export type ResizeMode = 'scale' | 'fill' | 'cover' | 'contain';

export interface ResizePlan extends Size {
  mode: ResizeMode;
}

export interface CropWindow {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** The output size and mode for `request` applied to a source of `source` size (see the conventions above). */
export function planResize(source: Size, request: ResizeRequest, limits: GeometryLimits): ResizePlan {
  checkSize(source, 'source');
  const dpr = request.dpr ?? 1;
  if (!(dpr > 0 && Number.isFinite(dpr))) throw new RangeError(`dpr must be positive, got ${dpr}`);
  if (!(Number.isInteger(limits.maxDimension) && limits.maxDimension >= 1)) {
    throw new RangeError(`maxDimension must be a positive integer, got ${limits.maxDimension}`);
  }
  const boxWidth = devicePixels(request.width, dpr, 'width');
  const boxHeight = devicePixels(request.height, dpr, 'height');
  const sx = boxWidth === undefined ? undefined : boxWidth / source.width;
  const sy = boxHeight === undefined ? undefined : boxHeight / source.height;

  let plan: ResizePlan;
  if (sx === undefined || sy === undefined) {
    plan = scaled(source, sx ?? sy ?? 1, limits.enlarge);
  } else {
    switch (request.fit) {
      case 'inside':
        plan = scaled(source, Math.min(sx, sy), limits.enlarge);
        break;
      case 'outside':
        plan = scaled(source, Math.max(sx, sy), limits.enlarge);
        break;
      case 'cover':
      case 'fill':
        plan = boxed(request.fit, boxWidth!, boxHeight!, Math.max(sx, sy), limits.enlarge);
        break;
      case 'contain':
        plan = boxed('contain', boxWidth!, boxHeight!, Math.min(sx, sy), limits.enlarge);
        break;
    }
  }
  return clamp(plan, limits.maxDimension);
}

/**
 * The crop window, in source pixels, for a cover crop to outWidth x outHeight that keeps the focal
 * point (fx, fy: fractions of the source's width and height) as close to the centre of the output as
 * the image's edges allow. The window is the largest one with the output's aspect ratio that fits
 * in the source; it slides towards the focal point and stops at the edges, so it always lies inside
 * the image and always contains the focal point.
 */
export function focalCrop(
  srcWidth: number,
  srcHeight: number,
  outWidth: number,
  outHeight: number,
  fx: number,
  fy: number,
): CropWindow {
  checkSize({ width: srcWidth, height: srcHeight }, 'source');
  if (!(outWidth > 0 && outHeight > 0 && Number.isFinite(outWidth) && Number.isFinite(outHeight))) {
    throw new RangeError(`output size must be positive, got ${outWidth}x${outHeight}`);
  }
  if (!(fx >= 0 && fx <= 1 && fy >= 0 && fy <= 1)) {
    throw new RangeError(`focal point must lie in [0, 1] x [0, 1], got (${fx}, ${fy})`);
  }
  const scale = Math.max(outWidth / srcWidth, outHeight / srcHeight);
  const width = Math.min(srcWidth, Math.max(1, Math.round(outWidth / scale)));
  const height = Math.min(srcHeight, Math.max(1, Math.round(outHeight / scale)));
  return {
    left: within(Math.round(fx * srcWidth - width / 2), 0, srcWidth - width),
    top: within(Math.round(fy * srcHeight - height / 2), 0, srcHeight - height),
    width,
    height,
  };
}

/**
 * The smallest uniform scale (at most 1) of the source from which every plan can be rendered without
 * upscaling. Variants decode the source once, shrink it to this scale, and cut every preset from
 * that intermediate; a cover thumbnail of a panorama can need more height than the widest preset's
 * width implies, so this is a maximum over all plans, not just the largest one.
 */
export function intermediateScale(source: Size, plans: readonly ResizePlan[]): number {
  checkSize(source, 'source');
  let scale = 0;
  for (const plan of plans) {
    const sx = plan.width / source.width;
    const sy = plan.height / source.height;
    // contain shows the whole source at the smaller factor; every other mode needs both factors.
    scale = Math.max(scale, plan.mode === 'contain' ? Math.min(sx, sy) : Math.max(sx, sy));
  }
  return Math.min(1, scale);
}

/** The size of the source scaled by `scale`, rounded up so that it never falls short of a plan. */
export function scaledSize(source: Size, scale: number): Size {
  return {
    width: Math.min(source.width, Math.max(1, Math.ceil(source.width * scale - 1e-9))),
    height: Math.min(source.height, Math.max(1, Math.ceil(source.height * scale - 1e-9))),
  };
}

function scaled(source: Size, factor: number, enlarge: boolean): ResizePlan {
  const s = enlarge ? factor : Math.min(1, factor);
  return {
    mode: 'scale',
    width: Math.max(1, Math.round(source.width * s)),
    height: Math.max(1, Math.round(source.height * s)),
  };
}

function boxed(
  mode: ResizeMode,
  width: number,
  height: number,
  upscale: number,
  enlarge: boolean,
): ResizePlan {
  if (enlarge || upscale <= 1) return { mode, width, height };
  // Floor (with a hair of tolerance for 200 / (200 / 300) = 299.99999...) so that the shrunken box
  // never asks for a sliver of upscaling on its binding side.
  return {
    mode,
    width: Math.max(1, Math.floor(width / upscale + 1e-9)),
    height: Math.max(1, Math.floor(height / upscale + 1e-9)),
  };
}

function clamp(plan: ResizePlan, max: number): ResizePlan {
  const k = Math.min(1, max / plan.width, max / plan.height);
  if (k === 1) return plan;
  return {
    mode: plan.mode,
    width: Math.min(max, Math.max(1, Math.round(plan.width * k))),
    height: Math.min(max, Math.max(1, Math.round(plan.height * k))),
  };
}

function devicePixels(css: number | undefined, dpr: number, name: string): number | undefined {
  if (css === undefined) return undefined;
  if (!(css > 0 && Number.isFinite(css))) throw new RangeError(`${name} must be positive, got ${css}`);
  return Math.max(1, Math.round(css * dpr));
}

function checkSize(size: Size, name: string): void {
  if (
    !(Number.isInteger(size.width) && Number.isInteger(size.height) && size.width >= 1 && size.height >= 1)
  ) {
    throw new RangeError(`${name} size must be positive integers, got ${size.width}x${size.height}`);
  }
}

function within(n: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, n));
}
