import { parseRetryAfter } from '../http.ts';
import { CdnError } from '../provider.ts';

/**
 * Error codes that mean "slow down", not "broken". TooManyInvalidationsInProgress is CloudFront's own:
 * "You have exceeded the maximum number of allowable InProgress invalidation batch requests, or
 * invalidation objects" (API reference, CreateInvalidation errors); it clears as invalidations complete.
 * The rest are the throttling codes AWS services answer across protocols.
 */
const THROTTLING_CODES = new Set([
  'TooManyInvalidationsInProgress',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'LimitExceededException',
]);

/** Node's socket errors for a server that is gone or unreachable: trying again later can help. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $fault?: 'client' | 'server';
  $retryable?: { throttling?: boolean };
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string | undefined> };
}

/**
 * A CdnError from what an AWS SDK call threw. Throttling (TooManyInvalidationsInProgress among it) is
 * reported as status 429 whatever status AWS used (CloudFront answers 400 for it), so that the purge jobs
 * treat it as a rate limit to wait out rather than a failure that opens the breaker; the message keeps
 * the real status and code. 5xx, the SDK's `$retryable` trait, timeouts and network failures are
 * retryable; access denied, bad input and missing distributions are not.
 */
export function sdkFailure(provider: string, what: string, error: unknown, timedOut: boolean): CdnError {
  const e = (error ?? {}) as SdkErrorShape;
  const code = e.name ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  if (status === undefined) {
    const network = NETWORK_CODES.has(e.code ?? '') || NETWORK_CODES.has(causeCode(error) ?? '');
    const reason = timedOut ? 'timed out' : code === 'AbortError' ? 'was aborted' : (e.message ?? code);
    // No answer: a timeout, a network failure or the caller's abort (the work it stopped is still to do)
    // can go better next time; a client-side failure such as missing credentials cannot.
    const retryable = timedOut || network || code === 'AbortError' || code === 'TimeoutError';
    return new CdnError(provider, `${what} ${reason}`, { status: null, retryable, cause: error });
  }
  const retryAfterMs = parseRetryAfter(header(e.$response?.headers, 'retry-after'));
  const detail = `${what} failed: ${status} ${code}${e.message ? ` (${e.message})` : ''}`;
  if (THROTTLING_CODES.has(code) || status === 429 || e.$retryable?.throttling) {
    return new CdnError(provider, detail, { status: 429, retryable: true, retryAfterMs, cause: error });
  }
  const retryable = status >= 500 || e.$retryable !== undefined;
  return new CdnError(provider, detail, { status, retryable, retryAfterMs, cause: error });
}

function causeCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause;
  return typeof cause?.code === 'string' ? cause.code : undefined;
}

function header(headers: Record<string, string | undefined> | undefined, name: string): string | null {
  if (!headers) return null;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name && value !== undefined) return value;
  }
  return null;
}
