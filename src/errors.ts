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
