import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Kysely, Transaction } from 'kysely';
import type { ContentAdded } from '../assets/service.ts';
import type { Config } from '../config/config.ts';
import { type LadderCodec, VIDEO_PRESETS, type VideoPreset } from '../config/video-settings.ts';
import type { Database } from '../db/tables.ts';
import type { Tier } from '../glossary.ts';
import type { JobEngine } from '../jobs/engine.ts';
import type { JobRegistry } from '../jobs/registry.ts';
import type { JobContext } from '../jobs/types.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { codecList } from './video/codecs.ts';
import { encodeRendition, MEDIA_PLAYLIST } from './video/encode.ts';
import { asJobError } from './video/errors.ts';
import { chooseEncoder, type Fallback, fallbackChain } from './video/fallback.ts';
import { masterOptions, writeMaster } from './video/hls/master.ts';
import { measureBandwidth, mediaSegments } from './video/hls/media.ts';
import { detectEncoders, detectOptionsFrom, type EncoderReport } from './video/hwaccel.ts';
import { ladderKey } from './video/keys.ts';
import { ladderSettings, planLadder, type Rendition } from './video/ladder.ts';
import { checkVideo, verifyDecodable, videoLimits } from './video/limits.ts';
import { choosePreset } from './video/presets.ts';
import { probeVideo } from './video/probe.ts';
import type { OutputFile, VideoStore } from './video/store.ts';

/** The job type that probes a video and encodes its HLS ladder. */
export const VIDEO_JOB = 'video.ladder';

export interface VideoPayload {
  assetId: string;
  sha256: string;
  /** A compression preset for this video, over the tenant's tier default and CONVEYOR_VIDEO_PRESET. */
  preset?: VideoPreset;
}

/** What the job measured of one rendition: the master playlist's line for it, and what the API shows. */
export interface RenditionResult {
  name: string;
  codec: LadderCodec;
  width: number;
  height: number;
  frameRate: number;
  bandwidth: number;
  averageBandwidth: number;
  codecs: string[];
  bytes: number;
  encoder: string;
}

/** Each rendition's measurements, stored beside its files so that a resumed job can write the master. */
const RESULT_FILE = 'rendition.json';

/** RFC 8216 §4 and the MIME registrations of the segment formats. */
const CONTENT_TYPES: Record<string, string> = {
  m3u8: 'application/vnd.apple.mpegurl',
  mp4: 'video/mp4',
  m4s: 'video/iso.segment',
  ts: 'video/mp2t',
  json: 'application/json',
};

/**
 * Video processing: when an asset gets video content, a `video.ladder` job joins the committing
 * transaction. It copies the content to a working folder, probes it (ffprobe), holds it to the limits
 * and decodes its end (a file cut short probes as whole), and encodes the ladder: every rendition of
 * every configured codec, with the best encoder this worker proved and the fallback chain behind it.
 * Each finished rendition is stored at once, whole, with its measurements; a killed attempt's successor
 * starts after the stored ones. The master playlist is written last, from the measurements, and the
 * ladder becomes `complete` only then. Results are keyed by the content's SHA-256 and the ladder's
 * settings, so identical content is encoded once whoever uploads it.
 */
export class VideoProcessor {
  readonly #config: Config;
  readonly #db: Kysely<Database>;
  readonly #blobs: BlobStore;
  readonly #jobs: JobEngine;
  readonly store: VideoStore;
  #encoders: Promise<EncoderReport> | undefined;

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

  /** This worker's encoders, proved once per process (hwaccel.ts). */
  encoders(): Promise<EncoderReport> {
    this.#encoders ??= detectEncoders(
      detectOptionsFrom(this.#config, this.#config.ffmpegPath, this.#config.videoCodecs),
    );
    return this.#encoders;
  }

  async #process(payload: VideoPayload, context: JobContext) {
    const work = await mkdtemp(join(this.#config.videoWorkDir ?? tmpdir(), 'conveyor-video-'));
    try {
      return await this.#ladder(payload, context, work);
    } catch (error) {
      throw asJobError(error);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  async #ladder(payload: VideoPayload, context: JobContext, work: string) {
    const config = this.#config;
    const { signal } = context;
    const tools = { ffmpegPath: config.ffmpegPath, cancelGraceMs: config.videoCancelGraceMs, signal };
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
    await this.store.putInfo({
      sha256: payload.sha256,
      probe: info,
      durationMs,
      width: video.displayWidth,
      height: video.displayHeight,
      hasAudio: info.audio !== null,
      container: info.container,
      videoCodec: video.codec,
      audioCodec: info.audio?.codec ?? null,
      loudness: null,
    });

    const preset = choosePreset({ override: payload.preset, tier: await this.#tier(context) }, config);
    const rungs = planLadder(
      {
        width: video.displayWidth,
        height: video.displayHeight,
        frameRate: video.fps ?? 30,
        hasAudio: info.audio !== null,
      },
      ladderSettings(config),
    );
    const ladder = ladderKey({
      codecs: config.videoCodecs,
      preset,
      rungs: rungs.map((r) => `${r.width}x${r.height}@${r.frameRate.num}/${r.frameRate.den}`),
      segment: `${rungs[0]!.segmentDuration.num}/${rungs[0]!.segmentDuration.den}`,
      format: config.videoSegmentFormat,
    });
    const { ladder: row, completeRenditions } = await this.store.begin(payload.sha256, ladder);
    const jobs = config.videoCodecs.flatMap((codec) =>
      rungs.map((rung) => ({ codec, rung, name: `${codec}-${rung.name}` })),
    );
    if (row.state === 'complete') {
      context.progress({ stage: 'done', percent: 100 });
      return {
        assetId: payload.assetId,
        sha256: payload.sha256,
        ladder,
        renditions: jobs.length,
        encoded: 0,
      };
    }

    const report = await this.encoders();
    const results: RenditionResult[] = [];
    const fallbacks: Fallback[] = [];
    let encoded = 0;
    for (const [index, { codec, rung, name }] of jobs.entries()) {
      const share = (fraction: number) => 5 + ((index + fraction) / jobs.length) * 90;
      if (completeRenditions.includes(name)) {
        results.push(await this.#storedResult(payload.sha256, ladder, name));
        continue;
      }
      context.progress({ stage: `encoding ${name}`, percent: share(0) });
      const dir = join(work, name);
      await mkdir(dir);
      const out = await encodeRendition({
        source,
        durationMs,
        hasAudio: info.audio !== null,
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
            percent: share(fraction),
            message: progress.speed === null ? undefined : `${progress.speed}x`,
          }),
        onFallback: (fallback) => fallbacks.push(fallback),
      });
      const result = await this.#measure(out.dir, out.files, {
        name,
        codec,
        rung,
        encoder: out.attempt.encoder,
      });
      await writeFile(join(out.dir, RESULT_FILE), JSON.stringify(result));
      const files: OutputFile[] = [...out.files, RESULT_FILE].map((file) => ({
        path: `${name}/${file}`,
        contentType: CONTENT_TYPES[file.split('.').pop()!] ?? 'application/octet-stream',
        file: join(out.dir, file),
      }));
      await this.store.putRendition(payload.sha256, ladder, name, files, { signal });
      await rm(out.dir, { recursive: true, force: true });
      results.push(result);
      encoded++;
    }

    context.progress({ stage: 'master playlist', percent: 96 });
    const master = writeMaster(
      results.map((r) => ({ ...r, uri: `${r.name}/${MEDIA_PLAYLIST}` })),
      masterOptions(config),
    );
    await this.store.complete(payload.sha256, ladder, {
      master,
      renditions: results,
      encoder: [...new Set(results.map((r) => r.encoder))].join(','),
      fallbacks,
    });
    context.progress({ stage: 'done', percent: 100 });
    return { assetId: payload.assetId, sha256: payload.sha256, ladder, renditions: results.length, encoded };
  }

  /** A rendition's bit rates from its segments, and its RFC 6381 codecs from the encoded streams. */
  async #measure(
    dir: string,
    files: readonly string[],
    what: { name: string; codec: LadderCodec; rung: Rendition; encoder: string },
  ): Promise<RenditionResult> {
    const playlist = await readFile(join(dir, MEDIA_PLAYLIST), 'utf8');
    const segments = await Promise.all(
      mediaSegments(playlist).map(async (s) => ({
        duration: s.duration,
        bytes: (await stat(join(dir, s.uri))).size,
      })),
    );
    const { num, den } = what.rung.segmentDuration;
    const { peak, average } = measureBandwidth(segments, num / den);
    const probed = await probeVideo(join(dir, MEDIA_PLAYLIST), { ffprobePath: this.#config.ffprobePath });
    const streams = [
      {
        codec: probed.video!.codec,
        ...(probed.video!.profile ? { profile: probed.video!.profile } : {}),
        ...(probed.video!.level !== null ? { level: probed.video!.level } : {}),
        ...(probed.video!.pixFmt ? { pixFmt: probed.video!.pixFmt } : {}),
        width: what.rung.width,
        height: what.rung.height,
        frameRate: what.rung.frameRate.num / what.rung.frameRate.den,
      },
      ...(probed.audio
        ? [{ codec: probed.audio.codec, ...(probed.audio.profile ? { profile: probed.audio.profile } : {}) }]
        : []),
    ];
    let bytes = 0;
    for (const file of files) bytes += (await stat(join(dir, file))).size;
    return {
      name: what.name,
      codec: what.codec,
      width: what.rung.width,
      height: what.rung.height,
      frameRate: what.rung.frameRate.num / what.rung.frameRate.den,
      bandwidth: peak,
      averageBandwidth: average,
      codecs: codecList(streams),
      bytes,
      encoder: what.encoder,
    };
  }

  /** The measurements a stored rendition was kept with. */
  async #storedResult(sha256: string, ladder: string, name: string): Promise<RenditionResult> {
    const file = await this.store.file(sha256, ladder, `${name}/${RESULT_FILE}`);
    if (!file) throw new Error(`rendition ${name} of ${sha256} is stored without its ${RESULT_FILE}`);
    const chunks: Buffer[] = [];
    for await (const chunk of await this.#blobs.get(file.sha256)) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as RenditionResult;
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
