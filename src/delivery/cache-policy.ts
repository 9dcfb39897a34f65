/** Freshness lifetimes, in seconds, for responses that name a moving target (an asset's latest version). */
export interface CachePolicyConfig {
  /** Browser freshness of a `latest` response. */
  latestMaxAge: number;
  /** Shared-cache (CDN) freshness of a `latest` response. */
  latestSMaxAge: number;
  /** 0 omits the directive. */
  staleWhileRevalidate: number;
  /** 0 omits the directive. */
  staleIfError: number;
  /** Shared-cache freshness of a 404 (negative caching); 0 makes it `no-store`. */
  notFoundSMaxAge: number;
}

/** One year: the conventional "forever" for max-age, and what RFC 2616 §14.21 once named as the ceiling. */
const IMMUTABLE_MAX_AGE = 31_536_000;

// RFC 9111 §1.2.2: "If a cache receives a delta-seconds value greater than the greatest integer it can
// represent, or if any of its subsequent calculations overflows, the cache MUST consider the value to be
// 2147483648 (2^31) or the greatest positive integer it can conveniently represent." Larger values would
// mean different things to different caches, so configuration is held to that ceiling.
const MAX_DELTA_SECONDS = 2_147_483_648;

/**
 * The Cache-Control value for a delivery response:
 * - `latest`: a URL whose bytes change when a new version is published. Browsers revalidate soon
 *   (max-age), CDNs keep it longer (s-maxage; RFC 9111 §5.2.2.10: "for a shared cache, the maximum age
 *   specified by this directive overrides the maximum age specified by either the max-age directive or the
 *   Expires header field") and may serve it stale while refetching or when the origin fails (RFC 5861).
 * - `version`: a URL pinned to one version's bytes, which never change. RFC 8246 §2: "The immutable
 *   response directive indicates that the response will not be updated while it's fresh."
 * - `private`: a response for one user only (signed or authenticated URLs). RFC 9111 §5.2.2.5: "The
 *   no-store response directive indicates that a cache MUST NOT store any part of either the immediate
 *   request or the response".
 * - `missing`: a 404 for an id that names nothing the caller may see (negative caching). A CDN keeps it for
 *   s-maxage, so a flood of unknown ids stops there; browsers ask again (max-age=0). RFC 9111 §4.2.2 lets a
 *   cache store a 404 heuristically, so an explicit lifetime is the origin's way to bound it.
 */
export function cacheControl(
  kind: 'latest' | 'version' | 'private' | 'missing',
  c: CachePolicyConfig,
): string {
  switch (kind) {
    case 'latest': {
      const directives = [
        'public',
        `max-age=${deltaSeconds('latestMaxAge', c.latestMaxAge)}`,
        `s-maxage=${deltaSeconds('latestSMaxAge', c.latestSMaxAge)}`,
      ];
      const swr = deltaSeconds('staleWhileRevalidate', c.staleWhileRevalidate);
      // RFC 5861 §3: "The stale-while-revalidate Cache-Control extension indicates that caches MAY serve the
      // response in which it appears after it becomes stale, up to the indicated number of seconds."
      if (swr > 0) directives.push(`stale-while-revalidate=${swr}`);
      const sie = deltaSeconds('staleIfError', c.staleIfError);
      // RFC 5861 §4: "The stale-if-error Cache-Control extension indicates that when an error is
      // encountered, a cached stale response MAY be used to satisfy the request, regardless of other
      // freshness information."
      if (sie > 0) directives.push(`stale-if-error=${sie}`);
      return directives.join(', ');
    }
    case 'version':
      return `public, max-age=${IMMUTABLE_MAX_AGE}, immutable`;
    case 'private':
      return 'private, no-store';
    case 'missing': {
      const sMaxAge = deltaSeconds('notFoundSMaxAge', c.notFoundSMaxAge);
      return sMaxAge > 0 ? `public, max-age=0, s-maxage=${sMaxAge}` : 'no-store';
    }
    default:
      throw new TypeError(`unknown cache policy kind: ${String(kind satisfies never)}`);
  }
}

// delta-seconds = 1*DIGIT (RFC 9111 §1.2.2): a non-negative integer with no sign, fraction or exponent.
function deltaSeconds(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_DELTA_SECONDS) {
    throw new RangeError(`${name} must be an integer from 0 to ${MAX_DELTA_SECONDS} seconds, got ${value}`);
  }
  return value;
}
