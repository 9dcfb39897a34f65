import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config/config.ts';
import type { JobEngine } from '../jobs/engine.ts';
import type { JobRegistry } from '../jobs/registry.ts';
import { type Job, type JobContext, JobDeferral, PermanentJobError } from '../jobs/types.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import {
  type ChunkPlan,
  type ChunkRendition,
  chunkEncodeArgs,
  chunkOutputPath,
  cpuAttempt,
  joinArgs,
  pieceArgs,
  piecePath,
  planSpans,
  sourceOrigin,
  writeConcatList,
} from './video/chunks.ts';
import { renditionFiles, type SegmentFormat } from './video/encode.ts';
import { asJobError } from './video/errors.ts';
import type { EncodeAttempt } from './video/fallback.ts';
import type { EncoderReport } from './video/hwaccel.ts';
import type { Fraction } from './video/ladder.ts';
import { type FfmpegRunOptions, progressMessage, runFfmpeg } from './video/run.ts';
import type { VideoStore } from './video/store.ts';

/** The job type that encodes one chunk of a long video, every rendition of it. */
export const CHUNK_JOB = 'video.chunk';

export interface ChunkPayload {
  sha256: string;
  ladder: string;
  index: number;
}

/** What a ladder job hands over to have its renditions made of chunks. */
export interface ChunkedLadder {
  sha256: string;
  ladder: string;
  /** The source, copied to the ladder job's working folder. */
  source: string;
  work: string;
  durationMs: number;
  segment: Fraction;
  renditions: ChunkRendition[];
  preset: ChunkPlan['preset'];
}

type Run = Pick<FfmpegRunOptions, 'ffmpegPath' | 'cancelGraceMs' | 'signal'>;

/**
 * Chunked encoding as jobs (the encoding itself: video/chunks.ts). A ladder job whose source is longer
 * than CONVEYOR_VIDEO_CHUNK_MIN_SECONDS:
 *
 * 1. cuts the source into pieces and stores them with the ladder (`chunks/source/…`), then writes the
 *    chunk plan on the ladder row (the first plan stays);
 * 2. queues one `video.chunk` job per chunk that has no encodes yet, as its children, and defers itself
 *    (JobDeferral): it holds no worker slot while the chunks run, in any worker of any process;
 * 3. is woken by the chunk job that stores the last encodes (or looks again after
 *    CONVEYOR_VIDEO_CHUNK_WAIT_SECONDS), and joins each rendition from its chunks (`join`).
 *
 * A chunk job stores the encodes of all renditions of its chunk at once (`chunks/<index>/<name>.mp4`),
 * so a chunk is done or not; a killed one is retried like any job and its finished neighbours stay. A
 * chunk job that ends dead or cancelled fails the ladder job (`video_chunk_failed`). Chunk jobs are keyed
 * by the ladder job, the chunk and a generation that counts the ladder job's chunk failures: a retried
 * or woken ladder job finds the chunk jobs it queued, and a replayed one (after such a failure) queues
 * fresh ones for the chunks still missing. Chunk files are deleted when the ladder completes.
 */
export class VideoChunks {
  readonly #config: Config;
  readonly #jobs: JobEngine;
  readonly #blobs: BlobStore;
  readonly #store: VideoStore;
  readonly #encoders: () => Promise<EncoderReport>;
  readonly #workDir: () => Promise<string>;

  constructor(deps: {
    config: Config;
    jobs: JobEngine;
    blobs: BlobStore;
    store: VideoStore;
    encoders: () => Promise<EncoderReport>;
    /** A fresh working folder for an attempt (VideoProcessor.workDir: named for this process, swept when it dies). */
    workDir: () => Promise<string>;
  }) {
    this.#config = deps.config;
    this.#jobs = deps.jobs;
    this.#blobs = deps.blobs;
    this.#store = deps.store;
    this.#encoders = deps.encoders;
    this.#workDir = deps.workDir;
  }

  register(registry: JobRegistry): void {
    registry.register<ChunkPayload>({
      type: CHUNK_JOB,
      schema: {
        type: 'object',
        properties: {
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          ladder: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' },
          index: { type: 'integer', minimum: 0, maximum: 100_000 },
        },
        required: ['sha256', 'ladder', 'index'],
        additionalProperties: false,
      },
      handler: (payload, context) => this.#encodeChunk(payload, context),
      lane: 'low',
      maxAttempts: 3,
      timeoutMs: this.#config.videoJobTimeoutSeconds * 1000,
    });
  }

  /** Whether a source of `durationMs` is encoded in chunks: long enough, and two chunks at least. */
  wanted(durationMs: number, segment: Fraction): boolean {
    const min = this.#config.videoChunkMinSeconds;
    return min > 0 && durationMs > min * 1000 && planSpans(durationMs, segment, this.#settings()).length > 1;
  }

  /**
   * The ladder job's side: answers the plan once every chunk has its encodes; until then cuts and
   * stores the pieces (the first time), queues the missing chunk jobs, reports progress, and throws a
   * JobDeferral.
   */
  async ready(ladder: ChunkedLadder, context: JobContext, run: Run): Promise<ChunkPlan> {
    let plan = (await this.#store.chunkPlan(ladder.sha256, ladder.ladder)) as ChunkPlan | undefined;
    if (!plan) {
      plan = await this.#cut(ladder, context, run);
      plan = (await this.#store.setChunkPlan(ladder.sha256, ladder.ladder, plan)) as ChunkPlan;
    }
    const missing = await this.missing(ladder.sha256, ladder.ladder, plan);
    if (missing.length === 0) return plan;
    await this.#queue(ladder, plan, missing, context);
    const done = plan.spans.length - missing.length;
    context.progress({
      stage: 'chunks',
      percent: 5 + (done / plan.spans.length) * 75,
      message: `${done}/${plan.spans.length} chunks encoded`,
    });
    throw new JobDeferral(this.#config.videoChunkWaitSeconds * 1000, 'waiting for chunks');
  }

  /** The indexes of the plan's chunks that have not stored their encodes. */
  async missing(sha256: string, ladder: string, plan: ChunkPlan): Promise<number[]> {
    const stored = new Set((await this.#store.files(sha256, ladder)).map((f) => f.path));
    return plan.spans
      .filter((span) => !plan.renditions.every((r) => stored.has(chunkOutputPath(span.index, r.name))))
      .map((span) => span.index);
  }

  /**
   * Joins one rendition from its chunks' encodes into HLS files in `<work>/<name>`, the audio encoded
   * from the source. Answers the folder, its files and the encoder the chunks were made with.
   */
  async join(
    ladder: ChunkedLadder & { hasAudio: boolean; audioFilter?: string; segmentFormat: SegmentFormat },
    plan: ChunkPlan,
    rendition: ChunkRendition,
    run: Run,
  ): Promise<{ dir: string; files: string[]; attempt: EncodeAttempt }> {
    const parts = join(ladder.work, `chunks-${rendition.name}`);
    const dir = join(ladder.work, rendition.name);
    await mkdir(parts, { recursive: true });
    await mkdir(dir, { recursive: true });
    const files: string[] = [];
    for (const span of plan.spans) {
      const file = await this.#store.file(
        ladder.sha256,
        ladder.ladder,
        chunkOutputPath(span.index, rendition.name),
      );
      if (!file)
        throw new Error(`chunk ${span.index} of ${rendition.name} is missing after all chunks were stored`);
      const target = join(parts, `${span.index}.mp4`);
      await pipeline(await this.#blobs.get(file.sha256), createWriteStream(target), { signal: run.signal });
      files.push(target);
    }
    const list = join(parts, 'list.ffconcat');
    await writeConcatList(list, files);
    await runFfmpeg(
      joinArgs({
        list,
        source: ladder.source,
        hasAudio: ladder.hasAudio,
        ...(ladder.audioFilter ? { audioFilter: ladder.audioFilter } : {}),
        rung: rendition.rung,
        segmentFormat: ladder.segmentFormat,
        dir,
      }),
      run,
    );
    await rm(parts, { recursive: true, force: true });
    return {
      dir,
      files: await renditionFiles(dir),
      attempt: cpuAttempt(await this.#encoders(), rendition.codec),
    };
  }

  #settings() {
    return { chunkSeconds: this.#config.videoChunkSeconds, maxCount: this.#config.videoChunkMaxCount };
  }

  /** Cuts the source into its chunks' pieces and stores them; answers the plan. */
  async #cut(ladder: ChunkedLadder, context: JobContext, run: Run): Promise<ChunkPlan> {
    const spans = planSpans(ladder.durationMs, ladder.segment, this.#settings());
    const origin = await sourceOrigin(ladder.source, {
      ffprobePath: this.#config.ffprobePath,
      timeLimitMs: this.#config.videoProbeTimeoutSeconds * 1000,
      ...(run.signal ? { signal: run.signal } : {}),
    });
    const stored = new Set((await this.#store.files(ladder.sha256, ladder.ladder)).map((f) => f.path));
    const dir = join(ladder.work, 'pieces');
    await mkdir(dir, { recursive: true });
    for (const span of spans) {
      const path = piecePath(span.index);
      if (stored.has(path)) continue;
      context.progress({
        stage: 'splitting',
        percent: 5,
        message: `piece ${span.index + 1}/${spans.length}`,
      });
      const file = join(dir, `${span.index}.mkv`);
      await runFfmpeg(pieceArgs(ladder.source, span, origin, file), run);
      await this.#store.putFiles(
        ladder.sha256,
        ladder.ladder,
        [{ path, contentType: 'video/x-matroska', file }],
        {
          ...(run.signal ? { signal: run.signal } : {}),
        },
      );
      await rm(file, { force: true });
    }
    return {
      origin,
      chunkSeconds: spans[0]!.end ?? 0,
      spans,
      renditions: ladder.renditions,
      preset: ladder.preset,
    };
  }

  /** Queues the chunk jobs of `missing` (those not queued yet); a dead or cancelled one fails the ladder job. */
  async #queue(ladder: ChunkedLadder, plan: ChunkPlan, missing: readonly number[], context: JobContext) {
    const { id, tenantId, lane } = context.job;
    const parent = await this.#jobs.admin.get(tenantId, id);
    const generation = parent.errors.filter((e) => e.code === 'video_chunk_failed').length;
    const batch = this.#config.jobBatchMax;
    for (let i = 0; i < missing.length; i += batch) {
      const results = await this.#jobs.enqueuer.enqueueMany(
        tenantId,
        missing.slice(i, i + batch).map((index) => ({
          type: CHUNK_JOB,
          payload: { sha256: ladder.sha256, ladder: ladder.ladder, index } satisfies ChunkPayload,
          lane,
          parentId: id,
          idempotencyKey: `${id}:chunk:${generation}:${index}`,
        })),
      );
      for (const { job } of results) checkChunkJob(job, id, plan);
    }
  }

  /** The `video.chunk` handler: encodes every rendition of one chunk and stores them together. */
  async #encodeChunk(payload: ChunkPayload, context: JobContext) {
    const found = await this.#store.find(payload.sha256, payload.ladder);
    if (found?.state === 'complete') return { index: payload.index, encoded: 0 };
    const plan = (await this.#store.chunkPlan(payload.sha256, payload.ladder)) as ChunkPlan | undefined;
    const span = plan?.spans[payload.index];
    if (found?.state !== 'encoding' || !plan || !span) {
      throw new PermanentJobError(
        `No chunk ${payload.index} of a ladder ${payload.ladder} being encoded for ${payload.sha256}`,
        'not_found',
      );
    }
    const outputs = plan.renditions.map((r) => chunkOutputPath(span.index, r.name));
    const stored = new Set((await this.#store.files(payload.sha256, payload.ladder)).map((f) => f.path));
    if (outputs.every((path) => stored.has(path))) return this.#finished(payload, plan, context, 0);

    const { signal } = context;
    const run = {
      ffmpegPath: this.#config.ffmpegPath,
      cancelGraceMs: this.#config.videoCancelGraceMs,
      signal,
    };
    const report = await this.#encoders();
    const work = await this.#workDir();
    try {
      const piece = await this.#store.file(payload.sha256, payload.ladder, piecePath(span.index));
      if (!piece)
        throw new Error(`the piece of chunk ${span.index} is missing from ladder ${payload.ladder}`);
      const source = join(work, 'piece.mkv');
      context.progress({ stage: 'reading', percent: 0 });
      await pipeline(await this.#blobs.get(piece.sha256), createWriteStream(source), { signal });
      const spanSeconds = (span.end ?? span.start + plan.chunkSeconds) - span.start;
      for (const [i, rendition] of plan.renditions.entries()) {
        const out = join(work, `${rendition.name}.mp4`);
        const share = (fraction: number) => ((i + fraction) / plan.renditions.length) * 95;
        context.progress({ stage: `encoding ${rendition.name}`, percent: share(0) });
        await runFfmpeg(
          chunkEncodeArgs(
            source,
            span,
            plan.origin,
            rendition,
            plan.preset,
            cpuAttempt(report, rendition.codec),
            out,
          ),
          {
            ...run,
            onProgress: (p) => {
              if (p.outTimeUs === null) return;
              context.progress({
                stage: `encoding ${rendition.name}`,
                percent: share(Math.min(1, p.outTimeUs / 1e6 / spanSeconds)),
                message: progressMessage(p),
              });
            },
          },
        );
      }
      context.progress({ stage: 'storing', percent: 96 });
      await this.#store.putFiles(
        payload.sha256,
        payload.ladder,
        plan.renditions.map((r) => ({
          path: chunkOutputPath(span.index, r.name),
          contentType: 'video/mp4',
          file: join(work, `${r.name}.mp4`),
        })),
        { signal },
      );
      return await this.#finished(payload, plan, context, plan.renditions.length);
    } catch (error) {
      throw asJobError(error);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** After a chunk's encodes are stored: the chunk that completes the set wakes its ladder job. */
  async #finished(payload: ChunkPayload, plan: ChunkPlan, context: JobContext, encoded: number) {
    const parent = context.job.parentId;
    if (parent && (await this.missing(payload.sha256, payload.ladder, plan)).length === 0) {
      await this.#jobs.wake(parent);
    }
    context.progress({ stage: 'done', percent: 100 });
    return { index: payload.index, encoded };
  }
}

/** A chunk job a ladder job queued (or found by its key): it must be the ladder job's, and alive. */
function checkChunkJob(job: Job, parentId: string, plan: ChunkPlan): void {
  const index = (job.payload as Partial<ChunkPayload> | null)?.index;
  if (job.type !== CHUNK_JOB || job.parentId !== parentId || index === undefined || !plan.spans[index]) {
    throw new PermanentJobError(`job ${job.id} holds the key of a chunk job of ${parentId} but is not one`);
  }
  if (job.state === 'dead' || job.state === 'cancelled') {
    const last = job.errors.at(-1)?.message;
    throw new PermanentJobError(
      `chunk ${index} (job ${job.id}) ended ${job.state}${last ? `: ${last}` : ''}`,
      'video_chunk_failed',
    );
  }
}
