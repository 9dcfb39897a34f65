/**
 * The error catalog: every error Conveyor reports has a stable snake_case code listed here, with a title,
 * when it happens, and the HTTP status it answers with. Codes with a status leave the API as RFC 9457
 * problem details (src/problems.ts); codes without one are only ever a job's failure record
 * (`errors[].code`), since nothing answers them over HTTP. Any code with a status can be a job's failure
 * too (an ingest that meets a `not_found` of ours records it). docs/api.md shows this table
 * (`conveyor errors` prints it). Domain code throws `new ConveyorError(code, detail)` and never thinks
 * about HTTP.
 */
export const catalog = {
  bad_request: {
    status: 400,
    title: 'The request is malformed',
    when: 'The request cannot be read: faulty HTTP framing, a malformed multipart body or interrupted upload, JSON nested deeper than `CONVEYOR_MAX_JSON_DEPTH`, contradicting filters, a tus request the protocol refuses',
  },
  validation_failed: {
    status: 400,
    title: 'The request does not match the schema',
    when: 'A parameter or body field is missing, of the wrong type or out of range (`errors` lists them), an unknown job type, ingest kind or preset (`index` names the ingest item)',
  },
  malformed_json: {
    status: 400,
    title: 'The body is not valid JSON',
    when: 'A JSON body does not parse, is empty, or holds a `__proto__` or `constructor.prototype` key',
  },
  unauthenticated: {
    status: 401,
    title: 'Authentication is required',
    when: 'No credential, or a malformed, unknown, revoked or expired key or token (with `WWW-Authenticate`)',
  },
  insufficient_credit: {
    status: 402,
    title: 'The tenant has too few credits',
    when: 'A billable job costs more than the tenant holds (`cost`, `balance`); nothing is enqueued',
  },
  forbidden: {
    status: 403,
    title: 'This key may not do that',
    when: "The key's role is below the one the action needs, or the action is an operator's",
  },
  access_denied: {
    status: 403,
    title: 'Access denied',
    when: 'A grant of private content has lapsed (an expired or revoked token, a signed URL past `exp`), or a transform URL is not signed correctly',
  },
  not_found: {
    status: 404,
    title: 'Not found',
    when: 'No such route, resource or upload, or private content without a credential for it (answered as if it did not exist)',
  },
  method_not_allowed: {
    status: 405,
    title: 'Method not allowed',
    when: 'The path exists but not for this method (with `Allow`)',
  },
  request_timeout: {
    status: 408,
    title: 'The request took too long to arrive',
    when: 'The request headers did not arrive within `CONVEYOR_HTTP_HEADERS_TIMEOUT_MS`; the connection closes',
  },
  conflict: {
    status: 409,
    title: 'Conflict',
    when: "The resource's state forbids the change: a job that cannot be cancelled or retried as it is, a schedule name in use, a tus offset that does not match, a finished upload",
  },
  precondition_failed: {
    status: 412,
    title: 'Precondition failed',
    when: '`If-Match` or `If-Unmodified-Since` does not hold, or a tus request without the supported `Tus-Resumable`',
  },
  payload_too_large: {
    status: 413,
    title: 'The body is larger than allowed',
    when: 'A body over its limit (`CONVEYOR_MAX_UPLOAD_BYTES`, `CONVEYOR_MAX_JSON_BODY_BYTES`), chunk extensions too large, bytes sent to a finished upload',
  },
  uri_too_long: {
    status: 414,
    title: 'The URI is too long',
    when: 'The request target is longer than the router accepts',
  },
  unsupported_media_type: {
    status: 415,
    title: 'Unsupported media type',
    when: 'A body in a content type the route does not take (a tus PATCH without `application/offset+octet-stream`)',
  },
  range_not_satisfiable: {
    status: 416,
    title: 'Range not satisfiable',
    when: 'No requested range overlaps the content (with `Content-Range: bytes */<size>`)',
  },
  rate_limited: {
    status: 429,
    title: 'Too many requests',
    when: "A client address or key is past its requests per minute, or a tenant past its tier's daily job limit (with `Retry-After`)",
  },
  header_fields_too_large: {
    status: 431,
    title: 'The request headers are too large',
    when: "The request headers exceed Node's header size limit; the connection closes",
  },
  internal: {
    status: 500,
    title: 'Internal error',
    when: 'Anything unexpected; the details are in the log under the request id, never in the answer',
  },
  not_implemented: {
    status: 501,
    title: 'Not implemented',
    when: 'A request body in a transfer coding other than chunked',
  },
  unavailable: {
    status: 503,
    title: 'Temporarily unavailable',
    when: 'A dependency or capacity is short for now: the transform queue is full, content is being collected, an upload is locked by another request, token keys cannot be fetched (often with `Retry-After`)',
  },
  insufficient_storage: {
    status: 507,
    title: 'The server has no room to store this',
    when: 'The disk or the database is full, or an upload would leave less than the reserve; nothing is stored (a tus upload keeps what it had)',
  },

  // The image library's refusals: a dead image job, or the answer to a transform of the image.
  image_too_large: {
    status: 413,
    title: 'The image is too large to process',
    when: 'More bytes than `CONVEYOR_IMAGE_MAX_INPUT_BYTES`, more pixels in one frame than allowed, or a decode whose estimated memory exceeds the whole image budget',
  },
  image_too_many_frames: {
    status: 413,
    title: 'The image has too many frames',
    when: 'More pages or animation frames than the image limits allow',
  },
  image_output_too_large: {
    status: 413,
    title: 'The rendered image is too large',
    when: 'An encoded output is larger than the image limits allow',
  },
  image_unsupported: {
    status: 415,
    title: 'The data is not an image in a supported format',
    when: 'Not an image, or a format outside the accepted input formats',
  },
  image_corrupt: {
    status: 422,
    title: 'The image data is damaged',
    when: 'A recognised format whose header or pixel data is damaged or cut short',
  },
  image_timeout: {
    status: 422,
    title: 'Processing the image took too long',
    when: 'libvips gave up after the image time limit on one pipeline',
  },

  // A job's failure record: the engine's own verdicts on an attempt.
  permanent: {
    status: null,
    title: 'The job failed, and trying again cannot help',
    when: 'A handler threw a `PermanentJobError` without a code of its own; the job is dead',
  },
  unknown_type: {
    status: null,
    title: 'No handler for the job type',
    when: 'A worker claimed a job of a type it has no handler for (it loads other job modules than the enqueuer); the job is dead',
  },
  timeout: {
    status: null,
    title: 'The attempt ran too long',
    when: "An attempt ran longer than its type's or lane's timeout and was aborted; the job retries, or is dead when out of attempts",
  },
  lease_expired: {
    status: null,
    title: 'The worker stopped heartbeating',
    when: 'The worker running an attempt died, hung or lost the database, and the rescuer took the job back; it retries, or is dead when out of attempts',
  },
  result_too_large: {
    status: null,
    title: 'The result is too large',
    when: 'A handler returned a result larger than `CONVEYOR_JOB_MAX_PAYLOAD_BYTES`; the job is dead',
  },

  // A remote ingest's failures (src/media/ingest/download-errors.ts): permanent ones end the job dead;
  // retryable ones fail the attempt, recorded with the code too, and the job tries again. The first
  // two are also the answer to an ingest request whose URL is refused before any download (400, `index`
  // names the item).
  bad_url: {
    status: 400,
    title: 'The URL cannot be fetched',
    when: 'The URL or a redirect target is not an absolute http(s) URL without credentials, or a redirect leads from https to http (refused at enqueue when the URL itself is)',
  },
  ssrf_forbidden: {
    status: 400,
    title: 'The destination is refused by policy',
    when: 'A host, port or resolved address (of the URL or a redirect) is private, denied or not allowed (refused at enqueue when the URL names one literally)',
  },
  download_too_large: {
    status: null,
    title: 'The download is larger than allowed',
    when: 'The origin declared or sent more than `CONVEYOR_INGEST_MAX_BYTES`',
  },
  download_too_many_redirects: {
    status: null,
    title: 'Too many redirects',
    when: 'More than `CONVEYOR_INGEST_MAX_REDIRECTS` hops',
  },
  download_http_status: {
    status: null,
    title: 'The origin answered with an unusable status',
    when: 'A status other than success or a redirect with a `Location`; 5xx, 408 and 429 are retried, other statuses end the job',
  },
  download_network: {
    status: null,
    title: 'The origin could not be reached',
    when: 'DNS failure, a refused or dropped connection, a protocol error (retried), or a TLS certificate that does not verify (the job ends)',
  },
  download_timeout: {
    status: null,
    title: 'The origin took too long',
    when: 'No connection in time, the origin went quiet, or the whole download ran out of time (retried)',
  },
  download_too_slow: {
    status: null,
    title: 'The origin sends too slowly',
    when: 'The body arrived slower than `CONVEYOR_INGEST_MIN_BYTES_PER_SECOND` over the rate window (retried)',
  },
  download_aborted: {
    status: null,
    title: 'The download was stopped',
    when: "The job's attempt was aborted (cancelled, timed out, shutting down) during the download",
  },

  // Video, the process layer and the probe (src/media/video/errors.ts): a video job's failures. Those about
  // the input end the job dead; a missing tool, a process killed by a signal or an exhausted machine are
  // retried.
  video_tool_missing: {
    status: null,
    title: 'ffmpeg or ffprobe cannot be run',
    when: 'The binary of `CONVEYOR_FFMPEG_PATH` or `CONVEYOR_FFPROBE_PATH` is not found or not executable (retried)',
  },
  video_process_failed: {
    status: null,
    title: 'ffmpeg failed',
    when: 'ffmpeg or ffprobe exited with a non-zero status (the end of its error output is kept); retried when it ran out of memory, disk space or file handles, otherwise the job ends',
  },
  video_process_killed: {
    status: null,
    title: 'ffmpeg was killed',
    when: 'ffmpeg or ffprobe ended by a signal it did not ask for (a crash, the kernel out of memory); whatever it wrote is discarded and the job is retried',
  },
  video_timeout: {
    status: null,
    title: 'Processing the video took too long',
    when: 'A probe, decode check or loudness measurement ran past its time limit and was stopped',
  },
  video_unreadable: {
    status: null,
    title: 'The file is not a readable video',
    when: 'The file is empty, ffprobe cannot read it, or it has no duration',
  },
  video_corrupt: {
    status: null,
    title: 'The video data is damaged',
    when: 'The file probes but decoding it fails, e.g. a file cut short',
  },
  video_no_video: {
    status: null,
    title: 'The file has no video stream',
    when: 'No video stream besides cover art (an audio-only file)',
  },
  video_no_audio: {
    status: null,
    title: 'The video has no audio stream',
    when: 'No audio stream while `CONVEYOR_VIDEO_REQUIRE_AUDIO` asks for one',
  },
  video_too_long: {
    status: null,
    title: 'The video is too long',
    when: 'Longer than `CONVEYOR_VIDEO_MAX_DURATION_SECONDS`',
  },
  video_too_large: {
    status: null,
    title: 'The video frame is too large',
    when: 'Wider than `CONVEYOR_VIDEO_MAX_WIDTH`, taller than `CONVEYOR_VIDEO_MAX_HEIGHT` or more pixels than `CONVEYOR_VIDEO_MAX_PIXELS`',
  },
  video_file_too_large: {
    status: null,
    title: 'The video file is too large',
    when: 'More bytes than `CONVEYOR_VIDEO_MAX_BYTES`',
  },
  video_unsupported: {
    status: null,
    title: 'The container or codec is not accepted',
    when: 'A container, video codec or audio codec outside `CONVEYOR_VIDEO_INPUT_CONTAINERS`, `CONVEYOR_VIDEO_INPUT_CODECS` or `CONVEYOR_VIDEO_INPUT_AUDIO_CODECS`',
  },

  // Video, hardware acceleration (src/media/video/fallback.ts): a job failure, never an HTTP answer.
  video_encoder_unavailable: {
    status: null,
    title: 'No encoder for the codec works on this worker',
    when: 'No encoder of the requested codec passed its trial encode on this worker (e.g. AV1 with an ffmpeg built without libsvtav1), or a forced `CONVEYOR_VIDEO_HWACCEL` family proved none; the job is dead',
  },
  video_chunk_failed: {
    status: null,
    title: 'A chunk of the video could not be encoded',
    when: 'One `video.chunk` job of a ladder encoded in chunks ended dead or was cancelled; the ladder job is dead with that chunk job named. Replaying the ladder job queues the missing chunks again',
  },

  // Video sites through yt-dlp (src/media/video/ytdlp-errors.ts): job failures; only ytdlp_failed
  // may be retried. A timed-out or cancelled run records download_timeout or download_aborted.
  ytdlp_missing: {
    status: null,
    title: 'yt-dlp cannot be started',
    when: 'The program named by `CONVEYOR_YTDLP_PATH` does not exist or is not executable',
  },
  ytdlp_forbidden: {
    status: null,
    title: 'The video site pointed at a forbidden destination',
    when: "A page, redirect, manifest or media URL yt-dlp tried to reach was refused by ingest's address rules (the message names the last one)",
  },
  ytdlp_too_large: {
    status: null,
    title: 'The video is larger than allowed',
    when: 'The site announced, or the run moved, more than `CONVEYOR_INGEST_MAX_BYTES` (plus `CONVEYOR_YTDLP_PROXY_EXTRA_BYTES` through the proxy)',
  },
  ytdlp_unsupported_url: {
    status: null,
    title: 'No video found at the URL',
    when: 'No yt-dlp extractor, the generic one included, recognises the page',
  },
  ytdlp_live_not_supported: {
    status: null,
    title: 'Live streams are not supported',
    when: 'The URL is a live stream or one that has not started yet',
  },
  ytdlp_failed: {
    status: null,
    title: 'yt-dlp failed',
    when: 'Any other yt-dlp failure, with its last error line; retried unless the site answered a 4xx (but 408 and 429) or offered no format Conveyor fetches',
  },

  // Video, storage of the outputs (src/media/video/store.ts): a job failure, never an HTTP answer.
  video_output_too_large: {
    status: null,
    title: 'An output file is larger than allowed',
    when: 'A segment, playlist, poster, sprite or MP4 fallback is larger than `CONVEYOR_VIDEO_STORE_MAX_FILE_BYTES`; nothing of its rendition is stored and the job is dead',
  },
} as const satisfies Record<string, { status: number | null; title: string; when: string }>;

export type ErrorCode = keyof typeof catalog;

/** The codes an HTTP answer can carry: those with a status. */
export type ProblemCode = {
  [K in ErrorCode]: (typeof catalog)[K]['status'] extends number ? K : never;
}[ErrorCode];

/** Every code an HTTP answer can carry, in catalog order. */
export const PROBLEM_CODES = (Object.keys(catalog) as ErrorCode[]).filter(
  (code): code is ProblemCode => catalog[code].status !== null,
);

export class ConveyorError extends Error {
  readonly code: ProblemCode;
  readonly status: number;
  readonly title: string;
  /** Extra members for the problem document (e.g. `errors` for validation, `limit` for 413). */
  readonly extra: Record<string, unknown>;
  /** Response headers that belong with the error (Retry-After, Content-Range). */
  readonly headers: Record<string, string>;

  constructor(
    code: ProblemCode,
    detail?: string,
    options: { extra?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(detail ?? catalog[code].title, { cause: options.cause });
    this.name = 'ConveyorError';
    this.code = code;
    this.status = catalog[code].status;
    this.title = catalog[code].title;
    this.extra = options.extra ?? {};
    this.headers = options.headers ?? {};
  }
}

export const notFound = (what = 'resource') => new ConveyorError('not_found', `No such ${what}`);

/**
 * Whether `error` says a disk or the database ran out of room: ENOSPC or EDQUOT from the filesystem,
 * SQLITE_FULL (13, "database or disk is full", with any extended code) from node:sqlite, or SQLSTATE 53100
 * (disk_full) from PostgreSQL. Looks through `cause` too, as wrappers keep the original there.
 */
export function isOutOfSpace(error: unknown): boolean {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 4; depth++) {
    const { code, errcode } = e as { code?: unknown; errcode?: unknown };
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === '53100') return true;
    if (typeof errcode === 'number' && (errcode & 0xff) === 13) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * The answer to running out of room: 507, not 503 with Retry-After. A full disk or quota stays full until
 * an operator frees space or adds some; no delay a server could promise would be honest, and a 503 invites
 * clients and proxies to retry on a timer against a disk that has not changed.
 */
export function insufficientStorage(
  cause?: unknown,
  detail = 'Storage is full: nothing was stored; retry once space has been freed',
): ConveyorError {
  return new ConveyorError('insufficient_storage', detail, { cause });
}

/** The catalog as the Markdown table in docs/api.md (a test keeps the two in step). */
export function errorTable(): string {
  const rows = ['| code | status | title | when |', '| --- | --- | --- | --- |'];
  for (const [code, { status, title, when }] of Object.entries(catalog)) {
    rows.push(`| \`${code}\` | ${status ?? '—'} | ${title} | ${when.replaceAll('|', '\\|')} |`);
  }
  return rows.join('\n');
}
