import { parseList } from './parsers.ts';
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
  videoProbeTimeoutSeconds: {
    type: 'int',
    default: 60,
    min: 1,
    max: 3600,
    doc: 'Longest an ffprobe of one input may run; past it the probe is stopped and fails with `video_timeout`.',
  },
  videoCheckTimeoutSeconds: {
    type: 'int',
    default: 1800,
    min: 1,
    max: 86_400,
    doc: 'Longest the decode check and the loudness measurement of one input may each run (both decode: the audio for loudness, the last seconds or all of it for the check).',
  },
  videoVerifyTailSeconds: {
    type: 'int',
    default: 10,
    min: 0,
    max: 86_400,
    doc: 'The decode check decodes the last this many seconds of a video, where a cut-off file fails (0 = the whole file, which also finds damage in the middle at the cost of a full decode).',
  },
  videoRequireAudio: {
    type: 'bool',
    default: false,
    doc: 'Refuse videos without an audio stream (`video_no_audio`). Off by default: a silent screen recording is a normal video.',
  },
  videoMaxDurationSeconds: {
    type: 'int',
    default: 4 * 3600,
    min: 1,
    max: 7 * 86_400,
    doc: 'Longest video accepted.',
  },
  videoMaxWidth: {
    type: 'int',
    default: 7680,
    min: 16,
    max: 65_535,
    doc: 'Widest video accepted, in stored pixels (before rotation).',
  },
  videoMaxHeight: {
    type: 'int',
    default: 4320,
    min: 16,
    max: 65_535,
    doc: 'Tallest video accepted, in stored pixels (before rotation).',
  },
  videoMaxPixels: {
    type: 'int',
    default: 7680 * 4320,
    min: 256,
    max: 65_535 * 65_535,
    doc: 'Most pixels (width x height) in one frame of a video accepted.',
  },
  videoMaxBytes: {
    type: 'int',
    default: 20 * GiB,
    min: 1,
    max: 5 * 1024 * GiB,
    doc: 'Largest video file accepted (uploads and ingests have their own limits, checked first).',
  },
  videoContainers: {
    type: 'parsed',
    default: 'mp4,mov,m4v,3gp,matroska,webm,avi,mpegts,flv,ogg,mpeg,asf,mxf',
    parse: parseList,
    doc: 'Containers accepted, by the short names the probe gives: `mp4`, `mov`, `m4v` and `3gp` by the brand of an ISO file, `webm` for Matroska holding only WebM codecs, otherwise the first name ffprobe gives (`matroska`, `avi`, `mpegts`, ...).',
  },
  videoCodecs: {
    type: 'parsed',
    default:
      'h264,hevc,vp8,vp9,av1,mpeg4,mpeg2video,mpeg1video,prores,dnxhd,mjpeg,theora,vc1,wmv3,h263,dvvideo',
    parse: parseList,
    doc: 'Video codecs accepted (ffprobe `codec_name`s).',
  },
  videoAudioCodecs: {
    type: 'parsed',
    default:
      'aac,mp3,mp2,opus,vorbis,ac3,eac3,flac,alac,dts,pcm_s16le,pcm_s24le,pcm_s32le,pcm_f32le,pcm_s16be,pcm_s24be,wmav2',
    parse: parseList,
    doc: 'Audio codecs accepted (ffprobe `codec_name`s), for the audio stream that will be encoded.',
  },
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

export const videoSettings = {
  ...sourceSettings,
  ...probeSettings,
  ...encodingSettings,
  ...accelerationSettings,
} as const satisfies Record<string, Setting>;
