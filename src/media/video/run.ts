/**
 * Running ffmpeg and ffprobe: their contracts over runTool (tool.ts), progress from ffmpeg's
 * `-progress pipe:1` stream, and what each way a run ends means.
 *
 * Only an exit status of 0 without a signal is success. Anything else rejects, and so does a run that
 * was stopped, even if ffmpeg then exits 0 as it does after `q`: a stopped run's outputs are incomplete
 * whatever they look like. ffmpeg ended by SIGTERM or SIGINT exits 255 after closing its outputs
 * properly, so an HLS playlist cut off halfway still ends with #EXT-X-ENDLIST and looks finished; only
 * the exit status tells. Callers write to a temporary place and keep the outputs only after success.
 *
 * Stopping (an AbortSignal, the time limit) is graceful for ffmpeg: `q` on its stdin, then SIGKILL
 * after the grace period (tool.ts, `quit-key`). ffprobe reads no keys and is killed at once. The promise
 * settles only once the process has exited, so when it rejects the process is gone.
 */
import { type ProcessEnd, VideoError } from './errors.ts';
import { runTool, type ToolEnd, type ToolSpec } from './tool.ts';

export { STDERR_TAIL_BYTES } from './tool.ts';

/** ffprobe's JSON for one file is a few KiB; more than this is not a file worth probing. */
export const PROBE_OUTPUT_MAX_BYTES = 4 * 1024 * 1024;
/** The default grace between `q` and SIGKILL (the setting `videoCancelGraceMs`). */
export const DEFAULT_CANCEL_GRACE_MS = 1500;
/** A progress line is `key=value` of a few dozen bytes; a longer partial line is dropped. */
const MAX_PROGRESS_LINE = 4096;

/**
 * One block of ffmpeg's progress report. ffmpeg(1), -progress: "Send program-friendly progress
 * information to url. Progress information is written periodically and at the end of the encoding
 * process. It is made of "key=value" lines. key consists of only alphanumeric characters. The last key
 * of a sequence of progress information is always "progress"." Fields ffmpeg reports as N/A are null.
 */
export interface FfmpegProgress {
  /** Frames output so far (of the first video output stream). */
  frame: number | null;
  /** Output frames per second. */
  fps: number | null;
  /** Position of the output, in microseconds; with the input's duration, the percentage done. */
  outTimeUs: number | null;
  /** Speed relative to real time: 2 is twice as fast as playback. */
  speed: number | null;
  /** Bytes written to the outputs so far. */
  totalSizeBytes: number | null;
  /** `end` on the last block, written when ffmpeg finishes (also after `q`). */
  progress: 'continue' | 'end';
}

interface CommonOptions {
  /** Stops the run: the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Stops the run after this long (0 or unset: no limit); it rejects with `video_timeout`. */
  timeLimitMs?: number;
  /** Called with the process id once it runs (metrics, tests). If it throws, the run stops with that error. */
  onSpawn?: (pid: number) => void;
  cwd?: string;
}

export interface FfmpegRunOptions extends CommonOptions {
  /** The binary: a path or a name found in PATH (the setting `ffmpegPath`). */
  ffmpegPath?: string;
  /** Between `q` and SIGKILL (the setting `videoCancelGraceMs`). */
  cancelGraceMs?: number;
  /** Each progress block as it arrives. If it throws, the run stops and rejects with that error. */
  onProgress?: (progress: FfmpegProgress) => void;
}

export interface FfmpegRunResult {
  /** The end of stderr: with `-loglevel error` normally empty; with `info`, e.g. a filter's summary. */
  stderrTail: string;
  /** The last progress block, `progress: 'end'` when ffmpeg reported one. */
  lastProgress: FfmpegProgress | null;
}

export interface FfprobeRunOptions extends CommonOptions {
  /** The binary: a path or a name found in PATH (the setting `ffprobePath`). */
  ffprobePath?: string;
  /** More stdout than this stops ffprobe; the default is PROBE_OUTPUT_MAX_BYTES. */
  maxOutputBytes?: number;
}

/** An encode's pace for the job's progress message: `87 fps, 2.9x`, either part when ffmpeg reported it. */
export function progressMessage(progress: Pick<FfmpegProgress, 'fps' | 'speed'>): string | undefined {
  const parts = [
    // ffmpeg says 0 until it has timed a few frames: no figure rather than a wrong one.
    ...(progress.fps === null || progress.fps <= 0 ? [] : [`${Math.round(progress.fps)} fps`]),
    ...(progress.speed === null ? [] : [`${progress.speed}x`]),
  ];
  return parts.length > 0 ? parts.join(', ') : undefined;
}

/**
 * Runs ffmpeg with `args` (from ffmpegArgs, which adds `-progress pipe:1`); resolves on exit status 0.
 * Rejects with a VideoError for a missing binary, a failed or killed process or the time limit, and
 * with the signal's reason when aborted.
 */
export async function runFfmpeg(
  args: readonly string[],
  options: FfmpegRunOptions = {},
): Promise<FfmpegRunResult> {
  let lastProgress: FfmpegProgress | null = null;
  const parser = new ProgressParser((progress) => {
    lastProgress = progress;
    options.onProgress?.(progress);
  });
  const tool = options.ffmpegPath ?? 'ffmpeg';
  const end = await start(tool, args, options, {
    stopping: { how: 'quit-key', graceMs: options.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS },
    onLine: (line) => parser.line(line),
  });
  const stderrTail = verdict(tool, end);
  return { stderrTail, lastProgress };
}

/**
 * Runs ffprobe with `args`, which must ask for JSON (`-print_format json`), and answers the parsed
 * output. Output that is too large or not JSON rejects with `video_process_failed`.
 */
export async function runFfprobe(args: readonly string[], options: FfprobeRunOptions = {}): Promise<unknown> {
  const tool = options.ffprobePath ?? 'ffprobe';
  const max = options.maxOutputBytes ?? PROBE_OUTPUT_MAX_BYTES;
  const end = await start(tool, args, options, { stopping: { how: 'kill' }, collectStdout: max });
  if (end.stopped?.by === 'output') {
    throw new VideoError('video_process_failed', `${tool} wrote more than ${max} bytes`);
  }
  verdict(tool, end);
  try {
    return JSON.parse(end.stdout) as unknown;
  } catch (error) {
    throw new VideoError('video_process_failed', `${tool} did not write JSON`, { cause: error });
  }
}

/** runTool with the options both share, a failed start as a VideoError. */
async function start(
  tool: string,
  args: readonly string[],
  options: CommonOptions,
  spec: Pick<ToolSpec, 'stopping' | 'onLine' | 'collectStdout'>,
): Promise<ToolEnd> {
  try {
    return await runTool(tool, args, {
      ...spec,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.timeLimitMs !== undefined ? { timeLimitMs: options.timeLimitMs } : {}),
      ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    });
  } catch (error) {
    throw spawnFailure(tool, error as NodeJS.ErrnoException);
  }
}

/** The end of stderr when the run succeeded; otherwise throws what its end stands for. */
function verdict(tool: string, end: ToolEnd): string {
  const { stopped, exitCode, signal, stderrTail } = end;
  if (stopped === undefined) {
    if (exitCode === 0 && signal === null) return stderrTail;
    throw exitFailure({ tool, exitCode, signal, stderrTail });
  }
  switch (stopped.by) {
    case 'signal':
      throw stopped.reason;
    case 'handler':
      throw stopped.error;
    case 'time-limit':
      throw new VideoError('video_timeout', `${tool} ran longer than ${stopped.limitMs} ms and was stopped`, {
        details: { limitMs: stopped.limitMs },
      });
    case 'output':
      throw new VideoError('video_process_failed', `${tool} wrote more than ${stopped.maxBytes} bytes`);
  }
}

function spawnFailure(tool: string, error: NodeJS.ErrnoException): VideoError {
  if (error.code === 'ENOENT' || error.code === 'EACCES' || error.code === 'ENOTDIR') {
    return new VideoError(
      'video_tool_missing',
      `${tool} cannot be run (${error.code}): install it or set its path (CONVEYOR_FFMPEG_PATH, CONVEYOR_FFPROBE_PATH)`,
      { details: { tool, errno: error.code }, cause: error },
    );
  }
  // EAGAIN, ENOMEM: the machine, not the input.
  return new VideoError('video_process_failed', `${tool} could not be started: ${error.message}`, {
    retryable: true,
    details: { tool, errno: error.code },
    cause: error,
  });
}

// The messages of a machine out of something (ffmpeg prints strerror()): waiting may help, so retry.
const EXHAUSTED =
  /No space left on device|Disk quota exceeded|Cannot allocate memory|Out of memory|Too many open files|Resource temporarily unavailable/i;

function exitFailure(end: ProcessEnd): VideoError {
  const said = lastLines(end.stderrTail);
  if (end.signal !== null) {
    return new VideoError('video_process_killed', `${end.tool} was killed by ${end.signal}${said}`, {
      process: end,
    });
  }
  return new VideoError('video_process_failed', `${end.tool} exited with status ${end.exitCode}${said}`, {
    retryable: EXHAUSTED.test(end.stderrTail),
    process: end,
  });
}

/** The last lines of stderr for a message: `: a | b`, at most 400 characters. */
function lastLines(tail: string): string {
  const lines = tail
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (lines.length === 0) return '';
  const text = lines.slice(-3).join(' | ');
  return `: ${text.length > 400 ? `…${text.slice(-400)}` : text}`;
}
/**
 * Turns the `-progress` stream into blocks: lines of `key=value` accumulate until the `progress` line
 * that ends each block. Written for input that arrives in arbitrary pieces.
 */
export class ProgressParser {
  #partial = '';
  #block = new Map<string, string>();
  readonly #emit: (progress: FfmpegProgress) => void;

  constructor(emit: (progress: FfmpegProgress) => void) {
    this.#emit = emit;
  }

  push(text: string): void {
    const lines = (this.#partial + text).split('\n');
    this.#partial = lines.pop() ?? '';
    if (this.#partial.length > MAX_PROGRESS_LINE) this.#partial = '';
    for (const line of lines) this.line(line);
  }

  /** One whole line of the stream, without its newline. */
  line(text: string): void {
    const line = text.trim();
    const eq = line.indexOf('=');
    if (eq <= 0) return;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key !== 'progress') {
      // One q= line per output stream; a bound keeps a strange stream from growing the map.
      if (this.#block.size < 256 || this.#block.has(key)) this.#block.set(key, value);
      return;
    }
    const fields = Object.fromEntries(this.#block);
    this.#block.clear();
    this.#emit(progressOf(fields, value === 'end' ? 'end' : 'continue'));
  }
}

/** One block's fields as typed progress; N/A, missing or malformed values are null. */
export function progressOf(
  fields: Readonly<Record<string, string>>,
  progress: 'continue' | 'end',
): FfmpegProgress {
  // ffmpeg 5.1 writes out_time_ms in microseconds as well (a long-standing misnomer), and out_time as
  // HH:MM:SS.micro; out_time_us is the one to trust, the others stand in when it is N/A.
  const outTimeUs =
    numberOf(fields['out_time_us']) ?? numberOf(fields['out_time_ms']) ?? clockUs(fields['out_time']);
  return {
    frame: numberOf(fields['frame']),
    fps: numberOf(fields['fps']),
    // Before the first frame is out ffmpeg can report a small negative time.
    outTimeUs: outTimeUs === null ? null : Math.max(0, Math.round(outTimeUs)),
    speed: numberOf(fields['speed']?.replace(/x$/, '')),
    totalSizeBytes: numberOf(fields['total_size']),
    progress,
  };
}

function numberOf(value: string | undefined): number | null {
  if (value === undefined || value.trim() === '') return null;
  const n = Number(value.trim());
  return Number.isFinite(n) ? n : null;
}

/** `-00:00:01.500000` or `01:02:03.5` -> microseconds. */
function clockUs(value: string | undefined): number | null {
  const m = value?.trim().match(/^(-?)(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$/);
  if (!m) return null;
  const us = ((Number(m[2]) * 60 + Number(m[3])) * 60 + Number(m[4])) * 1e6;
  return m[1] === '-' ? -us : us;
}
