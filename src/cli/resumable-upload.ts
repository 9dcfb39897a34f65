/**
 * The client side of Conveyor's resumable uploads (tus 1.0 core and creation, as docs/api.md describes
 * them at /api/v1/uploads), for `conveyor upload`:
 *
 *   1. A file this machine already began sending to this server (the state file remembers the upload URL
 *      by endpoint, path, size, mtime and visibility) is asked about with HEAD: Upload-Offset says where
 *      to go on. An upload the server no longer knows (404, 410) is forgotten and started afresh.
 *   2. Otherwise POST creates one (Upload-Length, Upload-Metadata `filename` and `visibility`), and its
 *      URL is remembered before any byte is sent.
 *   3. PATCHes of at most `chunkSize` bytes follow, each streamed from the file at the server's offset.
 *   4. The answer of the final PATCH names the asset: its `Asset-Id` header, or the id of the asset in its
 *      JSON body. A complete upload that was never handed over (the hand-over failed) is finished with an
 *      empty PATCH at the end, which the server answers the same way. Then the upload is forgotten.
 *
 * Bytes a cut PATCH got across are kept by the server, so nothing is sent twice beyond what was in flight.
 */
import { createReadStream, type Stats } from 'node:fs';
import { basename, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { TUS_VERSION, UPLOADS_PATH } from '../uploads/protocol.ts';
import { type Answer, call, failure, json, NetworkError } from './http-client.ts';
import { CliError } from './output.ts';
import type { Progress } from './progress.ts';
import type { UploadKey, UploadState } from './upload-state.ts';

/** A PATCH refused for a stale offset (409) is followed by a HEAD and tried again at most this often. */
const MAX_RESYNCS = 3;

export interface ResumableOptions {
  baseUrl: string;
  apiKey: string;
  visibility: 'public' | 'private';
  chunkSize: number;
  state: UploadState;
  progress?: Progress;
  /** Stops (throws) after this many PATCHes, as a cut connection would: how tests interrupt an upload. */
  stopAfterChunks?: number;
  /** Where notes for the user go (stderr). */
  note(line: string): void;
}

/** Uploads `path` (described by `info`) resumably and answers the id of the asset it became. */
export async function resumableUpload(path: string, info: Stats, options: ResumableOptions): Promise<string> {
  const endpoint = new URL(UPLOADS_PATH, options.baseUrl);
  const key: UploadKey = {
    endpoint: endpoint.href,
    path: resolve(path),
    size: info.size,
    mtimeMs: info.mtimeMs,
    visibility: options.visibility,
  };
  const tus = (headers: Record<string, string> = {}) => ({ 'tus-resumable': TUS_VERSION, ...headers });
  const send = (url: URL, method: string, headers: Record<string, string>, body?: Transform) =>
    call(url, options.apiKey, method, tus(headers), body);

  let upload: { url: URL; offset: number } | undefined;
  const known = await options.state.find(key);
  if (known) {
    const url = new URL(known.url);
    const head = await send(url, 'HEAD', {});
    if (head.status === 404 || head.status === 410) {
      options.note('the server no longer has the unfinished upload of this file: starting again');
      await options.state.forget(key);
    } else if (head.status >= 300) {
      throw failure(head, 'asking about the unfinished upload');
    } else {
      const offset = headerNumber(head, 'upload-offset');
      if (offset === undefined || headerNumber(head, 'upload-length') !== info.size) {
        throw new CliError(`the server's answer about ${url} names no offset or another length`);
      }
      const assetId = header(head, 'asset-id');
      if (assetId !== undefined) {
        // Finished in an earlier run whose last answer was lost.
        await options.state.forget(key);
        options.progress?.start(info.size);
        options.progress?.finish();
        return assetId;
      }
      options.note(`resuming ${url.href} at ${offset} of ${info.size} bytes`);
      upload = { url, offset };
    }
  }
  if (!upload) {
    const metadata = [
      `filename ${Buffer.from(basename(path)).toString('base64')}`,
      `visibility ${Buffer.from(options.visibility).toString('base64')}`,
    ].join(',');
    const created = await send(endpoint, 'POST', {
      'upload-length': String(info.size),
      'upload-metadata': metadata,
      'content-length': '0',
    });
    const location = header(created, 'location');
    if (created.status !== 201 || location === undefined) throw failure(created, 'creating the upload');
    const url = new URL(location, endpoint);
    const expires = Date.parse(header(created, 'upload-expires') ?? '');
    await options.state.remember(key, url.href, Number.isNaN(expires) ? undefined : expires);
    upload = { url, offset: 0 };
  }

  const { url } = upload;
  let offset = upload.offset;
  let chunks = 0;
  let resyncs = 0;
  options.progress?.start(offset);
  try {
    for (;;) {
      const length = Math.min(options.chunkSize, info.size - offset);
      let answer: Answer;
      try {
        answer = await send(
          url,
          'PATCH',
          {
            'content-type': 'application/offset+octet-stream',
            'upload-offset': String(offset),
            'content-length': String(length),
          },
          length > 0 ? fileRange(path, offset, length, options.progress) : undefined,
        );
      } catch (error) {
        if (error instanceof NetworkError) throw interrupted(offset, info.size, error.message);
        throw error;
      }
      if (answer.status === 409 && resyncs < MAX_RESYNCS) {
        // Our offset is stale (bytes of a cut request arrived after all): ask where the upload stands.
        resyncs++;
        const head = await send(url, 'HEAD', {});
        const at = headerNumber(head, 'upload-offset');
        if (head.status >= 300 || at === undefined) throw failure(head, 'asking about the upload');
        offset = at;
        continue;
      }
      if (answer.status === 404 || answer.status === 410) {
        await options.state.forget(key);
        throw new CliError(
          `the server no longer has this upload (${answer.status}): run the same command again to start over`,
        );
      }
      if (answer.status >= 300) throw failure(answer, `sending bytes ${offset}-${offset + length - 1}`);
      resyncs = 0;
      const at = headerNumber(answer, 'upload-offset') ?? offset + length;
      if (length > 0 && at <= offset) throw new CliError(`the server took none of bytes ${offset}-`);
      if (at === info.size) {
        const assetId = header(answer, 'asset-id') ?? stringOrUndefined(json(answer)['id']);
        if (assetId !== undefined) {
          await options.state.forget(key);
          options.progress?.finish();
          return assetId;
        }
        if (length === 0) throw new CliError('the server finished the upload but named no asset');
        // Complete, but its answer named no asset: the empty PATCH at the end asks for the hand-over.
        offset = at;
        continue;
      }
      offset = at;
      chunks++;
      if (options.stopAfterChunks !== undefined && chunks >= options.stopAfterChunks) {
        throw interrupted(offset, info.size, `stopped after ${chunks} chunks (--stop-after-chunks)`);
      }
    }
  } finally {
    options.progress?.abandon();
  }
}

function interrupted(offset: number, size: number, why: string): CliError {
  return new CliError(
    `upload interrupted at ${offset} of ${size} bytes: ${why}; run the same command again to resume`,
  );
}

/**
 * `length` bytes of the file from `start`, streamed (never the whole file in memory), reporting progress;
 * fails if the file ends early (it changed while uploading).
 */
function fileRange(path: string, start: number, length: number, progress?: Progress): Transform {
  let sent = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sent += chunk.length;
      progress?.update(start + sent);
      callback(null, chunk);
    },
    flush(callback) {
      callback(sent === length ? null : new CliError(`${path} changed while it was being uploaded`));
    },
  });
  const source = createReadStream(path, { start, end: start + length - 1 });
  source.once('error', (error) => meter.destroy(error));
  return source.pipe(meter);
}

function header(answer: Answer, name: string): string | undefined {
  const value = answer.headers[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function headerNumber(answer: Answer, name: string): number | undefined {
  const value = header(answer, name);
  const n = Number(value);
  return value !== undefined && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
