import { isLane, LANES, type Lane } from '../glossary.ts';
import { parseCidr } from '../grammar/cidr.ts';
import {
  DEFAULT_TRANSFORM_LIMITS,
  PRESET_NAME,
  parseOptions,
  type TransformPresets,
} from '../grammar/transform-options.ts';
import { OUTPUT_FORMATS, type OutputFormat } from '../grammar/transform-spec.ts';
import type { Setting, StringCheck } from './schema.ts';
import { GiB, MiB } from './units.ts';

/**
 * Media settings: remote ingest (downloader limits, SSRF policy, kinds and lanes), resumable uploads,
 * image processing (limits, variants) and on-the-fly transforms. Part of the one settings table in
 * schema.ts, in a file of their own like the job engine's.
 *
 * List values are comma-separated; the parsers below are what the code uses at run time, and the same
 * functions check the values at start-up so that a bad one stops Conveyor with its name.
 */

const HOST_PATTERN = /^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$/i;

/** `a, b,,c` -> ['a', 'b', 'c']. */
export function parseList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** `avatar=critical,post=high` -> a kind -> lane map. Throws a message naming the bad entry. */
export function parseKindLanes(value: string): Record<string, Lane> {
  const out: Record<string, Lane> = {};
  for (const item of parseList(value)) {
    const match = /^([a-z][a-z0-9_-]{0,31})\s*=\s*([a-z]+)$/.exec(item);
    if (!match || !isLane(match[2])) {
      throw new Error(`expected kind=lane with a lane of ${LANES.join(', ')}, got ${JSON.stringify(item)}`);
    }
    out[match[1]!] = match[2];
  }
  if (!Object.hasOwn(out, 'default')) throw new Error('the kind "default" must be given a lane');
  return out;
}

/**
 * `CONVEYOR_INGEST_KIND_TIMEOUT_SECONDS` (already parsed as limits) -> kind -> total timeout in ms, for
 * the kinds that set one (0 = the general total timeout). A Map, so that a kind named like an
 * Object.prototype member (`constructor`) finds nothing.
 */
export function parseKindTimeouts(seconds: Readonly<Record<string, number>>): ReadonlyMap<string, number> {
  return new Map(
    Object.entries(seconds)
      .filter(([, s]) => s > 0)
      .map(([kind, s]) => [kind, s * 1000]),
  );
}

/**
 * `thumb=w:150,h:150,fit:cover,g:attention;small=w:480,fit:inside` -> named transform requests, in the
 * grammar of transform URLs (src/media/image/transform-options.ts). Checked against the widest limits
 * here; the transform service checks them against the configured ones at start.
 */
export function parsePresets(value: string, limits = DEFAULT_TRANSFORM_LIMITS): TransformPresets {
  const out: Record<string, TransformPresets[string]> = {};
  for (const item of value
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = item.indexOf('=');
    const name = item.slice(0, Math.max(0, eq)).trim();
    if (eq < 0 || !PRESET_NAME.test(name))
      throw new Error(`expected name=options, got ${JSON.stringify(item)}`);
    if (Object.hasOwn(out, name)) throw new Error(`preset ${name} is defined twice`);
    try {
      out[name] = parseOptions(item.slice(eq + 1).trim(), limits).spec;
    } catch (error) {
      throw new Error(`preset ${name}: ${(error as Error).message}`);
    }
  }
  return out;
}

/** `webp,avif` -> output formats, in order. */
export function parseFormats(value: string): OutputFormat[] {
  const list = parseList(value);
  for (const format of list) {
    if (!(OUTPUT_FORMATS as readonly string[]).includes(format)) {
      throw new Error(`unknown format ${JSON.stringify(format)}; expected ${OUTPUT_FORMATS.join(', ')}`);
    }
  }
  if (list.length === 0) throw new Error('at least one format');
  return list as OutputFormat[];
}

const checked =
  (parse: (value: string) => unknown): StringCheck =>
  (value) => {
    try {
      parse(value);
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  };

const cidrList = checked((value) => {
  for (const item of parseList(value)) {
    if (!parseCidr(item)) throw new Error(`not an address or CIDR: ${JSON.stringify(item)}`);
  }
});
const hostList = checked((value) => {
  for (const item of parseList(value)) {
    if (!HOST_PATTERN.test(item)) throw new Error(`not a host name or *.suffix: ${JSON.stringify(item)}`);
  }
});
const portList = checked((value) => {
  for (const item of parseList(value)) {
    if (!/^\d{1,5}$/.test(item) || Number(item) < 1 || Number(item) > 65535) {
      throw new Error(`not a port: ${JSON.stringify(item)}`);
    }
  }
});

export const mediaSettings = {
  ingestMaxBytes: {
    type: 'int',
    default: 2 * GiB,
    min: 1,
    max: 5 * 1024 * GiB,
    doc: 'Largest remote file an ingest downloads; it is cut off past this.',
  },
  ingestConnectTimeoutMs: {
    type: 'int',
    default: 10_000,
    min: 1,
    max: 600_000,
    doc: 'Ingest: DNS, TCP and TLS of one connection.',
  },
  ingestIdleTimeoutMs: {
    type: 'int',
    default: 30_000,
    min: 1,
    max: 3_600_000,
    doc: 'Ingest: longest silence of the origin, before the headers or between chunks.',
  },
  ingestTotalTimeoutMs: {
    type: 'int',
    default: 3_600_000,
    min: 1,
    max: 86_400_000,
    doc: 'Ingest: longest whole download, redirects and resumes included, of the kinds CONVEYOR_INGEST_KIND_TIMEOUT_SECONDS does not name.',
  },
  ingestKindTimeoutSeconds: {
    type: 'limits',
    default: 'avatar=60,post=300',
    max: 86_400,
    doc: 'Ingest: longest whole download per kind, e.g. "avatar=60,backfill=7200" (other kinds, and 0: CONVEYOR_INGEST_TOTAL_TIMEOUT_MS); the attempt may run a minute longer.',
  },
  ingestMinBytesPerSecond: {
    type: 'int',
    default: 1024,
    min: 0,
    max: 1024 * MiB,
    doc: 'Ingest: the least a download must average over CONVEYOR_INGEST_MIN_RATE_WINDOW_MS (time the store spends not reading excluded); slower, it fails as too slow and the job retries after its backoff (0 = off).',
  },
  ingestMinRateWindowMs: {
    type: 'int',
    default: 30_000,
    min: 100,
    max: 3_600_000,
    doc: 'Ingest: the sliding window over which CONVEYOR_INGEST_MIN_BYTES_PER_SECOND is averaged.',
  },
  ingestMaxRedirects: { type: 'int', default: 5, min: 0, max: 20, doc: 'Ingest: redirects followed.' },
  ingestMaxResumes: {
    type: 'int',
    default: 3,
    min: 0,
    max: 100,
    doc: 'Ingest: resumes (Range + If-Range) after a dropped connection.',
  },
  ingestUserAgent: {
    type: 'string',
    default: 'Conveyor/0.1 (remote ingest)',
    doc: 'User-Agent of ingest requests.',
  },
  ingestAllowAddresses: {
    type: 'optional',
    check: cidrList,
    doc: 'Addresses or CIDRs ingest may reach although they are not public (e.g. "10.1.2.0/24"); default none.',
  },
  ingestAllowHosts: {
    type: 'optional',
    check: hostList,
    doc: 'If set, the only hosts ingest may fetch from ("cdn.example.com,*.example.org").',
  },
  ingestDenyHosts: {
    type: 'string',
    default: 'metadata.google.internal,*.internal,*.local,*.home.arpa',
    check: hostList,
    doc: 'Hosts ingest never fetches from (wins over the allow-list).',
  },
  ingestAllowedPorts: {
    type: 'optional',
    check: portList,
    doc: 'If set, the only ports ingest may connect to (e.g. "80,443").',
  },
  ingestKinds: {
    type: 'string',
    default: 'avatar=critical,post=high,default=normal,backfill=low',
    check: checked(parseKindLanes),
    doc: 'Ingest kinds and their lanes; `default` is used when an item names no kind.',
  },
  ingestHostRatePerSecond: {
    type: 'int',
    default: 20,
    min: 0,
    max: 100_000,
    doc: 'Ingest downloads started per second per origin host, across all workers (0 = unlimited).',
  },
  ingestBatchMaxItems: {
    type: 'int',
    default: 1000,
    min: 1,
    max: 100_000,
    doc: 'Items in one POST /api/v1/ingest/batch.',
  },

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
    type: 'string',
    default: 'jpeg,png,webp,gif,avif,tiff',
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
    type: 'string',
    default:
      'thumb=w:150,h:150,fit:cover,g:attention;small=w:480,fit:inside;medium=w:1080,fit:inside;large=w:2048,fit:inside',
    check: checked((v) =>
      parsePresets(v, { ...DEFAULT_TRANSFORM_LIMITS, maxWidth: 16383, maxHeight: 16383 }),
    ),
    doc: 'Named presets in transform-URL syntax, `;`-separated: the variants made of every image, and `preset:<name>` in transform URLs.',
  },
  imageVariantFormats: {
    type: 'string',
    default: 'webp,avif,jpeg',
    check: checked(parseFormats),
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
    default: 4096,
    min: 16,
    max: 16383,
    doc: 'Largest transform output side in device pixels (width or height x dpr).',
  },
  transformMaxDpr: { type: 'int', default: 4, min: 1, max: 8, doc: 'Largest dpr of a transform.' },
  transformFormats: {
    type: 'string',
    default: 'jpeg,png,webp,avif',
    check: checked(parseFormats),
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
