import { createReadStream, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { callJson } from './http-client.ts';
import { CliError } from './output.ts';
import { Progress, type ProgressStream } from './progress.ts';
import { resumableUpload } from './resumable-upload.ts';
import { defaultStateFile, UploadState } from './upload-state.ts';

const MiB = 1024 * 1024;

/** The defaults of `conveyor upload`'s settings. */
export const UPLOAD_DEFAULTS = {
  /** Files of this size or more upload resumably (tus), with progress; smaller ones in one request. */
  resumableThreshold: 8 * MiB,
  /** Bytes per PATCH of a resumable upload: what one cut connection can cost at most. */
  chunkSize: 8 * MiB,
};

export interface UploadOptions {
  baseUrl: string;
  apiKey: string;
  visibility: 'public' | 'private';
  publish: boolean;
  resumableThreshold: number;
  chunkSize: number;
  /** The state file of unfinished resumable uploads; default `defaultStateFile()`. */
  stateFile?: string;
  /** Show progress of resumable uploads (default true). */
  progress?: boolean;
  /** Where progress and notes go; default stderr. */
  out?: ProgressStream;
  stopAfterChunks?: number;
}

/** What `conveyor upload` prints. */
export interface UploadResult {
  id: string;
  url: string;
  etag: string;
  size: number;
  versionUrl?: string;
}

/** `8388608`, `64KiB`, `8MiB`, `1GiB` (K, M, G and KB, MB, GB mean the same): bytes, or undefined. */
export function parseSize(text: string): number | undefined {
  const match = /^\s*(\d+)\s*(?:(k|m|g)(?:i?b)?|b)?\s*$/i.exec(text);
  if (!match) return undefined;
  const unit = { k: 1024, m: MiB, g: 1024 * MiB }[match[2]?.toLowerCase() as 'k' | 'm' | 'g'] ?? 1;
  const bytes = Number(match[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * Uploads a file to a running Conveyor and answers the asset's URLs (with `publish`, also of version 1).
 * A file under `resumableThreshold` goes in one request (`POST /api/v1/assets`, a raw body with
 * Content-Length, so that the server can refuse an oversized file before reading it); a larger one as a
 * resumable upload (src/cli/resumable-upload.ts), which a later run of the same command continues.
 */
export async function uploadFile(path: string, options: UploadOptions): Promise<UploadResult> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`);
  }
  if (!info.isFile()) throw new CliError(`${path} is not a file`);
  const out = options.out ?? process.stderr;

  let asset: Record<string, unknown>;
  if (info.size > 0 && info.size >= options.resumableThreshold) {
    const id = await resumableUpload(path, info, {
      baseUrl: options.baseUrl,
      apiKey: options.apiKey,
      visibility: options.visibility,
      chunkSize: options.chunkSize,
      state: new UploadState(options.stateFile ?? defaultStateFile()),
      ...(options.progress === false ? {} : { progress: new Progress(out, info.size) }),
      ...(options.stopAfterChunks ? { stopAfterChunks: options.stopAfterChunks } : {}),
      note: (line) => out.write(`${line}\n`),
    });
    asset = await callJson(
      new URL(`/api/v1/assets/${encodeURIComponent(id)}`, options.baseUrl),
      options.apiKey,
      'GET',
      'reading the asset',
    );
  } else {
    const url = new URL('/api/v1/assets', options.baseUrl);
    url.searchParams.set('filename', basename(path));
    url.searchParams.set('visibility', options.visibility);
    asset = await callJson(
      url,
      options.apiKey,
      'POST',
      'uploading',
      { 'content-type': 'application/octet-stream', 'content-length': String(info.size) },
      createReadStream(path),
    );
  }
  const result: UploadResult = {
    id: String(asset['id']),
    url: String(asset['url']),
    etag: String(asset['etag']),
    size: Number(asset['size']),
  };
  if (options.publish) {
    const assetId = result.id;
    const version = await callJson(
      new URL(`/api/v1/assets/${encodeURIComponent(assetId)}/publish`, options.baseUrl),
      options.apiKey,
      'POST',
      'publishing',
      { 'content-length': '0' },
    );
    result.versionUrl = String(version['url']);
  }
  return result;
}
