/**
 * One rendition of the ladder, encoded to HLS
 * ===========================================
 *
 * The parts meet here: the rendition's plan (ladder.ts), its encoder options for a preset (presets.ts),
 * the encoder attempts a worker proved (hwaccel.ts, fallback.ts) and the ffmpeg runner (run.ts). One call
 * makes the files of one rendition in a folder of its own: the media playlist `index.m3u8`, the fMP4
 * init segment `init.mp4` and the segments `seg_00000.m4s` … (or `.ts` segments when MPEG-TS is asked
 * for). The job stores them as one checkpoint once the call succeeds, and never before: ffmpeg stopped
 * by a signal still ends its playlist with #EXT-X-ENDLIST, so a file there proves nothing, only exit 0.
 *
 * Each attempt writes into a fresh subfolder, so that a hardware attempt that failed halfway leaves
 * nothing the CPU attempt's output could be mixed with; the winner's folder is the answer.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { LadderCodec, VideoPreset } from '../../config/video-settings.ts';
import type { EncodeAttempt, Fallback } from './fallback.ts';
import { encodeWithFallback } from './fallback.ts';
import { ffmpegArgs } from './ffmpeg-args.ts';
import { frameRateText, hlsTime, type Rendition } from './ladder.ts';
import { encoderArgs, PRESET_ENCODERS, type PresetFamily, rungFilter } from './presets.ts';
import { type FfmpegProgress, type FfmpegRunOptions, runFfmpeg } from './run.ts';

/** The media playlist of a rendition, in its folder. */
export const MEDIA_PLAYLIST = 'index.m3u8';
/** The fMP4 initialization segment (EXT-X-MAP). */
export const INIT_SEGMENT = 'init.mp4';

export type SegmentFormat = 'fmp4' | 'mpegts';

export interface RenditionJob {
  /** The source video, a local file. */
  source: string;
  /** The source's duration, for the progress fraction. */
  durationMs: number;
  hasAudio: boolean;
  /** The audio filter chain (`-af`), e.g. the loudnorm of two-pass normalisation (extras.ts). */
  audioFilter?: string;
  rung: Rendition;
  codec: LadderCodec;
  preset: VideoPreset;
  /** The encoder attempts, best first (fallbackChain). */
  attempts: readonly EncodeAttempt[];
  /** An empty folder for this rendition; each attempt writes into a subfolder of it. */
  dir: string;
  segmentFormat: SegmentFormat;
  /** The binary, the cancel grace and the job's signal. */
  run: Pick<FfmpegRunOptions, 'ffmpegPath' | 'cancelGraceMs' | 'signal' | 'timeLimitMs'>;
  /** 0..1 of this rendition, with the encoder's speed, as ffmpeg reports it. */
  onProgress?: (fraction: number, progress: FfmpegProgress) => void;
  onFallback?: (fallback: Fallback) => void;
}

export interface EncodedRendition {
  /** The folder holding the rendition's files. */
  dir: string;
  /** The file names in it: the playlist, the init segment (fMP4) and the segments, in order. */
  files: string[];
  attempt: EncodeAttempt;
  fallbacks: Fallback[];
}

/**
 * The presets' name for an encoder: the family whose encoder it is (`libx264` → `x264`, `h264_nvenc` →
 * `nvenc`). The detection and the presets name the same encoders from two sides; this is where they meet.
 */
export function presetFamilyOf(encoder: string): PresetFamily {
  for (const [family, info] of Object.entries(PRESET_ENCODERS) as [
    PresetFamily,
    (typeof PRESET_ENCODERS)[PresetFamily],
  ][]) {
    if (info.encoder === encoder) return family;
  }
  throw new Error(`no preset knows the encoder ${encoder}`);
}

/**
 * The video filter of an attempt. Frames decoded in software take the presets' chain (rate, size,
 * square pixels, the encoder's pixel format or upload). Frames a hardware decoder keeps in GPU memory
 * can only be scaled there (`scale_cuda`, `scale_vaapi`: the attempt's scale filter), and the encoder
 * takes them as they are.
 */
export function attemptFilter(rung: Rendition, attempt: EncodeAttempt, family: PresetFamily): string {
  if (attempt.step !== 'hw_decode') return rungFilter(rung, family);
  return [`fps=${frameRateText(rung.frameRate)}`, `${attempt.scaleFilter}=${rung.width}:${rung.height}`].join(
    ',',
  );
}

/** The ffmpeg arguments of one attempt, writing into `dir`. */
export function renditionArgs(job: RenditionJob, attempt: EncodeAttempt, dir: string): string[] {
  const family = presetFamilyOf(attempt.encoder);
  return ffmpegArgs({
    inputs: [{ path: job.source, options: attempt.inputArgs }],
    outputs: [
      {
        path: join(dir, MEDIA_PLAYLIST),
        format: 'hls',
        maps: job.hasAudio ? ['0:v:0', '0:a:0'] : ['0:v:0'],
        videoFilter: attemptFilter(job.rung, attempt, family),
        ...(job.hasAudio && job.audioFilter ? { audioFilter: job.audioFilter } : {}),
        options: [
          ...encoderArgs(job.rung, job.preset, family),
          ...hlsOptions(job.rung, job.segmentFormat, dir),
        ],
      },
    ],
  });
}

/** The HLS muxer's options for a rendition written into `dir` (a whole encode and a join of chunks alike). */
export function hlsOptions(rung: Rendition, segmentFormat: SegmentFormat, dir: string): string[] {
  const segment = segmentFormat === 'fmp4' ? 'seg_%05d.m4s' : 'seg_%05d.ts';
  return [
    // RFC 8216 §4.3.3.5: a VOD playlist "MUST NOT change"; ffmpeg writes EXT-X-PLAYLIST-TYPE:VOD and
    // EXT-X-ENDLIST, and independent_segments says every segment starts with a keyframe (§4.3.5.1),
    // which the keyframe grid guarantees.
    '-hls_time',
    hlsTime(rung),
    '-hls_playlist_type',
    'vod',
    '-hls_flags',
    'independent_segments',
    '-hls_segment_type',
    segmentFormat,
    ...(segmentFormat === 'fmp4' ? ['-hls_fmp4_init_filename', INIT_SEGMENT] : []),
    '-hls_segment_filename',
    join(dir, segment),
  ];
}

/** The files of a rendition ffmpeg wrote into `dir`: the playlist, the init segment (fMP4), the segments. */
export async function renditionFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir);
  const segments = names.filter((name) => name.startsWith('seg_')).sort();
  return [MEDIA_PLAYLIST, ...(names.includes(INIT_SEGMENT) ? [INIT_SEGMENT] : []), ...segments];
}

/**
 * Encodes one rendition: the attempts in order, each into a fresh subfolder, moving to the next only on
 * a failure that is the hardware's (fallback.ts). Answers the winner's folder and files.
 */
export async function encodeRendition(job: RenditionJob): Promise<EncodedRendition> {
  const outcome = await encodeWithFallback(
    job.attempts,
    async (attempt, index) => {
      const dir = join(job.dir, `attempt-${index}`);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      try {
        await runFfmpeg(renditionArgs(job, attempt, dir), {
          ...job.run,
          onProgress: (progress) => {
            if (job.durationMs <= 0 || progress.outTimeUs === null) return;
            job.onProgress?.(Math.min(1, progress.outTimeUs / 1000 / job.durationMs), progress);
          },
        });
      } catch (error) {
        await rm(dir, { recursive: true, force: true });
        throw error;
      }
      return dir;
    },
    {
      ...(job.run.signal ? { signal: job.run.signal } : {}),
      ...(job.onFallback ? { onFallback: job.onFallback } : {}),
    },
  );
  const files = await renditionFiles(outcome.result);
  return { dir: outcome.result, files, attempt: outcome.attempt, fallbacks: outcome.fallbacks };
}
