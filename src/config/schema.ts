/**
 * Every setting Conveyor reads, in one table: its environment variable, type, default and meaning.
 * The defaults are the embedded setup (SQLite file + local folder). `conveyor config --table` prints
 * this table as Markdown for the README, so the docs cannot drift from the code.
 */

import { cdnSettings } from './cdn-settings.ts';
import { ingestSettings } from './ingest-settings.ts';
import { jobSettings } from './job-settings.ts';
import { mediaSettings } from './media-settings.ts';
import { parseOrigins, parsePort } from './parsers.ts';
import type { InputOf, Setting, ValueOf } from './setting.ts';
import { DAY, GiB, KiB, MiB } from './units.ts';
import { videoSettings } from './video-settings.ts';

export const settings = {
  dataDir: { type: 'string', default: './data', doc: 'Folder for the SQLite file and local blobs.' },
  host: { type: 'string', default: '0.0.0.0', doc: 'Address the HTTP server listens on.' },
  port: { type: 'int', default: 8080, min: 0, max: 65535, doc: 'HTTP port (0 picks a free one).' },
  publicUrl: {
    type: 'optional',
    doc: 'Base URL that clients and the CDN use to reach this origin; default http://localhost:<port>.',
  },
  processes: {
    type: 'int',
    default: 1,
    min: 1,
    max: 256,
    doc: '`serve` processes sharing the port (node:cluster); e.g. the number of cores.',
  },
  logLevel: {
    type: 'enum',
    default: 'info',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    doc: 'Log level of the JSON logs.',
  },
  trustProxy: {
    type: 'bool',
    default: false,
    doc: 'Take the client address from X-Forwarded-For (only behind a proxy you control).',
  },
  metricsPort: {
    type: 'parsed',
    parse: parsePort,
    doc: 'Serve /metrics on this port of `metricsHost` only, not on the main port (0 picks a free one); with `processes` > 1 the cluster primary serves it, summing the counters of every process. Unset: /metrics is on the main port, where each process answers with its own counters.',
  },
  metricsHost: {
    type: 'optional',
    doc: 'Address the /metrics listener of `metricsPort` binds, e.g. an internal interface; default: `host`.',
  },
  metricsToken: {
    type: 'optional',
    secret: true,
    check: (value) => (value.length >= 16 ? null : 'expected 16 or more characters'),
    doc: '/metrics then requires `Authorization: Bearer <token>` (401 otherwise), wherever it is served.',
  },
  metricsHostLabels: {
    type: 'bool',
    default: false,
    doc: "Show circuit breaker keys, which hold the host names tenants ingest from, as they are in metric labels; otherwise each is `host:h-` and the first 12 hex digits of the name's SHA-256 (the whole key's, without a `host:` prefix).",
  },
  httpHeadersTimeoutMs: {
    type: 'int',
    default: 20_000,
    min: 100,
    max: 600_000,
    doc: 'A client that has not sent all of its request headers within this gets 408 and its connection is closed.',
  },
  httpBodyIdleTimeoutMs: {
    type: 'int',
    default: 60_000,
    min: 0,
    max: 3_600_000,
    doc: 'A request body that brings no new bytes for this long is cut off (0 = never); an upload may take as long as it needs while bytes keep coming.',
  },
  httpKeepAliveTimeoutMs: {
    type: 'int',
    default: 72_000,
    min: 1000,
    max: 3_600_000,
    doc: 'An idle keep-alive connection is closed after this; keep it longer than the idle timeout of a load balancer in front (AWS ALB: 60 s), so that the balancer closes first.',
  },
  httpMaxConnections: {
    type: 'int',
    default: 10_000,
    min: 0,
    max: 1_000_000,
    doc: "Open connections per process; more are closed as they arrive (0 = unlimited). Keep it below the process's open-file limit.",
  },
  httpMaxConnectionsPerAddress: {
    type: 'int',
    default: 256,
    min: 0,
    max: 1_000_000,
    doc: 'Open connections per process from one peer address; more are closed as they arrive (0 = unlimited). Counted on the TCP peer, even with CONVEYOR_TRUST_PROXY: behind a proxy, raise it or set 0.',
  },
  httpLingeringCloseBytes: {
    type: 'int',
    default: 64 * MiB,
    min: 0,
    max: 1 * GiB,
    doc: 'After an answer sent before the request body was read (401, 413), up to this much of the rest is read and discarded, so that a client still sending sees the answer rather than a reset connection (0 = none).',
  },
  httpLingeringCloseMs: {
    type: 'int',
    default: 5_000,
    min: 0,
    max: 600_000,
    doc: 'How long the rest of such a body is read and discarded at most (0 = none).',
  },

  databaseUrl: {
    type: 'optional',
    secret: true,
    doc: 'postgres://… for PostgreSQL; default: SQLite file <dataDir>/conveyor.db.',
  },
  databasePoolSize: { type: 'int', default: 10, min: 1, max: 1000, doc: 'PostgreSQL connection pool size.' },
  sqliteBusyRetryMs: {
    type: 'int',
    default: 10_000,
    min: 0,
    max: 600_000,
    doc: 'How long a SQLite statement keeps retrying (asynchronously) while another process writes.',
  },
  sqliteCheckpointMs: {
    type: 'int',
    default: 100,
    min: 0,
    max: 60_000,
    doc: "How often a background thread checkpoints SQLite's WAL into the database file (0: SQLite's own automatic checkpoints, which run on the event loop).",
  },

  storage: { type: 'enum', default: 'fs', values: ['fs', 's3'], doc: 'Blob storage backend.' },
  s3Endpoint: { type: 'optional', doc: 'S3-compatible endpoint URL (R2, MinIO, …); unset for AWS.' },
  s3Region: { type: 'string', default: 'us-east-1', doc: 'S3 region (R2: auto).' },
  s3Bucket: { type: 'string', default: 'conveyor', doc: 'S3 bucket.' },
  s3Prefix: { type: 'string', default: '', doc: 'Key prefix inside the bucket, e.g. "prod/".' },
  s3ForcePathStyle: {
    type: 'bool',
    default: false,
    doc: 'Path-style addressing (MinIO and most self-hosted).',
  },
  s3AccessKeyId: { type: 'optional', doc: 'S3 access key id; unset to use the SDK credential chain.' },
  s3SecretAccessKey: { type: 'optional', secret: true, doc: 'S3 secret access key.' },
  s3PartSizeBytes: {
    type: 'int',
    default: 8 * MiB,
    min: 5 * MiB,
    max: 5 * GiB,
    doc: 'Multipart upload part size; an upload buffers about size x (queue + 1).',
  },
  s3QueueSize: { type: 'int', default: 3, min: 1, max: 64, doc: 'Parts uploaded in parallel per upload.' },
  s3MaxSockets: {
    type: 'int',
    default: 256,
    min: 1,
    max: 10_000,
    doc: 'Connections to the S3 endpoint (bounds concurrent downloads from storage).',
  },
  blobDiskCacheDir: {
    type: 'optional',
    doc: 'Folder of the local disk cache of S3 blobs; default <dataDir>/blob-cache.',
  },
  blobDiskCacheMaxBytes: {
    type: 'int',
    default: 4 * GiB,
    min: 0,
    max: 1024 * 1024 * GiB,
    doc: 'Disk space per process for S3 blobs cached locally (0 turns the cache off); blobs over an eighth of it are not cached.',
  },
  storageMinFreeBytes: {
    type: 'int',
    default: 1 * GiB,
    min: 0,
    max: 1024 * 1024 * GiB,
    doc: 'Free space kept in reserve on each local filesystem Conveyor writes to (blobs, uploads, SQLite, blob cache). Below it, health reports storage as degraded and uploads are refused with 507; an upload whose declared length would eat into it is refused before a byte is written. 0 keeps no reserve (an upload larger than the free space is still refused).',
  },
  storageSpaceCheckMs: {
    type: 'int',
    default: 1000,
    min: 0,
    max: 60_000,
    doc: 'How long a measurement of free space (statfs) is reused by health checks and upload admission (0 = measure every time).',
  },

  adminKey: {
    type: 'optional',
    secret: true,
    doc: 'Bootstrap operator key created on first start; generated and printed once when unset.',
  },
  maxUploadBytes: { type: 'int', default: 5 * GiB, min: 1, max: 5 * 1024 * GiB, doc: 'Largest upload.' },
  maxJsonBodyBytes: { type: 'int', default: 1 * MiB, min: 1 * KiB, max: 64 * MiB, doc: 'Largest JSON body.' },
  apiCompressMinBytes: {
    type: 'int',
    default: 1 * KiB,
    min: 0,
    max: 64 * MiB,
    doc: 'JSON API responses at least this large are compressed (br, gzip) for clients that ask with Accept-Encoding; 0 turns compression off. Delivery is never compressed.',
  },
  maxJsonDepth: {
    type: 'int',
    default: 64,
    min: 2,
    max: 1000,
    doc: 'Deepest nesting of objects and arrays in a JSON body (and a job payload); deeper is 400.',
  },
  maxFilenameBytes: {
    type: 'int',
    default: 255,
    min: 16,
    max: 1024,
    doc: 'Longest stored filename (UTF-8).',
  },
  maxPageSize: { type: 'int', default: 100, min: 1, max: 1000, doc: 'Largest page of a list endpoint.' },

  cacheLatestMaxAge: { type: 'int', default: 60, min: 0, max: 365 * DAY, doc: 'max-age of latest URLs.' },
  cacheLatestSMaxAge: { type: 'int', default: 3600, min: 0, max: 365 * DAY, doc: 's-maxage of latest URLs.' },
  cacheStaleWhileRevalidate: {
    type: 'int',
    default: 60,
    min: 0,
    max: 365 * DAY,
    doc: 'stale-while-revalidate of latest URLs (0 omits it).',
  },
  cacheStaleIfError: {
    type: 'int',
    default: 0,
    min: 0,
    max: 365 * DAY,
    doc: 'stale-if-error of latest URLs (0 omits it).',
  },
  cacheNotFoundSMaxAge: {
    type: 'int',
    default: 10,
    min: 0,
    max: 365 * DAY,
    doc: 'Shared-cache (CDN) lifetime of a delivery 404, so a flood of unknown ids stops at the CDN (0 = no-store). Never for a request that carried an Authorization header.',
  },
  deliveryMetadataTtlMs: {
    type: 'int',
    default: 1000,
    min: 0,
    max: 60_000,
    doc: "How long delivery may reuse an asset's metadata and a derived blob's row; changes made by another process (and garbage collection) show within this (0 = always query).",
  },
  blobCacheBytes: {
    type: 'int',
    default: 64 * MiB,
    min: 0,
    max: 64 * GiB,
    doc: 'Memory for the bytes of small popular blobs served by delivery (0 turns the cache off).',
  },
  blobCacheItemBytes: {
    type: 'int',
    default: 4 * MiB,
    min: 0,
    max: 1 * GiB,
    doc: "Largest blob kept in the delivery cache: 4 MiB holds an HLS segment (4 s at the ladder's top bit rates), the hottest file a video origin serves. Served from memory a blob skips the kernel's page-cache copy, which on virtual machines can cost more than the socket write, and a blob over CONVEYOR_DELIVERY_BUFFER_MAX_BYTES the streamed reads (docs/benchmarks.md).",
  },
  deliveryBufferMaxBytes: {
    type: 'int',
    default: 1 * MiB,
    min: 16 * KiB,
    max: 64 * MiB,
    doc: 'A body or range up to this size is read into one pooled buffer and sent with one write; larger ones are streamed.',
  },
  deliveryBufferPoolBytes: {
    type: 'int',
    default: 32 * MiB,
    min: 0,
    max: 4 * GiB,
    doc: 'Memory of idle delivery buffers kept for reuse (0 = allocate per response).',
  },
  blobSyncReadMaxBytes: {
    type: 'int',
    default: 1 * MiB,
    min: 0,
    max: 64 * MiB,
    doc: "Reads up to this size from a recently read blob file run on the event loop, as nginx's do (a read that misses the page cache stalls the process meanwhile); 0 = always libuv's thread pool.",
  },
  maxRanges: {
    type: 'int',
    default: 16,
    min: 1,
    max: 1000,
    doc: 'More ranges than this in one Range header: the whole body is served (200).',
  },
  deliveryActiveContent: {
    type: 'enum',
    default: 'sandbox',
    values: ['sandbox', 'attachment'],
    doc: "Content a browser may run script or a plugin in (HTML, XML, SVG, JavaScript, PDF, Flash) is served with `Content-Security-Policy: sandbox`; `attachment` adds `Content-Disposition: attachment`, so that browsers download it instead (Chromium's PDF viewer refuses a sandboxed PDF and shows a blocked page).",
  },

  tokenMaxTtlSeconds: {
    type: 'int',
    default: 30 * DAY,
    min: 1,
    max: 3650 * DAY,
    doc: 'Longest access token.',
  },
  signedUrlMaxTtlSeconds: {
    type: 'int',
    default: 7 * DAY,
    min: 1,
    max: 3650 * DAY,
    doc: 'Longest signed URL lifetime.',
  },
  signingKeys: {
    type: 'optional',
    secret: true,
    doc: 'Signed-URL keys "kid:secret,kid2:secret2" (first signs, all verify); default: one generated key kept in the database.',
  },

  jwtSecret: { type: 'optional', secret: true, doc: 'HS256 secret for platform-minted JWTs (32+ bytes).' },
  jwtJwksUrl: { type: 'optional', doc: 'JWKS URL for RS256/ES256 platform-minted JWTs.' },
  jwtIssuer: { type: 'optional', doc: 'Required `iss` of JWTs.' },
  jwtAudience: { type: 'optional', doc: 'Required `aud` of JWTs.' },
  jwtTenantClaim: { type: 'string', default: 'tenant', doc: 'JWT claim holding the tenant id.' },
  jwtRoleClaim: { type: 'string', default: 'role', doc: 'JWT claim holding the role.' },
  jwtMaxLifetimeSeconds: { type: 'int', default: 3600, min: 1, max: 7 * DAY, doc: 'Longest JWT lifetime.' },

  rateLimitPerKey: {
    type: 'int',
    default: 1200,
    min: 0,
    max: 10_000_000,
    doc: 'API requests per minute per key or JWT subject (0 = unlimited).',
  },
  rateLimitPerAddress: {
    type: 'int',
    default: 600,
    min: 0,
    max: 10_000_000,
    doc: 'API requests per minute per client address (0 = unlimited).',
  },
  rateLimitDelivery: {
    type: 'int',
    default: 0,
    min: 0,
    max: 10_000_000,
    doc: 'Delivery requests per minute per client address (0 = unlimited; the CDN is the shield).',
  },
  rateLimitMaxKeys: {
    type: 'int',
    default: 100_000,
    min: 1,
    max: 100_000_000,
    doc: 'Clients (keys, JWT subjects or addresses) each rate limit keeps count of per process; past it the least recently seen is forgotten and starts afresh.',
  },

  corsApiOrigins: {
    type: 'parsed',
    parse: (value) => parseOrigins(value, { wildcard: false }),
    doc: 'Browser origins that may call the API (/api/v1/*, uploads aside), e.g. `https://app.example.com,http://localhost:3000`: exact scheme://host[:port], no path. Unset: no CORS headers, preflights are not answered.',
  },
  corsUploadsOrigins: {
    type: 'parsed',
    parse: (value) => parseOrigins(value, { wildcard: false }),
    doc: 'Browser origins that may upload with tus (/api/v1/uploads), as for `corsApiOrigins`.',
  },
  corsDeliveryOrigins: {
    type: 'parsed',
    parse: (value) => parseOrigins(value, { wildcard: true }),
    doc: 'Browser origins that may read delivery URLs (/a, /v, /t) with fetch, players or `<img crossorigin>`, as for `corsApiOrigins`; or `*` for every origin (no `Vary: Origin`, one cached copy).',
  },
  corsMaxAgeSeconds: {
    type: 'int',
    default: 600,
    min: 0,
    max: DAY,
    doc: 'How long a browser may reuse a preflight answer (Access-Control-Max-Age; Chromium caps it at 7200).',
  },

  ...jobSettings,

  ...ingestSettings,
  ...mediaSettings,
  ...videoSettings,

  ...cdnSettings,

  gcIntervalSeconds: {
    type: 'int',
    default: 300,
    min: 0,
    max: 7 * DAY,
    doc: 'Blob garbage collection period in `serve` (0 = only `conveyor gc`).',
  },
  gcGraceSeconds: {
    type: 'int',
    default: 3600,
    min: 0,
    max: 30 * DAY,
    doc: 'An unreferenced blob or temporary survives at least this long.',
  },
} as const satisfies Record<string, Setting>;

export type SettingKey = keyof typeof settings;

/** The effective settings, each as the typed value its row gives. */
export type Config = { readonly [K in SettingKey]: ValueOf<(typeof settings)[K]> };

/** Settings as the config file and `loadConfig`'s overrides give them: text for the parsed ones. */
export type ConfigInput = { readonly [K in SettingKey]?: InputOf<(typeof settings)[K]> };

/** `dataDir` -> `CONVEYOR_DATA_DIR`. */
export function envName(key: string): string {
  return `CONVEYOR_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}
