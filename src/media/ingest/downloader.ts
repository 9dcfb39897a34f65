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
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { formatHttpDate } from '../../delivery/http-date.ts';
import { aborted, checkOptions, Run } from './connection.ts';
import {
  BadUrlError,
  DownloadAbortedError,
  DownloadError,
  DownloadTimeoutError,
  HttpStatusError,
  NetworkError,
  parseRetryAfter,
  TooLargeError,
  TooManyRedirectsError,
  TooSlowError,
} from './download-errors.ts';
import { RateFloor } from './rate-floor.ts';
import { ifRangeValidator, parseContentRange, parseLength } from './resume.ts';
import { checkUrl, type Resolver, type SsrfPolicy } from './ssrf.ts';

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

/** One response feeding the body; `over` once it ended, broke or was given up on. */
type Exchange = { res: IncomingMessage; over: boolean };

/** The body phase: one or more responses stitched into one Readable. */
class Transfer {
  readonly body: Readable;
  readonly done: Promise<DownloadResult>;
  #run: Run;
  #url: URL;
  #meta: ResponseMeta;
  #hash = createHash('sha256');
  #bytes = 0;
  #resumes = 0;
  #total: number | undefined;
  #validator: string | undefined;
  #rangesRefused: boolean;
  #current: Exchange | undefined;
  #paused = false;
  #idle: NodeJS.Timeout | undefined;
  #rate: RateFloor | undefined;
  #rateCheck: NodeJS.Timeout | undefined;
  #settled = false;
  #resolve!: (r: DownloadResult) => void;
  #reject!: (e: DownloadError) => void;

  constructor(run: Run, url: URL, res: IncomingMessage, meta: ResponseMeta) {
    this.#run = run;
    this.#url = url;
    this.#meta = meta;
    this.#total = meta.contentLength;
    this.#validator = ifRangeValidator(res.headers);
    // RFC 9110 §14.3: "A client MAY generate range requests regardless of having received an
    // Accept-Ranges field." but "A server that does not support any kind of range request for the target
    // resource MAY send Accept-Ranges: none", and then asking is pointless.
    this.#rangesRefused = /^\s*none\s*$/i.test(res.headers['accept-ranges'] ?? '');
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => {});
    this.body = new Readable({
      read: () => {
        if (!this.#paused) return;
        this.#paused = false;
        this.#rate?.resume();
        this.#current?.res.resume();
        this.#armIdle();
      },
      destroy: (err, callback) => {
        this.#fail(new DownloadAbortedError('the body stream was destroyed by its consumer', { cause: err }));
        callback(err);
      },
    });
    this.body.on('error', () => {});
    run.onFail = (err) => this.#fail(err);
    this.#watchRate();
    this.#attach(res);
  }

  /** One timer per download, a few samples per window (see rate-floor.ts); none when the floor is off. */
  #watchRate(): void {
    const { minBytesPerSecond = 0, rateWindowMs = 0 } = this.#run.options;
    if (minBytesPerSecond <= 0) return;
    const rate = new RateFloor(minBytesPerSecond, rateWindowMs);
    this.#rate = rate;
    this.#rateCheck = setInterval(
      () => {
        const slow = rate.sample();
        if (slow) this.#fail(new TooSlowError(slow.bytesPerSecond, slow.ms, minBytesPerSecond));
      },
      Math.max(10, Math.floor(rateWindowMs / 5)),
    );
    this.#rateCheck.unref();
  }

  #attach(res: IncomingMessage): void {
    const exchange = { res, over: false };
    this.#current = exchange;
    res.on('data', (chunk: Buffer) => this.#onData(exchange, chunk));
    res.on('end', () => this.#onEnd(exchange));
    res.on('error', () => {}); // a premature close also emits 'close', handled there
    res.on('close', () =>
      this.#onBreak(exchange, new NetworkError(`connection dropped at byte ${this.#bytes}`)),
    );
    this.#armIdle();
  }

  #onData(exchange: Exchange, chunk: Buffer): void {
    if (exchange.over) return;
    const { maxBytes, onProgress } = this.#run.options;
    const bytes = this.#bytes + chunk.length;
    if (bytes > maxBytes) {
      this.#fail(new TooLargeError(maxBytes, `received more than ${maxBytes} bytes`));
      return;
    }
    if (this.#total !== undefined && bytes > this.#total) {
      this.#fail(new NetworkError(`the origin sent more than the ${this.#total} bytes it announced`));
      return;
    }
    this.#bytes = bytes;
    this.#rate?.add(chunk.length);
    this.#hash.update(chunk);
    try {
      onProgress?.(bytes, this.#total);
    } catch (err) {
      this.#fail(new DownloadAbortedError('onProgress threw', { cause: err }));
      return;
    }
    this.#armIdle();
    if (!this.body.push(chunk)) {
      this.#paused = true;
      this.#rate?.pause();
      exchange.res.pause();
      clearTimeout(this.#idle);
    }
  }

  #onEnd(exchange: Exchange): void {
    if (exchange.over) return;
    if (this.#total !== undefined && this.#bytes < this.#total) {
      // A 206 that stopped short of the total: carry on from there, as after a drop.
      this.#onBreak(
        exchange,
        new NetworkError(`the response ended at byte ${this.#bytes} of ${this.#total}`),
      );
      return;
    }
    exchange.over = true;
    this.#settled = true;
    clearTimeout(this.#idle);
    clearInterval(this.#rateCheck);
    this.#run.finish();
    this.body.push(null);
    const sha256 = this.#hash.digest('hex');
    this.#resolve({ ...this.#meta, bytes: this.#bytes, resumes: this.#resumes, sha256 });
  }

  #onBreak(exchange: Exchange, cause: DownloadError): void {
    if (exchange.over || this.#settled) return;
    exchange.over = true;
    clearTimeout(this.#idle);
    exchange.res.destroy();
    const canResume =
      this.#resumes < this.#run.options.maxResumes && this.#validator !== undefined && !this.#rangesRefused;
    if (canResume) void this.#resume(cause);
    else this.#fail(cause);
  }

  async #resume(cause: DownloadError): Promise<void> {
    this.#resumes += 1;
    let res: IncomingMessage;
    try {
      // RFC 9110 §13.1.5: "A client MUST NOT generate an If-Range header field in a request that does not
      // contain a Range header field."
      res = await this.#run.open(this.#url, {
        ...this.#run.baseHeaders,
        range: `bytes=${this.#bytes}-`,
        'if-range': this.#validator!,
      });
    } catch (err) {
      if (this.#settled) return;
      // The origin is still unreachable: another attempt if any are left and waiting can help (an SSRF
      // refusal of a re-resolved name cannot), else this failure.
      const failure = err instanceof DownloadError ? err : cause;
      if (failure.retryable && this.#resumes < this.#run.options.maxResumes)
        return void this.#resume(failure);
      return this.#fail(failure);
    }
    if (this.#settled) return void res.destroy();
    const problem = this.#checkPartial(res);
    if (problem !== undefined) {
      res.destroy();
      return this.#fail(problem);
    }
    this.#attach(res);
  }

  /** Why a resume response cannot continue the body, or undefined when it can. */
  #checkPartial(res: IncomingMessage): DownloadError | undefined {
    const status = res.statusCode ?? 0;
    if (status === 200) {
      return new NetworkError(
        'resume refused: the origin sent the whole representation again, so it changed',
      );
    }
    if (status !== 206)
      return new HttpStatusError(status, this.#url.href, parseRetryAfter(res.headers['retry-after']));
    const range = parseContentRange(res.headers['content-range']);
    if (range === undefined || range.first !== this.#bytes) {
      return new NetworkError(
        `resume at byte ${this.#bytes} answered Content-Range ${res.headers['content-range']}`,
      );
    }
    if (range.complete !== undefined && this.#total !== undefined && range.complete !== this.#total) {
      return new NetworkError(`resume answered a total of ${range.complete} bytes, not ${this.#total}`);
    }
    const etag = res.headers.etag;
    if (etag !== undefined && this.#validator?.startsWith('"') && etag !== this.#validator) {
      return new NetworkError(`resume answered ETag ${etag}, not ${this.#validator}`);
    }
    const { maxBytes } = this.#run.options;
    if (range.complete !== undefined && range.complete > maxBytes) {
      return new TooLargeError(maxBytes, `Content-Range total is ${range.complete}`);
    }
    this.#total ??= range.complete;
    return undefined;
  }

  #armIdle(): void {
    clearTimeout(this.#idle);
    const exchange = this.#current;
    if (exchange === undefined || exchange.over || this.#settled) return;
    const ms = this.#run.options.idleTimeoutMs;
    this.#idle = setTimeout(() => this.#onBreak(exchange, new DownloadTimeoutError('idle', ms)), ms);
  }

  #fail(err: DownloadError): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#idle);
    clearInterval(this.#rateCheck);
    if (this.#current !== undefined) {
      this.#current.over = true;
      this.#current.res.destroy();
    }
    this.#run.fail(err);
    if (!this.body.destroyed) this.body.destroy(err);
    this.#reject(err);
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
