import { TIERS, type Tier } from '../glossary.ts';
import { parseList } from './parsers.ts';
import { joinSections, type Setting } from './setting.ts';
import { GiB, KiB, MiB } from './units.ts';

/**
 * Video settings: where video comes from (yt-dlp and the guarded proxy it uses), what is accepted (probe
 * limits), how it is encoded (the HLS ladder and its presets), on what (hardware acceleration) and where
 * the outputs are kept (storage). Part of the one settings table in schema.ts, in a file of its own like
 * the image and job settings.
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
  videoInputContainers: {
    type: 'parsed',
    default: 'mp4,mov,m4v,3gp,matroska,webm,avi,mpegts,flv,ogg,mpeg,asf,mxf',
    parse: parseList,
    doc: 'Containers accepted, by the short names the probe gives: `mp4`, `mov`, `m4v` and `3gp` by the brand of an ISO file, `webm` for Matroska holding only WebM codecs, otherwise the first name ffprobe gives (`matroska`, `avi`, `mpegts`, ...).',
  },
  videoInputCodecs: {
    type: 'parsed',
    default:
      'h264,hevc,vp8,vp9,av1,mpeg4,mpeg2video,mpeg1video,prores,dnxhd,mjpeg,theora,vc1,wmv3,h263,dvvideo',
    parse: parseList,
    doc: 'Video codecs accepted (ffprobe `codec_name`s).',
  },
  videoInputAudioCodecs: {
    type: 'parsed',
    default:
      'aac,mp3,mp2,opus,vorbis,ac3,eac3,flac,alac,dts,pcm_s16le,pcm_s24le,pcm_s32le,pcm_f32le,pcm_s16be,pcm_s24be,wmav2',
    parse: parseList,
    doc: 'Audio codecs accepted (ffprobe `codec_name`s), for the audio stream that will be encoded.',
  },
} as const satisfies Record<string, Setting>;

/** The compression presets a job may name (src/media/video/presets.ts maps each to encoder settings). */
export const VIDEO_PRESETS = ['fast', 'balanced', 'small', 'archive'] as const;
export type VideoPreset = (typeof VIDEO_PRESETS)[number];

/** The video codecs a ladder may be encoded in; every rendition carries AAC-LC audio. */
export const LADDER_CODECS = ['h264', 'av1', 'vp9'] as const;
export type LadderCodec = (typeof LADDER_CODECS)[number];

/** `240, 360,720` -> rung heights, ascending and without repeats; each even, as 4:2:0 chroma needs. */
export function parseVideoHeights(value: string): number[] {
  const heights = parseList(value).map((item) => {
    const n = /^\d{1,4}$/.test(item) ? Number(item) : Number.NaN;
    if (!(n >= 2 && n <= 8640) || n % 2 !== 0) {
      throw new Error(`not an even height from 2 to 8640: ${JSON.stringify(item)}`);
    }
    return n;
  });
  if (heights.length === 0) throw new Error('at least one height');
  return [...new Set(heights)].sort((a, b) => a - b);
}

/** `h264,av1` -> codecs, in order, at least one. */
export function parseVideoCodecs(value: string): LadderCodec[] {
  const list = [...new Set(parseList(value))];
  for (const codec of list) {
    if (!(LADDER_CODECS as readonly string[]).includes(codec)) {
      throw new Error(`unknown codec ${JSON.stringify(codec)}; expected ${LADDER_CODECS.join(', ')}`);
    }
  }
  if (list.length === 0) throw new Error('at least one codec');
  return list as LadderCodec[];
}

/** `free=fast,premium=archive` -> a tier -> preset map; tiers not named use `CONVEYOR_VIDEO_PRESET`. */
export function parseTierPresets(value: string): Readonly<Partial<Record<Tier, VideoPreset>>> {
  const out: Partial<Record<Tier, VideoPreset>> = {};
  for (const item of parseList(value)) {
    const match = /^([a-z]+)\s*=\s*([a-z]+)$/.exec(item);
    const tier = match?.[1] as Tier | undefined;
    const preset = match?.[2] as VideoPreset | undefined;
    if (!tier || !preset || !TIERS.includes(tier) || !VIDEO_PRESETS.includes(preset)) {
      throw new Error(
        `expected tier=preset with a tier of ${TIERS.join(', ')} and a preset of ${VIDEO_PRESETS.join(', ')}, got ${JSON.stringify(item)}`,
      );
    }
    if (Object.hasOwn(out, tier)) throw new Error(`tier ${tier} is given twice`);
    out[tier] = preset;
  }
  return Object.freeze(out);
}

/** The loudness targets of two-pass EBU R128 normalisation (ffmpeg's `loudnorm` I, TP and LRA). */
export interface LoudnormTarget {
  integratedLufs: number;
  truePeakDbtp: number;
  loudnessRangeLu: number;
}

/**
 * `-16` or `-16,-1.5,11` -> the loudnorm targets; empty -> null (no normalisation). The ranges are
 * loudnorm's own (ffmpeg-filters(1), loudnorm: I "Range is -70.0 - -5.0", LRA "Range is 1.0 - 50.0",
 * TP "Range is -9.0 - +0.0").
 */
export function parseLoudnormTarget(value: string): LoudnormTarget | null {
  const parts = parseList(value);
  if (parts.length === 0) return null;
  const [i, tp = -1.5, lra = 11] = parts.map(Number);
  const inRange = (n: number | undefined, min: number, max: number) =>
    n !== undefined && Number.isFinite(n) && n >= min && n <= max;
  if (parts.length > 3 || !inRange(i, -70, -5) || !inRange(tp, -9, 0) || !inRange(lra, 1, 50)) {
    throw new Error(
      `expected "I" or "I,TP,LRA" with I in -70..-5 LUFS, TP in -9..0 dBTP, LRA in 1..50 LU, got ${JSON.stringify(value)}`,
    );
  }
  return { integratedLufs: i!, truePeakDbtp: tp, loudnessRangeLu: lra };
}

/** The HLS ladder: renditions, segments, codecs and the compression presets. */
const encodingSettings = {
  videoHeights: {
    type: 'parsed',
    default: '240,360,480,720,1080,1440,2160',
    parse: parseVideoHeights,
    doc: "Rung heights of the HLS ladder (the shorter side, so a portrait video's 720 rung is 720 wide); a source gets the rungs up to its own size, never an upscaled one.",
  },
  videoSourceRungPercent: {
    type: 'int',
    default: 10,
    min: 0,
    max: 1000,
    doc: 'A source whose size falls between two rungs gets its own size as the top rung when it is more than this many percent larger than the rung below it (a 1200-line source: 1080 and 1200).',
  },
  videoCodecs: {
    type: 'parsed',
    default: 'h264',
    parse: parseVideoCodecs,
    doc: 'Video codecs of the ladder, each a full set of renditions in one master playlist: h264, av1 (SVT-AV1), vp9.',
  },
  videoSegmentSeconds: {
    type: 'int',
    default: 4,
    min: 1,
    max: 30,
    doc: 'HLS segment length, rounded to whole frames (4.004 s at 29.97 fps); each segment of each rendition starts with a keyframe at the same instant.',
  },
  videoSegmentFormat: {
    type: 'enum',
    default: 'fmp4',
    values: ['fmp4', 'mpegts'],
    doc: 'HLS segment container: fmp4 (CMAF, any codec) or mpegts (H.264 only, for old players).',
  },
  videoMaxFrameRate: {
    type: 'int',
    default: 60,
    min: 1,
    max: 240,
    doc: 'Highest frame rate of a rendition; faster sources are divided by the smallest whole number that brings them under it (120 -> 60).',
  },
  videoHighFrameRateHeight: {
    type: 'int',
    default: 720,
    min: 0,
    max: 8640,
    doc: 'Rungs shorter than this (on the shorter side) run at most 30 fps: a 60 fps source keeps 60 from 720p up, its lower rungs get every other frame.',
  },
  videoPreset: {
    type: 'enum',
    default: 'balanced',
    values: VIDEO_PRESETS,
    doc: 'Compression preset of a video job that names none and whose tenant tier has none (fast, balanced, small, archive).',
  },
  videoTierPresets: {
    type: 'parsed',
    default: '',
    parse: parseTierPresets,
    doc: 'Compression preset by tenant tier, e.g. "free=fast,premium=archive"; tiers not named use CONVEYOR_VIDEO_PRESET.',
  },
  videoStartBitrate: {
    type: 'int',
    default: 1_500_000,
    min: 0,
    max: 1_000_000_000,
    doc: 'The master playlist lists first the H.264 rendition with the highest peak bit rate at most this (bits/s), where players without a bandwidth estimate start; 0 lists all by rising bit rate.',
  },
  videoSpriteMaxTiles: {
    type: 'int',
    default: 100,
    min: 1,
    max: 10_000,
    doc: 'Most thumbnails in the scrubbing sprite sheet; long videos get a longer interval instead of more tiles.',
  },
  videoSpriteMinIntervalSeconds: {
    type: 'int',
    default: 2,
    min: 1,
    max: 3600,
    doc: 'Shortest time between two sprite thumbnails.',
  },
  videoSpriteTileSize: {
    type: 'int',
    default: 160,
    min: 16,
    max: 1024,
    doc: "Longer side of a sprite thumbnail in pixels (rounded down to even; the other side follows the video's aspect ratio).",
  },
  videoSpriteColumns: {
    type: 'int',
    default: 10,
    min: 1,
    max: 100,
    doc: 'Thumbnails per row of the sprite sheet.',
  },
  videoFallbackHeight: {
    type: 'int',
    default: 480,
    min: 1,
    max: 8640,
    doc: 'The progressive MP4 fallback (fallback.mp4, faststart) is the H.264 rendition at or just under this height (the shorter side), else the smallest; it is remuxed from that rendition, not encoded again.',
  },
  videoQualityAnalysis: {
    type: 'bool',
    default: true,
    doc: 'Measure SSIM and PSNR (and VMAF where ffmpeg has libvmaf) of each rendition against the source; each measurement decodes the source and the rendition once more.',
  },
  videoLoudnorm: {
    type: 'parsed',
    default: '',
    parse: parseLoudnormTarget,
    doc: 'Two-pass EBU R128 loudness normalisation of the audio of every rendition: a target "I" in LUFS (e.g. -16), optionally "I,TP,LRA" (true peak dBTP, loudness range LU; default -1.5 and 11); empty leaves the loudness as it is.',
  },
  videoJobTimeoutSeconds: {
    type: 'int',
    default: 6 * 3600,
    min: 60,
    max: 7 * 24 * 3600,
    doc: "Longest one attempt of a video job (probe, checks and the whole ladder) may run; a killed attempt's finished renditions are kept and the next attempt starts after them.",
  },
  videoWorkDir: {
    type: 'optional',
    doc: "Folder for a video job's working files (the source copy and the encodes; an ingest.site job's yt-dlp download), removed when the attempt ends; default the system's temporary folder.",
  },
} as const satisfies Record<string, Setting>;

/** Hardware encoders: detection, proof by a trial encode, and what may be used. */
const accelerationSettings = {
  videoHwaccel: {
    type: 'enum',
    default: 'auto',
    values: ['auto', 'off', 'nvenc', 'qsv', 'vaapi', 'videotoolbox'],
    doc: 'Hardware encoders: `auto` uses the best one a trial encode proves at worker start (nvenc, qsv, vaapi, videotoolbox, then the CPU); `off` encodes on the CPU only and tries no hardware; a family name ranks that family first and fails the worker start when it proves none of its encoders.',
  },
  videoDetectEncodersAtStart: {
    type: 'bool',
    default: true,
    doc: 'A process that runs video jobs proves its encoders when its worker starts, so that `/api/v1/health` and the metrics show them before the first video job; in the background under `auto` and `off`, before the worker starts under a forced family (which then fails the start). false leaves detection to the first video job.',
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

/** Chunked encoding: long sources are split into chunk jobs any worker of any process runs. */
const chunkSettings = {
  videoChunkMinSeconds: {
    type: 'int',
    default: 120,
    min: 0,
    max: 86_400,
    doc: 'Sources longer than this many seconds are encoded in chunks (`video.chunk` jobs, shared by every worker of every process) and joined without re-encoding; 0 encodes every source whole. Chunks use the CPU encoders: hardware encoders differ between machines, and a rendition joined from chunks must be one bitstream.',
  },
  videoChunkSeconds: {
    type: 'int',
    default: 30,
    min: 1,
    max: 3600,
    doc: 'Length of a chunk, rounded up to whole segments (chunk boundaries fall on the segment grid, so the joined rendition has the keyframes and segments of a whole encode).',
  },
  videoChunkMaxCount: {
    type: 'int',
    default: 100,
    min: 2,
    max: 1000,
    doc: "Most chunks one source is split into; longer chunks are used instead. Chunk jobs count toward the tenant's job quotas.",
  },
  videoChunkWaitSeconds: {
    type: 'int',
    default: 30,
    min: 1,
    max: 3600,
    doc: 'Longest a ladder job waits, off its worker slot, between two looks at its chunks; the last chunk to finish wakes it at once, so this only bounds a lost wake-up.',
  },
} as const satisfies Record<string, Setting>;

export const videoSettings = joinSections(
  sourceSettings,
  probeSettings,
  encodingSettings,
  accelerationSettings,
  storageSettings,
  chunkSettings,
);
