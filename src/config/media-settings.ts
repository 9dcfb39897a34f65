import { DEFAULT_TRANSFORM_LIMITS, type TransformLimits } from '../grammar/transform-options.ts';
import { MAX_IMAGE_SIDE, OUTPUT_FORMATS } from '../grammar/transform-spec.ts';
import { parseFormats, parseList, parsePresets } from './parsers.ts';
import type { Config } from './schema.ts';
import type { ReadSetting, Setting } from './setting.ts';
import { GiB, MiB } from './units.ts';

/**
 * Media settings: image processing (limits, variants), on-the-fly transforms and resumable uploads. Part
 * of the one settings table in schema.ts, in a file of their own like the job engine's and remote
 * ingest's. Lists are comma-separated.
 */

/** The transform settings that bound what a transform URL may ask for. */
const TRANSFORM_LIMITS = [
  'transformMaxDimension',
  'transformMaxDpr',
  'transformMaxBlur',
  'transformMaxSharpen',
  'transformMaxOptionsLength',
  'transformFormats',
] as const;

/** What a transform URL may ask for, as the settings say. */
export function transformLimits(config: Pick<Config, (typeof TRANSFORM_LIMITS)[number]>): TransformLimits {
  return {
    maxWidth: config.transformMaxDimension,
    maxHeight: config.transformMaxDimension,
    maxDpr: config.transformMaxDpr,
    maxBlur: config.transformMaxBlur,
    maxSharpen: config.transformMaxSharpen,
    maxOptionsLength: config.transformMaxOptionsLength,
    formats: config.transformFormats,
  };
}

/**
 * Presets are held to the transform limits, as a URL naming them would be, except in size: they are the
 * variants first, and a variant may be as large as an output format allows.
 */
function presetLimits(read: ReadSetting): TransformLimits {
  const settings = Object.fromEntries(TRANSFORM_LIMITS.map((key) => [key, read(key)]));
  return {
    ...transformLimits(settings as Pick<Config, (typeof TRANSFORM_LIMITS)[number]>),
    maxWidth: MAX_IMAGE_SIDE,
    maxHeight: MAX_IMAGE_SIDE,
  };
}

export const mediaSettings = {
  imageMaxInputPixels: {
    type: 'int',
    default: 50_000_000,
    min: 1,
    max: 1_000_000_000,
    doc: 'Largest image (width x height, from its header) decoded; larger ones are refused before decoding.',
  },
  imageMaxInputBytes: {
    type: 'int',
    default: 256 * MiB,
    min: 1,
    max: 4 * GiB,
    doc: 'Largest image file processed (it is read into memory for decoding).',
  },
  imageMaxFrames: {
    type: 'int',
    default: 500,
    min: 1,
    max: 100_000,
    doc: 'Most frames (animations) or pages (TIFF) an accepted image may have.',
  },
  imageInputFormats: {
    type: 'parsed',
    default: 'jpeg,png,webp,gif,avif,tiff',
    parse: parseList,
    doc: 'Image formats processed (sharp names; svg is off unless listed: it runs librsvg on the input).',
  },
  imageTimeoutSeconds: {
    type: 'int',
    default: 60,
    min: 0,
    max: 3600,
    doc: 'libvips time allowed per image pipeline (0 = none).',
  },
  imageMemoryBudgetBytes: {
    type: 'int',
    default: 1 * GiB,
    min: 64 * MiB,
    max: 1024 * GiB,
    doc: 'Memory the image work of a process (analysis, variants, transforms) may use at once, by estimates from each image header; work waits for room, and an image whose own estimate is larger is refused.',
  },
  imageThreads: {
    type: 'int',
    default: 1,
    min: 0,
    max: 1024,
    doc: "libvips threads per image pipeline. Pipelines already run side by side, each thread adds buffers and a malloc arena, and the memory estimates are measured with 1 (0: sharp's choice, the CPUs unless on glibc without jemalloc or MALLOC_ARENA_MAX).",
  },
  imageCacheMemoryBytes: {
    type: 'int',
    default: 0,
    min: 0,
    max: 64 * GiB,
    doc: "Memory of libvips' operation cache, in whole MiB (0: none; Conveyor never repeats an operation on the same input buffer).",
  },
  imageCacheItems: {
    type: 'int',
    default: 0,
    min: 0,
    max: 100_000,
    doc: "Operations libvips' operation cache keeps (0: none).",
  },
  imageCacheFiles: {
    type: 'int',
    default: 0,
    min: 0,
    max: 100_000,
    doc: "Open files libvips' operation cache keeps (0: none; Conveyor passes buffers, not files).",
  },
  imageMaxOutputBytes: {
    type: 'int',
    default: 10 * MiB,
    min: 1024,
    max: 1 * GiB,
    doc: 'Largest encoded variant or transform; larger outputs are refused.',
  },
  imageBackground: {
    type: 'string',
    default: '#ffffff',
    check: (v) => (/^#[0-9a-f]{6}$/i.test(v) ? null : 'expected #rrggbb'),
    doc: 'Colour transparency is flattened onto for JPEG, and padding of fit=contain.',
  },
  imagePresets: {
    type: 'parsed',
    default:
      'thumb=w:150,h:150,fit:cover,g:attention;small=w:480,fit:inside;medium=w:1080,fit:inside;large=w:2048,fit:inside',
    parse: (value, read) => parsePresets(value, presetLimits(read)),
    doc: 'Named presets in transform-URL syntax, `;`-separated: the variants made of every image, and `preset:<name>` in transform URLs. Each is held to the transform limits except in size, which may reach 16383 pixels a side.',
  },
  imageVariantFormats: {
    type: 'parsed',
    default: 'webp,avif,jpeg',
    parse: parseFormats,
    doc: 'Formats every preset variant is made in (empty variants: set CONVEYOR_IMAGE_VARIANTS=false).',
  },
  imageVariants: {
    type: 'bool',
    default: true,
    doc: 'Make the preset variants when an image arrives (analysis and placeholders run either way).',
  },
  imageJpegQuality: { type: 'int', default: 82, min: 1, max: 100, doc: 'JPEG quality (mozjpeg).' },
  imageWebpQuality: { type: 'int', default: 80, min: 1, max: 100, doc: 'WebP quality.' },
  imageAvifQuality: { type: 'int', default: 50, min: 1, max: 100, doc: 'AVIF quality.' },
  imageVariantAvifEffort: {
    type: 'int',
    default: 3,
    min: 0,
    max: 9,
    doc: 'AVIF encoder effort for variants (background work; 4 costs about 6x of 3 for ~14% smaller files).',
  },
  imageTransformAvifEffort: {
    type: 'int',
    default: 2,
    min: 0,
    max: 9,
    doc: 'AVIF encoder effort for on-the-fly transforms (a client waits).',
  },
  transformMaxDimension: {
    type: 'int',
    default: DEFAULT_TRANSFORM_LIMITS.maxWidth,
    min: 16,
    max: MAX_IMAGE_SIDE,
    doc: 'Largest transform output side in device pixels (width or height x dpr).',
  },
  transformMaxDpr: {
    type: 'int',
    default: DEFAULT_TRANSFORM_LIMITS.maxDpr,
    min: 1,
    max: 8,
    doc: 'Largest dpr of a transform.',
  },
  transformMaxBlur: {
    type: 'int',
    default: DEFAULT_TRANSFORM_LIMITS.maxBlur,
    min: 1,
    max: 1000,
    doc: 'Largest blur sigma a transform may ask for (`blur:`).',
  },
  transformMaxSharpen: {
    type: 'int',
    default: DEFAULT_TRANSFORM_LIMITS.maxSharpen,
    min: 1,
    max: 10,
    doc: 'Largest sharpen sigma a transform may ask for (`sharpen:`).',
  },
  transformMaxOptionsLength: {
    type: 'int',
    default: DEFAULT_TRANSFORM_LIMITS.maxOptionsLength,
    min: 16,
    max: 4096,
    doc: "Longest options segment of a transform URL, and of a preset's options, in characters; a longer one is refused before it is parsed.",
  },
  transformFormats: {
    type: 'parsed',
    default: OUTPUT_FORMATS.join(','),
    parse: parseFormats,
    doc: 'Output formats transforms may ask for.',
  },
  transformEnlarge: {
    type: 'bool',
    default: false,
    doc: 'Let transforms upscale beyond the source (like imgproxy, off by default).',
  },
  transformUnsignedPresets: {
    type: 'bool',
    default: false,
    doc: 'Accept `/t/_/preset:<name>/<id>` without a signature (presets only).',
  },
  transformConcurrency: {
    type: 'int',
    default: 0,
    min: 0,
    max: 1024,
    doc: 'Transforms rendered at once per process (0 = the number of CPUs).',
  },
  transformQueueSize: {
    type: 'int',
    default: 64,
    min: 0,
    max: 100_000,
    doc: 'Transforms waiting for a render slot; past it the answer is 503 with Retry-After.',
  },
  transformCacheEntries: {
    type: 'int',
    default: 10_000,
    min: 0,
    max: 10_000_000,
    doc: 'Derived-blob lookups (transforms, variants) remembered in memory per process.',
  },

  uploadsExpirationSeconds: {
    type: 'int',
    default: 86_400,
    min: 60,
    max: 30 * 86_400,
    doc: 'An unfinished resumable (tus) upload is removed after this long.',
  },
  uploadsDir: {
    type: 'optional',
    doc: 'Folder of unfinished resumable uploads with storage=fs; default <dataDir>/uploads.',
  },
  uploadsS3Prefix: {
    type: 'optional',
    doc: 'Key prefix of unfinished resumable uploads with storage=s3; default <s3Prefix>uploads/.',
  },
  uploadsCleanupIntervalSeconds: {
    type: 'int',
    default: 3600,
    min: 0,
    max: 7 * 86_400,
    doc: 'How often `serve` removes expired resumable uploads (0 = never).',
  },
  uploadsS3PartSizeBytes: {
    type: 'int',
    default: 8 * MiB,
    min: 5 * MiB,
    max: 5 * GiB,
    doc: 'Part size of resumable uploads on S3.',
  },
} as const satisfies Record<string, Setting>;
