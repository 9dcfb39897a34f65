/**
 * Download errors
 * ===============
 *
 * Every way a remote ingest can fail is one subclass of DownloadError with a stable `code` from the error
 * catalog (src/errors.ts) and a `retryable` verdict, so the job engine can dead-letter permanent failures
 * at once and back off on the others without parsing messages:
 *
 *   code                          retryable  meaning
 *   bad_url                       no         not an absolute http(s) URL, credentials in it, unusable
 *                                            redirect target
 *   ssrf_forbidden                no         the destination (host, port or resolved address) is refused
 *                                            by policy
 *   download_too_large            no         Content-Length or the bytes received exceed maxBytes
 *   download_timeout              yes        no connection in time ('connect'), the origin went quiet
 *                                            ('idle'), or the whole download ran out of time ('total')
 *   download_too_slow             yes        the body arrived slower than the minimum rate over the window
 *   download_too_many_redirects   no         more than maxRedirects hops
 *   download_http_status          depends    an unusable status; 5xx, 408 and 429 are retryable, other
 *                                            4xx are not
 *   download_network              usually    DNS failure, refused or dropped connection, protocol error;
 *                                            TLS certificate failures are not retryable (they do not heal
 *                                            by waiting)
 *   download_aborted              no         the caller's AbortSignal fired or the caller destroyed the
 *                                            body stream
 *
 * These are not ConveyorErrors: the downloader runs inside jobs, not requests. A permanent one ends the
 * ingest job dead with its code; an ingest request refuses a URL that fails the checks it can make without
 * the network with the same code (bad_url, ssrf_forbidden: 400).
 */
import { parseHttpDate } from '../../delivery/http-date.ts';
import type { ErrorCode } from '../../errors.ts';
import type { AddressClass } from './ssrf.ts';

export type DownloadErrorCode = Extract<
  ErrorCode,
  | 'bad_url'
  | 'ssrf_forbidden'
  | 'download_too_large'
  | 'download_timeout'
  | 'download_too_slow'
  | 'download_too_many_redirects'
  | 'download_http_status'
  | 'download_network'
  | 'download_aborted'
>;

export abstract class DownloadError extends Error {
  abstract readonly code: DownloadErrorCode;
  abstract readonly retryable: boolean;
}

export class BadUrlError extends DownloadError {
  readonly code = 'bad_url';
  readonly retryable = false;
  override readonly name = 'BadUrlError';
}

/** Why a destination is refused: the class of a refused address, or a host or port rule. */
export type ForbiddenReason = AddressClass | 'host-denied' | 'host-not-allowed' | 'port-not-allowed';

export class ForbiddenAddressError extends DownloadError {
  readonly code = 'ssrf_forbidden';
  readonly retryable = false;
  override readonly name = 'ForbiddenAddressError';
  /** The host as written in the URL (brackets stripped for IPv6 literals). */
  readonly host: string;
  /** The refused address, when the refusal is about an address rather than a name or port. */
  readonly address: string | undefined;
  readonly reason: ForbiddenReason;

  /** `detail` adds to the message, e.g. which IPv4 address an IPv4-mapped address embeds. */
  constructor(host: string, reason: ForbiddenReason, address?: string, detail?: string) {
    const at = address === undefined || address === host ? '' : ` (resolved to ${address})`;
    super(`destination ${host}${at} is forbidden: ${reason}${detail ? ` (${detail})` : ''}`);
    this.host = host;
    this.reason = reason;
    this.address = address;
  }
}

export class TooLargeError extends DownloadError {
  readonly code = 'download_too_large';
  readonly retryable = false;
  override readonly name = 'TooLargeError';
  readonly limit: number;

  constructor(limit: number, how: string) {
    super(`the download exceeds the limit of ${limit} bytes: ${how}`);
    this.limit = limit;
  }
}

export type TimeoutPhase = 'connect' | 'idle' | 'total';

export class DownloadTimeoutError extends DownloadError {
  readonly code = 'download_timeout';
  readonly retryable = true;
  override readonly name = 'DownloadTimeoutError';
  readonly phase: TimeoutPhase;
  readonly ms: number;

  constructor(phase: TimeoutPhase, ms: number) {
    const what = {
      connect: 'no connection could be established',
      idle: 'the origin sent nothing',
      total: 'the download did not finish',
    }[phase];
    super(`${phase} timeout: ${what} within ${ms} ms`);
    this.phase = phase;
    this.ms = ms;
  }
}

/**
 * The origin sends, but too slowly to be worth a worker's slot (a trickle never trips the idle timeout).
 * Retryable: the job tries again after its backoff, when the origin may be healthy again.
 */
export class TooSlowError extends DownloadError {
  readonly code = 'download_too_slow';
  readonly retryable = true;
  override readonly name = 'TooSlowError';
  readonly bytesPerSecond: number;
  readonly windowMs: number;
  readonly minBytesPerSecond: number;

  /** `ms` is the span measured, at least the window. */
  constructor(bytesPerSecond: number, ms: number, minBytesPerSecond: number) {
    const rate = bytesPerSecond >= 100 ? Math.round(bytesPerSecond) : Number(bytesPerSecond.toFixed(1));
    const seconds = Number((ms / 1000).toFixed(1));
    super(`too slow: ${rate} B/s over ${seconds} s, minimum ${minBytesPerSecond} B/s`);
    this.bytesPerSecond = bytesPerSecond;
    this.windowMs = ms;
    this.minBytesPerSecond = minBytesPerSecond;
  }
}

export class TooManyRedirectsError extends DownloadError {
  readonly code = 'download_too_many_redirects';
  readonly retryable = false;
  override readonly name = 'TooManyRedirectsError';
  /** Every URL that answered with a redirect, in order. */
  readonly chain: readonly string[];

  constructor(limit: number, chain: readonly string[]) {
    super(`more than ${limit} redirects`);
    this.chain = chain;
  }
}

export class HttpStatusError extends DownloadError {
  readonly code = 'download_http_status';
  override readonly name = 'HttpStatusError';
  readonly status: number;
  readonly retryable: boolean;
  /** Milliseconds the origin asked us to wait (Retry-After), when it said so. */
  readonly retryAfterMs: number | undefined;

  constructor(status: number, url: string, retryAfterMs?: number, detail?: string) {
    super(`${url} answered ${status}${detail ? `: ${detail}` : ''}`);
    this.status = status;
    this.retryable = isRetryableStatus(status);
    this.retryAfterMs = retryAfterMs;
  }
}

export class NetworkError extends DownloadError {
  readonly code = 'download_network';
  override readonly name = 'NetworkError';
  readonly retryable: boolean;
  /** The system or library error code (ECONNRESET, ENOTFOUND, CERT_HAS_EXPIRED, ...) when there is one. */
  readonly errno: string | undefined;

  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    const code = (cause as { code?: unknown } | undefined)?.code;
    this.errno = typeof code === 'string' ? code : undefined;
    this.retryable = !isCertificateFailure(this.errno);
  }
}

export class DownloadAbortedError extends DownloadError {
  readonly code = 'download_aborted';
  readonly retryable = false;
  override readonly name = 'DownloadAbortedError';
}

/** 5xx, 408 Request Timeout and 429 Too Many Requests may heal by waiting; any other 4xx will not. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

// Node reports certificate verification failures with OpenSSL's X509 names, hostname mismatches with
// its own ERR_TLS_ code. Waiting does not fix a certificate, so these are permanent.
const CERT_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function isCertificateFailure(code: string | undefined): boolean {
  return code !== undefined && CERT_CODES.has(code);
}

/**
 * Retry-After as milliseconds from `now`; undefined when absent or unparseable. A date in the past
 * means "now" (0).
 */
export function parseRetryAfter(value: string | undefined, now: Date = new Date()): number | undefined {
  if (value === undefined) return undefined;
  // RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds
  //                   delay-seconds = 1*DIGIT
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) {
    const seconds = Number(v);
    return Number.isSafeInteger(seconds * 1000) ? seconds * 1000 : undefined;
  }
  const at = parseHttpDate(v, now);
  return at === null ? undefined : Math.max(0, at.getTime() - now.getTime());
}
