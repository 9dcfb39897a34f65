import type { Setting } from './setting.ts';
import { GiB, KiB, MiB } from './units.ts';

/**
 * Video settings: where video comes from (yt-dlp and the guarded proxy it uses), what is accepted (probe
 * limits), how it is encoded (the HLS ladder and its presets) and on what (hardware acceleration). Part of
 * the one settings table in schema.ts, in a file of its own like the image and job settings.
 */

/** Video sites through yt-dlp, and the forward proxy that holds its connections to the ingest rules. */
const sourceSettings = {
  ytdlpPath: {
    type: 'string',
    default: 'yt-dlp',
    doc: 'The yt-dlp program for video-site URLs (a name looked up in PATH, or a path); see docs/operations.md, "Video sites (yt-dlp)".',
  },
  ytdlpProbeTimeoutMs: {
    type: 'int',
    default: 120_000,
    min: 1000,
    max: 3_600_000,
    doc: 'yt-dlp: longest metadata or playlist lookup (`-J`) before it is stopped.',
  },
  ytdlpMaxJsonBytes: {
    type: 'int',
    default: 32 * MiB,
    min: 64 * KiB,
    max: GiB,
    doc: 'yt-dlp: largest metadata or playlist JSON read from it; more stops it.',
  },
  ytdlpPlaylistMaxEntries: {
    type: 'int',
    default: 200,
    min: 1,
    max: 100_000,
    doc: 'yt-dlp: entries taken from one playlist (one child job each); the rest are reported as left out.',
  },
  ytdlpKillGraceMs: {
    type: 'int',
    default: 3000,
    min: 0,
    max: 60_000,
    doc: 'yt-dlp: time between SIGTERM and SIGKILL when a run is cancelled or times out.',
  },
  ytdlpProxyIdleTimeoutMs: {
    type: 'int',
    default: 60_000,
    min: 100,
    max: 3_600_000,
    doc: "yt-dlp's guarded proxy: longest silence of a connection through it before both sides are closed (also yt-dlp's own socket timeout); connecting uses CONVEYOR_INGEST_CONNECT_TIMEOUT_MS.",
  },
  ytdlpProxyMaxConnections: {
    type: 'int',
    default: 8,
    min: 1,
    max: 1000,
    doc: "yt-dlp's guarded proxy: connections (tunnels and forwarded requests) one run may hold open at once.",
  },
  ytdlpProxyExtraBytes: {
    type: 'int',
    default: 64 * MiB,
    min: 0,
    max: 64 * GiB,
    doc: "yt-dlp's guarded proxy: bytes one run may move through it beyond CONVEYOR_INGEST_MAX_BYTES (pages, manifests, retries); past that its connections are cut and the run fails as too large.",
  },
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
