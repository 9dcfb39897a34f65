import { createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Kysely, Transaction } from 'kysely';
import type { ContentAdded } from '../assets/service.ts';
import type { Config } from '../config/config.ts';
import { VIDEO_PRESETS, type VideoPreset } from '../config/video-settings.ts';
import type { Database } from '../db/tables.ts';
import type { Tier } from '../glossary.ts';
import type { JobEngine } from '../jobs/engine.ts';
import type { JobRegistry } from '../jobs/registry.ts';
import { type JobContext, PermanentJobError } from '../jobs/types.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { readBlob } from './blob-bytes.ts';
import { type EncodedRendition, encodeRendition, MEDIA_PLAYLIST, type RenditionJob } from './video/encode.ts';
import { asJobError } from './video/errors.ts';
import {
  FALLBACK_MP4,
  fallbackRendition,
  hasLibvmaf,
  loudnormFilter,
  makePoster,
  makeSprite,
  measureQuality,
  POSTER,
  type Quality,
  remuxFallback,
  SPRITE,
  SPRITE_VTT,
} from './video/extras.ts';
import { chooseEncoder, type Fallback, fallbackChain } from './video/fallback.ts';
import { masterOptions, writeMaster } from './video/hls/master.ts';
import { spriteSettings } from './video/hls/sprite-vtt.ts';
import {
  detectEncoders,
  detectOptionsFrom,
  type EncoderReport,
  ForcedEncoderError,
} from './video/hwaccel.ts';
import { checkVideo, verifyDecodable, videoLimits } from './video/limits.ts';
import { measureLoudness } from './video/loudness.ts';
import { jobResult, measureRendition, type RenditionResult } from './video/measure.ts';
import { choosePreset } from './video/presets.ts';
import { probeVideo, type VideoInfo as VideoProbe } from './video/probe.ts';
import { progressMessage } from './video/run.ts';
import { type LadderShape, ladderShape } from './video/shape.ts';
import type { OutputFile, VideoStore } from './video/store.ts';
import { makeWorkDir, sweepWorkDirs } from './video/work-dirs.ts';
import { CHUNK_JOB, type ChunkedLadder, VideoChunks } from './video-chunks.ts';

/** The job type that probes a video and encodes its HLS ladder. */
export const VIDEO_JOB = 'video.ladder';

export interface VideoPayload {
  assetId: string;
  sha256: string;
  /** A compression preset for this video, over the tenant's tier default and CONVEYOR_VIDEO_PRESET. */
  preset?: VideoPreset;
}

export type { RenditionResult } from './video/measure.ts';

/** Each rendition's measurements, stored beside its files so that a resumed job can write the master. */
const RESULT_FILE = 'rendition.json';
/** Far more than a rendition's measurements take. */
const RESULT_MAX_BYTES = 64 * 1024;

/** RFC 8216 §4 and the MIME registrations of the segment formats. */
const CONTENT_TYPES: Record<string, string> = {
  m3u8: 'application/vnd.apple.mpegurl',
  mp4: 'video/mp4',
  m4s: 'video/iso.segment',
  ts: 'video/mp2t',
  json: 'application/json',
  jpg: 'image/jpeg',
  vtt: 'text/vtt',
};

function contentType(file: string): string {
  return CONTENT_TYPES[file.split('.').pop()!] ?? 'application/octet-stream';
}

/** What a process does with what video jobs learn about its encoders (server.ts: its Metrics). */
export interface VideoObserver {
  detected(report: EncoderReport): void;
  fellBack(fallback: Fallback): void;
}

/**
 * Video processing: when an asset gets video content, a `video.ladder` job joins the committing
 * transaction. It copies the content to a working folder, probes it (ffprobe), holds it to the limits
 * and decodes its end (a file cut short probes as whole), and measures its loudness. Then the ladder's
 * own files (video/extras.ts): the poster, the sprite sheet and its WebVTT index; then the ladder: every
 * rendition of every configured codec, with the best encoder this worker proved and the fallback chain
 * behind it (and the loudnorm filter when normalisation is on), each scored against the source. Each
 * finished rendition is stored at once, whole, with its measurements; a killed attempt's successor
 * starts after the stored ones, and makes only the extra files not stored yet. The MP4 fallback is
 * remuxed from one stored rendition; the master playlist is written last, from the measurements, and
 * the ladder becomes `complete` only then, so a complete ladder always has all of its files. Results
 * are keyed by the content's SHA-256 and the ladder's settings, so identical content is encoded once
 * whoever uploads it. A source longer than CONVEYOR_VIDEO_CHUNK_MIN_SECONDS has its renditions made of
 * chunks that `video.chunk` jobs encode in any worker (video-chunks.ts): the job waits for them off its
 * slot, then joins each rendition and goes on as above.
 */
export class VideoProcessor {
  readonly #config: Config;
  readonly #db: Kysely<Database>;
  readonly #blobs: BlobStore;
  readonly #jobs: JobEngine;
  readonly store: VideoStore;
  #encoders: Promise<EncoderReport> | undefined;
  #report: EncoderReport | undefined;
  #observer: VideoObserver | undefined;
  #vmaf: Promise<boolean> | undefined;
  readonly #chunks: VideoChunks;
  #swept: Promise<unknown> | undefined;

  constructor(deps: {
    config: Config;
    db: Kysely<Database>;
    blobs: BlobStore;
    jobs: JobEngine;
    store: VideoStore;
  }) {
    this.#config = deps.config;
    this.#db = deps.db;
    this.#blobs = deps.blobs;
    this.#jobs = deps.jobs;
    this.store = deps.store;
    this.#chunks = new VideoChunks({
      ...deps,
      encoders: () => this.encoders(),
      workDir: () => this.workDir(),
    });
  }

  register(registry: JobRegistry): void {
    registry.register<VideoPayload>({
      type: VIDEO_JOB,
      schema: {
        type: 'object',
        properties: {
          assetId: { type: 'string', minLength: 1, maxLength: 100 },
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          preset: { enum: [...VIDEO_PRESETS] },
        },
        required: ['assetId', 'sha256'],
        additionalProperties: false,
      },
      handler: (payload, context) => this.#process(payload, context),
      lane: 'low',
      maxAttempts: 3,
      timeoutMs: this.#config.videoJobTimeoutSeconds * 1000,
    });
    this.#chunks.register(registry);
  }

  /** The asset service's content hook: queue the ladder of video content in the same transaction. */
  async contentAdded(tx: Transaction<Database>, added: ContentAdded): Promise<void> {
    if (!added.contentType.toLowerCase().startsWith('video/')) return;
    await this.#jobs.enqueuer.enqueue(
      added.tenantId,
      {
        type: VIDEO_JOB,
        payload: { assetId: added.assetId, sha256: added.sha256 } satisfies VideoPayload,
        ...(added.lane ? { lane: added.lane } : {}),
      },
      { trx: tx, actor: added.actor },
    );
  }

  /** This worker's encoder detection once it has run (the `encoders` health component shows it). */
  get report(): EncoderReport | undefined {
    return this.#report;
  }

  /** Where the process shows its encoders and counts fallbacks (its Metrics). */
  observe(observer: VideoObserver): void {
    this.#observer = observer;
  }

  /**
   * Proves this process's encoders as its worker starts (CONVEYOR_VIDEO_DETECT_ENCODERS_AT_START), when
   * the worker runs video jobs (`types` null: every type). Under `auto` or `off` it runs in the
   * background and start-up does not wait; a failure is logged and the first video job tries again.
   * Under a forced family it is awaited, and a family that proves none of its encoders fails the start
   * (ForcedEncoderError): a worker told to use a GPU it cannot open is misconfigured.
   */
  async detectAtStart(types: readonly string[] | null, log: { warn(obj: object, msg: string): void }) {
    const config = this.#config;
    if (!config.videoDetectEncodersAtStart) return;
    if (types && !types.includes(VIDEO_JOB) && !types.includes(CHUNK_JOB)) return;
    const detection = this.encoders();
    if (config.videoHwaccel !== 'auto' && config.videoHwaccel !== 'off') {
      await detection;
      return;
    }
    detection.catch((error) => {
      this.#encoders = undefined;
      log.warn({ err: error }, 'encoder detection failed; the first video job tries again');
    });
  }

  /** This worker's encoders, proved once per process (hwaccel.ts): at start, or at its first video job. */
  encoders(): Promise<EncoderReport> {
    this.#encoders ??= detectEncoders(
      detectOptionsFrom(this.#config, this.#config.ffmpegPath, this.#config.videoCodecs),
    ).then((report) => {
      this.#report = report;
      this.#observer?.detected(report);
      return report;
    });
    return this.#encoders;
  }

  /**
   * A fresh working folder for one attempt of a ladder or chunk job. Before the first, the folders of
   * this host's workers killed mid-job are swept, once per processor (work-dirs.ts).
   */
  async workDir(): Promise<string> {
    const parent = this.#config.videoWorkDir ?? tmpdir();
    this.#swept ??= sweepWorkDirs(parent);
    await this.#swept;
    return makeWorkDir(parent);
  }

  async #process(payload: VideoPayload, context: JobContext) {
    const work = await this.workDir();
    try {
      return await this.#ladder(payload, context, work);
    } catch (error) {
      // A forced hardware family that proved none of its encoders: the operator's to fix, not the job's
      // to retry; every video job of this process ends so until then.
      if (error instanceof ForcedEncoderError)
        throw new PermanentJobError(error.message, 'video_encoder_unavailable');
      throw asJobError(error);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  async #ladder(payload: VideoPayload, context: JobContext, work: string) {
    const config = this.#config;
    const { signal } = context;
    const tools = { ffmpegPath: config.ffmpegPath, cancelGraceMs: config.videoCancelGraceMs, signal };
    // A ladder waiting for its chunks looks at them first: a look that finds chunks still missing costs a
    // few queries, not a copy and probe of the source.
    const known = await this.store.getInfo(payload.sha256);
    if (known) {
      const shape = await this.#shape(payload, context, known.probe as VideoProbe);
      const plan = await this.store.chunkPlan(payload.sha256, shape.ladder);
      if (plan)
        await this.#chunks.ready(this.#chunkedLadder(payload, shape, work, known.durationMs), context, tools);
    }

    context.progress({ stage: 'reading', percent: 0 });
    const source = join(work, 'source');
    await pipeline(await this.#blobs.get(payload.sha256), createWriteStream(source), { signal });

    context.progress({ stage: 'probing', percent: 2 });
    const info = await probeVideo(source, {
      ffprobePath: config.ffprobePath,
      timeLimitMs: config.videoProbeTimeoutSeconds * 1000,
      signal,
    });
    checkVideo(info, videoLimits(config));
    await verifyDecodable(source, {
      ...tools,
      durationMs: info.durationMs,
      tailSeconds: config.videoVerifyTailSeconds,
      timeLimitMs: config.videoCheckTimeoutSeconds * 1000,
    });
    const video = info.video!;
    const durationMs = info.durationMs!;
    const display = { width: video.displayWidth, height: video.displayHeight };
    context.progress({ stage: 'loudness', percent: 3 });
    const loudness = await measureLoudness(source, info, {
      ...tools,
      timeLimitMs: config.videoCheckTimeoutSeconds * 1000,
    });
    await this.store.putInfo({
      sha256: payload.sha256,
      probe: info,
      durationMs,
      ...display,
      hasAudio: info.audio !== null,
      container: info.container,
      videoCodec: video.codec,
      audioCodec: info.audio?.codec ?? null,
      loudness,
    });

    const shape = await this.#shape(payload, context, info);
    const { preset, rungs, ladder, jobs } = shape;
    const { ladder: row, completeRenditions } = await this.store.begin(payload.sha256, ladder);
    if (row.state === 'complete') {
      context.progress({ stage: 'done', percent: 100 });
      return jobResult(payload, ladder, row.renditions as RenditionResult[], row.encoder ?? '', 0);
    }

    // The ladder's own files, each stored before the ladder completes; a retried attempt makes only
    // those its predecessor did not store.
    const stored = new Set((await this.store.files(payload.sha256, ladder)).map((f) => f.path));
    const put = (...paths: string[]) =>
      this.store.putFiles(
        payload.sha256,
        ladder,
        paths.map((path) => ({ path, contentType: contentType(path), file: join(work, path) })),
        { signal },
      );
    if (!stored.has(POSTER)) {
      context.progress({ stage: 'poster', percent: 4 });
      const top = rungs.reduce((a, b) => (b.width * b.height > a.width * a.height ? b : a));
      await makePoster({ source, durationMs, size: top, dir: work, run: tools });
      await put(POSTER);
    }
    if (!stored.has(SPRITE) || !stored.has(SPRITE_VTT)) {
      context.progress({ stage: 'sprite', percent: 4.5 });
      const settings = spriteSettings(config);
      await makeSprite({ source, durationMs, display, settings, dir: work, run: tools });
      await put(SPRITE, SPRITE_VTT);
    }

    const report = await this.encoders();
    const audioFilter = loudnormFilter(config.videoLoudnorm, loudness);
    const vmaf = config.videoQualityAnalysis && (await this.#hasVmaf());
    const fallback = fallbackRendition(jobs, config.videoFallbackHeight);
    let fallbackDir: string | undefined;
    // Of each rendition's share of the progress, the encode's; the quality measurement has the rest.
    const encodeShare = config.videoQualityAnalysis ? 0.8 : 1;
    const results: RenditionResult[] = [];
    const fallbacks: Fallback[] = [];
    let encoded = 0;
    // A long source's renditions are made of chunks that chunk jobs encode (video-chunks.ts): this job
    // waits for them off its slot, then joins each rendition from them.
    const pending = jobs.filter((j) => !completeRenditions.includes(j.name));
    const chunked = this.#chunkedLadder(payload, shape, work, durationMs, pending);
    const plan =
      pending.length > 0 && this.#chunks.wanted(durationMs, rungs[0]!.segmentDuration)
        ? await this.#chunks.ready(chunked, context, tools)
        : undefined;
    for (const [index, { codec, rung, name }] of jobs.entries()) {
      const share = (fraction: number) =>
        (plan ? 80 : 5) + ((index + fraction) / jobs.length) * (plan ? 13 : 88);
      if (completeRenditions.includes(name)) {
        results.push(await this.#storedResult(payload.sha256, ladder, name));
        continue;
      }
      context.progress({ stage: `${plan ? 'joining' : 'encoding'} ${name}`, percent: share(0) });
      const fromChunks = plan?.renditions.find((r) => r.name === name);
      const dir = join(work, name);
      const out = fromChunks
        ? await this.#chunks.join(
            {
              ...chunked,
              hasAudio: info.audio !== null,
              ...(audioFilter ? { audioFilter } : {}),
              segmentFormat: config.videoSegmentFormat,
            },
            plan!,
            fromChunks,
            tools,
          )
        : await this.#encode({
            source,
            durationMs,
            hasAudio: info.audio !== null,
            ...(audioFilter ? { audioFilter } : {}),
            rung,
            codec,
            preset,
            attempts: fallbackChain(chooseEncoder(report, codec), report),
            dir,
            segmentFormat: config.videoSegmentFormat,
            run: tools,
            onProgress: (fraction, progress) =>
              context.progress({
                stage: `encoding ${name}`,
                percent: share(fraction * encodeShare),
                message: progressMessage(progress),
              }),
            onFallback: (fallback) => {
              fallbacks.push(fallback);
              this.#observer?.fellBack(fallback);
            },
          });
      let quality: Quality | null = null;
      if (config.videoQualityAnalysis) {
        context.progress({ stage: `quality ${name}`, percent: share(encodeShare) });
        const playlist = join(out.dir, MEDIA_PLAYLIST);
        quality = await measureQuality({ playlist, source, rung, display, vmaf, run: tools });
      }
      const result = await measureRendition(out.dir, out.files, this.#config.ffprobePath, {
        name,
        codec,
        rung,
        encoder: out.attempt.encoder,
        quality,
      });
      await writeFile(join(out.dir, RESULT_FILE), JSON.stringify(result));
      const files: OutputFile[] = [...out.files, RESULT_FILE].map((file) => ({
        path: `${name}/${file}`,
        contentType: contentType(file),
        file: join(out.dir, file),
      }));
      await this.store.putRendition(payload.sha256, ladder, name, files, { signal });
      // The fallback's rendition stays on disk until the fallback is made of it.
      if (name === fallback.name && !stored.has(FALLBACK_MP4)) fallbackDir = out.dir;
      else await rm(out.dir, { recursive: true, force: true });
      results.push(result);
      encoded++;
    }

    if (!stored.has(FALLBACK_MP4)) {
      context.progress({ stage: 'fallback mp4', percent: 94 });
      // A rendition a previous attempt stored is fetched back from the store.
      fallbackDir ??= await this.#fetchRendition(payload.sha256, ladder, fallback.name, work, signal);
      await remuxFallback(join(fallbackDir, MEDIA_PLAYLIST), work, tools);
      await put(FALLBACK_MP4);
    }

    context.progress({ stage: 'master playlist', percent: 96 });
    const master = writeMaster(
      results.map((r) => ({ ...r, uri: `${r.name}/${MEDIA_PLAYLIST}` })),
      masterOptions(config),
    );
    const encoder = [...new Set(results.map((r) => r.encoder))].join(',');
    await this.store.complete(payload.sha256, ladder, { master, renditions: results, encoder, fallbacks });
    context.progress({ stage: 'done', percent: 100 });
    return jobResult(payload, ladder, results, encoder, encoded, fallbacks);
  }

  /** What shapes a ladder's outputs, from the probe and the preset this job uses (shape.ts). */
  async #shape(payload: VideoPayload, context: JobContext, info: VideoProbe): Promise<LadderShape> {
    const preset = choosePreset({ override: payload.preset, tier: await this.#tier(context) }, this.#config);
    return ladderShape(this.#config, info, preset);
  }

  #chunkedLadder(
    payload: VideoPayload,
    shape: LadderShape,
    work: string,
    durationMs: number,
    renditions = shape.jobs,
  ): ChunkedLadder {
    return {
      sha256: payload.sha256,
      ladder: shape.ladder,
      source: join(work, 'source'),
      work,
      durationMs,
      segment: shape.rungs[0]!.segmentDuration,
      renditions,
      preset: shape.preset,
    };
  }

  /** Encodes one rendition whole, into a folder of its own. */
  async #encode(job: RenditionJob): Promise<EncodedRendition> {
    await mkdir(job.dir);
    return encodeRendition(job);
  }

  /** A stored rendition's files, written back to `<work>/stored-<name>`; answers that folder. */
  async #fetchRendition(sha256: string, ladder: string, name: string, work: string, signal: AbortSignal) {
    const dir = join(work, `stored-${name}`);
    await mkdir(dir);
    for (const file of await this.store.files(sha256, ladder, name)) {
      const target = join(dir, file.path.slice(name.length + 1));
      await pipeline(await this.#blobs.get(file.sha256), createWriteStream(target), { signal });
    }
    return dir;
  }

  /** Whether this worker's ffmpeg has libvmaf, asked once per process. */
  #hasVmaf(): Promise<boolean> {
    this.#vmaf ??= hasLibvmaf(this.#config.ffmpegPath, this.#config.videoProbeTimeoutSeconds * 1000);
    return this.#vmaf;
  }

  /** The measurements a stored rendition was kept with. */
  async #storedResult(sha256: string, ladder: string, name: string): Promise<RenditionResult> {
    const file = await this.store.file(sha256, ladder, `${name}/${RESULT_FILE}`);
    if (!file) throw new Error(`rendition ${name} of ${sha256} is stored without its ${RESULT_FILE}`);
    // A few hundred bytes the job wrote itself; the bound only says so.
    const bytes = await readBlob(this.#blobs, file.sha256, RESULT_MAX_BYTES);
    return JSON.parse(bytes.toString('utf8')) as RenditionResult;
  }

  async #tier(context: JobContext): Promise<Tier | undefined> {
    const row = await this.#db
      .selectFrom('tenants')
      .select('tier')
      .where('id', '=', context.job.tenantId)
      .executeTakeFirst();
    return row?.tier as Tier | undefined;
  }
}
