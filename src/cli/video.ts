import { Readable } from 'node:stream';
import { callJson } from './http-client.ts';
import { CliError } from './output.ts';
import { type ProgressStream, StageProgress } from './progress.ts';
import { type UploadOptions, uploadFile } from './upload.ts';

/** The job type whose progress `conveyor video` follows (src/media/video-job.ts). */
const LADDER_JOB = 'video.ladder';
/** The ingest kind of a video URL: its lane comes from CONVEYOR_INGEST_KINDS. */
const VIDEO_KIND = 'video';
/** How often a followed job is read again: a person watching notices no lag, the server no load. */
export const FOLLOW_POLL_MS = 500;
/** Jobs per page when looking for the asset's ladder job among the newest. */
const PAGE = 100;
/** States a job does not leave by itself (`failed` waits for its retry). */
const ENDED = new Set(['succeeded', 'dead', 'cancelled']);

type Json = Record<string, unknown>;

export interface VideoOptions extends Omit<UploadOptions, 'publish'> {
  /** How often the job is read (default FOLLOW_POLL_MS). */
  pollMs?: number;
}

/** What `conveyor video` prints: the asset, and the ladder job as it ended. */
export interface VideoOutcome {
  asset: Json;
  job: { id: string; state: string; result: unknown; error: { code: string; message: string } | null };
}

/**
 * `conveyor video <file|url>`: uploads a file (as `conveyor upload` does: resumably when large) or has
 * the server ingest a URL (`POST /api/v1/ingest`, kind `video`), then follows the asset's `video.ladder`
 * job until it ends, drawing its stage and percent. Answers the asset as it is then and the job's end;
 * the caller decides the exit status from the job's state.
 */
export async function videoCommand(source: string, options: VideoOptions): Promise<VideoOutcome> {
  const out = options.out ?? process.stderr;
  const api = (path: string, method = 'GET', doing = 'reading', body?: Json) =>
    callJson(
      new URL(path, options.baseUrl),
      options.apiKey,
      method,
      doing,
      body === undefined ? {} : { 'content-type': 'application/json' },
      // A JSON request is one small chunk; callJson streams whatever body it is given.
      body === undefined ? undefined : Readable.from([Buffer.from(JSON.stringify(body))]),
    );
  const follow = (job: Json, label: string) =>
    followJob(job, label, { ...options, out }, (id) => api(`/api/v1/jobs/${encodeURIComponent(id)}`));

  let assetId: string;
  if (/^https?:\/\//i.test(source)) {
    const ingest = await api('/api/v1/ingest', 'POST', 'queueing the ingest', {
      url: source,
      kind: VIDEO_KIND,
      visibility: options.visibility,
    });
    const fetched = await follow(ingest, 'downloading');
    if (fetched['state'] !== 'succeeded') {
      const error = lastError(fetched);
      throw new CliError(
        `the download (job ${String(fetched['id'])}) ended ${String(fetched['state'])}: ${error?.code}: ${error?.message}`,
      );
    }
    assetId = String((fetched['result'] as Json)['assetId']);
  } else {
    assetId = (await uploadFile(source, { ...options, publish: false })).id;
  }

  const asset = await api(`/api/v1/assets/${encodeURIComponent(assetId)}`);
  const ladder = await findLadderJob(asset, api);
  const ended = await follow(ladder, 'video');
  return {
    asset: await api(`/api/v1/assets/${encodeURIComponent(assetId)}`),
    job: {
      id: String(ended['id']),
      state: String(ended['state']),
      result: ended['result'] ?? null,
      error: ended['state'] === 'succeeded' ? null : lastError(ended),
    },
  };
}

/** The newest `video.ladder` job of the asset's content; the jobs list is newest first. */
async function findLadderJob(asset: Json, api: (path: string) => Promise<Json>): Promise<Json> {
  let cursor: string | undefined;
  do {
    const query = new URLSearchParams({ type: LADDER_JOB, limit: String(PAGE) });
    if (cursor) query.set('cursor', cursor);
    const page = await api(`/api/v1/jobs?${query}`);
    const found = (page['items'] as Json[]).find((job) => {
      const payload = job['payload'] as Json;
      return (
        payload['assetId'] === asset['id'] && (!asset['sha256'] || payload['sha256'] === asset['sha256'])
      );
    });
    if (found) return found;
    cursor = typeof page['nextCursor'] === 'string' ? page['nextCursor'] : undefined;
  } while (cursor);
  throw new CliError(
    `asset ${String(asset['id'])} has no ${LADDER_JOB} job: its content (${String(asset['contentType'])}) is not video`,
  );
}

/** Reads the job until it ends, drawing its progress unless told not to. */
async function followJob(
  job: Json,
  label: string,
  options: VideoOptions & { out: ProgressStream },
  read: (id: string) => Promise<Json>,
): Promise<Json> {
  const progress = options.progress === false ? undefined : new StageProgress(options.out, label);
  let current = job;
  try {
    for (;;) {
      const shown = (current['progress'] ?? {}) as Json;
      progress?.update({
        stage: typeof shown['stage'] === 'string' ? shown['stage'] : String(current['state']),
        percent: typeof shown['percent'] === 'number' ? shown['percent'] : 0,
        message: typeof shown['message'] === 'string' ? shown['message'] : undefined,
      });
      if (ENDED.has(String(current['state']))) return current;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? FOLLOW_POLL_MS));
      current = await read(String(current['id']));
    }
  } finally {
    progress?.end();
  }
}

/** The error a job ended with: its last recorded one, or the cancel. */
function lastError(job: Json): { code: string; message: string } | null {
  const errors = (job['errors'] ?? []) as Json[];
  const last = errors.at(-1);
  if (last) return { code: String(last['code'] ?? 'error'), message: String(last['message'] ?? '') };
  if (job['state'] === 'cancelled') return { code: 'cancelled', message: 'the job was cancelled' };
  return null;
}
