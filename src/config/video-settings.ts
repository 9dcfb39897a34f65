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
  // (duration, resolution, size, containers and codecs)
  ffmpegPath: {
    type: 'string',
    default: 'ffmpeg',
    doc: 'The ffmpeg binary: a path, or a name looked up in PATH.',
  },
  ffprobePath: {
    type: 'string',
    default: 'ffprobe',
    doc: 'The ffprobe binary: a path, or a name looked up in PATH.',
  },
  videoCancelGraceMs: {
    type: 'int',
    default: 1500,
    min: 0,
    max: 60_000,
    doc: 'A cancelled or timed-out ffmpeg is asked to stop (`q` on its stdin, which closes its outputs) and killed with SIGKILL if it is still running after this.',
  },
} as const satisfies Record<string, Setting>;

/** The HLS ladder: renditions, segments, codecs and the compression presets. */
const encodingSettings = {
  // (heights, segment length, codecs, presets, MP4 fallback, poster and sprite)
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
