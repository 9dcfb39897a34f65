import { callApi, checkPurge, dayInRange, parseJson, utcDays } from '../http.ts';
import type {
  CdnCapabilities,
  CdnProvider,
  CdnUsage,
  PurgeRequest,
  PurgeResult,
  TagHeader,
} from '../provider.ts';
import { CdnError } from '../provider.ts';

/**
 * Cloudflare: purges through the zone's `purge_cache` endpoint and reads usage from the GraphQL
 * Analytics API, both with an API token (`Authorization: Bearer`). It does not sign URLs: Cloudflare's
 * edge has no signed-URL form of its own outside Workers, so private assets keep Conveyor's signatures.
 *
 * https://developers.cloudflare.com/api/resources/cache/methods/purge/
 * https://developers.cloudflare.com/analytics/graphql-api/
 */

export const CLOUDFLARE_API_URL = 'https://api.cloudflare.com/client/v4';

/**
 * Files, tags, hosts or prefixes: at most 100 in one `purge_cache` call (the limit Cloudflare documents for
 * purge_cache). Hostname purges (`hosts`) have no kind in the contract: a prefix that is
 * a bare host name purges the same.
 */
export const CLOUDFLARE_MAX_PURGE_ITEMS = 100;

export interface CloudflareOptions {
  /** The configured name. */
  name: string;
  /** Public base URL viewers reach the zone at. */
  baseUrl: string;
  /** The API's base URL, `https://api.cloudflare.com/client/v4` unless a test points it elsewhere. */
  apiUrl?: string;
  /** An API token with Zone.Cache Purge (and Analytics Read for usage). */
  apiToken: string;
  zoneId: string;
  timeoutMs: number;
}

/** The header this edge reads cache tags from, and its limit. */
export const CLOUDFLARE_TAG_HEADER: TagHeader = { name: 'Cache-Tag', separator: ',', maxBytes: 16 * 1024 };

/** The envelope every Cloudflare v4 API answer comes in. */
interface Envelope {
  success?: boolean;
  errors?: { code?: number; message?: string }[];
  result?: { id?: string } | null;
}

interface GraphqlAnswer {
  data?: {
    viewer?: {
      zones?: {
        httpRequests1dGroups?: {
          dimensions?: { date?: string };
          sum?: { bytes?: number; requests?: number; cachedBytes?: number; cachedRequests?: number };
        }[];
      }[];
    };
  } | null;
  errors?: { message?: string }[] | null;
}

const USAGE_QUERY = `query ConveyorUsage($zoneTag: string, $from: Date!, $to: Date!, $limit: uint64!) {
  viewer {
    zones(filter: { zoneTag: $zoneTag }) {
      httpRequests1dGroups(limit: $limit, filter: { date_geq: $from, date_leq: $to }, orderBy: [date_ASC]) {
        dimensions { date }
        sum { bytes requests cachedBytes cachedRequests }
      }
    }
  }
}`;

export class CloudflareProvider implements CdnProvider {
  readonly name: string;
  readonly kind = 'cloudflare' as const;
  readonly baseUrl: string;
  readonly capabilities: CdnCapabilities = {
    purge: {
      urls: { maxItems: CLOUDFLARE_MAX_PURGE_ITEMS },
      tags: { maxItems: CLOUDFLARE_MAX_PURGE_ITEMS },
      prefixes: { maxItems: CLOUDFLARE_MAX_PURGE_ITEMS },
      all: { maxItems: 1 },
    },
    softPurge: false,
    signing: false,
    usage: true,
  };
  /**
   * "the aggregate Cache-Tag HTTP header cannot exceed 16 KB after the header field name" (Purge cache by
   * cache-tags); tags are separated by commas.
   */
  readonly tagHeader: TagHeader = CLOUDFLARE_TAG_HEADER;
  readonly #apiUrl: string;
  readonly #token: string;
  readonly #zoneId: string;
  readonly #timeoutMs: number;

  constructor(options: CloudflareOptions) {
    this.name = options.name;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#apiUrl = (options.apiUrl ?? CLOUDFLARE_API_URL).replace(/\/+$/, '');
    this.#token = options.apiToken;
    this.#zoneId = options.zoneId;
    this.#timeoutMs = options.timeoutMs;
  }

  async purge(request: PurgeRequest, signal?: AbortSignal): Promise<PurgeResult> {
    const items = checkPurge(this.name, this.capabilities, request);
    const body =
      request.kind === 'all'
        ? { purge_everything: true }
        : request.kind === 'urls'
          ? { files: items }
          : request.kind === 'tags'
            ? { tags: items }
            : // "prefixes": "www.example.com/foo": a host and path without the scheme.
              { prefixes: items.map((p) => p.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '')) };
    const answer = await callApi({
      provider: this.name,
      method: 'POST',
      url: `${this.#apiUrl}/zones/${encodeURIComponent(this.#zoneId)}/purge_cache`,
      headers: this.#headers(),
      body: JSON.stringify(body),
      timeoutMs: this.#timeoutMs,
      signal,
    });
    const envelope = parseJson(this.name, 'purge_cache', answer.text) as Envelope;
    this.#checkEnvelope('purge_cache', envelope);
    const id = envelope.result?.id;
    return id === undefined ? {} : { id };
  }

  async usage(from: Date, to: Date, signal?: AbortSignal): Promise<CdnUsage[]> {
    const days = utcDays(from, to);
    if (days.length === 0) return [];
    const answer = await callApi({
      provider: this.name,
      method: 'POST',
      url: `${this.#apiUrl}/graphql`,
      headers: this.#headers(),
      body: JSON.stringify({
        query: USAGE_QUERY,
        variables: { zoneTag: this.#zoneId, from: days[0], to: days.at(-1), limit: days.length },
      }),
      timeoutMs: this.#timeoutMs,
      signal,
    });
    const parsed = parseJson(this.name, 'graphql', answer.text) as GraphqlAnswer;
    // GraphQL reports query errors in the body of a 200.
    if (parsed.errors && parsed.errors.length > 0) {
      const message = parsed.errors.map((e) => e.message ?? '?').join('; ');
      throw new CdnError(this.name, `graphql: ${message}`, { status: answer.status, retryable: false });
    }
    const groups = parsed.data?.viewer?.zones?.[0]?.httpRequests1dGroups ?? [];
    const out: CdnUsage[] = [];
    for (const group of groups) {
      const day = group.dimensions?.date;
      if (typeof day !== 'string' || !dayInRange(day, from, to)) continue;
      const requests = group.sum?.requests ?? 0;
      const cached = group.sum?.cachedRequests ?? 0;
      out.push({
        day,
        bytes: group.sum?.bytes ?? 0,
        requests,
        cacheHitRatio: requests > 0 ? cached / requests : null,
      });
    }
    return out;
  }

  #headers(): Record<string, string> {
    return { authorization: `Bearer ${this.#token}`, 'content-type': 'application/json' };
  }

  /** A 2xx whose envelope says `success: false` failed all the same. */
  #checkEnvelope(what: string, envelope: Envelope): void {
    if (envelope.success !== false) return;
    const message = (envelope.errors ?? []).map((e) => `${e.code ?? '?'} ${e.message ?? ''}`).join('; ');
    throw new CdnError(this.name, `${what}: ${message || 'success: false'}`, { retryable: false });
  }
}
