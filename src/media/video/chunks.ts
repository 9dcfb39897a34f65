/**
 * Chunked encoding
 * ================
 *
 * A long source is encoded in chunks that separate jobs run, so that every worker of every process
 * shares one video, and each rendition is then joined from its chunks without re-encoding. What makes
 * the joined rendition equal to a whole encode (same frames, same timestamps, same keyframes and
 * segments; the chunked-encoding test compares them packet by packet):
 *
 * - **Chunk spans lie on the segment grid.** Chunk i covers [i·C, (i+1)·C) of the source's timeline, C a
 *   whole number of segments, and the segment length is a whole number of frames of every rung
 *   (ladder.ts). So each chunk's encode starts on a keyframe of the grid, its own keyframe grid
 *   (`-force_key_frames` from its t = 0) is the ladder's, and the frame-rate conversion of a slower rung
 *   picks the same frames as in a whole encode.
 * - **The source is split at keyframes, by stream copy.** A chunk's piece runs from the source keyframe
 *   at or before its span's start (input `-ss` on a stream copy keeps that keyframe) to the span's end
 *   (`-to`, which in a stream copy passes every packet decoded before it, so every frame shown before
 *   the end and every frame those refer to). Pieces keep the source's timestamps (`-copyts`), in
 *   Matroska, which carries any codec. Neighbouring pieces overlap by less than one source GOP: the
 *   price of cutting a compressed stream without decoding it, and far less than each worker fetching
 *   the whole source.
 * - **A chunk encode cuts its span exactly.** `trim` selects the frames of [start, end) by their
 *   timestamps (a millisecond early on both sides: Matroska rounds timestamps to milliseconds), then
 *   `setpts` moves the span's start to 0 and the rung's filters follow, with the frame-rate filter told
 *   that its output starts at 0. Chunks carry video only, in MP4.
 * - **The join concatenates and muxes once.** The concat demuxer places each chunk after the previous
 *   one's duration (a whole number of frames), the video is copied, and the audio is encoded from the
 *   whole source in the same run (with the ladder's loudness filter): audio frames do not fall on video
 *   frame boundaries, so audio cut into chunks would drift or click at every seam.
 *
 * Chunks use the CPU encoder of their codec: hardware encoders differ from machine to machine, and the
 * chunks of one rendition must be one bitstream (one set of parameter sets) for a copy to join them.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LadderCodec, VideoPreset } from '../../config/video-settings.ts';
import { PermanentJobError } from '../../jobs/types.ts';
import { hlsOptions, MEDIA_PLAYLIST, presetFamilyOf, type SegmentFormat } from './encode.ts';
import { type EncodeAttempt, fallbackChain } from './fallback.ts';
import { ffmpegArgs, seconds } from './ffmpeg-args.ts';
import type { EncoderReport } from './hwaccel.ts';
import { CHUNKS_DIR } from './keys.ts';
import type { Fraction, Rendition } from './ladder.ts';
import { audioArgs, encoderArgs, rungFilter } from './presets.ts';
import { type FfprobeRunOptions, runFfprobe } from './run.ts';

/** One chunk: [start, end) in seconds of the source's timeline (from its first timestamp); end null: to the end. */
export interface ChunkSpan {
  index: number;
  start: number;
  end: number | null;
}

/** A rendition every chunk encodes. */
export interface ChunkRendition {
  name: string;
  codec: LadderCodec;
  rung: Rendition;
}

/**
 * What a ladder's chunk jobs encode, written once on the ladder (VideoStore.setChunkPlan) before any of
 * them is queued, so that every chunk job in every process encodes for the same join.
 */
export interface ChunkPlan {
  /** The source's first timestamp (ffprobe's format start_time), seconds: pieces keep the source's timestamps. */
  origin: number;
  /** Chunk length in seconds, a whole number of segments. */
  chunkSeconds: number;
  spans: ChunkSpan[];
  renditions: ChunkRendition[];
  preset: VideoPreset;
}

export interface ChunkSettings {
  /** Target chunk length (CONVEYOR_VIDEO_CHUNK_SECONDS), rounded up to whole segments. */
  chunkSeconds: number;
  /** Most chunks (CONVEYOR_VIDEO_CHUNK_MAX_COUNT); past it chunks get longer. */
  maxCount: number;
}

/**
 * The chunk spans of a source of `durationMs` on the grid of `segment` (an exact fraction of seconds):
 * whole segments per chunk, at least as long as asked and few enough. A source shorter than two chunks
 * gets one span, which the job encodes whole instead.
 */
export function planSpans(durationMs: number, segment: Fraction, settings: ChunkSettings): ChunkSpan[] {
  const segmentSeconds = segment.num / segment.den;
  const totalSegments = Math.ceil(durationMs / 1000 / segmentSeconds);
  let perChunk = Math.max(1, Math.ceil(settings.chunkSeconds / segmentSeconds));
  perChunk = Math.max(perChunk, Math.ceil(totalSegments / settings.maxCount));
  const count = Math.ceil(totalSegments / perChunk);
  // A boundary is a whole number of segments, each an exact fraction: multiply before dividing.
  const at = (i: number) => (i * perChunk * segment.num) / segment.den;
  return Array.from({ length: count }, (_, index) => ({
    index,
    start: at(index),
    end: index === count - 1 ? null : at(index + 1),
  }));
}

/** The length of the chunks of `spans`, seconds. */
export function chunkSecondsOf(spans: readonly ChunkSpan[]): number {
  return spans[0]?.end ?? 0;
}

const pad = (index: number) => String(index).padStart(5, '0');

/** Where a chunk's piece of the source is kept in the ladder. */
export function piecePath(index: number): string {
  return `${CHUNKS_DIR}/source/${pad(index)}.mkv`;
}

/** Where a chunk's encode of one rendition is kept in the ladder. */
export function chunkOutputPath(index: number, rendition: string): string {
  return `${CHUNKS_DIR}/${pad(index)}/${rendition}.mp4`;
}

/** The source's first timestamp in seconds (0 for most files; MPEG-TS often starts later). */
export async function sourceOrigin(source: string, options: FfprobeRunOptions): Promise<number> {
  const out = (await runFfprobe(
    ['-v', 'error', '-show_entries', 'format=start_time', '-print_format', 'json', source],
    options,
  )) as { format?: { start_time?: string } };
  const start = Number(out.format?.start_time ?? 0);
  return Number.isFinite(start) ? start : 0;
}

/** ffmpeg's arguments that cut the piece of `span` out of `source` into `out`, video only, by stream copy. */
export function pieceArgs(source: string, span: ChunkSpan, origin: number, out: string): string[] {
  return ffmpegArgs({
    // -copyts keeps the source's timestamps, which the chunk's trim selects by. Under it the input's -ss
    // counts from the file's start while the output's -to is a timestamp, hence the origin on one only.
    globalOptions: ['-copyts'],
    inputs: [{ path: source, ...(span.start > 0 ? { seekSeconds: span.start } : {}) }],
    outputs: [
      {
        path: out,
        maps: ['0:v:0'],
        options: ['-c', 'copy', ...(span.end === null ? [] : ['-to', seconds(origin + span.end)])],
        format: 'matroska',
      },
    ],
  });
}

/** Matroska keeps milliseconds: a frame's timestamp is off by up to half of one. */
const TRIM_SLACK_SECONDS = 0.001;

/** The video filter of a chunk's encode: its span, moved to start at 0, then the rung's own chain. */
export function chunkFilter(span: ChunkSpan, origin: number, rung: Rendition): string {
  const start = origin + span.start - TRIM_SLACK_SECONDS;
  const trim = [`start=${seconds(start)}`];
  if (span.end !== null) trim.push(`end=${seconds(origin + span.end - TRIM_SLACK_SECONDS)}`);
  const rungChain = rungFilter(rung, 'x264').replace(/^fps=([^,]+)/, 'fps=$1:start_time=0');
  return [`trim=${trim.join(':')}`, `setpts=PTS-${seconds(origin + span.start)}/TB`, rungChain].join(',');
}

/** ffmpeg's arguments that encode one rendition of one chunk from its piece into `out` (MP4, video only). */
export function chunkEncodeArgs(
  piece: string,
  span: ChunkSpan,
  origin: number,
  rendition: ChunkRendition,
  preset: VideoPreset,
  attempt: EncodeAttempt,
  out: string,
): string[] {
  const videoOnly: Rendition = { ...rendition.rung, audioBitrate: null };
  const family = presetFamilyOf(attempt.encoder);
  return ffmpegArgs({
    globalOptions: ['-copyts'],
    inputs: [{ path: piece }],
    outputs: [
      {
        path: out,
        maps: ['0:v:0'],
        videoFilter: chunkFilter(span, origin, rendition.rung),
        options: encoderArgs(videoOnly, preset, family),
        format: 'mp4',
      },
    ],
  });
}

/**
 * The CPU attempt a chunk of `codec` is encoded with. A worker without one cannot encode the chunk, and
 * retrying on it would not change that.
 */
export function cpuAttempt(report: EncoderReport, codec: LadderCodec): EncodeAttempt {
  const cpu = report.proven.find((c) => c.family === 'cpu' && c.codec === codec);
  const attempt = cpu && fallbackChain(cpu, report).find((a) => a.step === 'cpu');
  if (!attempt) {
    throw new PermanentJobError(
      `No CPU ${codec} encoder works with this worker's ffmpeg, and chunks are encoded on the CPU`,
      'video_encoder_unavailable',
    );
  }
  return attempt;
}

/** Writes the concat demuxer's list of `files` (absolute paths) to `listPath`. */
export async function writeConcatList(listPath: string, files: readonly string[]): Promise<void> {
  // ffmpeg-formats(1), concat: "file path ... Special characters and spaces must be escaped with
  // backslash or single quotes"; inside single quotes a quote is written '\''.
  const lines = files.map((file) => `file '${file.replaceAll("'", "'\\''")}'`);
  await writeFile(listPath, `ffconcat version 1.0\n${lines.join('\n')}\n`);
}

export interface JoinJob {
  /** The concat list (writeConcatList) of the rendition's chunk encodes, in order. */
  list: string;
  /** The whole source, for the audio. */
  source: string;
  hasAudio: boolean;
  audioFilter?: string;
  rung: Rendition;
  segmentFormat: SegmentFormat;
  /** An empty folder for the rendition's HLS files. */
  dir: string;
}

/** ffmpeg's arguments that join a rendition's chunks into its HLS files, the audio encoded from the source. */
export function joinArgs(job: JoinJob): string[] {
  return ffmpegArgs({
    inputs: [
      // -safe 0: the list names absolute paths of the job's own working folder.
      { path: job.list, format: 'concat', options: ['-safe', '0'] },
      ...(job.hasAudio ? [{ path: job.source }] : []),
    ],
    outputs: [
      {
        path: join(job.dir, MEDIA_PLAYLIST),
        format: 'hls',
        maps: job.hasAudio ? ['0:v:0', '1:a:0'] : ['0:v:0'],
        ...(job.hasAudio && job.audioFilter ? { audioFilter: job.audioFilter } : {}),
        options: [
          '-c:v',
          'copy',
          ...audioArgs(job.rung),
          ...hlsOptions(job.rung, job.segmentFormat, job.dir),
        ],
      },
    ],
  });
}
