import type { Setting } from './setting.ts';

/**
 * CDN settings: the providers Conveyor purges, signs for and reads usage from (src/cdn/), several at
 * once, each an entry of one JSON array. Part of the one settings table in schema.ts. The entries are
 * checked here, at start-up, so that a provider's constructor receives only complete options.
 */

export const CDN_KINDS = ['cloudflare', 'bunny', 'cloudfront', 'fastly', 'varnish'] as const;
export type CdnKind = (typeof CDN_KINDS)[number];

interface EntryBase {
  /** Unique among the entries: metrics label, breaker key, job payloads. */
  name: string;
  /** Public base URL viewers reach the CDN at, without a trailing slash. */
  baseUrl: string;
  /** The provider's API (the Varnish itself); the real API's URL when unset. */
  apiUrl?: string;
  timeoutMs: number;
}

export interface CloudflareEntry extends EntryBase {
  kind: 'cloudflare';
  apiToken: string;
  zoneId: string;
}
export interface BunnyEntry extends EntryBase {
  kind: 'bunny';
  accessKey: string;
  pullZoneId: string;
  tokenKey?: string;
}
export interface FastlyEntry extends EntryBase {
  kind: 'fastly';
  apiToken: string;
  serviceId: string;
}
export interface VarnishEntry extends EntryBase {
  kind: 'varnish';
  apiUrl: string;
  purgeMethod?: string;
  maxTags?: number;
}
export interface CloudfrontEntry extends EntryBase {
  kind: 'cloudfront';
  distributionId: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  keyPairId?: string;
  privateKeyFile?: string;
  cloudwatchUrl?: string;
}

export type CdnProviderEntry = CloudflareEntry | BunnyEntry | FastlyEntry | VarnishEntry | CloudfrontEntry;

/** Per kind: the options it requires and those it may have, besides name, kind, baseUrl, apiUrl, timeoutMs. */
const FIELDS: Record<CdnKind, { required: readonly string[]; optional: readonly string[] }> = {
  cloudflare: { required: ['apiToken', 'zoneId'], optional: [] },
  bunny: { required: ['accessKey', 'pullZoneId'], optional: ['tokenKey'] },
  fastly: { required: ['apiToken', 'serviceId'], optional: [] },
  varnish: { required: [], optional: ['purgeMethod', 'maxTags'] },
  cloudfront: {
    required: ['distributionId'],
    optional: ['region', 'accessKeyId', 'secretAccessKey', 'keyPairId', 'privateKeyFile', 'cloudwatchUrl'],
  },
};
const COMMON = ['name', 'kind', 'baseUrl', 'apiUrl', 'timeoutMs'];
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** An HTTP method token (RFC 9110, section 9.1: methods are case-sensitive tokens), upper case by custom. */
const METHOD = /^[A-Z][A-Z-]{0,31}$/;
const TIMEOUT_MIN = 100;
const TIMEOUT_MAX = 600_000;

/** `[{"name": "cf", "kind": "cloudflare", ...}, ...]` -> checked provider entries, in order. */
export function parseCdnProviders(value: string, defaultTimeoutMs: number): CdnProviderEntry[] {
  let list: unknown;
  try {
    list = JSON.parse(value);
  } catch (error) {
    throw new Error(`not JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(list)) throw new Error('expected a JSON array of provider objects');
  const names = new Set<string>();
  return list.map((raw, index) => {
    const label = `entry ${index + 1}${isObject(raw) && typeof raw['name'] === 'string' ? ` (${JSON.stringify(raw['name'])})` : ''}`;
    try {
      const entry = parseEntry(raw, defaultTimeoutMs);
      if (names.has(entry.name)) throw new Error(`name ${JSON.stringify(entry.name)} is used twice`);
      names.add(entry.name);
      return entry;
    } catch (error) {
      throw new Error(`${label}: ${(error as Error).message}`);
    }
  });
}

function parseEntry(raw: unknown, defaultTimeoutMs: number): CdnProviderEntry {
  if (!isObject(raw)) throw new Error('expected an object');
  const kind = raw['kind'];
  if (typeof kind !== 'string' || !(CDN_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`kind: expected one of ${CDN_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
  }
  const fields = FIELDS[kind as CdnKind];
  const allowed = new Set([...COMMON, ...fields.required, ...fields.optional]);
  const unknown = Object.keys(raw).filter((k) => !allowed.has(k));
  if (unknown.length > 0) throw new Error(`unknown option ${unknown.join(', ')} for kind ${kind}`);

  const name = text(raw, 'name', true)!;
  if (!NAME.test(name))
    throw new Error('name: 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit');
  const out: Record<string, unknown> = {
    name,
    kind,
    baseUrl: httpUrl(raw, 'baseUrl', true)!.replace(/\/+$/, ''),
    timeoutMs: integer(raw, 'timeoutMs', TIMEOUT_MIN, TIMEOUT_MAX) ?? defaultTimeoutMs,
  };
  const apiUrl = httpUrl(raw, 'apiUrl', kind === 'varnish');
  if (apiUrl !== undefined) out['apiUrl'] = apiUrl;
  for (const key of fields.required) out[key] = text(raw, key, true);
  for (const key of fields.optional) {
    const value =
      key === 'maxTags'
        ? integer(raw, key, 1, 10_000)
        : key === 'cloudwatchUrl'
          ? httpUrl(raw, key, false)
          : text(raw, key, false);
    if (value !== undefined) out[key] = value;
  }
  if (kind === 'varnish' && out['purgeMethod'] !== undefined && !METHOD.test(out['purgeMethod'] as string)) {
    throw new Error('purgeMethod: expected an HTTP method such as PURGE');
  }
  if (kind === 'cloudfront') {
    out['region'] ??= 'us-east-1';
    pair(out, 'accessKeyId', 'secretAccessKey');
    pair(out, 'keyPairId', 'privateKeyFile');
  }
  return out as unknown as CdnProviderEntry;
}

/** Options that mean something only together. */
function pair(entry: Record<string, unknown>, a: string, b: string): void {
  if ((entry[a] === undefined) !== (entry[b] === undefined)) throw new Error(`${a} and ${b} go together`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(raw: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const value = raw[key];
  if (value === undefined) {
    if (required) throw new Error(`${key}: required`);
    return undefined;
  }
  if (typeof value !== 'string' || value.trim() === '')
    throw new Error(`${key}: expected a non-empty string`);
  return value;
}

function httpUrl(raw: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const value = text(raw, key, required);
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${key}: not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`${key}: expected http:// or https://`);
  if (url.search || url.hash) throw new Error(`${key}: expected no query or fragment`);
  return value.replace(/\/+$/, '');
}

function integer(raw: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const value = raw[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(`${key}: expected an integer in ${min}..${max}`);
  }
  return value;
}

export const cdnSettings = {
  cdnTimeoutMs: {
    type: 'int',
    default: 10_000,
    min: TIMEOUT_MIN,
    max: TIMEOUT_MAX,
    doc: "Longest call to a CDN provider's API (a purge, a usage read) before it fails as retryable; an entry of CONVEYOR_CDN_PROVIDERS may set its own `timeoutMs`.",
  },
  cdnProviders: {
    type: 'parsed',
    secret: true,
    parse: (value, read) => parseCdnProviders(value, read('cdnTimeoutMs') as number),
    doc: 'CDN providers, a JSON array of objects with `name` (unique), `kind` (cloudflare, bunny, cloudfront, fastly, varnish), `baseUrl` (public), `apiUrl` (default: the real API; required for varnish: where to send purges), `timeoutMs`, and per kind: cloudflare `apiToken`, `zoneId`; bunny `accessKey`, `pullZoneId`, `tokenKey` (signing); fastly `apiToken`, `serviceId`; varnish `purgeMethod` (PURGE), `maxTags`; cloudfront `distributionId`, `region`, `accessKeyId`, `secretAccessKey`, `keyPairId`, `privateKeyFile`, `cloudwatchUrl`. Unset: no CDN.',
  },
} as const satisfies Record<string, Setting>;
