import { createHash } from 'node:crypto';
import { callApi, checkPurge, dayInRange, parseJson, utcDays } from '../http.ts';
import type {
  CdnCapabilities,
  CdnProvider,
  CdnUsage,
  PurgeRequest,
  PurgeResult,
  SignedAccess,
  SignRequest,
  TagHeader,
} from '../provider.ts';

/**
 * Bunny CDN: purges a URL with `POST /purge?url=` and a pull zone's tag with `POST
 * /pullzone/{id}/purgeCache`, reads usage from `GET /statistics`, all with the account's API key in the
 * `AccessKey` header; signs URLs with its advanced (SHA-256) token authentication, directory tokens for
 * HLS folders.
 *
 * https://docs.bunny.net/reference/purgepublic_indexpost (Purge URL)
 * https://docs.bunny.net/api-reference/core/pull-zone/purge-cache
 * https://docs.bunny.net/api-reference/core/statistics/get-statistics
 * https://docs.bunny.net/docs/cdn-token-authentication (Advanced: SHA256, directory tokens)
 */

export const BUNNY_API_URL = 'https://api.bunny.net';

export interface BunnyOptions {
  name: string;
  /** Public base URL of the pull zone (its b-cdn.net host or a custom host). */
  baseUrl: string;
  /** `https://api.bunny.net` unless a test points it elsewhere. */
  apiUrl?: string;
  /** The account API key, sent as `AccessKey`. */
  accessKey: string;
  pullZoneId: string;
  /** The pull zone's URL Token Authentication Key; signing is offered only with it. */
  tokenKey?: string;
  timeoutMs: number;
}

/** The header this edge reads cache tags from, and its limit. */
export const BUNNY_TAG_HEADER: TagHeader = { name: 'CDN-Tag', separator: ',', maxBytes: 1024 };

/** The charts `/statistics` answers: date-time keys (`2024-05-01T00:00:00Z`) to values. */
interface Statistics {
  BandwidthUsedChart?: Record<string, number>;
  RequestsServedChart?: Record<string, number>;
  /** Percent, 0..100. */
  CacheHitRateChart?: Record<string, number>;
}

export class BunnyProvider implements CdnProvider {
  readonly name: string;
  readonly kind = 'bunny' as const;
  readonly baseUrl: string;
  readonly capabilities: CdnCapabilities;
  /** "CDN-Tag header values are limited to 1024 bytes" (Purge cache, purge by tag). */
  readonly tagHeader: TagHeader = BUNNY_TAG_HEADER;
  readonly #apiUrl: string;
  readonly #accessKey: string;
  readonly #pullZoneId: string;
  readonly #tokenKey: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: BunnyOptions) {
    this.name = options.name;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#apiUrl = (options.apiUrl ?? BUNNY_API_URL).replace(/\/+$/, '');
    this.#accessKey = options.accessKey;
    this.#pullZoneId = options.pullZoneId;
    this.#tokenKey = options.tokenKey;
    this.#timeoutMs = options.timeoutMs;
    this.capabilities = {
      // Both purge calls take one URL or one tag. A URL ending in `*` purges every URL under it, which
      // is how a prefix is purged.
      purge: {
        urls: { maxItems: 1 },
        tags: { maxItems: 1 },
        prefixes: { maxItems: 1 },
        all: { maxItems: 1 },
      },
      softPurge: false,
      signing: options.tokenKey !== undefined,
      usage: true,
    };
    if (options.tokenKey === undefined) this.sign = undefined;
  }

  async purge(request: PurgeRequest, signal?: AbortSignal): Promise<PurgeResult> {
    const items = checkPurge(this.name, this.capabilities, request);
    const zone = `${this.#apiUrl}/pullzone/${encodeURIComponent(this.#pullZoneId)}/purgeCache`;
    const call = { provider: this.name, method: 'POST', timeoutMs: this.#timeoutMs, signal };
    if (request.kind === 'urls' || request.kind === 'prefixes') {
      const url = request.kind === 'prefixes' ? `${items[0]!.replace(/\*$/, '')}*` : items[0]!;
      await callApi({
        ...call,
        url: `${this.#apiUrl}/purge?url=${encodeURIComponent(url)}&async=false`,
        headers: this.#headers(),
      });
    } else if (request.kind === 'tags') {
      await callApi({
        ...call,
        url: zone,
        headers: { ...this.#headers(), 'content-type': 'application/json' },
        body: JSON.stringify({ CacheTag: items[0] }),
      });
    } else {
      await callApi({ ...call, url: zone, headers: this.#headers() });
    }
    return {};
  }

  async usage(from: Date, to: Date, signal?: AbortSignal): Promise<CdnUsage[]> {
    const days = utcDays(from, to);
    if (days.length === 0) return [];
    const query = new URLSearchParams({
      dateFrom: days[0]!,
      dateTo: days.at(-1)!,
      pullZone: this.#pullZoneId,
      hourly: 'false',
    });
    const answer = await callApi({
      provider: this.name,
      method: 'GET',
      url: `${this.#apiUrl}/statistics?${query}`,
      headers: this.#headers(),
      timeoutMs: this.#timeoutMs,
      signal,
    });
    const stats = parseJson(this.name, 'statistics', answer.text) as Statistics;
    const byDay = new Map<string, CdnUsage>();
    for (const [key, bytes] of Object.entries(stats.BandwidthUsedChart ?? {})) {
      const day = key.slice(0, 10);
      if (!dayInRange(day, from, to)) continue;
      const requests = stats.RequestsServedChart?.[key] ?? 0;
      const hitRate = stats.CacheHitRateChart?.[key];
      byDay.set(day, {
        day,
        bytes,
        requests,
        cacheHitRatio: typeof hitRate === 'number' && requests > 0 ? hitRate / 100 : null,
      });
    }
    return [...byDay.values()].sort((a, b) => a.day.localeCompare(b.day));
  }

  sign?(request: SignRequest): SignedAccess {
    return { url: signBunnyUrl(this.#tokenKey!, request) };
  }

  #headers(): Record<string, string> {
    return { accesskey: this.#accessKey, accept: 'application/json' };
  }
}

/**
 * Bunny's advanced token authentication (SHA-256):
 *
 *   token = Base64(SHA256(securityKey + signaturePath + expires + parameterData + userIp)), with
 *   "+" replaced by "-", "/" by "_" and "=" removed;
 *
 * where `expires` is a Unix time in seconds, `parameterData` the query parameters other than `token` and
 * `expires`, sorted by name and joined as `name=value` with `&`, and `signaturePath` the URL's path or,
 * for a directory token, the `token_path` parameter (which is then among the parameters). A directory
 * token goes into the path (`/bcdn_token=...&expires=...&token_path=.../dir/file`), so that the relative
 * URLs of an HLS playlist inherit it.
 */
export function signBunnyUrl(securityKey: string, request: SignRequest): string {
  const url = new URL(request.url);
  const expires = String(Math.floor(request.expiresAt.getTime() / 1000));
  const params = new Map<string, string>();
  for (const [key, value] of url.searchParams) {
    if (key !== 'token' && key !== 'expires') params.set(key, value);
  }
  let signaturePath = url.pathname;
  if (request.prefix) {
    signaturePath = url.pathname.endsWith('/')
      ? url.pathname
      : url.pathname.slice(0, url.pathname.lastIndexOf('/') + 1);
    params.set('token_path', signaturePath);
  }
  const sorted = [...params.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const parameterData = sorted.map(([k, v]) => `${k}=${v}`).join('&');
  const token = createHash('sha256')
    .update(securityKey + signaturePath + expires + parameterData + (request.clientIp ?? ''))
    .digest('base64url');
  if (request.prefix) {
    const query = [...params.entries()].filter(([k]) => k !== 'token_path');
    const rest = query.length > 0 ? `?${new URLSearchParams(query)}` : '';
    const tokenPath = encodeURIComponent(signaturePath);
    return `${url.origin}/bcdn_token=${token}&expires=${expires}&token_path=${tokenPath}${url.pathname}${rest}`;
  }
  const out = new URLSearchParams(sorted);
  out.set('token', token);
  out.set('expires', expires);
  return `${url.origin}${url.pathname}?${out}`;
}
