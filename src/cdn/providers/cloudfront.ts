import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CloudFrontClient, CreateInvalidationCommand } from '@aws-sdk/client-cloudfront';
import { CloudWatchClient, GetMetricDataCommand, type MetricDataQuery } from '@aws-sdk/client-cloudwatch';
import type { CloudfrontEntry } from '../../config/cdn-settings.ts';
import { utcDays } from '../http.ts';
import {
  type CdnCapabilities,
  CdnError,
  type CdnProvider,
  type CdnUsage,
  type PurgeRequest,
  type PurgeResult,
  type SignedAccess,
  type SignRequest,
} from '../provider.ts';
import { sdkFailure } from './cloudfront-errors.ts';
import { signCloudFront } from './cloudfront-signing.ts';

export interface CloudFrontOptions {
  name: string;
  /** The distribution's public base URL (its domain or an alternate domain name). */
  baseUrl: string;
  distributionId: string;
  /** Region of both API clients. CloudFront metrics are kept in us-east-1 only (the default). */
  region?: string;
  /** Endpoint override of the CloudFront API (a loopback server in tests); AWS's own when absent. */
  apiUrl?: string;
  /** Both or neither; without them the SDK's default credential chain applies. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** The public key's id in the distribution's trusted key group; signing is offered with privateKey. */
  keyPairId?: string;
  /** PEM text of the RSA private key matching keyPairId. */
  privateKey?: string;
  /** Endpoint override of the CloudWatch API; AWS's own when absent. */
  cloudwatchUrl?: string;
  /** Time limit of one API call, in ms. */
  timeoutMs: number;
}

/**
 * "If you're invalidating files individually, you can have invalidation requests for up to 3,000 files
 * per distribution in progress at one time" and "If you're using the * wildcard, you can have requests
 * for up to 15 invalidation paths in progress at one time" (CloudFront Developer Guide, "Concurrent
 * invalidation request maximum"). One call can carry at most what may be in progress at all; calls past
 * what is still in progress are answered TooManyInvalidationsInProgress, which the purge jobs wait out.
 */
export const CLOUDFRONT_MAX_FILE_PATHS = 3000;
export const CLOUDFRONT_MAX_WILDCARD_PATHS = 15;
/** "The maximum length of a path is 4,000 characters" (Developer Guide, "Invalidation paths"). */
export const CLOUDFRONT_MAX_PATH_LENGTH = 4000;
/** Pages of GetMetricData answers read for one usage call; one page holds far more than a year of days. */
const MAX_METRIC_PAGES = 10;
const DAY_MS = 86_400_000;

/**
 * Amazon CloudFront: invalidations through CreateInvalidation, signed URLs and cookies with the key of a
 * trusted key group, usage from CloudWatch. CloudFront has no cache tags: only paths and `*` prefixes.
 * The SDK's own retries are off (maxAttempts 1): the purge jobs own retries, rates and breakers.
 */
export class CloudFrontProvider implements CdnProvider {
  readonly kind = 'cloudfront' as const;
  readonly name: string;
  readonly baseUrl: string;
  readonly tagHeader = null;
  readonly capabilities: CdnCapabilities;
  readonly sign?: (request: SignRequest) => SignedAccess;
  readonly #distributionId: string;
  readonly #timeoutMs: number;
  readonly #cloudFront: CloudFrontClient;
  readonly #cloudWatch: CloudWatchClient;

  constructor(options: CloudFrontOptions) {
    if (Boolean(options.accessKeyId) !== Boolean(options.secretAccessKey)) {
      throw new RangeError('accessKeyId and secretAccessKey go together');
    }
    if (Boolean(options.keyPairId) !== Boolean(options.privateKey)) {
      throw new RangeError('keyPairId and privateKey go together');
    }
    if (!(options.timeoutMs > 0)) throw new RangeError('timeoutMs must be positive');
    this.name = options.name;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#distributionId = options.distributionId;
    this.#timeoutMs = options.timeoutMs;
    const common = {
      region: options.region ?? 'us-east-1',
      maxAttempts: 1,
      credentials:
        options.accessKeyId && options.secretAccessKey
          ? { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey }
          : undefined,
    };
    this.#cloudFront = new CloudFrontClient({ ...common, endpoint: options.apiUrl });
    this.#cloudWatch = new CloudWatchClient({ ...common, endpoint: options.cloudwatchUrl });
    const { keyPairId, privateKey } = options;
    if (keyPairId && privateKey) {
      this.sign = (request) => signCloudFront(this.name, { keyPairId, privateKey }, request);
    }
    this.capabilities = {
      purge: {
        urls: { maxItems: CLOUDFRONT_MAX_FILE_PATHS },
        prefixes: { maxItems: CLOUDFRONT_MAX_WILDCARD_PATHS },
        all: { maxItems: 1 },
      },
      softPurge: false,
      signing: this.sign !== undefined,
      usage: true,
    };
  }

  async purge(request: PurgeRequest, signal?: AbortSignal): Promise<PurgeResult> {
    const paths = this.#paths(request);
    const { signal: callSignal, timedOut } = this.#callSignal(signal);
    try {
      const answer = await this.#cloudFront.send(
        new CreateInvalidationCommand({
          DistributionId: this.#distributionId,
          InvalidationBatch: {
            Paths: { Quantity: paths.length, Items: paths },
            // "Whenever you create a new invalidation request, you must specify a new value for
            // CallerReference" (API reference): a retry of a failed call is a new request too.
            CallerReference: randomUUID(),
          },
        }),
        { abortSignal: callSignal },
      );
      const id = answer.Invalidation?.Id;
      return id ? { id } : {};
    } catch (error) {
      throw sdkFailure(this.name, `invalidation of ${paths.length} path(s)`, error, timedOut());
    }
  }

  /**
   * Daily Requests and BytesDownloaded (Sum) and CacheHitRate (Average, a percentage; only with the
   * distribution's additional metrics on) from namespace AWS/CloudFront, dimensions DistributionId and
   * Region=Global ("The value for Region is always Global, because CloudFront is a global service").
   * A day without datapoints had no requests: CloudFront publishes none then.
   */
  async usage(from: Date, to: Date, signal?: AbortSignal): Promise<CdnUsage[]> {
    const days = utcDays(from, to);
    if (days.length === 0) return [];
    const start = new Date(`${days[0]}T00:00:00Z`);
    const end = new Date(start.getTime() + days.length * DAY_MS);
    const byDay = new Map<string, CdnUsage>(
      days.map((day) => [day, { day, bytes: 0, requests: 0, cacheHitRatio: null }]),
    );
    const { signal: callSignal, timedOut } = this.#callSignal(signal);
    let nextToken: string | undefined;
    try {
      for (let page = 0; page < MAX_METRIC_PAGES; page++) {
        const answer = await this.#cloudWatch.send(
          new GetMetricDataCommand({
            MetricDataQueries: this.#queries(),
            StartTime: start,
            EndTime: end,
            ScanBy: 'TimestampAscending',
            NextToken: nextToken,
          }),
          { abortSignal: callSignal },
        );
        for (const result of answer.MetricDataResults ?? []) {
          const timestamps = result.Timestamps ?? [];
          const values = result.Values ?? [];
          timestamps.forEach((time, i) => {
            const entry = byDay.get(new Date(time).toISOString().slice(0, 10));
            const value = values[i];
            if (!entry || value === undefined || !Number.isFinite(value)) return;
            if (result.Id === 'requests') entry.requests += value;
            else if (result.Id === 'bytes') entry.bytes += value;
            else if (result.Id === 'hits') entry.cacheHitRatio = Math.min(1, Math.max(0, value / 100));
          });
        }
        nextToken = answer.NextToken;
        if (!nextToken) break;
      }
    } catch (error) {
      throw sdkFailure(this.name, 'CloudWatch GetMetricData', error, timedOut());
    }
    return [...byDay.values()];
  }

  #queries(): MetricDataQuery[] {
    const metric = (id: string, name: string, stat: 'Sum' | 'Average'): MetricDataQuery => ({
      Id: id,
      MetricStat: {
        Metric: {
          Namespace: 'AWS/CloudFront',
          MetricName: name,
          Dimensions: [
            { Name: 'DistributionId', Value: this.#distributionId },
            { Name: 'Region', Value: 'Global' },
          ],
        },
        Period: DAY_MS / 1000,
        Stat: stat,
      },
      ReturnData: true,
    });
    return [
      metric('requests', 'Requests', 'Sum'),
      metric('bytes', 'BytesDownloaded', 'Sum'),
      metric('hits', 'CacheHitRate', 'Average'),
    ];
  }

  /** The invalidation paths of a request, checked before anything is sent. */
  #paths(request: PurgeRequest): string[] {
    const limit = this.capabilities.purge[request.kind];
    const refuse = (message: string) => new CdnError(this.name, message, { retryable: false });
    if (!limit) throw refuse(`CloudFront cannot purge by ${request.kind}: it has no cache tags`);
    if (request.kind === 'all') return ['/*'];
    if (request.items.length === 0) throw refuse(`a purge by ${request.kind} names nothing`);
    if (request.items.length > limit.maxItems) {
      throw refuse(`${request.items.length} ${request.kind} in one invalidation; at most ${limit.maxItems}`);
    }
    return request.items.map((item) => {
      const path = invalidationPath(item, request.kind === 'prefixes');
      if (path === null) throw refuse(`not an invalidation path: ${item}`);
      return path;
    });
  }

  /** The caller's signal, bounded by the time limit of one call. */
  #callSignal(signal: AbortSignal | undefined): { signal: AbortSignal; timedOut: () => boolean } {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    return {
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      timedOut: () => timeout.aborted && !signal?.aborted,
    };
  }
}

/**
 * An item as CloudFront's invalidation path: the path (and query) of a URL, or a path, starting with
 * `/`; for a prefix, followed by `*`. "The `*`, which replaces 0 or more characters, must be the last
 * character in the invalidation path", so a `*` elsewhere is refused (null), as is a path over 4,000
 * characters. "If the path includes non-ASCII characters or unsafe characters as defined in RFC 1738,
 * URL-encode those characters. Do not URL-encode any other characters in the path, or CloudFront will not
 * invalidate the old version of the updated file" (Developer Guide, "Specifying the files to invalidate").
 */
export function invalidationPath(item: string, prefix: boolean): string | null {
  let path = item;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(item)) {
    const url = URL.canParse(item) ? new URL(item) : null;
    if (!url) return null;
    path = `${url.pathname}${url.search}`;
  }
  if (!path.startsWith('/') || path.includes('*') || !path.isWellFormed()) return null;
  const encoded = encodeUnsafe(path) + (prefix ? '*' : '');
  return encoded.length > CLOUDFRONT_MAX_PATH_LENGTH ? null : encoded;
}

/**
 * RFC 1738, section 2.2: "Octets must be encoded if they have no corresponding graphic character within
 * the US-ASCII coded character set", and the unsafe characters "<", ">", `"`, "#", "%", "{", "}", "|",
 * "\", "^", "~", "[", "]", "`" and space. A `%` that already starts an escape is left as it is, so an
 * encoded URL is not encoded twice.
 */
function encodeUnsafe(path: string): string {
  let out = '';
  const chars = [...path];
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i]!;
    if (char === '%' && /^[0-9a-f]{2}$/i.test(chars.slice(i + 1, i + 3).join(''))) out += char;
    else if (/^[\x21-\x7e]$/.test(char) && !'<>"#%{}|\\^~[]`'.includes(char)) out += char;
    else
      out += encodeURIComponent(char).replace(
        /[!'()*~]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
      );
  }
  return out;
}

/**
 * The registry's factory for a `cloudfront` entry of CONVEYOR_CDN_PROVIDERS (`createProviders(config,
 * { cloudfront: cloudfrontFromEntry })`): the private key is read from its file once, at start.
 */
export function cloudfrontFromEntry(entry: CloudfrontEntry): CloudFrontProvider {
  return new CloudFrontProvider({
    name: entry.name,
    baseUrl: entry.baseUrl,
    distributionId: entry.distributionId,
    region: entry.region,
    timeoutMs: entry.timeoutMs,
    ...(entry.apiUrl ? { apiUrl: entry.apiUrl } : {}),
    ...(entry.accessKeyId ? { accessKeyId: entry.accessKeyId } : {}),
    ...(entry.secretAccessKey ? { secretAccessKey: entry.secretAccessKey } : {}),
    ...(entry.keyPairId ? { keyPairId: entry.keyPairId } : {}),
    ...(entry.privateKeyFile ? { privateKey: readFileSync(entry.privateKeyFile, 'utf8') } : {}),
    ...(entry.cloudwatchUrl ? { cloudwatchUrl: entry.cloudwatchUrl } : {}),
  });
}
