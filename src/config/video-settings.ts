import { TIERS, type Tier } from '../glossary.ts';
import { parseList } from './parsers.ts';
import type { Setting } from './setting.ts';

/**
 * Video settings: where video comes from (yt-dlp and the guarded proxy it uses), what is accepted (probe
 * limits), how it is encoded (the HLS ladder and its presets) and on what (hardware acceleration). Part of
 * the one settings table in schema.ts, in a file of its own like the image and job settings.
 */

/** Video sites through yt-dlp, and the forward proxy that holds its connections to the ingest rules. */
const sourceSettings = {
  // (yt-dlp path, its limits, the proxy)
} as const satisfies Record<string, Setting>;

/** What ffprobe must find for a video to be accepted. */
const probeSettings = {
  // (ffmpeg and ffprobe paths, duration, resolution, size, containers and codecs)
} as const satisfies Record<string, Setting>;

/** The compression presets a job may name (src/media/video/presets.ts maps each to encoder settings). */
export const VIDEO_PRESETS = ['fast', 'balanced', 'small', 'archive'] as const;
export type VideoPreset = (typeof VIDEO_PRESETS)[number];

/** The video codecs a ladder may be encoded in; every rendition carries AAC-LC audio. */
export const VIDEO_CODECS = ['h264', 'av1', 'vp9'] as const;
export type VideoCodec = (typeof VIDEO_CODECS)[number];

/** `240, 360,720` -> rung heights, ascending and without repeats; each even, as 4:2:0 chroma needs. */
export function parseVideoHeights(value: string): number[] {
  const heights = parseList(value).map((item) => {
    const n = /^\d{1,4}$/.test(item) ? Number(item) : Number.NaN;
    if (!(n >= 2 && n <= 8640) || n % 2 !== 0) {
      throw new Error(`not an even height from 2 to 8640: ${JSON.stringify(item)}`);
    }
    return n;
  });
  if (heights.length === 0) throw new Error('at least one height');
  return [...new Set(heights)].sort((a, b) => a - b);
}

/** `h264,av1` -> codecs, in order, at least one. */
export function parseVideoCodecs(value: string): VideoCodec[] {
  const list = [...new Set(parseList(value))];
  for (const codec of list) {
    if (!(VIDEO_CODECS as readonly string[]).includes(codec)) {
      throw new Error(`unknown codec ${JSON.stringify(codec)}; expected ${VIDEO_CODECS.join(', ')}`);
    }
  }
  if (list.length === 0) throw new Error('at least one codec');
  return list as VideoCodec[];
}

/** `free=fast,premium=archive` -> a tier -> preset map; tiers not named use `CONVEYOR_VIDEO_PRESET`. */
export function parseTierPresets(value: string): Readonly<Partial<Record<Tier, VideoPreset>>> {
  const out: Partial<Record<Tier, VideoPreset>> = {};
  for (const item of parseList(value)) {
    const match = /^([a-z]+)\s*=\s*([a-z]+)$/.exec(item);
    const tier = match?.[1] as Tier | undefined;
    const preset = match?.[2] as VideoPreset | undefined;
    if (!tier || !preset || !TIERS.includes(tier) || !VIDEO_PRESETS.includes(preset)) {
      throw new Error(
        `expected tier=preset with a tier of ${TIERS.join(', ')} and a preset of ${VIDEO_PRESETS.join(', ')}, got ${JSON.stringify(item)}`,
      );
    }
    if (Object.hasOwn(out, tier)) throw new Error(`tier ${tier} is given twice`);
    out[tier] = preset;
  }
  return Object.freeze(out);
}

/** The HLS ladder: renditions, segments, codecs and the compression presets. */
const encodingSettings = {
  videoHeights: {
    type: 'parsed',
    default: '240,360,480,720,1080,1440,2160',
    parse: parseVideoHeights,
    doc: "Rung heights of the HLS ladder (the shorter side, so a portrait video's 720 rung is 720 wide); a source gets the rungs up to its own size, never an upscaled one.",
  },
  videoSourceRungPercent: {
    type: 'int',
    default: 10,
    min: 0,
    max: 1000,
    doc: 'A source whose size falls between two rungs gets its own size as the top rung when it is more than this many percent larger than the rung below it (a 1200-line source: 1080 and 1200).',
  },
  videoCodecs: {
    type: 'parsed',
    default: 'h264',
    parse: parseVideoCodecs,
    doc: 'Video codecs of the ladder, each a full set of renditions in one master playlist: h264, av1 (SVT-AV1), vp9.',
  },
  videoSegmentSeconds: {
    type: 'int',
    default: 4,
    min: 1,
    max: 30,
    doc: 'HLS segment length, rounded to whole frames (4.004 s at 29.97 fps); each segment of each rendition starts with a keyframe at the same instant.',
  },
  videoSegmentFormat: {
    type: 'enum',
    default: 'fmp4',
    values: ['fmp4', 'mpegts'],
    doc: 'HLS segment container: fmp4 (CMAF, any codec) or mpegts (H.264 only, for old players).',
  },
  videoMaxFrameRate: {
    type: 'int',
    default: 60,
    min: 1,
    max: 240,
    doc: 'Highest frame rate of a rendition; faster sources are divided by the smallest whole number that brings them under it (120 -> 60).',
  },
  videoHighFrameRateHeight: {
    type: 'int',
    default: 720,
    min: 0,
    max: 8640,
    doc: 'Rungs shorter than this (on the shorter side) run at most 30 fps: a 60 fps source keeps 60 from 720p up, its lower rungs get every other frame.',
  },
  videoPreset: {
    type: 'enum',
    default: 'balanced',
    values: VIDEO_PRESETS,
    doc: 'Compression preset of a video job that names none and whose tenant tier has none (fast, balanced, small, archive).',
  },
  videoTierPresets: {
    type: 'parsed',
    default: '',
    parse: parseTierPresets,
    doc: 'Compression preset by tenant tier, e.g. "free=fast,premium=archive"; tiers not named use CONVEYOR_VIDEO_PRESET.',
  },
  videoStartBitrate: {
    type: 'int',
    default: 1_500_000,
    min: 0,
    max: 1_000_000_000,
    doc: 'The master playlist lists first the H.264 rendition with the highest peak bit rate at most this (bits/s), where players without a bandwidth estimate start; 0 lists all by rising bit rate.',
  },
  videoSpriteMaxTiles: {
    type: 'int',
    default: 100,
    min: 1,
    max: 10_000,
    doc: 'Most thumbnails in the scrubbing sprite sheet; long videos get a longer interval instead of more tiles.',
  },
  videoSpriteMinIntervalSeconds: {
    type: 'int',
    default: 2,
    min: 1,
    max: 3600,
    doc: 'Shortest time between two sprite thumbnails.',
  },
  videoSpriteTileSize: {
    type: 'int',
    default: 160,
    min: 16,
    max: 1024,
    doc: "Longer side of a sprite thumbnail in pixels (rounded down to even; the other side follows the video's aspect ratio).",
  },
  videoSpriteColumns: {
    type: 'int',
    default: 10,
    min: 1,
    max: 100,
    doc: 'Thumbnails per row of the sprite sheet.',
  },
} as const satisfies Record<string, Setting>;

/** Hardware encoders: detection, proof by a trial encode, and what may be used. */
const accelerationSettings = {
  // (auto, off or one encoder family forced)
} as const satisfies Record<string, Setting>;

export const videoSettings = {
  ...sourceSettings,
  ...probeSettings,
  ...encodingSettings,
  ...accelerationSettings,
} as const satisfies Record<string, Setting>;
