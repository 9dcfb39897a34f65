/**
 * What a ladder has besides its renditions
 * ========================================
 *
 * The poster frame, the scrubbing sprite with its WebVTT index, the progressive MP4 fallback, the
 * quality scores of each rendition and the loudnorm filter of two-pass loudness normalisation. Each is
 * one ffmpeg run (or none) over files on the job's disk; the job (video-job.ts) decides when to run
 * them and stores what they make.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LadderCodec, LoudnormTarget } from '../../config/video-settings.ts';
import { VideoError } from './errors.ts';
import { ffmpegArgs } from './ffmpeg-args.ts';
import {
  type SpriteLayout,
  type SpriteSettings,
  spriteFilter,
  spriteLayout,
  spriteVtt,
} from './hls/sprite-vtt.ts';
import { frameRateText, type Rendition } from './ladder.ts';
import type { Loudness } from './loudness.ts';
import { type FfmpegRunOptions, runFfmpeg } from './run.ts';
import { runTool } from './tool.ts';

export const POSTER = 'poster.jpg';
export const SPRITE = 'sprite.jpg';
export const SPRITE_VTT = 'sprite.vtt';
export const FALLBACK_MP4 = 'fallback.mp4';
/** `ffmpeg -filters` prints about 30 KiB; more is a wrapper that floods, not a filter list. */
const FILTER_LIST_MAX_BYTES = 1024 * 1024;

/**
 * The JPEG quantiser scale of the poster and the sprite (`-q:v`, 2 best to 31 worst). ffmpeg's MJPEG
 * encoder has no 0-100 quality; at 5 the mean of the luminance table it writes (20.4) is that of libjpeg
 * at quality 82 (20.7: the standard table scaled by 200 - 2 x 82 percent), measured here from the DQT
 * segments of its output at 2 to 5.
 */
export const JPEG_QSCALE = 5;

type Run = Pick<FfmpegRunOptions, 'ffmpegPath' | 'cancelGraceMs' | 'signal' | 'timeLimitMs'>;

/**
 * Where the poster is taken: at a tenth of the video, at most 1 s in (past a fade from black, before
 * the video has moved on to something else), and at the very start of a clip shorter than 1 s, whose
 * tenth could fall between its few frames.
 */
export function posterSeconds(durationMs: number): number {
  if (durationMs < 1000) return 0;
  return Math.min(durationMs / 10_000, 1);
}

/** `poster.jpg` in `dir`: one frame of the source at the top rendition's size. */
export async function makePoster(options: {
  source: string;
  durationMs: number;
  size: { width: number; height: number };
  dir: string;
  run: Run;
}): Promise<string> {
  const path = join(options.dir, POSTER);
  await runFfmpeg(
    ffmpegArgs({
      // ffmpeg(1), -ss as an input option: "seeks in this input file to position", decoding from the
      // keyframe before it and discarding up to it, so the frame is the one at the position.
      inputs: [{ path: options.source, seekSeconds: posterSeconds(options.durationMs) }],
      outputs: [
        {
          path,
          format: 'image2',
          maps: ['0:v:0'],
          videoFilter: `scale=${options.size.width}:${options.size.height},setsar=1`,
          // image2: "-update 1" writes one image to a name that is not a pattern.
          options: ['-frames:v', '1', '-q:v', String(JPEG_QSCALE), '-update', '1'],
        },
      ],
    }),
    options.run,
  );
  return path;
}

/** `sprite.jpg` and `sprite.vtt` in `dir`: one ffmpeg run draws the sheet, the index is written here. */
export async function makeSprite(options: {
  source: string;
  durationMs: number;
  display: { width: number; height: number };
  settings: SpriteSettings;
  dir: string;
  run: Run;
}): Promise<SpriteLayout> {
  const layout = spriteLayout(options.durationMs, options.display, options.settings);
  await runFfmpeg(
    ffmpegArgs({
      inputs: [{ path: options.source }],
      outputs: [
        {
          path: join(options.dir, SPRITE),
          format: 'image2',
          maps: ['0:v:0'],
          videoFilter: spriteFilter(layout),
          options: ['-frames:v', '1', '-q:v', String(JPEG_QSCALE), '-update', '1'],
        },
      ],
    }),
    options.run,
  );
  // Relative to the index, so the pair can be served from any prefix (a grant goes on the index's URL).
  await writeFile(join(options.dir, SPRITE_VTT), spriteVtt(layout, options.durationMs, SPRITE));
  return layout;
}

/**
 * The rendition the MP4 fallback is made of: H.264 where the ladder has it (the codec every player of a
 * plain MP4 decodes), the one at or just under `height` (the shorter side, as the rungs are named), else
 * the smallest.
 */
export function fallbackRendition<T extends { codec: LadderCodec; rung: Rendition }>(
  renditions: readonly T[],
  height: number,
): T {
  const h264 = renditions.filter((r) => r.codec === 'h264');
  const pool = h264.length > 0 ? h264 : renditions;
  const side = (r: T) => Math.min(r.rung.width, r.rung.height);
  const bySide = [...pool].sort((a, b) => side(a) - side(b));
  const under = bySide.filter((r) => side(r) <= height);
  const chosen = under.at(-1) ?? bySide[0];
  if (!chosen) throw new Error('no rendition to make the fallback of');
  return chosen;
}

/**
 * `fallback.mp4` from a rendition's media playlist, its segments copied, not encoded again. ffmpeg(1):
 * "-c copy" "indicates that the stream is not to be re-encoded"; ffmpeg-formats(1), mov/mp4 `faststart`:
 * "Run a second pass moving the index (moov atom) to the beginning of the file", so a browser can start
 * playing before the whole file has arrived.
 */
export async function remuxFallback(playlist: string, dir: string, run: Run): Promise<string> {
  const path = join(dir, FALLBACK_MP4);
  await runFfmpeg(
    ffmpegArgs({
      inputs: [{ path: playlist }],
      outputs: [{ path, format: 'mp4', maps: ['0'], options: ['-c', 'copy', '-movflags', '+faststart'] }],
    }),
    run,
  );
  return path;
}

/** A rendition's similarity to its source: SSIM (0..1), PSNR (dB), VMAF (0..100, null without libvmaf). */
export interface Quality {
  ssim: number | null;
  /** Null also for identical pictures, whose PSNR is infinite. */
  psnr: number | null;
  vmaf: number | null;
}

/** Whether the ffmpeg at `ffmpegPath` has the libvmaf filter (`ffmpeg -filters` lists it). */
export async function hasLibvmaf(ffmpegPath: string, timeoutMs: number): Promise<boolean> {
  const end = await runTool(ffmpegPath, ['-hide_banner', '-nostdin', '-filters'], {
    stopping: { how: 'kill' },
    timeLimitMs: timeoutMs,
    collectStdout: FILTER_LIST_MAX_BYTES,
  }).catch(() => undefined);
  const ok = end !== undefined && end.stopped === undefined && end.exitCode === 0 && end.signal === null;
  return ok && /^\s*\S+\s+libvmaf\s/m.test(end.stdout);
}

/**
 * The filter graph comparing a rendition (input 0) with its source (input 1). The rendition is scaled
 * up to the source's display size, not the source down to the rendition's: the score then says what a
 * viewer loses against the original when the player shows that rendition at the source's size, which
 * is how VMAF is meant to be used and what makes the scores of the rungs comparable with each other
 * (scaling the source down would score each rung against a different, already reduced, reference). The
 * source takes the rendition's frame-rate filter, so both sides hold the same frames, and both start at
 * time 0 (the filters pair frames by time). `shortest=1`: a frame is compared only with its partner,
 * never with a repeated last one.
 */
export function qualityGraph(
  rung: Rendition,
  display: { width: number; height: number },
  vmaf: boolean,
): { graph: string; outputs: string[] } {
  const n = vmaf ? 3 : 2;
  const size = `${display.width}:${display.height}`;
  const pads = (p: string) => Array.from({ length: n }, (_, i) => `[${p}${i}]`).join('');
  const graph = [
    `[0:v:0]setpts=PTS-STARTPTS,scale=${size}:flags=bicubic,setsar=1,format=yuv420p,split=${n}${pads('d')}`,
    `[1:v:0]fps=${frameRateText(rung.frameRate)},setpts=PTS-STARTPTS,scale=${size}:flags=bicubic,setsar=1,format=yuv420p,split=${n}${pads('r')}`,
    '[d0][r0]ssim=shortest=1[ssim]',
    '[d1][r1]psnr=shortest=1[psnr]',
    // libvmaf: "The first input is the distorted video, and the second input is the reference video."
    ...(vmaf ? ['[d2][r2]libvmaf=shortest=1[vmaf]'] : []),
  ].join(';');
  return { graph, outputs: vmaf ? ['[ssim]', '[psnr]', '[vmaf]'] : ['[ssim]', '[psnr]'] };
}

/** SSIM, PSNR (and VMAF) of the rendition whose media playlist is `playlist` against `source`. */
export async function measureQuality(options: {
  playlist: string;
  source: string;
  rung: Rendition;
  display: { width: number; height: number };
  vmaf: boolean;
  run: Run;
}): Promise<Quality> {
  const { graph, outputs } = qualityGraph(options.rung, options.display, options.vmaf);
  const { stderrTail } = await runFfmpeg(
    ffmpegArgs({
      logLevel: 'info',
      inputs: [{ path: options.playlist }, { path: options.source }],
      filterComplex: graph,
      outputs: [{ path: '-', format: 'null', maps: outputs }],
    }),
    options.run,
  );
  const quality = parseQuality(stderrTail);
  if (quality.ssim === null || (quality.psnr === null && !/PSNR .*average:inf/.test(stderrTail))) {
    throw new VideoError('video_process_failed', 'ffmpeg printed no SSIM or PSNR summary', {
      details: { stderrTail },
    });
  }
  if (options.vmaf && quality.vmaf === null) {
    throw new VideoError('video_process_failed', 'ffmpeg printed no VMAF score', { details: { stderrTail } });
  }
  return quality;
}

/**
 * The summaries the filters log at the info level when they end (ffmpeg 5.1):
 *   [Parsed_ssim_4 @ 0x...] SSIM Y:0.981 (17.2) U:0.990 (20.0) V:0.989 (19.6) All:0.984 (17.9)
 *   [Parsed_psnr_5 @ 0x...] PSNR y:38.1 u:42.7 v:42.3 average:39.3 min:37.2 max:41.0
 *   [Parsed_libvmaf_6 @ 0x...] VMAF score: 93.1
 * SSIM's `All` and PSNR's `average` are over the three planes weighted by their size.
 */
export function parseQuality(log: string): Quality {
  const last = (pattern: RegExp): number | null => {
    const all = [...log.matchAll(pattern)];
    const n = Number(all.at(-1)?.[1]);
    return all.length > 0 && Number.isFinite(n) ? n : null;
  };
  return {
    ssim: last(/\] SSIM .*?All:(\S+)/g),
    psnr: last(/\] PSNR .*?average:(\S+)/g),
    vmaf: last(/VMAF score[:=]\s*(\S+)/g),
  };
}

/**
 * The second pass of two-pass loudness normalisation: ffmpeg's `loudnorm` given the first pass's
 * figures. ffmpeg-filters(1), loudnorm: measured_I, measured_LRA, measured_TP, measured_thresh are the
 * "Measured IL/LRA/TP/threshold of input file", and linear: "Normalize by linearly scaling the source
 * audio. measured_I, measured_LRA, measured_TP, and measured_thresh must all be specified." Linear
 * scaling keeps the dynamics as they were; loudnorm itself falls back to its dynamic mode when one gain
 * cannot reach the target without passing the true-peak ceiling.
 *
 * The first pass is ebur128 (loudness.ts), not loudnorm's own: the threshold ebur128 prints under the
 * integrated loudness is BS.1770's relative gate, which is what loudnorm reports as input_thresh.
 * Null, and no filter, when there is nothing to normalise: no audio, or silence (no integrated loudness).
 */
export function loudnormFilter(target: LoudnormTarget | null, measured: Loudness | null): string | null {
  if (target === null || measured === null) return null;
  const { integratedLufs: i, thresholdLufs: thresh, loudnessRangeLu: lra, truePeakDbtp: tp } = measured;
  if (i === null || thresh === null || lra === null || tp === null) return null;
  // loudnorm's ranges for the measured figures (-99..0 for I and thresh, 0..99 for LRA, -99..99 for TP).
  const clamp = (n: number, min: number, max: number) => Math.min(max, Math.max(min, n)).toFixed(2);
  return [
    `loudnorm=I=${target.integratedLufs}`,
    `TP=${target.truePeakDbtp}`,
    `LRA=${target.loudnessRangeLu}`,
    `measured_I=${clamp(i, -99, 0)}`,
    `measured_TP=${clamp(tp, -99, 99)}`,
    `measured_LRA=${clamp(lra, 0, 99)}`,
    `measured_thresh=${clamp(thresh, -99, 0)}`,
    'linear=true',
    'print_format=none',
  ].join(':');
}
