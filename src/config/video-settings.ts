import type { Setting } from './setting.ts';
import { GiB } from './units.ts';

/**
 * Video settings: where video comes from (yt-dlp and the guarded proxy it uses), what is accepted (probe
 * limits), how it is encoded (the HLS ladder and its presets), on what (hardware acceleration) and where
 * the outputs are kept (storage). Part of the one settings table in schema.ts, in a file of its own like
 * the image and job settings.
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
  videoHwaccel: {
    type: 'enum',
    default: 'auto',
    values: ['auto', 'off', 'nvenc', 'qsv', 'vaapi', 'videotoolbox'],
    doc: 'Hardware encoders: `auto` uses the best one a trial encode proves at worker start (nvenc, qsv, vaapi, videotoolbox, then the CPU); `off` encodes on the CPU only and tries no hardware; a family name ranks that family first and fails the worker start when it proves none of its encoders.',
  },
  videoVaapiDevice: {
    type: 'optional',
    doc: 'DRM render node VAAPI encodes on, e.g. /dev/dri/renderD129; default the first renderD* under /dev/dri.',
  },
  videoHwaccelTrialTimeoutMs: {
    type: 'int',
    default: 15_000,
    min: 100,
    max: 300_000,
    doc: 'Longest a trial encode that proves an encoder at worker start (and each listing of ffmpeg) may run; one that takes longer counts as failed.',
  },
  videoHwaccelCacheFile: {
    type: 'optional',
    doc: 'File that keeps the encoder detection across restarts, reused while the ffmpeg binary (path, size, modification time), the render nodes and these settings are unchanged; default <dataDir>/video-encoders.json. Delete it after a driver change.',
  },
} as const satisfies Record<string, Setting>;

/** Where the outputs are kept: every file of a ladder is a blob (src/media/video/store.ts). */
const storageSettings = {
  videoStoreMaxFileBytes: {
    type: 'int',
    default: 8 * GiB,
    min: 1,
    max: 5 * 1024 * GiB,
    doc: 'Largest single output file (segment, playlist, poster, sprite, MP4 fallback) a video job stores; a larger one fails the job with `video_output_too_large`.',
  },
  videoStoreConcurrency: {
    type: 'int',
    default: 4,
    min: 1,
    max: 64,
    doc: "Output files of one rendition a video job stores at once (each streamed from the job's disk into the blob store).",
  },
} as const satisfies Record<string, Setting>;

export const videoSettings = {
  ...sourceSettings,
  ...probeSettings,
  ...encodingSettings,
  ...accelerationSettings,
  ...storageSettings,
} as const satisfies Record<string, Setting>;
