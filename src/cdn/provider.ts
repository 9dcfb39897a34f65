/**
 * The CDN provider contract: what Conveyor asks of a CDN (Cloudflare, Bunny, CloudFront, Fastly, Varnish),
 * each behind one implementation in src/cdn/providers/, all held to one conformance suite
 * (test/cdn/provider-contract.ts) against a loopback server that speaks the provider's documented API.
 *
 * A provider object does one request's worth of work per call and nothing else: batching to the
 * provider's limits, rates, retries and breakers belong to the purge jobs that call it. A failed call
 * throws a CdnError saying whether a retry can help and when (Retry-After).
 */

/** What one purge call asks for; a provider receives only kinds it declares in its capabilities. */
export type PurgeRequest =
  | { kind: 'urls'; items: readonly string[]; soft?: boolean }
  | { kind: 'tags'; items: readonly string[]; soft?: boolean }
  | { kind: 'prefixes'; items: readonly string[]; soft?: boolean }
  | { kind: 'all' };

export type PurgeKind = PurgeRequest['kind'];

/** What a provider can do, and the most items one purge call may carry per kind (its documented limit). */
export interface CdnCapabilities {
  purge: Readonly<Partial<Record<PurgeKind, { maxItems: number }>>>;
  /** Soft purge (mark stale, serve while revalidating) as an option of url/tag purges. */
  softPurge: boolean;
  /** The provider signs URLs (or cookies) in its own form, which its edge verifies. */
  signing: boolean;
  /** The provider reports usage (bytes, requests, cache hit ratio). */
  usage: boolean;
}

/** The header an edge reads cache tags from, and its documented limits. */
export interface TagHeader {
  /** e.g. `Cache-Tag` (Cloudflare), `CDN-Tag` (Bunny), `Surrogate-Key` (Fastly), `xkey` (Varnish). */
  name: string;
  /** Between tags: `,` or ` `. */
  separator: ',' | ' ';
  /** The longest header value the edge accepts, in bytes. */
  maxBytes: number;
}

/** What a purge call answers: the provider's id for it, when it gives one (CloudFront's invalidation id). */
export interface PurgeResult {
  id?: string;
}

/** One day (UTC) of a provider's usage. */
export interface CdnUsage {
  /** YYYY-MM-DD, UTC. */
  day: string;
  bytes: number;
  requests: number;
  /** 0..1, or null when the provider does not say. */
  cacheHitRatio: number | null;
}

/** A signed URL (or cookies) for one resource or a path prefix, valid until `expiresAt`. */
export interface SignRequest {
  url: string;
  expiresAt: Date;
  /** Sign a prefix (an HLS folder) rather than one URL, where the provider allows it. */
  prefix?: boolean;
  /** Restrict to a client address, where the provider allows it. */
  clientIp?: string;
}

export interface SignedAccess {
  /** The URL to hand out. */
  url: string;
  /** Cookies to set instead of (or beside) the query, e.g. CloudFront's signed cookies. */
  cookies?: Readonly<Record<string, string>>;
}

export interface CdnProvider {
  /** The configured name (unique among configured providers): metrics label, breaker key, job payloads. */
  readonly name: string;
  readonly kind: 'cloudflare' | 'bunny' | 'cloudfront' | 'fastly' | 'varnish';
  readonly capabilities: CdnCapabilities;
  /** The header its edge reads tags from; null when it takes none. */
  readonly tagHeader: TagHeader | null;
  /** The public base URL viewers reach it at (no trailing slash). */
  readonly baseUrl: string;
  /** One purge request, within capabilities[kind].maxItems. Throws CdnError. */
  purge(request: PurgeRequest, signal?: AbortSignal): Promise<PurgeResult>;
  /** Present when capabilities.signing. */
  sign?(request: SignRequest): SignedAccess;
  /** Present when capabilities.usage: the days in [from, to), UTC. Throws CdnError. */
  usage?(from: Date, to: Date, signal?: AbortSignal): Promise<CdnUsage[]>;
}

/** A provider call that failed. */
export class CdnError extends Error {
  readonly provider: string;
  /** The HTTP status the provider answered, or null for a network failure or timeout. */
  readonly status: number | null;
  /** Whether trying again can help: 429, 5xx, timeouts and network failures; not 400, 401, 403, 404. */
  readonly retryable: boolean;
  /** From Retry-After (seconds or an HTTP date), in ms; null when the provider gave none. */
  readonly retryAfterMs: number | null;

  constructor(
    provider: string,
    message: string,
    options: { status?: number | null; retryable: boolean; retryAfterMs?: number | null; cause?: unknown },
  ) {
    super(message, { cause: options.cause });
    this.name = 'CdnError';
    this.provider = provider;
    this.status = options.status ?? null;
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs ?? null;
  }
}
