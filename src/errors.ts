/**
 * The error catalog: every error Conveyor reports has a stable code listed here, with its HTTP status
 * and a title. The HTTP layer renders them as RFC 9457 problem details
 * (`type: https://conveyor.dev/problems/<code>`); the CLI prints code and detail.
 * Domain code throws `new ConveyorError(code, detail)` and never thinks about HTTP.
 */
export const catalog = {
  bad_request: { status: 400, title: 'The request is malformed' },
  validation_failed: { status: 400, title: 'The request does not match the schema' },
  malformed_json: { status: 400, title: 'The body is not valid JSON' },
  unauthenticated: { status: 401, title: 'Authentication is required' },
  insufficient_credit: { status: 402, title: 'The tenant has too few credits' },
  forbidden: { status: 403, title: 'This key may not do that' },
  access_denied: { status: 403, title: 'Access denied' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  request_timeout: { status: 408, title: 'The request took too long to arrive' },
  conflict: { status: 409, title: 'Conflict' },
  precondition_failed: { status: 412, title: 'Precondition failed' },
  payload_too_large: { status: 413, title: 'The body is larger than allowed' },
  uri_too_long: { status: 414, title: 'The URI is too long' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  range_not_satisfiable: { status: 416, title: 'Range not satisfiable' },
  unprocessable_content: { status: 422, title: 'The content cannot be processed' },
  rate_limited: { status: 429, title: 'Too many requests' },
  header_fields_too_large: { status: 431, title: 'The request headers are too large' },
  internal: { status: 500, title: 'Internal error' },
  not_implemented: { status: 501, title: 'Not implemented' },
  unavailable: { status: 503, title: 'Temporarily unavailable' },
  insufficient_storage: { status: 507, title: 'The server has no room to store this' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof catalog;

export class ConveyorError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  /** Extra members for the problem document (e.g. `errors` for validation, `limit` for 413). */
  readonly extra: Record<string, unknown>;
  /** Response headers that belong with the error (Retry-After, Content-Range). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
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
