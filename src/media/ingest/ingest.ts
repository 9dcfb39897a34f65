import type { Kysely } from 'kysely';
import type { AssetService, AssetView } from '../../assets/service.ts';
import type { Config } from '../../config/config.ts';
import { DEFAULT_KIND_TIMEOUT_SECONDS } from '../../config/ingest-settings.ts';
import type { Database, Visibility } from '../../db/tables.ts';
import { ConveyorError } from '../../errors.ts';
import type { Lane } from '../../glossary.ts';
import type { JobEngine } from '../../jobs/engine.ts';
import type { JobRegistry } from '../../jobs/registry.ts';
import {
  type EnqueueInput,
  type EnqueueResult,
  type JobContext,
  PermanentJobError,
} from '../../jobs/types.ts';
import { own } from '../../own.ts';
import { type Principal, requireRole } from '../../tenancy/principal.ts';
import { DownloadError } from './download-errors.ts';
import { type DownloadOptions, download } from './downloader.ts';
import { hostKey, jobPrincipal, permanentWhenFinal } from './job-support.ts';
import { PLAYLIST_JOB, type PlaylistReport, SITE_JOB, SiteIngest, type SitePayload } from './sites.ts';
import { checkUrl, type SsrfPolicy } from './ssrf.ts';

/** The job type that fetches one remote URL into an asset. */
export const INGEST_JOB = 'ingest.fetch';

/** What a client asks to ingest (one item of POST /api/v1/ingest or of a batch). */
export interface IngestItem {
  url: string;
  /** Names the lane through CONVEYOR_INGEST_KINDS (`avatar` -> critical, ...); default `default`. */
  kind?: string | undefined;
  /** An explicit lane; wins over the kind's. */
  priority?: Lane | undefined;
  idempotencyKey?: string | undefined;
  filename?: string | undefined;
  visibility?: Visibility | undefined;
  /** Re-ingest into this asset: a conditional request with the validators of its last fetch. */
  assetId?: string | undefined;
  /** How the URL is fetched: `direct` (the file itself, default) or `ytdlp` (a video site's page). */
  via?: IngestVia | undefined;
  /** With `via: ytdlp`: the URL is a playlist, and each entry becomes an `ingest.site` job. */
  playlist?: boolean | undefined;
}

export const INGEST_VIA = ['direct', 'ytdlp'] as const;
export type IngestVia = (typeof INGEST_VIA)[number];

/** The job's payload: everything the fetch needs, decided at enqueue. */
export interface IngestPayload {
  url: string;
  kind: string;
  filename?: string;
  visibility: Visibility;
  assetId?: string;
}

/** What an ingest job answers when it succeeds. */
export interface IngestResult {
  assetId: string;
  notModified: boolean;
  sha256?: string;
  bytes?: number;
  resumes?: number;
  contentType?: string;
  finalUrl?: string;
}

const PAYLOAD_SCHEMA = {
  type: 'object',
  properties: {
    url: { type: 'string', minLength: 1, maxLength: 8192 },
    kind: { type: 'string', minLength: 1, maxLength: 32 },
    filename: { type: 'string', minLength: 1, maxLength: 1024 },
    visibility: { enum: ['public', 'private'] },
    assetId: { type: 'string', minLength: 1, maxLength: 100 },
  },
  required: ['url', 'kind', 'visibility'],
  additionalProperties: false,
};

/**
 * Remote ingest: validates and enqueues fetches, and runs them as `ingest.fetch` jobs. A fetch streams
 * the origin's bytes through the SSRF-guarded downloader straight into the blob store (never into memory),
 * then commits the asset, records where it came from, and (through the asset service's content hook) starts
 * the image processing in the same lane.
 *
 * Each origin host is a breaker key (`host:<name>`), so a failing host opens its own circuit breaker and
 * defers only its own jobs, and a start rate per host (CONVEYOR_INGEST_HOST_RATE_PER_SECOND) is enforced
 * by the claim across all workers; both are listed in /api/v1/queue/status.
 */
export class IngestService {
  readonly #config: Config;
  readonly #db: Kysely<Database>;
  readonly #assets: AssetService;
  readonly #jobs: JobEngine;
  readonly #policy: SsrfPolicy;
  readonly #sites: SiteIngest;

  constructor(deps: { config: Config; db: Kysely<Database>; assets: AssetService; jobs: JobEngine }) {
    const { config } = deps;
    this.#config = config;
    this.#db = deps.db;
    this.#assets = deps.assets;
    this.#jobs = deps.jobs;
    // A timeout for a kind nobody can name is a typo that would otherwise pass unnoticed. The built-in
    // defaults are no typo: an installation that defines its own kinds without `video` keeps working.
    const unknown = Object.entries(config.ingestKindTimeoutSeconds)
      .filter(([kind, seconds]) => seconds > 0 && own(config.ingestKinds, kind) === undefined)
      .filter(([kind, seconds]) => own(DEFAULT_KIND_TIMEOUTS, kind) !== seconds)
      .map(([kind]) => kind);
    if (unknown.length > 0) {
      throw new Error(
        `CONVEYOR_INGEST_KIND_TIMEOUT_SECONDS names ${unknown.join(', ')}, which CONVEYOR_INGEST_KINDS does not define`,
      );
    }
    this.#policy = {
      allowAddresses: config.ingestAllowAddresses ?? [],
      denyHosts: config.ingestDenyHosts,
      ...(config.ingestAllowHosts ? { allowHosts: config.ingestAllowHosts } : {}),
      ...(config.ingestAllowedPorts ? { allowedPorts: config.ingestAllowedPorts } : {}),
    };
    this.#sites = new SiteIngest({
      config,
      assets: deps.assets,
      jobs: deps.jobs,
      policy: this.#policy,
      timeoutOf: (kind) => this.timeoutOf(kind),
    });
  }

  /** The kinds clients may name, with their lanes. */
  get kinds(): Readonly<Record<string, Lane>> {
    return this.#config.ingestKinds;
  }

  /** The longest whole download of a kind (ms): its own timeout, or the general one (also for 0). */
  timeoutOf(kind: string): number {
    const seconds = own(this.#config.ingestKindTimeoutSeconds, kind) ?? 0;
    return seconds > 0 ? seconds * 1000 : this.#config.ingestTotalTimeoutMs;
  }

  /**
   * Registers `ingest.fetch`, `ingest.site` and `ingest.playlist` in the registry every worker of this
   * installation uses.
   */
  register(registry: JobRegistry): void {
    this.#sites.register(registry);
    registry.register<IngestPayload>({
      type: INGEST_JOB,
      schema: PAYLOAD_SCHEMA,
      handler: (payload, context) => this.#fetch(payload, context),
      maxAttempts: 5,
      backoff: { baseMs: 2_000, maxMs: 300_000 },
      // The downloader enforces the kind's total timeout; the attempt's is a backstop above it.
      timeoutMs: (payload) => this.timeoutOf(payload.kind) + 60_000,
      breakerKey: (payload) => hostKey(payload.url),
      ...(this.#config.ingestHostRatePerSecond > 0
        ? { keyRatePerSecond: this.#config.ingestHostRatePerSecond }
        : {}),
    });
  }

  /** The per-entry report of an `ingest.playlist` job (sites.ts). */
  playlistReport(by: Principal, jobId: string): Promise<PlaylistReport> {
    requireRole(by, 'viewer');
    return this.#sites.playlistReport(by, jobId);
  }

  async enqueue(by: Principal, item: IngestItem): Promise<EnqueueResult> {
    const [result] = await this.enqueueBatch(by, [item]);
    return result!;
  }

  /** All or nothing, like the engine's enqueueMany: one bad item (named by its index) enqueues none. */
  async enqueueBatch(by: Principal, items: readonly IngestItem[]): Promise<EnqueueResult[]> {
    requireRole(by, 'editor');
    if (items.length > this.#config.ingestBatchMaxItems) {
      throw new ConveyorError(
        'validation_failed',
        `A batch holds at most ${this.#config.ingestBatchMaxItems} items`,
      );
    }
    const inputs = items.map((item, index) => this.#prepare(item, index));
    // Re-ingest targets must be the caller's own assets: 404 now, like every other asset route.
    for (const assetId of new Set(items.flatMap((item) => item.assetId ?? []))) {
      await this.#assets.get(by, assetId);
    }
    return this.#jobs.enqueuer.enqueueMany(by.tenantId, inputs, { actor: by.actor });
  }

  #prepare(item: IngestItem, index: number): EnqueueInput {
    const where = (message: string) =>
      new ConveyorError('validation_failed', `Item ${index}: ${message}`, { extra: { index } });
    // What can be refused without the network is refused now, with the code the job would record
    // (bad_url, ssrf_forbidden: 400); what needs DNS is the job's.
    try {
      checkUrl(item.url, this.#policy);
    } catch (error) {
      if (error instanceof DownloadError && (error.code === 'bad_url' || error.code === 'ssrf_forbidden')) {
        throw new ConveyorError(error.code, `Item ${index}: ${error.message}`, { extra: { index } });
      }
      throw error;
    }
    const kind = item.kind ?? 'default';
    const lane = item.priority ?? own(this.#config.ingestKinds, kind);
    if (!lane)
      throw where(
        `unknown kind ${JSON.stringify(kind)}; known: ${Object.keys(this.#config.ingestKinds).join(', ')}`,
      );
    const via = item.via ?? 'direct';
    if (via === 'ytdlp') {
      if (item.assetId !== undefined) throw where('assetId (re-ingest) is for direct downloads only');
      if (item.playlist && item.filename !== undefined) {
        throw where('a playlist makes one asset per entry: filename cannot name them');
      }
      const site: SitePayload = {
        url: item.url,
        kind,
        visibility: item.visibility ?? 'public',
        ...(item.filename !== undefined ? { filename: item.filename } : {}),
      };
      return {
        type: item.playlist ? PLAYLIST_JOB : SITE_JOB,
        payload: site,
        lane,
        ...(item.idempotencyKey !== undefined ? { idempotencyKey: item.idempotencyKey } : {}),
      };
    }
    if (item.playlist) throw where('playlist: true needs via "ytdlp"');
    const payload: IngestPayload = {
      url: item.url,
      kind,
      visibility: item.visibility ?? 'public',
      ...(item.filename !== undefined ? { filename: item.filename } : {}),
      ...(item.assetId !== undefined ? { assetId: item.assetId } : {}),
    };
    return {
      type: INGEST_JOB,
      payload,
      lane,
      ...(item.idempotencyKey !== undefined ? { idempotencyKey: item.idempotencyKey } : {}),
    };
  }

  async #fetch(payload: IngestPayload, context: JobContext): Promise<IngestResult> {
    const by = jobPrincipal(context);
    const previous = payload.assetId ? await this.#previousSource(by, payload.assetId) : null;
    const options: DownloadOptions = {
      policy: this.#policy,
      maxBytes: this.#config.ingestMaxBytes,
      connectTimeoutMs: this.#config.ingestConnectTimeoutMs,
      idleTimeoutMs: this.#config.ingestIdleTimeoutMs,
      totalTimeoutMs: this.timeoutOf(payload.kind),
      maxRedirects: this.#config.ingestMaxRedirects,
      maxResumes: this.#config.ingestMaxResumes,
      minBytesPerSecond: this.#config.ingestMinBytesPerSecond,
      rateWindowMs: this.#config.ingestMinRateWindowMs,
      userAgent: this.#config.ingestUserAgent,
      signal: context.signal,
      onProgress: (bytes, total) =>
        context.progress({
          stage: 'downloading',
          ...(total ? { percent: Math.min(99, (bytes / total) * 100) } : {}),
          message: `${bytes} bytes`,
        }),
      ...(previous?.etag ? { ifNoneMatch: previous.etag } : {}),
      ...(previous?.lastModified ? { ifModifiedSince: previous.lastModified } : {}),
    };
    context.progress({ stage: 'connecting' });
    const response = await download(payload.url, options).catch(permanentWhenFinal);
    if (response.notModified) {
      context.progress({ stage: 'not modified', percent: 100 });
      return { assetId: payload.assetId!, notModified: true };
    }
    const input = {
      body: response.body,
      declaredType: response.contentType,
      lane: context.job.lane,
      maxBytes: this.#config.ingestMaxBytes,
      source: {
        url: payload.url,
        finalUrl: response.url,
        etag: response.etag ?? null,
        lastModified: response.lastModified ?? null,
      },
    };
    let asset: AssetView;
    try {
      asset = payload.assetId
        ? await this.#assets.replaceContent(by, payload.assetId, input)
        : await this.#assets.upload(by, {
            ...input,
            filename: payload.filename ?? filenameOf(response.url),
            visibility: payload.visibility,
          });
    } catch (error) {
      // The store stopped reading (or failed): stop the download too, then report the download's own
      // error when it has one (too large, timeout, ...), which says more than "stream destroyed".
      response.body.destroy();
      const cause = await response.done.then(
        () => error,
        (downloadError: unknown) => downloadError,
      );
      throw permanentWhenFinal(cause instanceof DownloadError ? cause : error);
    }
    const result = await response.done;
    context.progress({ stage: 'stored', percent: 100 });
    return {
      assetId: asset.id,
      notModified: false,
      sha256: result.sha256,
      bytes: result.bytes,
      resumes: result.resumes,
      contentType: asset.contentType,
      finalUrl: result.url,
    };
  }

  async #previousSource(
    by: Principal,
    assetId: string,
  ): Promise<{ etag: string | null; lastModified: string | null }> {
    const row = await this.#db
      .selectFrom('assets as a')
      .leftJoin('asset_sources as s', 's.asset_id', 'a.id')
      .select(['a.id', 's.etag', 's.last_modified'])
      .where('a.id', '=', assetId)
      .where('a.tenant_id', '=', by.tenantId)
      .executeTakeFirst();
    if (!row) throw new PermanentJobError(`asset ${assetId} does not exist`, 'not_found');
    return { etag: row.etag ?? null, lastModified: row.last_modified ?? null };
  }
}

/** The timeouts CONVEYOR_INGEST_KIND_TIMEOUT_SECONDS has by default. */
const DEFAULT_KIND_TIMEOUTS: Readonly<Record<string, number>> = Object.fromEntries(
  DEFAULT_KIND_TIMEOUT_SECONDS.split(',').map((pair) => {
    const [kind, seconds] = pair.split('=');
    return [kind!, Number(seconds)];
  }),
);

/** The last path segment of the URL the bytes came from, or a neutral name. */
function filenameOf(url: string): string {
  try {
    const segment = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
    return segment.trim() === '' ? 'download' : segment;
  } catch {
    return 'download';
  }
}
