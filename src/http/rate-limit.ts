import { settings } from '../config/schema.ts';

/** `limit` requests per `windowSeconds`, with bursts of up to `limit` requests at once. */
export interface RateLimitRule {
  name: string;
  limit: number;
  windowSeconds: number;
}

export interface RateDecision {
  allowed: boolean;
  limit: number;
  /** Requests that could be made right now, after this one. */
  remaining: number;
  /** Seconds (rounded up) until the full `limit` is available again. */
  resetSeconds: number;
  /** Seconds (rounded up, at least 1) until a request would be allowed; 0 when this one was. */
  retryAfterSeconds: number;
}

export interface RateLimiterOptions {
  /**
   * Most keys to hold state for; past it the least recently charged key is forgotten. Default: that of
   * CONVEYOR_RATE_LIMIT_MAX_KEYS.
   */
  maxKeys?: number;
  /** Clock in milliseconds. Defaults to `performance.now()`, which wall-clock adjustments do not move. */
  now?: () => number;
}

const DEFAULT_MAX_KEYS = settings.rateLimitMaxKeys.default;

// Guards the rounding of remaining/reset against float noise when the emission interval is not a whole
// number of milliseconds (e.g. 10 requests per 3 seconds).
const EPSILON = 1e-6;

/**
 * GCRA (generic cell rate algorithm, the "virtual scheduling" form of a leaky bucket used as a meter).
 * Each key stores a single number, its theoretical arrival time (TAT): the moment at which the bucket would
 * be empty again. A request is one cell costing `window / limit`; it conforms if, after adding its cost, the
 * TAT lies at most one `window` ahead of now. Compared with a fixed window this never allows 2x `limit` across
 * a window boundary, and compared with a token bucket there is no refill timer or second field to keep.
 */
export class RateLimiter {
  #rule: RateLimitRule;
  #now: () => number;
  #maxKeys: number;
  #interval: number;
  #window: number;
  // Key -> TAT in ms. Re-inserted on every charge, so iteration order is least recently charged first.
  #tats = new Map<string, number>();

  constructor(rule: RateLimitRule, options: RateLimiterOptions = {}) {
    validateRule(rule);
    const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1)
      throw new RangeError('maxKeys must be a positive integer');
    this.#rule = { ...rule };
    this.#now = options.now ?? (() => performance.now());
    this.#maxKeys = maxKeys;
    this.#window = rule.windowSeconds * 1000;
    this.#interval = this.#window / rule.limit;
  }

  /** Charges one request to `key` and says whether it may proceed. Denied requests are not charged. */
  take(key: string): RateDecision {
    const now = this.#now();
    this.#evictExpired(now);

    const stored = this.#tats.get(key);
    const tat = stored === undefined ? now : Math.max(stored, now);
    const nextTat = tat + this.#interval;
    const allowAt = nextTat - this.#window;
    const limit = this.#rule.limit;

    if (now < allowAt - EPSILON) {
      return {
        allowed: false,
        limit,
        remaining: 0,
        resetSeconds: ceilSeconds(tat - now),
        retryAfterSeconds: Math.max(1, ceilSeconds(allowAt - now)),
      };
    }

    if (stored === undefined) {
      // A key seen for the first time is the only way the map grows, so the cap is enforced here.
      for (const oldest of this.#tats.keys()) {
        if (this.#tats.size < this.#maxKeys) break;
        this.#tats.delete(oldest);
      }
    } else {
      this.#tats.delete(key);
    }
    this.#tats.set(key, nextTat);
    return {
      allowed: true,
      limit,
      remaining: Math.max(0, Math.floor((now - allowAt) / this.#interval + EPSILON)),
      resetSeconds: ceilSeconds(nextTat - now),
      retryAfterSeconds: 0,
    };
  }

  /** Number of keys holding state; keys whose bucket has fully drained are dropped first. */
  get size(): number {
    this.#evictExpired(this.#now());
    return this.#tats.size;
  }

  /**
   * Drops keys whose TAT has passed: their bucket is empty, which is exactly the state of a key never seen,
   * so forgetting them loses nothing. Only the least recently charged end is scanned, which keeps `take`
   * amortised O(1) (every entry is inserted by a charge and removed once) and still bounds the map to keys charged
   * within the last window, since a charge never pushes the TAT more than one window past its time.
   */
  #evictExpired(now: number): void {
    for (const [key, tat] of this.#tats) {
      if (tat > now) break;
      this.#tats.delete(key);
    }
  }
}

/**
 * The IETF httpapi RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-11), plus Retry-After when
 * the request was denied. Header names are in their registered case; Node sends them case-insensitively.
 */
export function rateLimitHeaders(rule: RateLimitRule, d: RateDecision): Record<string, string> {
  const name = sfString(rule.name);
  // Section 6: "If a response contains both the Retry-After and the RateLimit header fields, the
  // Retry-After field value SHOULD NOT reference a point in time earlier than the end of the effective
  // window." With no quota left, the window in which the client can use "no more than the available quota"
  // (section 4.1.2) ends when the next request is allowed, so a denial reports that instead of the full reset.
  const effectiveWindow = d.allowed ? d.resetSeconds : d.retryAfterSeconds;
  const headers: Record<string, string> = {
    // Section 3: "The Item[SF] value MUST be a String[SF]." Section 3.1.1: "The "q" parameter value MUST be
    // a non-negative Integer." Section 3.1.3: "The time window MUST be a non-negative, non-zero, Integer
    // value expressing an interval in seconds".
    'RateLimit-Policy': `${name};q=${rule.limit};w=${rule.windowSeconds}`,
    // Section 4.1.1 and 4.1.2: "r" and "t" are each "a non-negative Integer".
    RateLimit: `${name};r=${d.remaining};t=${effectiveWindow}`,
  };
  // RFC 9110 section 10.2.3: "Retry-After = HTTP-date / delay-seconds"; delay-seconds is 1*DIGIT.
  if (!d.allowed) headers['Retry-After'] = String(Math.max(1, d.retryAfterSeconds));
  return headers;
}

function validateRule(rule: RateLimitRule): void {
  sfString(rule.name);
  if (!Number.isSafeInteger(rule.limit) || rule.limit < 1) {
    throw new RangeError(`rate limit "${rule.name}": limit must be a positive integer`);
  }
  if (!Number.isSafeInteger(rule.windowSeconds) || rule.windowSeconds < 1) {
    throw new RangeError(`rate limit "${rule.name}": windowSeconds must be a positive integer`);
  }
}

function ceilSeconds(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000 - EPSILON));
}

/**
 * Serializes a Structured Field String. RFC 9651 section 3.3.3: "Strings are zero or more printable ASCII
 * (...) characters (i.e., the range %x20 to %x7E)"; DQUOTE and backslash are escaped with a backslash.
 */
function sfString(value: string): string {
  if (value === '' || !/^[\x20-\x7e]+$/.test(value)) {
    throw new RangeError('rate limit name must be non-empty printable ASCII');
  }
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
