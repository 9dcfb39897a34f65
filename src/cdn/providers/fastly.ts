import { callApi, checkPurge, dayInRange, parseJson, utcDays } from '../http.ts';
import type {
  CdnCapabilities,
  CdnProvider,
  CdnUsage,
  PurgeRequest,
  PurgeResult,
  TagHeader,
} from '../provider.ts';

/**
 * Fastly: purges by surrogate key (a batch per call), by URL and everything, and reads usage from the
 * Historical Stats API, all with an API token in the `Fastly-Key` header. Soft purges (mark stale rather
 * than remove) are the `Fastly-Soft-Purge: 1` header on key and URL purges; purge-all "cannot be done in
 * soft mode". It does not sign URLs: Fastly has no signed-URL form outside the customer's own VCL.
 *
 * https://www.fastly.com/documentation/reference/api/purging/
 * https://www.fastly.com/documentation/reference/api/metrics-stats/historical-stats/
 */

export const FASTLY_API_URL = 'https://api.fastly.com';

/** "Up to 256 surrogate keys can be purged in one batch request" (Purging, purge multiple keys). */
export const FASTLY_MAX_KEYS = 256;

export interface FastlyOptions {
  name: string;
  /** Public base URL of the service. */
  baseUrl: string;
  /** `https://api.fastly.com` unless a test points it elsewhere. */
  apiUrl?: string;
  /** An API token with the purge_select and purge_all scopes (and global:read for usage). */
  apiToken: string;
  serviceId: string;
  timeoutMs: number;
}

/** The header this edge reads cache tags from, and its limit. */
export const FASTLY_TAG_HEADER: TagHeader = { name: 'Surrogate-Key', separator: ' ', maxBytes: 16_384 };

/** The Historical Stats answer, `by=day`: one entry per day, `start_time` in Unix seconds. */
interface HistoricalStats {
  status?: string;
  data?: { start_time?: number; requests?: number; bandwidth?: number; hit_ratio?: number | null }[];
}

export class FastlyProvider implements CdnProvider {
  readonly name: string;
  readonly kind = 'fastly' as const;
  readonly baseUrl: string;
  readonly capabilities: CdnCapabilities = {
    // A URL purge names one URL (`POST /purge/{cached_url}`).
    purge: { urls: { maxItems: 1 }, tags: { maxItems: FASTLY_MAX_KEYS }, all: { maxItems: 1 } },
    softPurge: true,
    signing: false,
    usage: true,
  };
  /**
   * Surrogate-Key: "space-separated purge keys"; the header may be up to 16,384 bytes long (Fastly's
   * Surrogate-Key reference: keys longer than 1024 bytes or past that total are ignored).
   */
  readonly tagHeader: TagHeader = FASTLY_TAG_HEADER;
  readonly #apiUrl: string;
  readonly #token: string;
  readonly #serviceId: string;
  readonly #timeoutMs: number;

  constructor(options: FastlyOptions) {
    this.name = options.name;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#apiUrl = (options.apiUrl ?? FASTLY_API_URL).replace(/\/+$/, '');
    this.#token = options.apiToken;
    this.#serviceId = options.serviceId;
    this.#timeoutMs = options.timeoutMs;
  }

  async purge(request: PurgeRequest, signal?: AbortSignal): Promise<PurgeResult> {
    const items = checkPurge(this.name, this.capabilities, request);
    const service = `${this.#apiUrl}/service/${encodeURIComponent(this.#serviceId)}`;
    const headers: Record<string, string> = { 'fastly-key': this.#token, accept: 'application/json' };
    if (request.kind !== 'all' && request.soft) headers['fastly-soft-purge'] = '1';
    const call = { provider: this.name, method: 'POST', headers, timeoutMs: this.#timeoutMs, signal };
    if (request.kind === 'tags') {
      // "this endpoint also supports listing keys in a Surrogate-Key request header".
      await callApi({
        ...call,
        url: `${service}/purge`,
        headers: { ...headers, 'surrogate-key': items.join(' ') },
      });
      return {};
    }
    if (request.kind === 'urls') {
      // `cached_url` is the URL without its scheme: host and path.
      const target = items[0]!.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
      const answer = await callApi({ ...call, url: `${this.#apiUrl}/purge/${target}` });
      const id = (parseJson(this.name, 'purge', answer.text) as { id?: unknown }).id;
      return typeof id === 'string' ? { id } : {};
    }
    await callApi({ ...call, url: `${service}/purge_all` });
    return {};
  }

  async usage(from: Date, to: Date, signal?: AbortSignal): Promise<CdnUsage[]> {
    const days = utcDays(from, to);
    if (days.length === 0) return [];
    const start = Date.parse(`${days[0]}T00:00:00Z`) / 1000;
    const end = Date.parse(`${days.at(-1)}T00:00:00Z`) / 1000 + 86_400;
    const query = new URLSearchParams({ from: String(start), to: String(end), by: 'day' });
    const answer = await callApi({
      provider: this.name,
      method: 'GET',
      url: `${this.#apiUrl}/stats/service/${encodeURIComponent(this.#serviceId)}?${query}`,
      headers: { 'fastly-key': this.#token, accept: 'application/json' },
      timeoutMs: this.#timeoutMs,
      signal,
    });
    const stats = parseJson(this.name, 'stats', answer.text) as HistoricalStats;
    const out: CdnUsage[] = [];
    for (const entry of stats.data ?? []) {
      if (typeof entry.start_time !== 'number') continue;
      const day = new Date(entry.start_time * 1000).toISOString().slice(0, 10);
      if (!dayInRange(day, from, to)) continue;
      out.push({
        day,
        bytes: entry.bandwidth ?? 0,
        requests: entry.requests ?? 0,
        cacheHitRatio: typeof entry.hit_ratio === 'number' ? entry.hit_ratio : null,
      });
    }
    return out;
  }
}
