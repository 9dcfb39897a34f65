import type { Config } from '../../config/config.ts';
import type { LadderCodec, VideoPreset } from '../../config/video-settings.ts';
import type { Tier } from '../../glossary.ts';
import { h264Level, h264LevelName } from './codecs.ts';
import { frameRateText, type Rendition } from './ladder.ts';

/**
 * Compression presets and the ffmpeg output options of one rendition. A preset is a name (`fast`,
 * `balanced`, `small`, `archive`) that means the same trade-off on every encoder: how hard to look
 * (the encoder's own speed preset), what quality to aim at (CRF, CQ or a quality index) and how far the
 * bit rate may rise (a scale on the rung's table rates, ladder.ts). Which preset a job uses: its own
 * override, else its tenant tier's (CONVEYOR_VIDEO_TIER_PRESETS), else CONVEYOR_VIDEO_PRESET.
 *
 * Every option below exists in ffmpeg 5.1 (`ffmpeg -h encoder=<name>`); the software families are
 * exercised by real encodes in the tests, the hardware ones only as argument lists.
 */

/**
 * The families a preset table is written for: one per encoder whose options (speed, quality target,
 * rate control) the presets set. Acceleration families (hwaccel.ts, AccelFamily) group encoders by the
 * hardware they run on; encode.ts's presetFamilyOf turns a proven encoder into its preset family.
 */
export const PRESET_FAMILIES = ['x264', 'nvenc', 'qsv', 'vaapi', 'svt-av1', 'libvpx-vp9'] as const;
export type PresetFamily = (typeof PRESET_FAMILIES)[number];

/** What each preset family encodes, and the ffmpeg encoder that does it. */
export const PRESET_ENCODERS: Readonly<Record<PresetFamily, { codec: LadderCodec; encoder: string }>> = {
  x264: { codec: 'h264', encoder: 'libx264' },
  nvenc: { codec: 'h264', encoder: 'h264_nvenc' },
  qsv: { codec: 'h264', encoder: 'h264_qsv' },
  vaapi: { codec: 'h264', encoder: 'h264_vaapi' },
  'svt-av1': { codec: 'av1', encoder: 'libsvtav1' },
  'libvpx-vp9': { codec: 'vp9', encoder: 'libvpx-vp9' },
};

/** SVT-AV1's smallest picture side. */
export const SVT_MIN_SIDE = 64;

/** One preset on one preset family. */
export interface FamilyPreset {
  /**
   * The quality aimed at, lower is better: x264 `-crf` (0-51), NVENC `-cq` (0-51), QSV `-global_quality`
   * (ICQ/QVBR index, 1-51), SVT-AV1 `-crf` (0-63), libvpx `-crf` (0-63). VA-API has none (null): its
   * quality-targeting modes (QVBR, ICQ) are missing from common drivers (Mesa's), so it encodes VBR at
   * the rung's rates and the preset moves those rates instead.
   */
  quality: number | null;
  /**
   * The encoder's speed: x264 `-preset`, NVENC `-preset` p1 (fastest) to p7, QSV `-preset` veryfast to
   * veryslow, VA-API `-quality` (driver's scale, lower is slower and better), SVT-AV1 `-preset` 0-13
   * (higher is faster), libvpx `-cpu-used` 0-8 (higher is faster).
   */
  speed: string;
  /** Scales the rung's bit rates: the VBV max rate and buffer (and VA-API's and QSV's target). */
  rateScale: number;
}

/**
 * The presets. `balanced` is each encoder's default speed at a quality that is visually clean at the
 * ladder's rates; `fast` trades compression for speed (about 3x faster on x264); `small` slower and a
 * lower ceiling for smaller files; `archive` the best quality the bit rates allow, with a ceiling 30 %
 * higher (peaks up to 2.6x the average: past Apple's 200 % guidance, which archive copies accept).
 */
export const PRESETS: Readonly<Record<VideoPreset, Readonly<Record<PresetFamily, FamilyPreset>>>> = {
  fast: {
    x264: { quality: 23, speed: 'veryfast', rateScale: 1 },
    nvenc: { quality: 25, speed: 'p2', rateScale: 1 },
    qsv: { quality: 25, speed: 'veryfast', rateScale: 1 },
    vaapi: { quality: null, speed: '6', rateScale: 1 },
    'svt-av1': { quality: 38, speed: '10', rateScale: 1 },
    'libvpx-vp9': { quality: 36, speed: '5', rateScale: 1 },
  },
  balanced: {
    x264: { quality: 21, speed: 'medium', rateScale: 1 },
    nvenc: { quality: 23, speed: 'p5', rateScale: 1 },
    qsv: { quality: 23, speed: 'medium', rateScale: 1 },
    vaapi: { quality: null, speed: '4', rateScale: 1 },
    'svt-av1': { quality: 34, speed: '8', rateScale: 1 },
    'libvpx-vp9': { quality: 33, speed: '4', rateScale: 1 },
  },
  small: {
    x264: { quality: 26, speed: 'slow', rateScale: 0.75 },
    nvenc: { quality: 28, speed: 'p6', rateScale: 0.75 },
    qsv: { quality: 28, speed: 'slow', rateScale: 0.75 },
    vaapi: { quality: null, speed: '2', rateScale: 0.75 },
    'svt-av1': { quality: 40, speed: '6', rateScale: 0.75 },
    'libvpx-vp9': { quality: 38, speed: '2', rateScale: 0.75 },
  },
  archive: {
    x264: { quality: 18, speed: 'slow', rateScale: 1.3 },
    nvenc: { quality: 19, speed: 'p7', rateScale: 1.3 },
    qsv: { quality: 19, speed: 'veryslow', rateScale: 1.3 },
    vaapi: { quality: null, speed: '1', rateScale: 1.3 },
    'svt-av1': { quality: 28, speed: '5', rateScale: 1.3 },
    'libvpx-vp9': { quality: 28, speed: '1', rateScale: 1.3 },
  },
};

/** The preset a job uses: its own override, else its tier's, else the default. */
export function choosePreset(
  job: { override?: VideoPreset | undefined; tier?: Tier | undefined },
  config: Pick<Config, 'videoPreset' | 'videoTierPresets'>,
): VideoPreset {
  if (job.override !== undefined) return job.override;
  const byTier = job.tier === undefined ? undefined : config.videoTierPresets[job.tier];
  return byTier ?? config.videoPreset;
}

/**
 * The ffmpeg output options of one rendition: video encoder and rate control, the GOP, profile and
 * level, pixel format, and the audio. Scaling and frame rate are `rungFilter`'s, as a filter chain the
 * caller places (`-filter:v` or one branch of a `-filter_complex` split).
 */
export function encoderArgs(rung: Rendition, preset: VideoPreset, family: PresetFamily): string[] {
  const { codec, encoder } = PRESET_ENCODERS[family];
  const p = PRESETS[preset][family];
  const rates = rung.bitrates[codec];
  const target = Math.round(rates.target * p.rateScale);
  const max = Math.round(rates.max * p.rateScale);
  const buffer = Math.round(rates.buffer * p.rateScale);
  const fps = rung.frameRate.num / rung.frameRate.den;
  const gop = String(rung.gopFrames);
  const args = ['-c:v', encoder];

  switch (family) {
    case 'x264':
      // Capped CRF: quality-driven, with the VBV (-maxrate/-bufsize) bounding the peaks. x264's
      // scenecut=0 stops keyframes at scene changes ("-sc_threshold 0" says the same through
      // libavcodec), open_gop=0 keeps every GOP closed so each segment decodes on its own, and
      // -forced-idr makes the forced keyframes IDR frames rather than recovery-point I frames.
      args.push('-preset', p.speed, '-crf', String(p.quality), '-maxrate', `${max}`, '-bufsize', `${buffer}`);
      args.push('-g', gop, '-keyint_min', gop, '-sc_threshold', '0');
      args.push('-x264-params', 'scenecut=0:open_gop=0', '-forced-idr', '1');
      args.push('-profile:v', 'high', '-level:v', h264LevelName(level(rung, fps, max, buffer)));
      args.push('-pix_fmt', 'yuv420p');
      break;
    case 'nvenc':
      // VBR with a constant-quality target: "-b:v 0" leaves the average to -cq, and -maxrate caps it.
      // -no-scenecut turns off adaptive I frames (they only happen with lookahead, stated anyway).
      args.push('-preset', p.speed, '-tune', 'hq', '-rc', 'vbr', '-cq', String(p.quality), '-b:v', '0');
      args.push('-maxrate', `${max}`, '-bufsize', `${buffer}`);
      args.push('-g', gop, '-no-scenecut', '1', '-forced-idr', '1');
      args.push('-profile:v', 'high', '-level', h264LevelName(level(rung, fps, max, buffer)));
      args.push('-pix_fmt', 'yuv420p');
      break;
    case 'qsv':
      // -global_quality with a bit rate and a higher -maxrate selects QVBR in ffmpeg 5.1's qsvenc.
      // -idr_interval 0 makes every I frame an IDR; -adaptive_i 0 stops I frames at scene changes.
      args.push('-preset', p.speed, '-global_quality', String(p.quality), '-b:v', `${target}`);
      args.push('-maxrate', `${max}`, '-bufsize', `${buffer}`);
      args.push('-g', gop, '-idr_interval', '0', '-adaptive_i', '0', '-forced_idr', '1');
      args.push('-profile:v', 'high', '-level', String(level(rung, fps, max, buffer)));
      args.push('-pix_fmt', 'nv12');
      break;
    case 'vaapi':
      // VA-API encoders take hardware frames: rungFilter ends in hwupload, so there is no -pix_fmt.
      // VA-API has no scene-change keyframes to turn off; forced keyframes become IDR frames.
      args.push('-rc_mode', 'VBR', '-b:v', `${target}`, '-maxrate', `${max}`, '-bufsize', `${buffer}`);
      args.push('-quality', p.speed, '-g', gop, '-idr_interval', '0');
      args.push('-profile:v', 'high', '-level', String(level(rung, fps, max, buffer)));
      break;
    case 'svt-av1':
      // SVT-AV1 1.4 refuses pictures under 64 pixels a side ("Source Height must be at least 64"): say
      // so here rather than as an encoder failure halfway through a ladder.
      if (rung.width < SVT_MIN_SIDE || rung.height < SVT_MIN_SIDE) {
        throw new RangeError(
          `SVT-AV1 encodes no picture under ${SVT_MIN_SIDE} pixels a side (${rung.width}x${rung.height})`,
        );
      }
      // Capped CRF (SVT-AV1 1.4 reports "capped CRF" when -crf and -maxrate are both given). -g sets
      // the intra period; scd=0 turns off scene-change keyframes, irefresh-type=2 makes keyframes
      // closed-GOP key frames rather than open-GOP forward keyframes.
      args.push('-preset', p.speed, '-crf', String(p.quality), '-maxrate', `${max}`, '-bufsize', `${buffer}`);
      args.push('-g', gop, '-svtav1-params', 'scd=0:irefresh-type=2');
      args.push('-pix_fmt', 'yuv420p');
      break;
    case 'libvpx-vp9':
      // Constrained quality: -crf with -b:v as the ceiling (libvpx's CQ mode). A minimum keyframe
      // distance equal to the maximum leaves libvpx no room for keyframes of its own.
      args.push('-deadline', 'good', '-cpu-used', p.speed, '-row-mt', '1');
      args.push('-crf', String(p.quality), '-b:v', `${max}`, '-maxrate', `${max}`, '-bufsize', `${buffer}`);
      args.push('-g', gop, '-keyint_min', gop);
      args.push('-pix_fmt', 'yuv420p');
      break;
  }

  // ffmpeg's -force_key_frames "expr:gte(t,n_forced*4)" forces a keyframe at the first frame at or after
  // each multiple of the segment duration: here exactly every gopFrames-th frame, the instants -g names
  // too, so the two agree and an encoder that honours only one still keys the grid. The segment
  // duration is written as its exact fraction (1001/250 for 120 frames at 29.97 fps), and a microsecond
  // of slack absorbs the float error of pts x time base, far below the distance between two frames.
  const { num, den } = rung.segmentDuration;
  const every = den === 1 ? `${num}` : `${num}/${den}`;
  args.push('-force_key_frames', `expr:gte(t,n_forced*${every}-0.000001)`);
  args.push(...audioArgs(rung));
  return args;
}

/**
 * Audio: AAC-LC stereo at 48 kHz in every rendition, whatever the video codec. AAC-LC plays in every HLS
 * player (Safari, AVPlayer, ExoPlayer, hls.js through MSE); Opus in fMP4 HLS needs recent Apple systems
 * and is refused by older ones, and audio is a small share of the ladder's bits, so Opus would save
 * little and lose players.
 */
export function audioArgs(rung: Rendition): string[] {
  if (rung.audioBitrate === null) return ['-an'];
  return ['-c:a', 'aac', '-b:a', `${rung.audioBitrate}`, '-ac', '2', '-ar', '48000'];
}

/**
 * The filter chain that turns decoded source frames into the rung's frames: a constant frame rate
 * first (fewer frames to scale), then the size with square pixels, then what the encoder takes. QSV
 * takes NV12 from memory; VA-API takes frames in GPU memory, uploaded here (the hardware device is the
 * caller's `-init_hw_device`/`-filter_hw_device`).
 */
export function rungFilter(rung: Rendition, family: PresetFamily): string {
  const chain = [`fps=${frameRateText(rung.frameRate)}`, `scale=${rung.width}:${rung.height}`, 'setsar=1'];
  if (family === 'qsv') chain.push('format=nv12');
  else if (family === 'vaapi') chain.push('format=nv12', 'hwupload');
  else chain.push('format=yuv420p');
  return chain.join(',');
}

function level(rung: Rendition, fps: number, max: number, buffer: number): number {
  return h264Level({ width: rung.width, height: rung.height, frameRate: fps, bitrate: max, buffer });
}
