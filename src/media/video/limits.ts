/**
 * What Conveyor accepts as a video, checked on the probe (checkVideo) and, for damage the probe cannot
 * see, by decoding (verifyDecodable). Each refusal is a VideoError about the input, so the job ends dead
 * at once with its code, before any output is written:
 *
 *   video_unreadable      no duration, or a video stream of no size
 *   video_no_video        no video stream (cover art does not count): an audio file
 *   video_no_audio        no audio stream, only when `requireAudio` is set; by default a video without
 *                         sound (a screen recording) is a normal video and its ladder has no audio
 *   video_file_too_large  more than `maxBytes`
 *   video_unsupported     a container, video codec or audio codec that is not listed
 *   video_too_large       wider than `maxWidth`, taller than `maxHeight` (stored size, before rotation)
 *                         or more pixels than `maxPixels`
 *   video_too_long        longer than `maxDurationSeconds`
 *   video_corrupt         decoding fails (verifyDecodable)
 */
import type { Config } from '../../config/config.ts';
import { VideoError } from './errors.ts';
import { ffmpegArgs } from './ffmpeg-args.ts';
import type { VideoInfo } from './probe.ts';
import { type FfmpegRunOptions, runFfmpeg } from './run.ts';

export interface VideoLimits {
  maxDurationSeconds: number;
  maxWidth: number;
  maxHeight: number;
  maxPixels: number;
  maxBytes: number;
  /** Container names as VideoInfo.container gives them. */
  containers: readonly string[];
  /** ffprobe codec names. */
  codecs: readonly string[];
  audioCodecs: readonly string[];
  requireAudio: boolean;
}

/** The limits as the settings give them. */
export function videoLimits(
  config: Pick<
    Config,
    | 'videoMaxDurationSeconds'
    | 'videoMaxWidth'
    | 'videoMaxHeight'
    | 'videoMaxPixels'
    | 'videoMaxBytes'
    | 'videoInputContainers'
    | 'videoInputCodecs'
    | 'videoInputAudioCodecs'
    | 'videoRequireAudio'
  >,
): VideoLimits {
  return {
    maxDurationSeconds: config.videoMaxDurationSeconds,
    maxWidth: config.videoMaxWidth,
    maxHeight: config.videoMaxHeight,
    maxPixels: config.videoMaxPixels,
    maxBytes: config.videoMaxBytes,
    containers: config.videoInputContainers,
    codecs: config.videoInputCodecs,
    audioCodecs: config.videoInputAudioCodecs,
    requireAudio: config.videoRequireAudio,
  };
}

/** Throws the first refusal that applies to `info`, in the order of the table above. */
export function checkVideo(info: VideoInfo, limits: VideoLimits): void {
  if (info.durationMs === null || info.durationMs <= 0) {
    throw new VideoError('video_unreadable', 'The file has no duration: it is not a playable video', {
      details: { durationMs: info.durationMs },
    });
  }
  const video = info.video;
  if (video === null) {
    const what = info.audio === null ? 'no video stream' : 'audio but no video';
    throw new VideoError('video_no_video', `The file holds ${what}`, { details: { streams: info.streams } });
  }
  if (video.width === 0 || video.height === 0) {
    throw new VideoError('video_unreadable', 'The video stream has no frame size');
  }
  if (info.audio === null && limits.requireAudio) {
    throw new VideoError('video_no_audio', 'The video has no audio stream, and one is required');
  }
  if (info.sizeBytes !== null && info.sizeBytes > limits.maxBytes) {
    throw refusal('video_file_too_large', 'The file is larger than allowed', info.sizeBytes, limits.maxBytes);
  }
  unsupported('container', 'container', info.container, limits.containers, { formatName: info.formatName });
  unsupported('videoCodec', 'video codec', video.codec, limits.codecs);
  if (info.audio !== null) unsupported('audioCodec', 'audio codec', info.audio.codec, limits.audioCodecs);
  if (video.width > limits.maxWidth) {
    throw refusal('video_too_large', 'The video is wider than allowed', video.width, limits.maxWidth);
  }
  if (video.height > limits.maxHeight) {
    throw refusal('video_too_large', 'The video is taller than allowed', video.height, limits.maxHeight);
  }
  if (video.width * video.height > limits.maxPixels) {
    const pixels = video.width * video.height;
    throw refusal(
      'video_too_large',
      'The video frame has more pixels than allowed',
      pixels,
      limits.maxPixels,
    );
  }
  if (info.durationMs > limits.maxDurationSeconds * 1000) {
    const seconds = info.durationMs / 1000;
    throw refusal('video_too_long', 'The video is longer than allowed', seconds, limits.maxDurationSeconds);
  }
}

function refusal(
  code: 'video_file_too_large' | 'video_too_large' | 'video_too_long',
  message: string,
  actual: number,
  limit: number,
): VideoError {
  return new VideoError(code, `${message}: ${actual}, limit ${limit}`, { details: { actual, limit } });
}

function unsupported(
  key: 'container' | 'videoCodec' | 'audioCodec',
  what: string,
  name: string,
  accepted: readonly string[],
  extra = {},
): void {
  if (accepted.includes(name)) return;
  throw new VideoError('video_unsupported', `The ${what} ${name} is not accepted`, {
    details: { [key]: name, accepted, ...extra },
  });
}

export interface VerifyOptions extends FfmpegRunOptions {
  /** The probed duration; with `tailSeconds`, where decoding starts. */
  durationMs?: number | null;
  /** Decode only the last this many seconds (the setting `videoVerifyTailSeconds`); 0 or unset: all of it. */
  tailSeconds?: number;
}

/**
 * Decodes the file, or its last `tailSeconds`, and throws `video_corrupt` when that fails. A file cut
 * short keeps its index when the index comes first (`+faststart`), so it probes as complete; reading
 * the packets the index points past the end is what fails, and the end is where a truncated upload or
 * download is damaged. Seeking there costs a seek and a few seconds of decoding however long the video.
 *
 * ffmpeg(1): "-xerror (global): Stop and exit on error"; without it a decoder error is logged and
 * decoding goes on, exiting 0. Demuxers only log a packet cut off by the end of the file ("partial
 * file"), which counts as damage too.
 */
export async function verifyDecodable(path: string, options: VerifyOptions = {}): Promise<void> {
  const { durationMs, tailSeconds = 0 } = options;
  const start = tailSeconds > 0 && typeof durationMs === 'number' ? durationMs / 1000 - tailSeconds : 0;
  const args = ffmpegArgs({
    globalOptions: ['-xerror'],
    inputs: [{ path, ...(start > 0 ? { seekSeconds: start } : {}) }],
    outputs: [{ path: '-', format: 'null' }],
  });
  let stderrTail: string;
  try {
    ({ stderrTail } = await runFfmpeg(args, options));
  } catch (error) {
    if (error instanceof VideoError && error.code === 'video_process_failed' && !error.retryable) {
      throw corrupt(error.process?.stderrTail ?? error.message, error);
    }
    throw error;
  }
  if (/partial file/i.test(stderrTail)) throw corrupt(stderrTail);
}

function corrupt(stderrTail: string, cause?: unknown): VideoError {
  const lines = stderrTail.trim().split('\n');
  const why = lines[lines.length - 1]?.trim() || 'decoding failed';
  return new VideoError('video_corrupt', `The video data is damaged: ${why.slice(0, 300)}`, {
    cause,
    details: { stderrTail },
  });
}
