/**
 * Probing: what a video file holds, from ffprobe's JSON (`-show_format -show_streams`), as a typed
 * VideoInfo. ffprobe reads the container's headers and a few packets, not the whole file, so this is
 * cheap; what it cannot see (a file cut short behind an intact index) is the decode check's job
 * (verifyDecodable in limits.ts).
 *
 * ffprobe's output describes an untrusted file, so it is untrusted too: any field may be missing, `N/A`,
 * a string where a number is expected, or a rational with a zero denominator. parseProbe never throws
 * on it; a value it cannot read is null.
 *
 * Rotation. Phones record in the sensor's orientation and store how to turn the picture for display:
 * an ISO BMFF track header matrix, which ffprobe 5 reports as "Display Matrix" side data whose
 * `rotation` is av_display_rotation_get()'s angle: "the angle (in degrees) by which the transformation
 * rotates the frame counterclockwise" (libavutil/display.h). Older ffprobe versions gave a `rotate` tag
 * instead, clockwise. VideoInfo's `rotation` is clockwise, like that tag, Exif and CSS: a portrait phone
 * recording (side data -90) has rotation 90, and its display size swaps width and height.
 */
import { stat } from 'node:fs/promises';
import { VideoError } from './errors.ts';
import { safePath } from './ffmpeg-args.ts';
import { type FfprobeRunOptions, runFfprobe } from './run.ts';

export interface Rational {
  num: number;
  den: number;
}

export interface VideoStreamInfo {
  /** The stream's index in the file (for `-map 0:<index>`). */
  index: number;
  /** ffprobe's codec_name: h264, hevc, vp9, av1, ... */
  codec: string;
  /** `High`, `Main 10`, `Profile 0`, ... */
  profile: string | null;
  /** As ffprobe gives it: H.264 level 4.1 is 41, HEVC's is 30 x the level (123 = 4.1). */
  level: number | null;
  pixFmt: string | null;
  /** Stored size, before rotation. */
  width: number;
  height: number;
  /** Clockwise degrees to turn the stored picture for display: 0, 90, 180 or 270 (see above). */
  rotation: number;
  /** Size as displayed: width and height swapped for a quarter turn. Pixel aspect is not applied. */
  displayWidth: number;
  displayHeight: number;
  /** The pixel aspect ratio when it is not square (anamorphic video), else null. */
  sampleAspectRatio: Rational | null;
  /** avg_frame_rate, or r_frame_rate when that is unknown. */
  frameRate: Rational | null;
  /** frameRate as a number, e.g. 29.97. */
  fps: number | null;
  /** avg_frame_rate and r_frame_rate differ by more than 1 %: the frames are not evenly spaced. */
  variableFrameRate: boolean;
  bitRate: number | null;
  /** Frames in the stream when the container says (nb_frames). */
  frameCount: number | null;
}

export interface AudioStreamInfo {
  index: number;
  codec: string;
  profile: string | null;
  channels: number | null;
  channelLayout: string | null;
  sampleRate: number | null;
  bitRate: number | null;
}

export interface VideoInfo {
  /** Duration of the file (the container's, else the longest stream's); null when none is known. */
  durationMs: number | null;
  /** ffprobe's format_name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`. */
  formatName: string;
  /** The container's short name: mp4, mov, m4v, m4a, 3gp, webm, matroska, avi, mpegts, ... */
  container: string;
  sizeBytes: number | null;
  /** Overall bit rate in bits per second. */
  bitRate: number | null;
  /** The first video stream that is not cover art; null for none. */
  video: VideoStreamInfo | null;
  /** The first audio stream; null for none. */
  audio: AudioStreamInfo | null;
  streams: {
    total: number;
    /** Video streams, cover art (attached pictures) excluded. */
    video: number;
    audio: number;
    subtitle: number;
    data: number;
    attachment: number;
    attachedPictures: number;
  };
}

export type ProbeOptions = FfprobeRunOptions;

/**
 * Probes the file at `path`. Throws `video_unreadable` for an empty file or one ffprobe cannot read;
 * other VideoErrors (a missing ffprobe, a timeout, a killed process) as they are. A missing file is
 * not the input's fault: its fs error propagates.
 */
export async function probeVideo(path: string, options: ProbeOptions = {}): Promise<VideoInfo> {
  const { size } = await stat(path);
  if (size === 0) {
    throw new VideoError('video_unreadable', 'The file is empty', { details: { sizeBytes: 0 } });
  }
  let json: unknown;
  try {
    json = await runFfprobe(
      ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', safePath(path)],
      options,
    );
  } catch (error) {
    // ffprobe refusing the data (a non-zero exit, output that is not JSON) is about the file.
    if (error instanceof VideoError && error.code === 'video_process_failed' && !error.retryable) {
      const why = error.process?.stderrTail.trim().split('\n').pop() ?? error.message;
      throw new VideoError('video_unreadable', `ffprobe cannot read the file: ${why}`, { cause: error });
    }
    throw error;
  }
  return parseProbe(json, size);
}

/** ffprobe's JSON as a VideoInfo. `fileSize` stands in when the format does not give a size. */
export function parseProbe(json: unknown, fileSize?: number): VideoInfo {
  const root = record(json);
  const format = record(root['format']);
  const streams = Array.isArray(root['streams']) ? root['streams'].map(record) : [];
  const isCover = (s: Dict) => record(s['disposition'])['attached_pic'] === 1;
  const ofType = (type: string) => streams.filter((s) => s['codec_type'] === type);
  const videos = ofType('video').filter((s) => !isCover(s));
  const audios = ofType('audio');
  const formatName = text(format['format_name']) ?? 'unknown';
  const durations = streams.map((s) => seconds(s['duration'])).filter((d) => d !== null);
  const duration =
    seconds(format['duration']) ?? (videos[0] ? seconds(videos[0]['duration']) : null) ?? maxOf(durations);
  return {
    durationMs: duration === null ? null : Math.round(duration * 1000),
    formatName,
    container: containerOf(formatName, text(record(format['tags'])['major_brand']), streams),
    sizeBytes: count(format['size']) ?? fileSize ?? null,
    bitRate: count(format['bit_rate']),
    video: videos[0] ? videoStream(videos[0]) : null,
    audio: audios[0] ? audioStream(audios[0]) : null,
    streams: {
      total: streams.length,
      video: videos.length,
      audio: audios.length,
      subtitle: ofType('subtitle').length,
      data: ofType('data').length,
      attachment: ofType('attachment').length,
      attachedPictures: ofType('video').filter(isCover).length,
    },
  };
}

function videoStream(s: Dict): VideoStreamInfo {
  const width = count(s['width']) ?? 0;
  const height = count(s['height']) ?? 0;
  const rotation = rotationOf(s);
  const quarter = rotation === 90 || rotation === 270;
  const avg = rational(s['avg_frame_rate']);
  const real = rational(s['r_frame_rate']);
  const frameRate = avg ?? real;
  const sar = rational(s['sample_aspect_ratio'], ':');
  return {
    index: count(s['index']) ?? 0,
    codec: text(s['codec_name']) ?? 'unknown',
    profile: text(s['profile']),
    // ffprobe writes -99 for "unknown".
    level: count(s['level']),
    pixFmt: text(s['pix_fmt']),
    width,
    height,
    rotation,
    displayWidth: quarter ? height : width,
    displayHeight: quarter ? width : height,
    sampleAspectRatio: sar && sar.num !== sar.den ? sar : null,
    frameRate,
    fps: frameRate ? frameRate.num / frameRate.den : null,
    variableFrameRate: isVariable(avg, real, text(s['field_order'])),
    bitRate: count(s['bit_rate']) ?? mkvBitRate(s),
    frameCount: count(s['nb_frames']),
  };
}

function audioStream(s: Dict): AudioStreamInfo {
  return {
    index: count(s['index']) ?? 0,
    codec: text(s['codec_name']) ?? 'unknown',
    profile: text(s['profile']),
    channels: count(s['channels']),
    channelLayout: text(s['channel_layout']),
    sampleRate: count(s['sample_rate']),
    bitRate: count(s['bit_rate']) ?? mkvBitRate(s),
  };
}

/** Clockwise quarter turns from the display matrix, else the legacy tag; see the file's comment. */
function rotationOf(s: Dict): number {
  const sideData = Array.isArray(s['side_data_list']) ? s['side_data_list'].map(record) : [];
  const matrix = sideData.find((d) => d['side_data_type'] === 'Display Matrix');
  const ccw = matrix ? number(matrix['rotation']) : null;
  const cw = ccw !== null ? -ccw : number(record(s['tags'])['rotate']);
  if (cw === null) return 0;
  const degrees = ((cw % 360) + 360) % 360;
  // ffmpeg's own autorotation accepts an angle within a degree of a quarter turn (fftools/ffmpeg_filter.c);
  // other angles it does not apply, so neither does the display size here.
  const quarter = Math.round(degrees / 90) * 90;
  if (Math.abs(degrees - quarter) < 1) return quarter % 360;
  return Math.round(degrees) % 360;
}

/**
 * Variable frame rate: r_frame_rate is "the lowest framerate with which all timestamps can be
 * represented accurately" and avg_frame_rate the average (libavformat/avformat.h); for evenly spaced
 * frames they agree. Interlaced video may report the field rate as r_frame_rate, twice the average.
 */
function isVariable(avg: Rational | null, real: Rational | null, fieldOrder: string | null): boolean {
  if (avg === null || real === null) return false;
  const a = avg.num / avg.den;
  const r = real.num / real.den;
  const interlaced = fieldOrder !== null && fieldOrder !== 'progressive' && fieldOrder !== 'unknown';
  if (interlaced && Math.abs(r - 2 * a) / r <= 0.01) return false;
  return Math.abs(a - r) / r > 0.01;
}

/**
 * A short container name. ffprobe names demuxers, and one demuxer reads several containers: the ISO
 * family (`mov,mp4,m4a,3gp,3g2,mj2`) is told apart by the major brand of its `ftyp` box (a QuickTime
 * file may have none), Matroska and WebM (`matroska,webm`) by their codecs, since ffprobe does not show
 * the EBML DocType: WebM holds only VP8, VP9, AV1, Opus, Vorbis and WebVTT.
 */
function containerOf(formatName: string, brand: string | null, streams: readonly Dict[]): string {
  const names = formatName.split(',');
  if (names.includes('mov') && names.includes('mp4')) {
    const b = (brand ?? '').trim().toLowerCase();
    if (b === '' || b === 'qt') return 'mov';
    if (b === 'm4a' || b === 'm4b') return 'm4a';
    if (b === 'm4v') return 'm4v';
    if (b.startsWith('3g')) return '3gp';
    return 'mp4';
  }
  if (names.includes('matroska')) {
    const webm = new Set(['vp8', 'vp9', 'av1', 'opus', 'vorbis', 'webvtt']);
    const codecs = streams.map((s) => text(s['codec_name']));
    return codecs.length > 0 && codecs.every((c) => c !== null && webm.has(c)) ? 'webm' : 'matroska';
  }
  return names[0] ?? 'unknown';
}

/** Matroska has no per-stream bit rate; mkvmerge writes a `BPS` statistics tag instead. */
function mkvBitRate(s: Dict): number | null {
  const tags = record(s['tags']);
  return count(tags['BPS']) ?? count(tags['BPS-eng']);
}

type Dict = Readonly<Record<string, unknown>>;

function record(value: unknown): Dict {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Dict) : {};
}

/** A non-empty string other than ffprobe's `N/A`. */
function text(value: unknown): string | null {
  return typeof value === 'string' && value !== '' && value !== 'N/A' ? value : null;
}

/** A finite number, given as one or as a decimal string. */
function number(value: unknown): number | null {
  const n =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && value.trim() !== ''
        ? Number(value)
        : NaN;
  return Number.isFinite(n) ? n : null;
}

/** A non-negative integer (sizes, counts, rates); anything else is unknown. */
function count(value: unknown): number | null {
  const n = number(value);
  return n !== null && n >= 0 && Number.isSafeInteger(n) ? n : null;
}

/** A non-negative duration in seconds. */
function seconds(value: unknown): number | null {
  const n = number(value);
  return n !== null && n >= 0 ? n : null;
}

/** `30000/1001` (or `16:9` with sep ':'), positive on both sides; `0/0`, `N/A`, `1/0` are unknown. */
function rational(value: unknown, sep = '/'): Rational | null {
  const parts = typeof value === 'string' ? value.split(sep) : [];
  if (parts.length !== 2) return null;
  const num = count(parts[0]);
  const den = count(parts[1]);
  return num !== null && den !== null && num > 0 && den > 0 ? { num, den } : null;
}

function maxOf(values: readonly number[]): number | null {
  return values.length === 0 ? null : Math.max(...values);
}
