/**
 * Remote downloader
 * =================
 *
 *   const res = await download(url, options);            // resolves once the final response's headers are in
 *   if (res.notModified) return keep(res.etag);           // 304 to ifNoneMatch / ifModifiedSince
 *   const [blob, result] = await Promise.all([store.put(res.body), res.done]);
 *
 * `download` follows redirects and rejects with a DownloadError (see download-errors.ts) for anything that
 * goes wrong before the body: a refused URL, a refused address, too many redirects, an unusable status,
 * a Content-Length over maxBytes, a timeout. It resolves with the response metadata and
 *
 *   body  ONE continuous Readable of the representation's bytes. Memory stays at about the stream's
 *         high-water mark: the socket is paused while the consumer is slow. When a connection drops,
 *         the downloader resumes with a Range request and keeps feeding the same stream, so the consumer
 *         never sees the seam. On failure the stream is destroyed with the DownloadError (over-size,
 *         idle timeout, drop without resume, ...), so a pipeline into storage rejects and discards its
 *         staging. The downloader keeps an 'error' listener of its own: a body nobody reads can not crash
 *         the process.
 *   done  resolves once the last byte has been pushed into `body`, with the metadata plus `bytes`,
 *         `resumes` and `sha256` (hex, computed while streaming; the blob store's own hash must match).
 *         It rejects with the same error the body fails with; it is pre-handled, so ignoring it is safe.
 *         Destroying `body` cancels the download (done rejects with download_aborted).
 *
 * Decisions:
 * - Every connection is new (`agent: false`) and resolves its name through the guarded lookup, so a
 *   redirect, a resume or a rebinding DNS answer is checked again; no pooled socket can skip the check.
 * - Each redirect target goes through checkUrl. A redirect from https to http is refused (bad_url):
 *   bytes asked for over TLS are not accepted in clear text, where anyone on the path could change them.
 * - Resumes (at most maxResumes) happen only with a validator to put in If-Range, so the bytes before and
 *   after the seam are known to come from one representation, and never when the first response said
 *   `Accept-Ranges: none`. A resume is accepted only as a 206 whose Content-Range starts at our offset
 *   and agrees on the total. A 200 means the representation changed (or ranges are ignored); the bytes
 *   already handed on cannot be taken back, so the download fails with a retryable download_network
 *   error and the job starts afresh. A connection that goes idle mid-body counts as dropped and may be resumed too.
 * - Timeouts: connect covers DNS, TCP and TLS of each connection; idle is the longest silence while we
 *   wait for the origin (response headers, then between chunks; time spent waiting for a slow consumer
 *   does not count); total bounds the whole download, slow consumers included.
 * - Minimum rate (rate-floor.ts): once the body flows, it must average minBytesPerSecond over every
 *   rateWindowMs (resumes included, a slow consumer's time not), else download_too_slow. That is not
 *   resumed: a trickling origin is no better on a new connection, so the download fails (retryable) and
 *   frees its worker, and the job tries again after its backoff.
 * - The body is asked for with `Accept-Encoding: identity`: we store the bytes the URL names.
 * - A body without Content-Length or chunked framing ends when the connection closes (RFC 9112 §6.3), so
 *   a drop cannot be told from the end there: such a body is taken as complete, as every client must.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { formatHttpDate } from '../../delivery/http-date.ts';
import { aborted, checkOptions, Run } from './connection.ts';
import {
  BadUrlError,
  HttpStatusError,
  parseRetryAfter,
  TooLargeError,
  TooManyRedirectsError,
} from './download-errors.ts';
import { parseLength } from './resume.ts';
import { checkUrl, type Resolver, type SsrfPolicy } from './ssrf.ts';
import { Transfer } from './transfer.ts';

export interface DownloadOptions {
  policy: SsrfPolicy;
  /** The most bytes accepted; one more fails the download with download_too_large. */
  maxBytes: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  totalTimeoutMs: number;
  /** Redirects followed; one more fails with download_too_many_redirects. */
  maxRedirects: number;
  /** Range requests made after dropped connections; 0 disables resuming. */
  maxResumes: number;
  /**
   * The least average rate of the body over `rateWindowMs`; slower fails with download_too_slow.
   * 0 or unset: off.
   */
  minBytesPerSecond?: number;
  /** The window of `minBytesPerSecond`, in ms. */
  rateWindowMs?: number;
  userAgent?: string;
  /** The ETag of the copy we hold: a 304 answers `notModified`. */
  ifNoneMatch?: string;
  /** The Last-Modified of the copy we hold (sent verbatim when a string). */
  ifModifiedSince?: string | Date;
  signal?: AbortSignal;
  /** Called after every chunk; throttle on your side. `total` is known from Content-Length or Content-Range. */
  onProgress?: (bytes: number, total: number | undefined) => void;
  /** Name resolution; the system resolver by default. */
  resolver?: Resolver;
  /** Certificates trusted instead of Node's bundled roots (origins behind a private CA; tests). */
  ca?: string | Buffer | (string | Buffer)[];
}

export interface ResponseMeta {
  /** The URL that finally answered, after redirects. */
  url: string;
  /** Every URL that answered with a redirect, in order. */
  redirects: string[];
  status: number;
  contentType: string | undefined;
  /** The size announced by the first final response, when it announced one. */
  contentLength: number | undefined;
  etag: string | undefined;
  lastModified: string | undefined;
}

export interface DownloadResult extends ResponseMeta {
  bytes: number;
  resumes: number;
  sha256: string;
}

export type DownloadResponse =
  | (ResponseMeta & { notModified: true })
  | (ResponseMeta & { notModified: false; body: Readable; done: Promise<DownloadResult> });

export { ifRangeValidator, parseContentRange } from './resume.ts';

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export { DEFAULT_USER_AGENT } from './connection.ts';

export async function download(input: string, options: DownloadOptions): Promise<DownloadResponse> {
  checkOptions(options);
  const conditional = conditionalHeaders(options);
  if (options.signal?.aborted) throw aborted(options.signal);
  const run = new Run(options);
  let res: IncomingMessage | undefined;
  try {
    const first = await follow(input, run, conditional);
    res = first.res;
    const h = res.headers;
    const status = res.statusCode ?? 0;
    const meta: ResponseMeta = {
      url: first.url.href,
      redirects: first.redirects,
      status,
      contentType: h['content-type'],
      contentLength: parseLength(h['content-length']),
      etag: h.etag,
      lastModified: h['last-modified'],
    };
    if (status === 304 && Object.keys(conditional).length > 0) {
      res.destroy();
      run.finish();
      return { ...meta, notModified: true };
    }
    if (status !== 200 && status !== 203) {
      throw new HttpStatusError(status, meta.url, parseRetryAfter(h['retry-after']));
    }
    if (meta.contentLength !== undefined && meta.contentLength > options.maxBytes) {
      throw new TooLargeError(options.maxBytes, `Content-Length is ${meta.contentLength}`);
    }
    const transfer = new Transfer(run, first.url, res, meta);
    return { ...meta, notModified: false, body: transfer.body, done: transfer.done };
  } catch (err) {
    res?.destroy();
    run.finish();
    throw run.failure ?? err;
  }
}

async function follow(input: string, run: Run, conditional: Record<string, string>) {
  const { policy, maxRedirects } = run.options;
  let url = checkUrl(input, policy);
  const redirects: string[] = [];
  for (;;) {
    const res = await run.open(url, { ...run.baseHeaders, ...conditional });
    const status = res.statusCode ?? 0;
    if (!REDIRECTS.has(status)) return { url, redirects, res };
    res.destroy();
    const location = res.headers.location;
    if (location === undefined) throw new HttpStatusError(status, url.href, undefined, 'no Location');
    if (redirects.length >= maxRedirects)
      throw new TooManyRedirectsError(maxRedirects, [...redirects, url.href]);
    let next: URL;
    try {
      // RFC 9110 §10.2.2: "If the Location value provided in a 3xx (Redirection) response does not have
      // a fragment component, a user agent MUST process the redirection as if the value inherits the
      // fragment component of the URI reference used to generate the target URI". Fragments never reach
      // the wire, so resolving against the current URL is all that matters here.
      next = new URL(location, url);
    } catch {
      throw new BadUrlError(`${url.href} redirected to an unusable Location: ${location.slice(0, 200)}`);
    }
    if (url.protocol === 'https:' && next.protocol === 'http:') {
      throw new BadUrlError(`${url.href} redirected from https to http (${next.href}); refused`);
    }
    redirects.push(url.href);
    url = checkUrl(next.href, policy);
  }
}

function conditionalHeaders(o: DownloadOptions): Record<string, string> {
  const h: Record<string, string> = {};
  if (o.ifNoneMatch !== undefined) h['if-none-match'] = o.ifNoneMatch;
  if (o.ifModifiedSince !== undefined) {
    const since = o.ifModifiedSince;
    h['if-modified-since'] = typeof since === 'string' ? since : formatHttpDate(since);
  }
  return h;
}
