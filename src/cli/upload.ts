import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { basename } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface UploadOptions {
  baseUrl: string;
  apiKey: string;
  visibility: 'public' | 'private';
  publish: boolean;
  /** Where progress lines go; default stderr. */
  progress?: NodeJS.WritableStream;
}

/** Files above this size show progress while they upload. */
const PROGRESS_THRESHOLD_BYTES = 8 * 1024 * 1024;
const PROGRESS_INTERVAL_MS = 500;

/**
 * Streams a file to `POST /api/v1/assets` (raw body with Content-Length, so the server can refuse an
 * oversized file before reading it) and, with `publish`, publishes it. Answers the asset's URLs.
 */
export async function uploadFile(path: string, options: UploadOptions) {
  const info = await stat(path);
  const url = new URL('/api/v1/assets', options.baseUrl);
  url.searchParams.set('filename', basename(path));
  url.searchParams.set('visibility', options.visibility);
  const out = options.progress ?? process.stderr;
  const showProgress = info.size >= PROGRESS_THRESHOLD_BYTES;

  let sent = 0;
  let lastReport = 0;
  const started = Date.now();
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sent += chunk.length;
      const now = Date.now();
      if (showProgress && now - lastReport >= PROGRESS_INTERVAL_MS) {
        lastReport = now;
        const mib = (n: number) => (n / 1048576).toFixed(1);
        const rate = sent / 1048576 / Math.max(0.001, (now - started) / 1000);
        out.write(
          `\ruploading ${mib(sent)} / ${mib(info.size)} MiB (${((100 * sent) / info.size).toFixed(0)}%, ${rate.toFixed(1)} MiB/s)`,
        );
      }
      callback(null, chunk);
    },
  });

  const asset = await send(
    url,
    options.apiKey,
    'POST',
    {
      'content-type': 'application/octet-stream',
      'content-length': String(info.size),
    },
    async (req) => pipeline(createReadStream(path), meter, req),
  );
  if (showProgress) out.write('\n');

  const result: Record<string, unknown> = {
    id: asset['id'],
    url: asset['url'],
    etag: asset['etag'],
    size: asset['size'],
  };
  if (options.publish) {
    const version = await send(
      new URL(`/api/v1/assets/${asset['id']}/publish`, options.baseUrl),
      options.apiKey,
      'POST',
      {},
      async (req) => {
        req.end();
      },
    );
    result['versionUrl'] = version['url'];
  }
  return result;
}

type Writer = (req: NodeJS.WritableStream & { end(): void }) => Promise<void>;

async function send(
  url: URL,
  apiKey: string,
  method: string,
  headers: Record<string, string>,
  write: Writer,
) {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<Record<string, unknown>>((resolve, reject) => {
    const req = request(
      url,
      { method, headers: { ...headers, authorization: `Bearer ${apiKey}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: Record<string, unknown> = {};
          try {
            body = JSON.parse(text) as Record<string, unknown>;
          } catch {
            // Not JSON: reported below with the status.
          }
          if ((res.statusCode ?? 500) >= 400) {
            reject(
              new Error(`${res.statusCode} ${String(body['code'] ?? '')}: ${String(body['detail'] ?? text)}`),
            );
          } else resolve(body);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    write(req).catch(reject);
  });
}
