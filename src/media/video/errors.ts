/**
 * Video errors
 * ============
 *
 * Every way the video process layer, the probe or the limits can fail is a VideoError with a stable
 * `code` from the error catalog (src/errors.ts) and a `retryable` verdict, so the job that runs it can
 * end permanently at once on bad input and back off on the rest without parsing messages:
 *
 *   code                   retryable  meaning
 *   video_tool_missing     yes        the ffmpeg or ffprobe binary cannot be started (ENOENT, EACCES)
 *   video_process_failed   depends    a non-zero exit; retryable only when the error output says the
 *                                     machine ran out of something (memory, disk, file handles)
 *   video_process_killed   yes        ended by a signal nobody here sent: a crash, the OOM killer
 *   video_timeout          no         a run passed its time limit; the same input takes as long again
 *   video_unreadable       no         empty, not a media file ffprobe reads, or without a duration
 *   video_corrupt          no         probes, but decoding fails (cut short, damaged packets)
 *   video_no_video         no         no video stream (cover art does not count)
 *   video_no_audio         no         no audio stream while the settings require one
 *   video_too_long         no         longer than the duration limit
 *   video_too_large        no         frame wider, taller or of more pixels than the limits
 *   video_file_too_large   no         more bytes than the file size limit
 *   video_unsupported      no         a container or codec outside the accepted lists
 *
 * A cancelled run does not fail with a VideoError: it rejects with its AbortSignal's reason, as the
 * job engine expects of an aborted attempt.
 */
import type { ErrorCode } from '../../errors.ts';
import { PermanentJobError } from '../../jobs/types.ts';

/** Each code with the verdict it has unless the raiser knows better (video_process_failed does). */
const RETRYABLE = {
  video_tool_missing: true,
  video_process_failed: false,
  video_process_killed: true,
  video_timeout: false,
  video_unreadable: false,
  video_corrupt: false,
  video_no_video: false,
  video_no_audio: false,
  video_too_long: false,
  video_too_large: false,
  video_file_too_large: false,
  video_unsupported: false,
} as const satisfies Partial<Record<ErrorCode, boolean>>;

export type VideoErrorCode = keyof typeof RETRYABLE;
export const VIDEO_ERROR_CODES = Object.keys(RETRYABLE) as VideoErrorCode[];

/** How a process ended, for an error about it: the job's record keeps what ffmpeg said last. */
export interface ProcessEnd {
  /** `ffmpeg`, `ffprobe`: the binary as configured. */
  tool: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last few KiB of its standard error. */
  stderrTail: string;
}

export class VideoError extends Error {
  readonly code: VideoErrorCode;
  readonly retryable: boolean;
  /** Machine-readable facts: the limit and the actual value, the container or codec refused, ... */
  readonly details: Readonly<Record<string, unknown>>;
  /** Set when the error is about a process that ran. */
  readonly process: ProcessEnd | undefined;

  constructor(
    code: VideoErrorCode,
    message: string,
    options: {
      retryable?: boolean;
      details?: Record<string, unknown>;
      process?: ProcessEnd;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'VideoError';
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE[code];
    this.details = options.details ?? {};
    this.process = options.process;
  }
}

/**
 * For a job handler: a VideoError that retrying cannot mend becomes a PermanentJobError with its code,
 * which sends the job straight to dead; anything else (a retryable VideoError, an abort reason, a bug)
 * is answered as it is, for the engine to retry.
 */
export function asJobError(error: unknown): unknown {
  if (error instanceof VideoError && !error.retryable)
    return new PermanentJobError(error.message, error.code);
  return error;
}
