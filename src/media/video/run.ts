/**
 * Running ffmpeg and ffprobe: spawn with an argument array (no shell), progress from ffmpeg's
 * `-progress pipe:1` stream, a bounded tail of stderr for the error, cancel and time limits.
 *
 * Only an exit status of 0 without a signal is success. Anything else rejects, and so does a run that
 * was stopped, even if ffmpeg then exits 0 as it does after `q`: a stopped run's outputs are incomplete
 * whatever they look like. ffmpeg ended by SIGTERM or SIGINT exits 255 after closing its outputs
 * properly, so an HLS playlist cut off halfway still ends with #EXT-X-ENDLIST and looks finished; only
 * the exit status tells. Callers write to a temporary place and keep the outputs only after success.
 *
 * Stopping (an AbortSignal, the time limit) is graceful first: `q` on ffmpeg's stdin, the key its
 * interactive mode reads to quit, which makes it stop reading and finalise its outputs (ffmpeg(1):
 * "-stdin: Enable interaction on standard input. On by default unless standard input is used as an
 * input." So stdin stays a pipe and no `-nostdin` is passed, and no input may be `pipe:0`). If it has
 * not exited after the grace period, SIGKILL. The promise settles only once the process has exited and
 * its pipes have closed, so when it rejects the process is gone. ffprobe reads no keys and is killed at
 * once.
 */
import { spawn } from 'node:child_process';
import { type ProcessEnd, VideoError } from './errors.ts';

/** How much of a process's stderr is kept for the error: ffmpeg's last messages explain the failure. */
export const STDERR_TAIL_BYTES = 16 * 1024;
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
    ...(progress.fps === null ? [] : [`${Math.round(progress.fps)} fps`]),
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
  const { stderrTail } = await execute(options.ffmpegPath ?? 'ffmpeg', args, options, {
    graceMs: options.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS,
    onStdout: (text) => parser.push(text),
  });
  return { stderrTail, lastProgress };
}

/**
 * Runs ffprobe with `args`, which must ask for JSON (`-print_format json`), and answers the parsed
 * output. Output that is too large or not JSON rejects with `video_process_failed`.
 */
export async function runFfprobe(args: readonly string[], options: FfprobeRunOptions = {}): Promise<unknown> {
  const tool = options.ffprobePath ?? 'ffprobe';
  const max = options.maxOutputBytes ?? PROBE_OUTPUT_MAX_BYTES;
  let text = '';
  await execute(tool, args, options, {
    graceMs: null,
    onStdout: (chunk) => {
      text += chunk;
      // Counted in UTF-16 units, close enough to bytes for a bound.
      if (text.length > max)
        throw new VideoError('video_process_failed', `${tool} wrote more than ${max} bytes`);
    },
  });
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new VideoError('video_process_failed', `${tool} did not write JSON`, { cause: error });
  }
}

/** What differs between the tools: how to stop one, and what its stdout is. */
interface Handling {
  /** Grace between `q` and SIGKILL; null: the tool reads no keys, SIGKILL at once. */
  graceMs: number | null;
  /** Handles a piece of stdout; throwing stops the run with that error. */
  onStdout: (text: string) => void;
}

function execute(
  tool: string,
  args: readonly string[],
  options: CommonOptions,
  handling: Handling,
): Promise<{ stderrTail: string }> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, {
      stdio: [handling.graceMs === null ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      cwd: options.cwd,
      windowsHide: true,
    });
    const stderr = new TailBuffer(STDERR_TAIL_BYTES);
    // Boxed, so that an abort whose reason is undefined still counts as stopped.
    let stopped: { reason: unknown } | undefined;
    let spawnError: NodeJS.ErrnoException | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const stop = (reason: unknown) => {
      if (stopped !== undefined) return;
      stopped = { reason };
      if (handling.graceMs !== null && child.stdin?.writable) {
        child.stdin.write('q');
        killTimer = setTimeout(() => child.kill('SIGKILL'), handling.graceMs);
      } else {
        child.kill('SIGKILL');
      }
    };
    const onAbort = () => stop(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const limit = options.timeLimitMs;
    const limitTimer =
      limit !== undefined && limit > 0
        ? setTimeout(
            () =>
              stop(
                new VideoError('video_timeout', `${tool} ran longer than ${limit} ms and was stopped`, {
                  details: { limitMs: limit },
                }),
              ),
            limit,
          )
        : undefined;

    // ffmpeg may exit before reading the `q` (EPIPE), and an exit closes the pipe: nothing to report.
    child.stdin?.on('error', () => {});
    child.once('spawn', () => {
      try {
        if (child.pid !== undefined) options.onSpawn?.(child.pid);
      } catch (error) {
        stop(error);
      }
    });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (text: string) => {
      if (stopped !== undefined) return;
      try {
        handling.onStdout(text);
      } catch (error) {
        stop(error);
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    // A failed spawn emits 'error', then 'close'; so does a failed kill of a running process.
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (child.pid === undefined) spawnError = error;
    });
    child.once('close', (exitCode: number | null, exitSignal: NodeJS.Signals | null) => {
      clearTimeout(killTimer);
      clearTimeout(limitTimer);
      signal?.removeEventListener('abort', onAbort);
      const stderrTail = stderr.text();
      if (spawnError !== undefined) reject(spawnFailure(tool, spawnError));
      else if (stopped !== undefined) reject(stopped.reason);
      else if (exitCode === 0 && exitSignal === null) resolve({ stderrTail });
      else reject(exitFailure({ tool, exitCode, signal: exitSignal, stderrTail }));
    });
  });
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

/** Keeps the last `limit` bytes of a stream without holding more than twice that at any time. */
class TailBuffer {
  #chunks: Buffer[] = [];
  #size = 0;
  #cut = false;
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (this.#size > 2 * this.#limit) this.#trim();
  }

  text(): string {
    this.#trim();
    const text = Buffer.concat(this.#chunks).toString('utf8');
    if (!this.#cut) return text;
    // Begin at a line (and so at a character) boundary when the front was cut off.
    const newline = text.indexOf('\n');
    return newline === -1 ? text : text.slice(newline + 1);
  }

  #trim(): void {
    if (this.#size <= this.#limit) return;
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all.subarray(all.length - this.#limit)];
    this.#size = this.#limit;
    this.#cut = true;
  }
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
    for (const line of lines) this.#line(line.trim());
  }

  #line(line: string): void {
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
