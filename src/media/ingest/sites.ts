/**
 * Video sites through yt-dlp
 * ==========================
 *
 * `POST /api/v1/ingest {url, via: "ytdlp"}` queues an `ingest.site` job: the handler runs the yt-dlp
 * driver (src/media/video/ytdlp.ts) in a fresh folder, every connection of yt-dlp through a guarded proxy
 * that applies ingest's address rules, and stores the file it wrote as a new asset through the asset
 * service, exactly as `ingest.fetch` stores a download (sniffed type, the lane of the ingest kind, the
 * source URL in asset_sources, and, for video content, the `video.ladder` job through the content hook).
 *
 * `{url, via: "ytdlp", playlist: true}` queues an `ingest.playlist` job instead. It lists the playlist
 * (flat, at most CONVEYOR_YTDLP_PLAYLIST_MAX_ENTRIES), queues one `ingest.site` child per entry (parentId =
 * the playlist job) and succeeds at once, its result naming each entry's job. It does not wait for the
 * children: the engine has no "wait for children" primitive, and a parent polling in a worker slot would
 * hold a slot of the very lane its children need (with a lane limit of one, forever). The per-entry
 * report ({url, jobId, state, assetId?, error?}) is built when asked, from the children's own states
 * (`playlistReport`, GET /api/v1/ingest/playlists/{id}): entries succeed and fail on their own, so one
 * broken entry never costs the others, and nothing is all-or-nothing.
 *
 * A retried playlist attempt queues no second set of children: each child's idempotency key is the
 * parent's id and the entry's index, so the same entries find the jobs already queued.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AssetService } from '../../assets/service.ts';
import type { Config } from '../../config/config.ts';
import type { Visibility } from '../../db/tables.ts';
import { notFound } from '../../errors.ts';
import type { JobEngine } from '../../jobs/engine.ts';
import type { JobRegistry } from '../../jobs/registry.ts';
import type { EnqueueInput, Job, JobContext } from '../../jobs/types.ts';
import type { Principal } from '../../tenancy/principal.ts';
import { type Progress, Ytdlp, ytdlpOptions } from '../video/ytdlp.ts';
import { DownloadError } from './download-errors.ts';
import { hostKey, jobPrincipal, permanentWhenFinal } from './job-support.ts';
import { checkUrl, type SsrfPolicy } from './ssrf.ts';

/** The job type that downloads one video-site URL through yt-dlp into an asset. */
export const SITE_JOB = 'ingest.site';
/** The job type that lists a playlist and queues one `ingest.site` job per entry. */
export const PLAYLIST_JOB = 'ingest.playlist';

/** Both types' payload: decided at enqueue. */
export interface SitePayload {
  url: string;
  kind: string;
  visibility: Visibility;
  filename?: string;
}

export interface SiteResult {
  assetId: string;
  sha256: string;
  bytes: number;
  contentType: string;
  title?: string;
  extractor?: string;
  duration?: number;
  webpageUrl?: string;
}

/** One entry of a playlist job's result: its child job, or why it got none. */
export interface PlaylistEntryResult {
  url: string;
  title?: string;
  jobId?: string;
  /** A catalog code, for an entry refused before any job (a forbidden or malformed URL). */
  error?: { code: string; message: string };
}

export interface PlaylistResult {
  playlist: boolean;
  id?: string;
  title?: string;
  /** The playlist's size when yt-dlp knows it. */
  total?: number;
  /** More entries than CONVEYOR_YTDLP_PLAYLIST_MAX_ENTRIES: the rest were not taken. */
  truncated: boolean;
  /** Entries yt-dlp listed without a URL. */
  skipped: number;
  entries: PlaylistEntryResult[];
}

/** An entry as GET /api/v1/ingest/playlists/{id} shows it. */
export interface PlaylistReportEntry {
  url: string;
  title?: string;
  jobId: string | null;
  /** The child job's state; `refused` for an entry that got no job. */
  state: Job['state'] | 'refused';
  assetId?: string;
  error?: { code?: string; message: string };
}

export interface PlaylistReport {
  jobId: string;
  /** The playlist job's own state: entries are known once it has succeeded. */
  state: Job['state'];
  /** Every entry has ended (succeeded, dead, cancelled or refused). */
  done: boolean;
  succeeded: number;
  failed: number;
  pending: number;
  truncated: boolean;
  entries: PlaylistReportEntry[];
}

const PAYLOAD_SCHEMA = {
  type: 'object',
  properties: {
    url: { type: 'string', minLength: 1, maxLength: 8192 },
    kind: { type: 'string', minLength: 1, maxLength: 32 },
    filename: { type: 'string', minLength: 1, maxLength: 1024 },
    visibility: { enum: ['public', 'private'] },
  },
  required: ['url', 'kind', 'visibility'],
  additionalProperties: false,
};

const ENDED = new Set<string>(['succeeded', 'dead', 'cancelled']);
const MAX_URL = 8192;

export class SiteIngest {
  readonly #config: Config;
  readonly #assets: AssetService;
  readonly #jobs: JobEngine;
  readonly #policy: SsrfPolicy;
  readonly #timeoutOf: (kind: string) => number;

  constructor(deps: {
    config: Config;
    assets: AssetService;
    jobs: JobEngine;
    policy: SsrfPolicy;
    timeoutOf: (kind: string) => number;
  }) {
    this.#config = deps.config;
    this.#assets = deps.assets;
    this.#jobs = deps.jobs;
    this.#policy = deps.policy;
    this.#timeoutOf = deps.timeoutOf;
  }

  register(registry: JobRegistry): void {
    const perHost = {
      breakerKey: (payload: SitePayload) => hostKey(payload.url),
      ...(this.#config.ingestHostRatePerSecond > 0
        ? { keyRatePerSecond: this.#config.ingestHostRatePerSecond }
        : {}),
    };
    registry.register<SitePayload>({
      type: SITE_JOB,
      schema: PAYLOAD_SCHEMA,
      handler: (payload, context) => this.#download(payload, context),
      maxAttempts: 5,
      backoff: { baseMs: 2_000, maxMs: 300_000 },
      // yt-dlp has no total timeout of its own: the kind's is the attempt's, a minute added for storing.
      timeoutMs: (payload) => this.#timeoutOf(payload.kind) + 60_000,
      ...perHost,
    });
    registry.register<SitePayload>({
      type: PLAYLIST_JOB,
      schema: PAYLOAD_SCHEMA,
      handler: (payload, context) => this.#list(payload, context),
      maxAttempts: 3,
      backoff: { baseMs: 2_000, maxMs: 60_000 },
      // Listing is one -J run, bounded by CONVEYOR_YTDLP_PROBE_TIMEOUT_MS; then the children are queued.
      timeoutMs: this.#config.ytdlpProbeTimeoutMs + 60_000,
      ...perHost,
    });
  }

  async #download(payload: SitePayload, context: JobContext): Promise<SiteResult> {
    const ytdlp = new Ytdlp(ytdlpOptions(this.#config));
    const dir = await mkdtemp(join(this.#config.videoWorkDir ?? tmpdir(), 'conveyor-site-'));
    try {
      context.progress({ stage: 'connecting' });
      const got = await ytdlp
        .download(payload.url, {
          dir,
          signal: context.signal,
          onProgress: (p) => context.progress(progressOf(p)),
        })
        .catch(permanentWhenFinal);
      context.progress({ stage: 'storing', percent: 99, message: `${got.bytes} bytes` });
      const asset = await this.#assets
        .upload(jobPrincipal(context), {
          body: createReadStream(got.path),
          declaredType: undefined,
          lane: context.job.lane,
          maxBytes: this.#config.ingestMaxBytes,
          // No validators: a site answers a page, not the file, so a re-ingest could not be conditional.
          source: {
            url: payload.url,
            finalUrl: got.webpageUrl ?? payload.url,
            etag: null,
            lastModified: null,
          },
          filename: payload.filename ?? filenameOf(got.title, got.ext, got.id),
          visibility: payload.visibility,
        })
        .catch(permanentWhenFinal);
      context.progress({ stage: 'stored', percent: 100 });
      return {
        assetId: asset.id,
        sha256: asset.sha256,
        bytes: asset.size,
        contentType: asset.contentType,
        ...(got.title !== undefined ? { title: got.title } : {}),
        ...(got.extractor !== undefined ? { extractor: got.extractor } : {}),
        ...(got.duration !== undefined ? { duration: got.duration } : {}),
        ...(got.webpageUrl !== undefined ? { webpageUrl: got.webpageUrl } : {}),
      };
    } finally {
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    }
  }

  async #list(payload: SitePayload, context: JobContext): Promise<PlaylistResult> {
    context.progress({ stage: 'listing' });
    const listing = await new Ytdlp(ytdlpOptions(this.#config))
      .listPlaylist(payload.url, { signal: context.signal })
      .catch(permanentWhenFinal);
    const entries: PlaylistEntryResult[] = [];
    const inputs: { index: number; input: EnqueueInput }[] = [];
    listing.entries.forEach((entry, index) => {
      const base = { url: entry.url, ...(entry.title !== undefined ? { title: entry.title } : {}) };
      // An entry the rules refuse outright gets no job (one bad entry must not refuse the batch).
      const refused = refusal(entry.url, this.#policy);
      entries.push(refused ? { ...base, error: refused } : base);
      if (refused) return;
      const child: SitePayload = { url: entry.url, kind: payload.kind, visibility: payload.visibility };
      inputs.push({
        index,
        input: {
          type: SITE_JOB,
          payload: child,
          lane: context.job.lane,
          parentId: context.job.id,
          idempotencyKey: `${context.job.id}:${index}`,
        },
      });
    });
    context.progress({ stage: 'queueing', message: `${inputs.length} entries` });
    const queued = await this.#jobs.enqueuer.enqueueMany(
      context.job.tenantId,
      inputs.map((i) => i.input),
      { actor: `job:${context.job.id}` },
    );
    queued.forEach((result, i) => {
      entries[inputs[i]!.index]!.jobId = result.job.id;
    });
    context.progress({ stage: 'queued', percent: 100, message: `${inputs.length} entries` });
    return {
      playlist: listing.playlist,
      ...(listing.id !== undefined ? { id: listing.id } : {}),
      ...(listing.title !== undefined ? { title: listing.title } : {}),
      ...(listing.total !== undefined ? { total: listing.total } : {}),
      truncated: listing.truncated,
      skipped: listing.skipped,
      entries,
    };
  }

  /** The per-entry report of a playlist job, from its children's states as they are now. */
  async playlistReport(by: Principal, jobId: string): Promise<PlaylistReport> {
    const parent = await this.#jobs.admin.get(by.tenantId, jobId);
    if (parent.type !== PLAYLIST_JOB) throw notFound('playlist job');
    const children = new Map<string, Job>();
    let cursor: string | undefined;
    do {
      const page = await this.#jobs.admin.list(by.tenantId, { parentId: parent.id, limit: 500, cursor });
      for (const job of page.items) children.set(job.id, job);
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    const result = parent.state === 'succeeded' ? (parent.result as PlaylistResult) : undefined;
    const entries = (result?.entries ?? []).map((entry) => reportEntry(entry, children));
    const count = (states: string[]) => entries.filter((e) => states.includes(e.state)).length;
    const failed = count(['dead', 'cancelled', 'refused']);
    const succeeded = count(['succeeded']);
    return {
      jobId: parent.id,
      state: parent.state,
      done: result !== undefined && entries.every((e) => e.state === 'refused' || ENDED.has(e.state)),
      succeeded,
      failed,
      pending: entries.length - succeeded - failed,
      truncated: result?.truncated ?? false,
      entries,
    };
  }
}

function reportEntry(entry: PlaylistEntryResult, children: Map<string, Job>): PlaylistReportEntry {
  const base = { url: entry.url, ...(entry.title !== undefined ? { title: entry.title } : {}) };
  const job = entry.jobId === undefined ? undefined : children.get(entry.jobId);
  if (job === undefined) {
    return {
      ...base,
      jobId: entry.jobId ?? null,
      state: 'refused',
      error: entry.error ?? { message: 'the entry has no job' },
    };
  }
  const last = job.errors.at(-1);
  const assetId = (job.result as { assetId?: unknown } | null)?.assetId;
  return {
    ...base,
    jobId: job.id,
    state: job.state,
    ...(job.state === 'succeeded' && typeof assetId === 'string' ? { assetId } : {}),
    ...(job.state !== 'succeeded' && last
      ? { error: { ...(last.code ? { code: last.code } : {}), message: last.message } }
      : {}),
  };
}

/** Why an entry's URL gets no job, or undefined when it may be queued. */
function refusal(url: string, policy: SsrfPolicy): { code: string; message: string } | undefined {
  if (url.length > MAX_URL) return { code: 'bad_url', message: `the URL is longer than ${MAX_URL}` };
  try {
    checkUrl(url, policy);
    return undefined;
  } catch (error) {
    if (error instanceof DownloadError) return { code: error.code, message: error.message };
    throw error;
  }
}

/** yt-dlp's progress as the job's: percent of the file being fetched, bytes, speed and time left. */
function progressOf(p: Progress): { stage: string; percent?: number; message: string } {
  const parts = [`${p.downloadedBytes}${p.totalBytes ? ` of ${p.totalBytes}` : ''} bytes`];
  if (p.speed !== undefined) parts.push(`${Math.round(p.speed)} B/s`);
  if (p.eta !== undefined) parts.push(`${Math.round(p.eta)} s left`);
  // yt-dlp fetches video and audio one after the other: the percent is of the file being fetched.
  if (p.part > 0) parts.push(`file ${p.part + 1}`);
  return {
    stage: 'downloading',
    ...(p.totalBytes ? { percent: Math.min(99, (p.downloadedBytes / p.totalBytes) * 100) } : {}),
    message: parts.join(', '),
  };
}

/** The asset's name: the video's title and extension (the asset service makes it safe). */
function filenameOf(title: string | undefined, ext: string | undefined, id: string | undefined): string {
  const name = (title ?? id ?? 'video').trim().slice(0, 200) || 'video';
  return ext ? `${name}.${ext}` : name;
}
