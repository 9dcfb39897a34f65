/**
 * Running a tool (ffmpeg, ffprobe, yt-dlp): the one place that spawns them, bounds them in time and
 * output, and stops them. run.ts gives ffmpeg and ffprobe their contracts over it, ytdlp.ts yt-dlp its.
 *
 * A tool runs with an argument array (no shell). `runTool` settles only once the process has exited and
 * its pipes have closed, so when it answers the process is gone. It answers how the run ended and leaves
 * the verdict to the caller, because what an exit status means differs between the tools, and it says
 * whether Conveyor stopped the run: a stopped run's outputs are incomplete whatever its exit status.
 *
 * Stopping (an AbortSignal, the time limit, too much output, a handler that throws) is one of three
 * ways, chosen per tool:
 * - `quit-key` (ffmpeg): `q` on stdin, the key its interactive mode reads to quit, which makes it stop
 *   reading and finalise its outputs (ffmpeg(1): "-stdin: Enable interaction on standard input. On by
 *   default unless standard input is used as an input." So stdin stays a pipe and no `-nostdin` is
 *   passed, and no input may be `pipe:0`). If it has not exited after the grace period, SIGKILL.
 * - `group` (yt-dlp): the tool runs in a process group of its own; SIGTERM to the group, SIGKILL after
 *   the grace period, and SIGKILL to what the group still holds once the tool itself has exited, so an
 *   ffmpeg the tool started goes with it.
 * - `kill` (ffprobe, which reads no keys): SIGKILL at once.
 */
import { type ChildProcess, spawn } from 'node:child_process';

/** How much of a process's stderr is kept for the error: ffmpeg's last messages explain the failure. */
export const STDERR_TAIL_BYTES = 16 * 1024;
/** ffprobe's JSON for one file is a few KiB; more than this is not a file worth probing. */
/**
 * The longest stdout line handed to `onLine`, in characters; a longer one is cut to its end. ffmpeg's
 * progress lines are a few dozen characters and yt-dlp's progress template a few hundred: no tool line
 * worth reading is longer, and the bound keeps a tool that never writes a newline from growing the buffer.
 */
export const MAX_LINE_CHARS = 64 * 1024;

/** How a run is stopped; see the head of this file. */
export type Stopping =
  | { how: 'kill' }
  | { how: 'quit-key'; graceMs: number }
  | { how: 'group'; graceMs: number };

/** Why Conveyor stopped a run. */
export type StopCause =
  /** The caller's AbortSignal fired, with its reason. */
  | { by: 'signal'; reason: unknown }
  | { by: 'time-limit'; limitMs: number }
  /** Collected stdout passed `collectStdout`. */
  | { by: 'output'; maxBytes: number }
  /** `onLine` or `onSpawn` threw this. */
  | { by: 'handler'; error: unknown };

export interface ToolSpec {
  stopping: Stopping;
  /** Stops the run (`stopped.by === 'signal'`); already aborted, the tool is not started. */
  signal?: AbortSignal;
  /** Stops the run after this long (0 or unset: no limit). */
  timeLimitMs?: number;
  /** Called with the process id once it runs. If it throws, the run stops with that error. */
  onSpawn?: (pid: number) => void;
  /** Each stdout line, without its newline, as it arrives. If it throws, the run stops with that error. */
  onLine?: (line: string) => void;
  /** Keep stdout, up to this many bytes (more stops the run); otherwise it is read as lines. */
  collectStdout?: number;
  cwd?: string;
  /**
   * The whole environment of the tool; the process's own when unset. Either way without what the
   * launcher set for Node alone (`toolEnv`).
   */
  env?: NodeJS.ProcessEnv;
}

/**
 * `env` without the allocator variables bin/conveyor set for Node (it names them in
 * CONVEYOR_LAUNCHER_MALLOC): two malloc arenas and every block of 128 KiB or more mapped and unmapped
 * suit libvips inside Node, not ffmpeg's encoder threads and frame buffers. Values the operator set
 * before the launcher stay, as the launcher left them.
 */
export function toolEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const tuned = env['CONVEYOR_LAUNCHER_MALLOC'];
  if (tuned === undefined) return env;
  const out = { ...env };
  for (const name of tuned.split(' ')) if (name !== '') delete out[name];
  delete out['CONVEYOR_LAUNCHER_MALLOC'];
  return out;
}

/** How a run ended. */
export interface ToolEnd {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Set when Conveyor stopped the run: its outputs are incomplete whatever the exit status says. */
  stopped: StopCause | undefined;
  /** The last STDERR_TAIL_BYTES of stderr, beginning at a line. */
  stderrTail: string;
  /** The collected stdout (`collectStdout`); empty otherwise. */
  stdout: string;
}

/**
 * Runs `tool` with `args` and answers how it ended, once it has exited and its pipes have closed.
 * Rejects only with the error of a process that could not be started (ENOENT, EACCES, EAGAIN...).
 */
export function runTool(tool: string, args: readonly string[], spec: ToolSpec): Promise<ToolEnd> {
  const { signal, stopping } = spec;
  if (signal?.aborted) {
    const stopped: StopCause = { by: 'signal', reason: signal.reason };
    return Promise.resolve({ exitCode: null, signal: null, stopped, stderrTail: '', stdout: '' });
  }
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, {
      stdio: [stopping.how === 'quit-key' ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      cwd: spec.cwd,
      env: toolEnv(spec.env ?? process.env),
      // A group of its own, so that a stop reaches what the tool started as well.
      detached: stopping.how === 'group',
      windowsHide: true,
    });
    const stderr = new TailBuffer(STDERR_TAIL_BYTES);
    const stdout = spec.collectStdout === undefined ? new LineSplitter(spec.onLine) : undefined;
    const collected: Buffer[] = [];
    let collectedBytes = 0;
    let stopped: StopCause | undefined;
    let exited = false;
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;

    const stop = (cause: StopCause) => {
      if (stopped !== undefined) return;
      stopped = cause;
      if (exited) return;
      if (stopping.how === 'quit-key' && child.stdin?.writable) {
        child.stdin.write('q');
        killTimer = setTimeout(() => child.kill('SIGKILL'), stopping.graceMs);
      } else if (stopping.how === 'group') {
        killGroup(child, 'SIGTERM');
        killTimer = setTimeout(() => killGroup(child, 'SIGKILL'), stopping.graceMs);
      } else {
        child.kill('SIGKILL');
      }
    };
    const handle = (work: () => void) => {
      try {
        work();
      } catch (error) {
        stop({ by: 'handler', error });
      }
    };
    const onAbort = () => stop({ by: 'signal', reason: signal?.reason });
    signal?.addEventListener('abort', onAbort, { once: true });
    const limit = spec.timeLimitMs;
    const limitTimer =
      limit !== undefined && limit > 0
        ? setTimeout(() => stop({ by: 'time-limit', limitMs: limit }), limit)
        : undefined;
    const finish = () => {
      settled = true;
      clearTimeout(killTimer);
      clearTimeout(limitTimer);
      signal?.removeEventListener('abort', onAbort);
    };

    // ffmpeg may exit before reading the `q` (EPIPE), and an exit closes the pipe: nothing to report.
    child.stdin?.on('error', () => {});
    child.once('spawn', () => handle(() => spec.onSpawn?.(child.pid!)));
    child.stdout?.on('data', (chunk: Buffer) => {
      if (stdout !== undefined) {
        if (stopped === undefined) handle(() => stdout.push(chunk));
        return;
      }
      collectedBytes += chunk.length;
      if (collectedBytes > spec.collectStdout!) stop({ by: 'output', maxBytes: spec.collectStdout! });
      else collected.push(chunk);
    });
    child.stdout?.once('end', () => {
      if (stdout !== undefined && stopped === undefined) handle(() => stdout.end());
    });
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.once('exit', () => {
      exited = true;
      // What the group still holds after the tool itself is gone (a stopped run's ffmpeg) goes too.
      if (stopped !== undefined && stopping.how === 'group') killGroup(child, 'SIGKILL');
    });
    // A failed spawn emits 'error' and not always 'close' (EMFILE); a failed kill of a running
    // process emits 'error' too, and is no reason to stop waiting for it.
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (child.pid !== undefined || settled) return;
      finish();
      reject(error);
    });
    child.once('close', (exitCode: number | null, exitSignal: NodeJS.Signals | null) => {
      if (settled) return;
      finish();
      resolve({
        exitCode,
        signal: exitSignal,
        stopped,
        stderrTail: stderr.text(),
        stdout: Buffer.concat(collected).toString('utf8'),
      });
    });
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is already gone
  }
}

/** Cuts a byte stream into lines for `onLine`, at most MAX_LINE_CHARS each; `end` hands on the last. */
class LineSplitter {
  #partial = '';
  readonly #onLine: ((line: string) => void) | undefined;
  readonly #decoder = new TextDecoder();

  constructor(onLine: ((line: string) => void) | undefined) {
    this.#onLine = onLine;
  }

  push(chunk: Buffer): void {
    const lines = (this.#partial + this.#decoder.decode(chunk, { stream: true })).split('\n');
    this.#partial = (lines.pop() ?? '').slice(-MAX_LINE_CHARS);
    for (const line of lines) this.#onLine?.(line.slice(-MAX_LINE_CHARS));
  }

  end(): void {
    const last = this.#partial + this.#decoder.decode();
    this.#partial = '';
    if (last !== '') this.#onLine?.(last.slice(-MAX_LINE_CHARS));
  }
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
