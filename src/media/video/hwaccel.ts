/**
 * Hardware encoders, proven before they are trusted
 * =================================================
 *
 * A worker asks its ffmpeg what it was built with (`-encoders`, `-hwaccels`) and which DRM render nodes
 * the machine has, turns that into candidates (one encoder of one family for one codec), and runs a
 * tiny trial encode with each. Only an encoder whose trial exits 0 is proven; the others are reported
 * with the tail of ffmpeg's stderr. ffmpeg's documentation says why a listing is not enough:
 *
 *   "-hwaccels: List all hardware acceleration components enabled in this build of ffmpeg. Actual
 *   runtime availability depends on the hardware and its suitable driver being installed."
 *
 * Debian's ffmpeg lists h264_nvenc, h264_qsv and h264_vaapi on a machine with no GPU at all; opening
 * h264_nvenc there fails with "Cannot load libcuda.so.1".
 *
 * Ranking, best first: a forced family (`videoHwaccel`), then nvenc > qsv > vaapi > videotoolbox > cpu.
 * NVENC is a discrete GPU's own encoder block with its own memory, so it takes the most work off the
 * CPU and the shared memory bus; QSV drives Intel's encoder with more of its rate control (lookahead,
 * ICQ) than the generic VAAPI path to the same silicon; VAAPI is the generic Linux path (AMD, Intel);
 * VideoToolbox exists only on macOS, where none of the others do, so its place only keeps the order
 * total. The CPU comes last: it compresses best per bit but is what hardware is there to spare, and it
 * is always the last step of the fallback chain (fallback.ts) anyway.
 *
 * Detection runs once per process (memo) and, with a cache file, once per change of the ffmpeg binary,
 * the render nodes or the settings (hwaccel-cache.ts).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheKey, readCache, writeCache } from './hwaccel-cache.ts';
import { runTool, type ToolEnd } from './tool.ts';

export const HARDWARE_FAMILIES = ['nvenc', 'qsv', 'vaapi', 'videotoolbox'] as const;
export type HardwareFamily = (typeof HARDWARE_FAMILIES)[number];
/**
 * An acceleration family: the hardware (or the CPU) an encoder runs on, the unit detection proves and
 * ranks. The presets group the same encoders by rate control instead (presets.ts, PresetFamily).
 */
export type AccelFamily = HardwareFamily | 'cpu';
/** `videoHwaccel`: `auto`, `off` (CPU only) or one family forced first. */
export type HwaccelMode = 'auto' | 'off' | HardwareFamily;

export const VIDEO_CODECS = ['h264', 'hevc', 'av1', 'vp9'] as const;
export type VideoCodec = (typeof VIDEO_CODECS)[number];

/** Best first (see the file comment for why). */
const RANKING: readonly AccelFamily[] = ['nvenc', 'qsv', 'vaapi', 'videotoolbox', 'cpu'];

interface AccelFamilyInfo {
  /** The `-hwaccel` method that decodes into this family's frames, as `-hwaccels` lists it. */
  hwaccel: string | null;
  /** The one platform the family exists on, when it is tied to one. */
  platform?: NodeJS.Platform;
  encoders: Partial<Record<VideoCodec, string>>;
}

export const ACCEL_FAMILIES: Readonly<Record<AccelFamily, AccelFamilyInfo>> = {
  nvenc: { hwaccel: 'cuda', encoders: { h264: 'h264_nvenc', hevc: 'hevc_nvenc', av1: 'av1_nvenc' } },
  qsv: {
    hwaccel: 'qsv',
    encoders: { h264: 'h264_qsv', hevc: 'hevc_qsv', av1: 'av1_qsv', vp9: 'vp9_qsv' },
  },
  vaapi: {
    hwaccel: 'vaapi',
    encoders: { h264: 'h264_vaapi', hevc: 'hevc_vaapi', av1: 'av1_vaapi', vp9: 'vp9_vaapi' },
  },
  videotoolbox: {
    hwaccel: 'videotoolbox',
    platform: 'darwin',
    encoders: { h264: 'h264_videotoolbox', hevc: 'hevc_videotoolbox' },
  },
  cpu: { hwaccel: null, encoders: { h264: 'libx264', hevc: 'libx265', av1: 'libsvtav1', vp9: 'libvpx-vp9' } },
};

export interface EncoderCandidate {
  encoder: string;
  family: AccelFamily;
  codec: VideoCodec;
}

export interface FailedCandidate extends EncoderCandidate {
  /** Why it is not trusted: the tail of the trial's stderr, a timeout, or a missing render node. */
  reason: string;
}

export interface EncoderReport {
  mode: HwaccelMode;
  ffmpegPath: string;
  detectedAt: string;
  /** `trials` when this process ran them, `cache` when the cache file still matched. */
  source: 'trials' | 'cache';
  /** What `-hwaccels` lists: the decoders a hardware-decode attempt may ask for. */
  hwaccels: string[];
  renderNodes: string[];
  /** The render node VAAPI uses, or null when there is none. */
  vaapiDevice: string | null;
  /** Set when ffmpeg could not list its encoders (missing, not executable, too slow). */
  listingError: string | null;
  /** Every candidate whose trial encode succeeded, best first. */
  proven: EncoderCandidate[];
  failed: FailedCandidate[];
  /** The encoder a job uses for each codec: the first proven one. */
  best: Partial<Record<VideoCodec, EncoderCandidate>>;
}

export interface DetectOptions {
  ffmpegPath: string;
  mode?: HwaccelMode;
  /** Where DRM render nodes (`renderD*`) live: /dev/dri. */
  renderNodesDir?: string;
  /** The VAAPI render node; default the first one found. */
  vaapiDevice?: string;
  platform?: NodeJS.Platform;
  /** Bound of each listing and each trial encode. */
  timeoutMs?: number;
  /** Keeps the detection across restarts (hwaccel-cache.ts); none: every process runs the trials. */
  cacheFile?: string;
  /** The codecs to prove encoders for (those the ladder may use); default all. */
  codecs?: readonly VideoCodec[];
}

/** `videoHwaccel` names a family that proved none of its encoders: the worker must not start. */
export class ForcedEncoderError extends Error {
  override readonly name = 'ForcedEncoderError';
  readonly report: EncoderReport;
  constructor(report: EncoderReport) {
    const family = report.mode;
    const reasons = report.failed.filter((f) => f.family === family).map((f) => `${f.encoder}: ${f.reason}`);
    super(
      `CONVEYOR_VIDEO_HWACCEL=${family}, but no ${family} encoder works with ${report.ffmpegPath}` +
        (reasons.length > 0 ? ` (${reasons.join('; ')})` : ' (it lists none)') +
        '; use auto, off or a family the machine has',
    );
    this.report = report;
  }
}

const DEFAULT_TIMEOUT_MS = 15_000;
/**
 * Most bytes kept of one ffmpeg run's stdout (of stderr, runTool keeps the end). `-encoders` prints about
 * 30 KiB. A run past it is killed and counts as failed: not a limit an operator tunes, only a guard
 * against a wrapper that floods.
 */
const OUTPUT_MAX_BYTES = 1024 * 1024;
/** Longest reason kept from a trial's stderr. */
const REASON_MAX_CHARS = 500;

/** The trial source: tiny, and big enough for every encoder's minimum size (NVENC's is 145x49). */
export const TRIAL_SOURCE = 'testsrc2=size=256x144:rate=25';

type RunResult = { ok: true; stdout: string } | { ok: false; reason: string };

/** Runs ffmpeg through runTool, bounded in time and output; a failure answers its reason. */
async function runFfmpeg(ffmpegPath: string, args: readonly string[], timeoutMs: number): Promise<RunResult> {
  let end: ToolEnd;
  try {
    end = await runTool(ffmpegPath, args, {
      stopping: { how: 'kill' },
      timeLimitMs: timeoutMs,
      collectStdout: OUTPUT_MAX_BYTES,
    });
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    return { ok: false, reason: `${code}: ${message}` };
  }
  if (end.stopped?.by === 'output')
    return { ok: false, reason: `more than ${OUTPUT_MAX_BYTES} bytes of output` };
  if (end.stopped !== undefined) return { ok: false, reason: `no answer within ${timeoutMs} ms` };
  if (end.exitCode === 0 && end.signal === null) return { ok: true, stdout: end.stdout };
  return { ok: false, reason: stderrTail(end.stderrTail) || `exit code ${end.exitCode ?? end.signal}` };
}

/**
 * The last lines of ffmpeg's stderr, on one line, without the per-run context addresses
 * (`[h264_nvenc @ 0x55ae50d2a000]` becomes `[h264_nvenc]`) so the same failure reads the same each time.
 */
export function stderrTail(stderr: string, maxChars = REASON_MAX_CHARS): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((line) => line.replace(/ @ 0x[0-9a-f]+\]/gi, ']').trim())
    .filter((line) => line.length > 0);
  const text = lines.slice(-3).join(' | ');
  return text.length > maxChars ? `…${text.slice(-(maxChars - 1))}` : text;
}

/** The video encoders in `ffmpeg -encoders` output: the name after a flags column starting with V. */
export function parseEncoderList(stdout: string): Set<string> {
  const names = new Set<string>();
  const body = stdout.split(/^ -+$/m).at(-1) ?? '';
  for (const match of body.matchAll(/^ V[A-Z.]{5} (\S+)/gm)) names.add(match[1] as string);
  return names;
}

/** The methods in `ffmpeg -hwaccels` output (the lines after its heading). */
export function parseHwaccelList(stdout: string): string[] {
  return stdout
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => /^[a-z0-9_]+$/.test(line));
}

/** DRM render nodes (`renderD128`, …) in numeric order; none when the folder does not exist. */
export async function listRenderNodes(dir = '/dev/dri'): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .filter((name) => /^renderD\d+$/.test(name))
    .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)))
    .map((name) => join(dir, name));
}

/** The candidates a listing offers, best first: every listed encoder of a family the mode allows. */
export function candidatesFor(
  listed: ReadonlySet<string>,
  mode: HwaccelMode,
  platform: NodeJS.Platform,
  codecs: readonly VideoCodec[] = VIDEO_CODECS,
): EncoderCandidate[] {
  const candidates: EncoderCandidate[] = [];
  for (const family of rankFamilies(mode)) {
    const info = ACCEL_FAMILIES[family];
    if (info.platform !== undefined && info.platform !== platform) continue;
    for (const codec of VIDEO_CODECS.filter((c) => codecs.includes(c))) {
      const encoder = info.encoders[codec];
      if (encoder !== undefined && listed.has(encoder)) candidates.push({ encoder, family, codec });
    }
  }
  return candidates;
}

/** Families in the order a mode ranks them: `off` is the CPU alone, a forced family goes first. */
export function rankFamilies(mode: HwaccelMode): AccelFamily[] {
  if (mode === 'off') return ['cpu'];
  if (mode === 'auto') return [...RANKING];
  return [mode, ...RANKING.filter((family) => family !== mode)];
}

/**
 * Options that open a family's device before the input, shared by the trial and the real encodes.
 * ffmpeg 5.1 (`ffmpeg -h full`): "-vaapi_device device  set VAAPI hardware device (DRM path or X11
 * display name)", which also becomes the device `hwupload` uploads to. NVENC, QSV and VideoToolbox open
 * their own session when the encoder starts.
 */
export function deviceArgs(family: AccelFamily, vaapiDevice: string | null): string[] {
  return family === 'vaapi' && vaapiDevice !== null ? ['-vaapi_device', vaapiDevice] : [];
}

/**
 * Filters that hand software frames to a family's encoder. ffmpeg-codecs, "VAAPI encoders": "These
 * encoders only accept input in VAAPI hardware surfaces. If you have input in software frames, use the
 * hwupload filter to upload them to the GPU." NV12 is the surface format every VAAPI driver encodes
 * 8-bit video from. The other families accept frames in system memory.
 */
export function uploadFilters(family: AccelFamily): string[] {
  return family === 'vaapi' ? ['format=nv12', 'hwupload'] : [];
}

/** The trial encode: 10 frames of a lavfi test pattern through the encoder into the null muxer. */
export function trialArgs(candidate: EncoderCandidate, vaapiDevice: string | null): string[] {
  const filters = uploadFilters(candidate.family);
  return [
    '-hide_banner',
    '-nostdin',
    '-loglevel',
    'error',
    ...deviceArgs(candidate.family, vaapiDevice),
    '-f',
    'lavfi',
    '-i',
    TRIAL_SOURCE,
    '-frames:v',
    '10',
    ...(filters.length > 0 ? ['-vf', filters.join(',')] : []),
    '-c:v',
    candidate.encoder,
    '-f',
    'null',
    '-',
  ];
}

/** The first proven encoder of each codec (`proven` is best first). */
export function bestPerCodec(proven: readonly EncoderCandidate[]): EncoderReport['best'] {
  const best: EncoderReport['best'] = {};
  for (const candidate of proven) best[candidate.codec] ??= candidate;
  return best;
}

/** Lists, then proves every candidate with a trial encode, one at a time (start-up shares the CPU). */
async function detect(options: DetectOptions): Promise<EncoderReport> {
  const mode = options.mode ?? 'auto';
  const platform = options.platform ?? process.platform;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const renderNodes = await listRenderNodes(options.renderNodesDir);
  const vaapiDevice = options.vaapiDevice ?? renderNodes[0] ?? null;
  const codecs = VIDEO_CODECS.filter((c) => (options.codecs ?? VIDEO_CODECS).includes(c));
  const key = options.cacheFile
    ? await cacheKey(options.ffmpegPath, { renderNodes, mode, vaapiDevice, platform, codecs })
    : null;
  if (key && options.cacheFile) {
    const cached = await readCache(options.cacheFile, key);
    if (cached) return { ...cached, ffmpegPath: options.ffmpegPath, source: 'cache' };
  }

  const [encoders, hwaccels] = await Promise.all([
    runFfmpeg(options.ffmpegPath, ['-hide_banner', '-nostdin', '-encoders'], timeoutMs),
    runFfmpeg(options.ffmpegPath, ['-hide_banner', '-nostdin', '-hwaccels'], timeoutMs),
  ]);
  const report: EncoderReport = {
    mode,
    ffmpegPath: options.ffmpegPath,
    detectedAt: new Date().toISOString(),
    source: 'trials',
    hwaccels: hwaccels.ok ? parseHwaccelList(hwaccels.stdout) : [],
    renderNodes,
    vaapiDevice,
    listingError: encoders.ok ? null : `ffmpeg -encoders failed: ${encoders.reason}`,
    proven: [],
    failed: [],
    best: {},
  };
  if (!encoders.ok) return report;

  const forced = mode === 'auto' || mode === 'off' ? null : mode;
  const forcedFailed = () => forced !== null && !report.proven.some((c) => c.family === forced);
  for (const candidate of candidatesFor(parseEncoderList(encoders.stdout), mode, platform, codecs)) {
    // The forced family comes first; once it has proved nothing, the start fails: trying on is waste.
    if (candidate.family !== forced && forcedFailed()) break;
    if (candidate.family === 'vaapi' && vaapiDevice === null) {
      const dir = options.renderNodesDir ?? '/dev/dri';
      report.failed.push({ ...candidate, reason: `no DRM render node (renderD*) in ${dir}` });
      continue;
    }
    const trial = await runFfmpeg(options.ffmpegPath, trialArgs(candidate, vaapiDevice), timeoutMs);
    if (trial.ok) report.proven.push(candidate);
    else report.failed.push({ ...candidate, reason: trial.reason });
  }
  report.best = bestPerCodec(report.proven);
  // Kept only when complete: the listing may heal (a binary being replaced), and a forced family that
  // failed is retried at the next start, after the operator has fixed the driver or the setting.
  if (key && options.cacheFile && !forcedFailed()) await writeCache(options.cacheFile, key, report);
  return report;
}

const memo = new Map<string, Promise<EncoderReport>>();

/**
 * The encoders this process may use: detected once per set of options and process (later calls answer
 * the same report), from the cache file when it still matches. Throws ForcedEncoderError when
 * `mode` forces a family that proved none of its encoders: a worker told to use a GPU it cannot open
 * is misconfigured, and starting it would hide that behind CPU encodes.
 */
export async function detectEncoders(options: DetectOptions): Promise<EncoderReport> {
  const key = JSON.stringify([
    options.ffmpegPath,
    options.mode ?? 'auto',
    options.renderNodesDir ?? null,
    options.vaapiDevice ?? null,
    options.platform ?? null,
    options.cacheFile ?? null,
    options.codecs ?? null,
  ]);
  let pending = memo.get(key);
  if (!pending) {
    pending = detect(options);
    memo.set(key, pending);
    // An unexpected error (not a failed trial, which is a result) is not remembered.
    pending.catch(() => memo.delete(key));
  }
  const report = await pending;
  const mode = report.mode;
  if (mode !== 'auto' && mode !== 'off' && !report.proven.some((c) => c.family === mode)) {
    throw new ForcedEncoderError(report);
  }
  return report;
}

/** Forgets this process's detections (tests; a new detection then reads the cache file again). */
export function forgetEncoderDetection(): void {
  memo.clear();
}

/**
 * The settings behind detectEncoders' options; `ffmpegPath` is the probe settings' binary, `codecs`
 * those the encoding settings allow.
 */
export function detectOptionsFrom(
  config: {
    dataDir: string;
    videoHwaccel: HwaccelMode;
    videoVaapiDevice: string | undefined;
    videoHwaccelTrialTimeoutMs: number;
    videoHwaccelCacheFile: string | undefined;
  },
  ffmpegPath: string,
  codecs?: readonly VideoCodec[],
): DetectOptions {
  return {
    ffmpegPath,
    ...(codecs ? { codecs } : {}),
    mode: config.videoHwaccel,
    vaapiDevice: config.videoVaapiDevice,
    timeoutMs: config.videoHwaccelTrialTimeoutMs,
    cacheFile: config.videoHwaccelCacheFile ?? join(config.dataDir, 'video-encoders.json'),
  };
}
