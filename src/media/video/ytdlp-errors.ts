/**
 * yt-dlp failures
 * ===============
 *
 * A yt-dlp run that does not end with a file (or metadata) becomes one YtdlpError with a catalog code
 * (src/errors.ts) and a `retryable` verdict, as download-errors.ts does for direct downloads:
 *
 *   code                       retryable  when
 *   ytdlp_missing              no         the program (CONVEYOR_YTDLP_PATH) cannot be started
 *   ytdlp_forbidden            no         the guarded proxy refused a target of the run (the message
 *                                         names the last one); checked before anything else, since yt-dlp
 *                                         then reports only a 403 or a tunnel failure
 *   ytdlp_too_large            no         the file is over CONVEYOR_INGEST_MAX_BYTES: announced by the
 *                                         site (yt-dlp's --max-filesize), or the run moved more bytes
 *                                         through the proxy than allowed, or the finished file is larger
 *   ytdlp_unsupported_url      no         no extractor, generic included, finds a video there
 *   ytdlp_live_not_supported   no         a live stream (or one not started), which has no end to wait for
 *   ytdlp_failed               mostly     anything else, with yt-dlp's last ERROR line; an HTTP 4xx other
 *                                         than 408 and 429, or no format Conveyor can fetch, is permanent
 *   download_timeout           yes        a metadata lookup ran past CONVEYOR_YTDLP_PROBE_TIMEOUT_MS
 *   download_aborted           no         the caller's AbortSignal fired (the job was cancelled)
 *
 * yt-dlp's exit status says little (1 for nearly every failure, 0 for a file skipped as too large or
 * live), so the verdict comes from what the run left: the proxy's counters, the messages yt-dlp wrote,
 * and whether a file was reported.
 */
import type { ErrorCode } from '../../errors.ts';
import { isRetryableStatus } from '../ingest/download-errors.ts';
import type { ProxyStats } from '../ingest/proxy.ts';

export type YtdlpErrorCode = Extract<
  ErrorCode,
  | 'ytdlp_missing'
  | 'ytdlp_forbidden'
  | 'ytdlp_too_large'
  | 'ytdlp_unsupported_url'
  | 'ytdlp_live_not_supported'
  | 'ytdlp_failed'
  | 'download_timeout'
  | 'download_aborted'
>;

export class YtdlpError extends Error {
  override readonly name = 'YtdlpError';
  readonly code: YtdlpErrorCode;
  readonly retryable: boolean;

  constructor(code: YtdlpErrorCode, message: string, retryable = false, cause?: unknown) {
    super(message, { cause });
    this.code = code;
    this.retryable = retryable;
  }
}

/** What a finished (or stopped) run left behind, for classify(). */
export interface RunOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Why Conveyor stopped it, if it did. */
  stopped: 'aborted' | 'timeout' | 'output' | undefined;
  /** The last stdout lines that were not progress. */
  lines: readonly string[];
  /** The end of stderr. */
  stderr: string;
  proxy: ProxyStats;
  /** The limits, for the messages. */
  maxBytes: number;
  timeoutMs: number;
  maxJsonBytes: number;
}

// Messages of yt-dlp 2023.03.04 (and current releases) that name a cause.
const TOO_LARGE = /File is larger than max-filesize/;
const LIVE = /does not pass filter \(!is_live\)|This live event will begin|Premieres in/;
const UNSUPPORTED = /ERROR: Unsupported URL:|is not a valid URL/;
const NO_FORMAT = /Requested format is not available|No video formats found/;
const HTTP_STATUS = /HTTP Error (\d{3})/;

/** The error a run that produced nothing usable stands for. */
export function classify(o: RunOutcome): YtdlpError {
  if (o.stopped === 'aborted') return new YtdlpError('download_aborted', 'the yt-dlp run was aborted');
  if (o.stopped === 'timeout') {
    return new YtdlpError('download_timeout', `yt-dlp gave no answer within ${o.timeoutMs} ms`, true);
  }
  if (o.stopped === 'output') {
    return new YtdlpError('ytdlp_failed', `yt-dlp wrote more than ${o.maxJsonBytes} bytes of JSON`);
  }
  const said = `${o.lines.join('\n')}\n${o.stderr}`;
  if (o.proxy.refused > 0) {
    return new YtdlpError(
      'ytdlp_forbidden',
      `the video site pointed at a forbidden destination (${o.proxy.refused} refused; last: ${o.proxy.lastRefusal})`,
    );
  }
  if (o.proxy.overLimit || TOO_LARGE.test(said)) {
    return new YtdlpError('ytdlp_too_large', `the video is larger than ${o.maxBytes} bytes`);
  }
  if (UNSUPPORTED.test(said)) {
    return new YtdlpError('ytdlp_unsupported_url', lastError(o.stderr) ?? 'no video found at the URL');
  }
  if (LIVE.test(said)) {
    return new YtdlpError(
      'ytdlp_live_not_supported',
      'live streams (and streams not yet started) are not taken',
    );
  }
  const message = lastError(o.stderr) ?? exitText(o);
  const status = HTTP_STATUS.exec(message);
  const permanent = NO_FORMAT.test(said) || (status !== null && !isRetryableStatus(Number(status[1])));
  return new YtdlpError('ytdlp_failed', message, !permanent);
}

/** The error for a spawn that failed (ENOENT, EACCES): the program is not there or not runnable. */
export function missing(path: string, cause: NodeJS.ErrnoException): YtdlpError {
  return new YtdlpError(
    'ytdlp_missing',
    `yt-dlp cannot be started as ${JSON.stringify(path)} (CONVEYOR_YTDLP_PATH): ${cause.code ?? cause.message}`,
    false,
    cause,
  );
}

/** yt-dlp's last `ERROR:` line, shortened. */
function lastError(stderr: string): string | undefined {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('ERROR:'))
    .at(-1)
    ?.slice(0, 500);
}

function exitText(o: RunOutcome): string {
  if (o.signal !== null) return `yt-dlp was killed by ${o.signal}`;
  return o.exitCode === 0 ? 'yt-dlp finished without a file' : `yt-dlp exited with status ${o.exitCode}`;
}
