import type { VideoFilesTable, VideoInfoTable, VideoLaddersTable } from '../../db/tables.ts';
import type { Fallback } from './fallback.ts';

/** One output file on the job's disk, to be stored under `path` in its ladder. */
export interface OutputFile {
  /** Relative path in the ladder, e.g. `720p/seg_00001.m4s` (see keys.ts, `checkFilePath`). */
  path: string;
  contentType: string;
  /** Where the file is on disk; it is streamed from there, never read whole. */
  file: string;
}

/** What the job measured of one rendition; the store needs only its name and keeps the rest as JSON. */
export interface RenditionRecord {
  readonly name: string;
}

export type LadderState = VideoLaddersTable['state'];

export interface VideoLadder<R extends RenditionRecord = RenditionRecord> {
  source: string;
  ladder: string;
  state: LadderState;
  /** The master playlist; null until complete. */
  master: string | null;
  renditions: R[] | null;
  encoder: string | null;
  fallbacks: Fallback[] | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  completedAt: number | null;
}

/** One stored file of a ladder, as delivery needs it. */
export interface VideoFile {
  path: string;
  rendition: string | null;
  sha256: string;
  size: number;
  contentType: string;
  createdAt: number;
}

/** What ffprobe learned about some content (see video_info in src/db/migrations/007-video.ts). */
export interface VideoInfo {
  sha256: string;
  /** The whole probe, kept as JSON. */
  probe: unknown;
  durationMs: number;
  width: number;
  height: number;
  hasAudio: boolean;
  container: string;
  videoCodec: string;
  audioCodec: string | null;
  loudness: unknown;
  createdAt: number;
}

/** Why the store refused a write; the ladder is left as it was. */
export class VideoStoreError extends Error {
  readonly reason: 'no_ladder' | 'not_encoding' | 'missing_renditions' | 'path_taken';
  /** For `missing_renditions`: the renditions named that have no files. */
  readonly missing: readonly string[];

  constructor(reason: VideoStoreError['reason'], message: string, missing: readonly string[] = []) {
    super(message);
    this.name = 'VideoStoreError';
    this.reason = reason;
    this.missing = missing;
  }
}

export function ladderView<R extends RenditionRecord>(row: VideoLaddersTable): VideoLadder<R> {
  return {
    source: row.source_sha256,
    ladder: row.ladder,
    state: row.state,
    master: row.master,
    renditions: row.renditions === null ? null : (JSON.parse(row.renditions) as R[]),
    encoder: row.encoder,
    fallbacks: row.fallbacks === null ? null : (JSON.parse(row.fallbacks) as Fallback[]),
    error: row.error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
  };
}

export function fileView(row: VideoFilesTable): VideoFile {
  return {
    path: row.path,
    rendition: row.rendition,
    sha256: row.sha256,
    size: row.size,
    contentType: row.content_type,
    createdAt: row.created_at,
  };
}

export function infoView(row: VideoInfoTable): VideoInfo {
  return {
    sha256: row.sha256,
    probe: JSON.parse(row.probe) as unknown,
    durationMs: row.duration_ms,
    width: row.width,
    height: row.height,
    hasAudio: row.has_audio === 1,
    container: row.container,
    videoCodec: row.video_codec,
    audioCodec: row.audio_codec,
    loudness: row.loudness === null ? null : (JSON.parse(row.loudness) as unknown),
    createdAt: row.created_at,
  };
}

/** The row of a probe result (`putInfo`). */
export function infoRow(info: Omit<VideoInfo, 'createdAt'> & { createdAt?: number }): VideoInfoTable {
  return {
    sha256: info.sha256,
    probe: JSON.stringify(info.probe),
    duration_ms: info.durationMs,
    width: info.width,
    height: info.height,
    has_audio: info.hasAudio ? 1 : 0,
    container: info.container,
    video_codec: info.videoCodec,
    audio_codec: info.audioCodec,
    loudness: info.loudness == null ? null : JSON.stringify(info.loudness),
    created_at: info.createdAt ?? Date.now(),
  };
}
