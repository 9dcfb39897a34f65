import { type CdnCapabilities, CdnError, type PurgeRequest } from './provider.ts';

/**
 * One call to a provider's HTTP API with a time limit, and the mapping of its failures to CdnError:
 * whether a retry can help (429, 5xx, timeouts, network failures) and when (Retry-After). Every provider
 * in src/cdn/providers/ goes through here, so that they classify failures alike.
 */

export interface ApiCall {
  /** The provider's configured name, for CdnError. */
  provider: string;
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

export interface ApiAnswer {
  status: number;
  headers: Headers;
  text: string;
}

/** Performs the call and answers a 2xx; anything else throws a CdnError. */
export async function callApi(call: ApiCall): Promise<ApiAnswer> {
  const timeout = AbortSignal.timeout(call.timeoutMs);
  const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
  let response: Response;
  let text: string;
  try {
    response = await fetch(call.url, {
      method: call.method,
      headers: call.headers ?? {},
      body: call.body ?? null,
      signal,
      redirect: 'manual',
    });
    text = await response.text();
  } catch (error) {
    throw networkFailure(call.provider, `${call.method} ${redact(call.url)}`, error, timeout, call.timeoutMs);
  }
  if (response.status >= 200 && response.status < 300) {
    return { status: response.status, headers: response.headers, text };
  }
  throw statusFailure(
    call.provider,
    `${call.method} ${redact(call.url)}`,
    response.status,
    response.headers.get('retry-after'),
    text,
  );
}

/** A failure before any answer: a timeout, an abort by the caller, or the network. */
export function networkFailure(
  provider: string,
  what: string,
  error: unknown,
  timeout: AbortSignal,
  timeoutMs: number,
): CdnError {
  if (timeout.aborted) {
    return new CdnError(provider, `${what}: no answer within ${timeoutMs} ms`, {
      retryable: true,
      cause: error,
    });
  }
  const reason = error instanceof Error ? (errorCode(error) ?? error.message) : String(error);
  return new CdnError(provider, `${what}: ${reason}`, { retryable: true, cause: error });
}

/** A non-2xx answer. */
export function statusFailure(
  provider: string,
  what: string,
  status: number,
  retryAfter: string | null,
  body: string,
): CdnError {
  // 429 asks the client to slow down and 5xx is the provider's own trouble: both pass with time. Any
  // other 4xx (bad request, bad credentials, unknown zone) answers the same until someone changes it.
  const retryable = status === 429 || status >= 500;
  const excerpt = body.length > 200 ? `${body.slice(0, 200)}…` : body;
  return new CdnError(provider, `${what}: HTTP ${status}${excerpt ? ` ${excerpt}` : ''}`, {
    status,
    retryable,
    retryAfterMs: parseRetryAfter(retryAfter),
  });
}

/**
 * RFC 9110, section 10.2.3: `Retry-After = HTTP-date / delay-seconds`, "delay-seconds = 1*DIGIT: a
 * non-negative decimal integer, representing time in seconds". A date in the past means now (0); an
 * unreadable value is ignored (null), so the caller's own backoff applies.
 */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - now);
}

/** The URL without its query, whose values may be secrets (a token) or long lists. */
function redact(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?…`;
}

function errorCode(error: Error): string | undefined {
  const cause = (error as { cause?: { code?: unknown } }).cause;
  return typeof cause?.code === 'string' ? cause.code : undefined;
}

/** JSON from an answer's text, or a CdnError saying the provider answered something else. */
export function parseJson(provider: string, what: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CdnError(provider, `${what}: the answer is not JSON`, { retryable: true });
  }
}

/** The UTC days in [from, to): `YYYY-MM-DD` each. */
export function utcDays(from: Date, to: Date): string[] {
  const days: string[] = [];
  if (to.getTime() <= from.getTime()) return days;
  const start = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  for (let t = start; t < to.getTime(); t += 86_400_000) {
    if (t + 86_400_000 > from.getTime()) days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}

/** Whether `day` (YYYY-MM-DD) falls in [from, to), by its start. */
export function dayInRange(day: string, from: Date, to: Date): boolean {
  const start = Date.parse(`${day}T00:00:00Z`);
  const fromDay = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  return start >= fromDay && start < to.getTime();
}

/**
 * Refuses a purge the provider did not declare, or one past its documented batch limit, before a
 * request is sent: the purge jobs batch to `capabilities.purge[kind].maxItems`, so this is a bug.
 */
export function checkPurge(
  provider: string,
  capabilities: CdnCapabilities,
  request: PurgeRequest,
): readonly string[] {
  const limit = capabilities.purge[request.kind];
  if (!limit) {
    throw new CdnError(provider, `purge by ${request.kind} is not offered by this provider`, {
      retryable: false,
    });
  }
  const items = request.kind === 'all' ? [] : request.items;
  if (request.kind !== 'all' && items.length === 0) {
    throw new CdnError(provider, `a purge by ${request.kind} names nothing`, { retryable: false });
  }
  if (items.length > limit.maxItems) {
    throw new CdnError(
      provider,
      `${items.length} ${request.kind} in one purge; the provider takes at most ${limit.maxItems}`,
      { retryable: false },
    );
  }
  return items;
}
