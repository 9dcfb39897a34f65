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
