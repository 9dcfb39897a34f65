import type { Config } from '../../config/config.ts';
import type { LadderCodec } from '../../config/video-settings.ts';

/**
 * The encoding ladder: which renditions a source gets, at what size, frame rate, GOP and bit rates. A pure
 * plan; presets.ts turns one rendition into encoder arguments and the job runs them.
 *
 * The rules, each a choice the tests pin down:
 * - Rungs are counted on the shorter side, so a portrait phone video (1080x1920) ladders like its
 *   landscape twin and its "720p" is 720x1280.
 * - Never upscale: only the configured heights at or below the source's shorter side. A source between
 *   two configured rungs also gets its own size as the top rung when it is more than
 *   `sourceRungPercent` larger than the rung below (a 1200-line source gets 1080 and 1200; a 1100-line
 *   one only 1080, since 2 % more lines is not worth a rendition). A source above every configured rung
 *   gets none of its own (an 8K source tops out at the highest configured height), and one below every
 *   rung gets exactly one rendition at its own size, so there is always something to play.
 * - The other side follows the aspect ratio, rounded to an even number (4:2:0 chroma halves both sides)
 *   and never past the source's own.
 * - Frame rate: the source's, divided by the smallest whole number that brings it to at most
 *   `maxFrameRate` (120 -> 60, 100 -> 50: dropping whole frames keeps motion even), and for rungs below
 *   `highFrameRateHeight` (720) lines also to at most 30 (59.94 -> 29.97, 50 -> 25): small renditions
 *   serve slow links, where half the frames buy more picture per bit. NTSC rates stay exact
 *   (60000/1001 halves to 30000/1001), and a divided rate's frames are every n-th frame of the full one.
 * - GOP: segment length x the top frame rate, rounded to whole frames (and to a multiple of the divisor
 *   of the slower rungs, so their GOPs are whole too). Every rung's GOP then lasts exactly as long, the
 *   true segment length (4.004 s at 29.97 fps: 120 frames), and its keyframes fall on the same instants
 *   on every rung, slow ones included, so a player can switch renditions at any segment boundary. A
 *   fixed 4.000 s grid cannot do that: at 29.97 fps it falls between frames, and the first frame after
 *   a boundary is not the same instant at 29.97 as at 59.94.
 * - Bit rates: per codec, from the table below (kbit/s at 30 fps and below), interpolated by pixel
 *   count between its rows and scaled up for higher frame rates.
 */

/** What the ladder needs to know about a source: its displayed size (after rotation) and its frames. */
export interface LadderSource {
  width: number;
  height: number;
  /** Average frames per second, e.g. 29.97. */
  frameRate: number;
  hasAudio: boolean;
}

export interface LadderSettings {
  /** Rung sizes on the shorter side, ascending (CONVEYOR_VIDEO_HEIGHTS). */
  heights: readonly number[];
  segmentSeconds: number;
  maxFrameRate: number;
  /** Rungs shorter than this are held to 30 fps. */
  highFrameRateHeight: number;
  sourceRungPercent: number;
}

/** An exact fraction: a frame rate (frames per second) or a duration (seconds). */
export interface Fraction {
  num: number;
  den: number;
}
export type FrameRate = Fraction;

/** The fastest rate of a rung below `highFrameRateHeight`. */
const LOW_RUNG_MAX_RATE = 30;

/** Bit rates of one rendition in one codec, bits/s: the average aimed at, the VBV max rate and buffer. */
export interface Bitrates {
  target: number;
  max: number;
  buffer: number;
}

export interface Rendition {
  /** `720p`: the shorter side, the name players and people use. */
  name: string;
  width: number;
  height: number;
  frameRate: FrameRate;
  /** Frames per GOP: the encoder's keyframe interval. */
  gopFrames: number;
  /** Seconds per GOP, the same on every rung: every segment but the last lasts exactly this. */
  segmentDuration: Fraction;
  bitrates: Readonly<Record<LadderCodec, Bitrates>>;
  /** AAC-LC bit rate in bits/s, or null when the source has no audio. */
  audioBitrate: number | null;
}

/** The ladder settings as the config holds them. */
export function ladderSettings(
  config: Pick<
    Config,
    | 'videoHeights'
    | 'videoSegmentSeconds'
    | 'videoMaxFrameRate'
    | 'videoHighFrameRateHeight'
    | 'videoSourceRungPercent'
  >,
): LadderSettings {
  return {
    heights: config.videoHeights,
    segmentSeconds: config.videoSegmentSeconds,
    maxFrameRate: config.videoMaxFrameRate,
    highFrameRateHeight: config.videoHighFrameRateHeight,
    sourceRungPercent: config.videoSourceRungPercent,
  };
}

/** The renditions of a source, smallest first. */
export function planLadder(source: LadderSource, settings: LadderSettings): Rendition[] {
  const { width, height } = source;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 2 && height >= 2)) {
    throw new RangeError(`a source of ${width}x${height} cannot be laddered`);
  }
  if (!(source.frameRate > 0 && Number.isFinite(source.frameRate))) {
    throw new RangeError(`a frame rate of ${source.frameRate} cannot be laddered`);
  }
  const short = Math.min(width, height);
  const heights = [...new Set(settings.heights)].sort((a, b) => a - b);
  const below = heights.filter((h) => h <= short);
  const rungs = [...below];
  const top = below.at(-1);
  if (top === undefined) {
    rungs.push(floorEven(short));
  } else if (top < short && heights.some((h) => h > short)) {
    if (short > top * (1 + settings.sourceRungPercent / 100) && floorEven(short) > top) {
      rungs.push(floorEven(short));
    }
  }

  const sourceRate = toFrameRate(source.frameRate);
  const topRate = divide(sourceRate, divisor(sourceRate, settings.maxFrameRate));
  const lowDivisor = divisor(topRate, LOW_RUNG_MAX_RATE);
  const isLow = (rung: number) => rung < settings.highFrameRateHeight;
  const topGop = gopFrames(topRate, settings.segmentSeconds, rungs.some(isLow) ? lowDivisor : 1);
  const segmentDuration = reduce({ num: topGop * topRate.den, den: topRate.num });
  return rungs.map((rung) => {
    const [w, h] = rungSize(width, height, rung);
    const frameRate = isLow(rung) ? divide(topRate, lowDivisor) : topRate;
    const fps = frameRate.num / frameRate.den;
    return {
      name: `${rung}p`,
      width: w,
      height: h,
      frameRate,
      gopFrames: isLow(rung) ? topGop / lowDivisor : topGop,
      segmentDuration,
      bitrates: {
        h264: bitrates('h264', w * h, fps),
        av1: bitrates('av1', w * h, fps),
        vp9: bitrates('vp9', w * h, fps),
      },
      audioBitrate: source.hasAudio ? audioBitrate(rung) : null,
    };
  });
}

/**
 * Frames per GOP at `rate`: the segment length in frames, rounded to the nearest multiple of `multiple`
 * (at least one multiple), so that a rung at rate / multiple has whole GOPs of the same duration.
 */
export function gopFrames(rate: FrameRate, segmentSeconds: number, multiple = 1): number {
  const frames = (segmentSeconds * rate.num) / rate.den;
  return multiple * Math.max(1, Math.round(frames / multiple));
}

/**
 * The hls muxer's `-hls_time` for a rendition: half a frame short of its segment duration. The muxer
 * cuts at the first keyframe at or after each multiple of hls_time; keyframes come exactly once per
 * segment duration, so a value a little short cuts at every one, where the exact value written as a
 * rounded decimal could land just past a keyframe and skip it, joining two GOPs into one segment.
 */
export function hlsTime(rung: Pick<Rendition, 'segmentDuration' | 'frameRate'>): string {
  const seconds = rung.segmentDuration.num / rung.segmentDuration.den;
  const halfFrame = rung.frameRate.den / rung.frameRate.num / 2;
  return String(Math.floor((seconds - halfFrame) * 1e6) / 1e6);
}

/** `30000/1001`, as ffmpeg's fps filter and -r take it. */
export function frameRateText(rate: FrameRate): string {
  return rate.den === 1 ? String(rate.num) : `${rate.num}/${rate.den}`;
}

/**
 * A measured rate as an exact fraction: the NTSC family (23.976, 29.97, 59.94...) as n x 1000/1001,
 * whole numbers as themselves (an average of 29.99 from a variable-rate phone is 30), anything else to
 * the millisecond.
 */
export function toFrameRate(fps: number): FrameRate {
  const ntsc = Math.round((fps * 1001) / 1000);
  if (Math.abs((fps * 1001) / 1000 - ntsc) < 0.005 && Math.abs(fps - ntsc) > 0.015) {
    return { num: ntsc * 1000, den: 1001 };
  }
  if (Math.abs(fps - Math.round(fps)) <= 0.02 && Math.round(fps) > 0) return { num: Math.round(fps), den: 1 };
  const num = Math.max(1, Math.round(fps * 1000));
  const d = gcd(num, 1000);
  return { num: num / d, den: 1000 / d };
}

/** The smallest whole number that divides `rate` to at most `cap`. */
function divisor(rate: FrameRate, cap: number): number {
  return Math.max(1, Math.ceil(rate.num / rate.den / cap - 1e-9));
}

function divide(rate: FrameRate, by: number): FrameRate {
  return reduce({ num: rate.num, den: rate.den * by });
}

function reduce(f: Fraction): Fraction {
  const d = gcd(f.num, f.den);
  return { num: f.num / d, den: f.den / d };
}

/** The rendition's width and height for a rung on the shorter side. */
function rungSize(width: number, height: number, rung: number): [number, number] {
  const landscape = width >= height;
  const short = landscape ? height : width;
  const long = landscape ? width : height;
  const other = Math.min(roundEven((rung * long) / short), floorEven(long));
  return landscape ? [other, rung] : [rung, other];
}

// Average bit rates in kbit/s at up to 30 fps, by rung on a 16:9 picture. H.264 follows the HLS Authoring
// Specification for Apple Devices' table (720p at 3000, 1080p at 6000; its lower rows are sized for
// cellular and its 416x234 row is 145), with 1440p and 2160p where Apple lists only HEVC (11600 for
// 2160p), H.264 needing about half as many bits again. AV1 and VP9 reach the same picture with fewer.
const RATE_TABLE: readonly { pixels: number; kbps: Readonly<Record<LadderCodec, number>> }[] = [
  { pixels: 426 * 240, kbps: { h264: 300, av1: 200, vp9: 250 } },
  { pixels: 640 * 360, kbps: { h264: 700, av1: 450, vp9: 500 } },
  { pixels: 854 * 480, kbps: { h264: 1200, av1: 750, vp9: 850 } },
  { pixels: 1280 * 720, kbps: { h264: 3000, av1: 1800, vp9: 2100 } },
  { pixels: 1920 * 1080, kbps: { h264: 6000, av1: 3600, vp9: 4200 } },
  { pixels: 2560 * 1440, kbps: { h264: 10000, av1: 6000, vp9: 7000 } },
  { pixels: 3840 * 2160, kbps: { h264: 18000, av1: 11000, vp9: 12500 } },
];

/**
 * The max rate is 1.5x and the VBV buffer 2x the average. HLS Authoring Specification 1.19: "For VOD
 * content the peak bit rate SHOULD be no more than 200% of the average bit rate"; a segment of d seconds
 * holds at most maxrate x d + buffer bits, so with the default 4 s segments its peak is at most
 * 1.5 + 2/4 = 2 times the average.
 */
const MAX_FACTOR = 1.5;
const BUFFER_FACTOR = 2;

/** A rendition's bit rates: the table's, interpolated by pixels, scaled for frame rates above 30. */
export function bitrates(codec: LadderCodec, pixels: number, fps: number): Bitrates {
  const kbps = tableRate(codec, pixels) * frameRateFactor(fps);
  const target = Math.round(kbps) * 1000;
  return {
    target,
    max: Math.round(kbps * MAX_FACTOR) * 1000,
    buffer: Math.round(kbps * BUFFER_FACTOR) * 1000,
  };
}

/**
 * Higher frame rates need more bits, but not in proportion: consecutive frames differ less. Half as
 * much again at 60 fps (a common rule, and YouTube's and Apple's ladders price 60 fps at about 1.5x),
 * growing linearly from 30.
 */
export function frameRateFactor(fps: number): number {
  return fps <= 30 ? 1 : 1 + (0.5 * (fps - 30)) / 30;
}

function tableRate(codec: LadderCodec, pixels: number): number {
  const first = RATE_TABLE[0]!;
  const last = RATE_TABLE.at(-1)!;
  // Outside the table, in proportion to the pixels of its nearest row.
  if (pixels <= first.pixels) return (first.kbps[codec] * pixels) / first.pixels;
  if (pixels >= last.pixels) return (last.kbps[codec] * pixels) / last.pixels;
  for (let i = 1; i < RATE_TABLE.length; i++) {
    const hi = RATE_TABLE[i]!;
    if (pixels <= hi.pixels) {
      const lo = RATE_TABLE[i - 1]!;
      const t = (pixels - lo.pixels) / (hi.pixels - lo.pixels);
      return lo.kbps[codec] + t * (hi.kbps[codec] - lo.kbps[codec]);
    }
  }
  return last.kbps[codec];
}

/**
 * AAC-LC stereo: 128 kbit/s from 480 lines up, where AAC-LC stereo is transparent for most listeners; 96
 * for 360 and 64 below, where the whole rendition has a few hundred kbit/s and audio would otherwise
 * take a third of it.
 */
export function audioBitrate(rung: number): number {
  if (rung >= 480) return 128_000;
  if (rung >= 360) return 96_000;
  return 64_000;
}

function roundEven(x: number): number {
  return Math.max(2, 2 * Math.round(x / 2));
}

function floorEven(x: number): number {
  return Math.max(2, 2 * Math.floor(x / 2));
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
