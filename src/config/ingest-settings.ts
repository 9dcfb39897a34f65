import { parseCidrs, parseHosts, parseKindLanes, parsePorts, unlessEmpty } from './parsers.ts';
import type { Setting } from './setting.ts';
import { GiB, MiB } from './units.ts';

/**
 * Remote ingest's settings: the downloader's limits, the SSRF policy, and the kinds that pick a job's
 * lane. Part of the one settings table in schema.ts. Lists are comma-separated.
 */

/**
 * The hosts ingest never fetches from unless configured otherwise: names that only mean something inside
 * a network (GCP's metadata server, the private-use `.internal` TLD, mDNS `.local`, RFC 8375
 * `.home.arpa`). Their addresses are refused anyway; denying the names also covers resolvers that map
 * them to public-looking addresses.
 */
export const DEFAULT_DENY_HOSTS: readonly string[] = [
  'metadata.google.internal',
  '*.internal',
  '*.local',
  '*.home.arpa',
];

export const ingestSettings = {
  ingestMaxBytes: {
    type: 'int',
    default: 2 * GiB,
    min: 1,
    max: 5 * 1024 * GiB,
    doc: 'Largest remote file an ingest downloads; it is cut off past this.',
  },
  ingestConnectTimeoutMs: {
    type: 'int',
    default: 10_000,
    min: 1,
    max: 600_000,
    doc: 'Ingest: DNS, TCP and TLS of one connection.',
  },
  ingestIdleTimeoutMs: {
    type: 'int',
    default: 30_000,
    min: 1,
    max: 3_600_000,
    doc: 'Ingest: longest silence of the origin, before the headers or between chunks.',
  },
  ingestTotalTimeoutMs: {
    type: 'int',
    default: 3_600_000,
    min: 1,
    max: 86_400_000,
    doc: 'Ingest: longest whole download, redirects and resumes included, of the kinds CONVEYOR_INGEST_KIND_TIMEOUT_SECONDS does not name.',
  },
  ingestKindTimeoutSeconds: {
    type: 'limits',
    default: 'avatar=60,post=300',
    max: 86_400,
    doc: 'Ingest: longest whole download per kind, e.g. "avatar=60,backfill=7200" (other kinds, and 0: CONVEYOR_INGEST_TOTAL_TIMEOUT_MS); the attempt may run a minute longer.',
  },
  ingestMinBytesPerSecond: {
    type: 'int',
    default: 1024,
    min: 0,
    max: 1024 * MiB,
    doc: 'Ingest: the least a download must average over CONVEYOR_INGEST_MIN_RATE_WINDOW_MS (time the store spends not reading excluded); slower, it fails as too slow and the job retries after its backoff (0 = off).',
  },
  ingestMinRateWindowMs: {
    type: 'int',
    default: 30_000,
    min: 100,
    max: 3_600_000,
    doc: 'Ingest: the sliding window over which CONVEYOR_INGEST_MIN_BYTES_PER_SECOND is averaged.',
  },
  ingestMaxRedirects: { type: 'int', default: 5, min: 0, max: 20, doc: 'Ingest: redirects followed.' },
  ingestMaxResumes: {
    type: 'int',
    default: 3,
    min: 0,
    max: 100,
    doc: 'Ingest: resumes (Range + If-Range) after a dropped connection.',
  },
  ingestUserAgent: {
    type: 'string',
    default: 'Conveyor/0.1 (remote ingest)',
    doc: 'User-Agent of ingest requests.',
  },
  ingestAllowAddresses: {
    type: 'parsed',
    parse: (value) => unlessEmpty(parseCidrs(value)),
    doc: 'Addresses or CIDRs ingest may reach although they are not public (e.g. "10.1.2.0/24"); default none.',
  },
  ingestAllowHosts: {
    type: 'parsed',
    parse: (value) => unlessEmpty(parseHosts(value)),
    doc: 'If set, the only hosts ingest may fetch from ("cdn.example.com,*.example.org").',
  },
  ingestDenyHosts: {
    type: 'parsed',
    default: DEFAULT_DENY_HOSTS.join(','),
    parse: parseHosts,
    doc: 'Hosts ingest never fetches from (wins over the allow-list).',
  },
  ingestAllowedPorts: {
    type: 'parsed',
    parse: (value) => unlessEmpty(parsePorts(value)),
    doc: 'If set, the only ports ingest may connect to (e.g. "80,443").',
  },
  ingestKinds: {
    type: 'parsed',
    default: 'avatar=critical,post=high,default=normal,backfill=low,video=low',
    parse: parseKindLanes,
    doc: 'Ingest kinds and their lanes; `default` is used when an item names no kind.',
  },
  ingestHostRatePerSecond: {
    type: 'int',
    default: 20,
    min: 0,
    max: 100_000,
    doc: 'Ingest downloads started per second per origin host, across all workers (0 = unlimited).',
  },
  ingestBatchMaxItems: {
    type: 'int',
    default: 1000,
    min: 1,
    max: 100_000,
    doc: 'Items in one POST /api/v1/ingest/batch.',
  },
} as const satisfies Record<string, Setting>;
