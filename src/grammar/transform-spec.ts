/**
 * What an image transform asks for, after parsing and validation. The URL grammar
 * (`transform-url.ts`) produces it, the renderer (`render.ts`) consumes it, and named presets are
 * written in it. Every field is already checked against the configured limits when a value of this
 * type exists; consumers never re-validate.
 */

export const FITS = ['cover', 'contain', 'fill', 'inside', 'outside'] as const;
export type Fit = (typeof FITS)[number];

/** Compass gravities, plus libvips' content-aware crops. */
export const GRAVITIES = [
  'center',
  'north',
  'northeast',
  'east',
  'southeast',
  'south',
  'southwest',
  'west',
  'northwest',
  'attention',
  'entropy',
] as const;
export type NamedGravity = (typeof GRAVITIES)[number];

/** A focal point as fractions of the source's width and height, each in [0, 1]. */
export interface FocalPoint {
  x: number;
  y: number;
}

export type Gravity = NamedGravity | FocalPoint;

export const OUTPUT_FORMATS = ['jpeg', 'png', 'webp', 'avif'] as const;

/** The longest side every output format can hold: WebP's 16383 pixels. */
export const MAX_IMAGE_SIDE = 16383;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** What a URL asks for: a concrete format, `source` (keep the source's) or `auto` (negotiate). */
export type RequestedFormat = OutputFormat | 'auto' | 'source';

export interface TransformSpec {
  /** Target box in CSS pixels; multiplied by `dpr` to get device pixels. Absent: follow the other side. */
  width?: number;
  height?: number;
  fit: Fit;
  gravity: Gravity;
  /** 1-100; absent means the format's configured default. */
  quality?: number;
  /** `auto` is resolved from the Accept header before rendering; the renderer never sees it. */
  format: OutputFormat | 'auto';
  /** Device pixel ratio, from 1 up to the limits' maxDpr (fractions allowed, e.g. 1.5). */
  dpr: number;
  /** Gaussian blur sigma, from 0.3 up to the limits' maxBlur. */
  blur?: number;
  /** Sharpen sigma, from 0.3 up to the limits' maxSharpen. */
  sharpen?: number;
}

/** A spec whose format has been negotiated: what the renderer takes. */
export type ResolvedSpec = TransformSpec & { format: OutputFormat };
