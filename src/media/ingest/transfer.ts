/**
 * The body phase of a download (downloader.ts describes the whole): the final response, and the Range
 * requests that resume it after a drop, stitched into one Readable, hashed and measured on the way.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { Run } from './connection.ts';
import {
  DownloadAbortedError,
  DownloadError,
  DownloadTimeoutError,
  HttpStatusError,
  NetworkError,
  parseRetryAfter,
  TooLargeError,
  TooSlowError,
} from './download-errors.ts';
import type { DownloadResult, ResponseMeta } from './downloader.ts';
import { RateFloor } from './rate-floor.ts';
import { ifRangeValidator, parseContentRange } from './resume.ts';

/** One response feeding the body; `over` once it ended, broke or was given up on. */
type Exchange = { res: IncomingMessage; over: boolean };

/** The body phase: one or more responses stitched into one Readable. */
export class Transfer {
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
