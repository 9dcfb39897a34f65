/**
 * The connections of one download (src/media/ingest/downloader.ts): its deadline, the caller's abort
 * signal, and each GET on a fresh socket through the SSRF guard's lookup, with the connect and idle
 * timeouts, and the check of a download's options. The downloader decides what to ask for (redirects,
 * resumes); this file only opens.
 */
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { settings } from '../../config/schema.ts';
import {
  DownloadAbortedError,
  DownloadError,
  DownloadTimeoutError,
  NetworkError,
} from './download-errors.ts';
import type { DownloadOptions } from './downloader.ts';
import { createGuardedLookup } from './ssrf.ts';

/** The User-Agent of a download that names none: the setting's default. */
export const DEFAULT_USER_AGENT = settings.ingestUserAgent.default;

/**
 * One download's shared state: its deadline, the caller's signal, the guarded lookup, and the request
 * in flight. A run-wide failure (total timeout, abort, consumer gone) kills whatever is in flight.
 */
export class Run {
  readonly options: DownloadOptions;
  readonly lookup: LookupFunction;
  readonly baseHeaders: Record<string, string>;
  /** Set by the transfer once the body is streaming, so run-wide failures reach the body. */
  onFail: ((err: DownloadError) => void) | undefined;
  #failure: DownloadError | undefined;
  #request: ClientRequest | undefined;
  #deadline: NodeJS.Timeout;
  #onAbort = () => this.fail(aborted(this.options.signal!));

  constructor(options: DownloadOptions) {
    this.options = options;
    this.lookup = createGuardedLookup(options.policy, options.resolver);
    this.baseHeaders = {
      'user-agent': options.userAgent ?? DEFAULT_USER_AGENT,
      accept: '*/*',
      'accept-encoding': 'identity',
    };
    const ms = options.totalTimeoutMs;
    this.#deadline = setTimeout(() => this.fail(new DownloadTimeoutError('total', ms)), ms);
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get failure(): DownloadError | undefined {
    return this.#failure;
  }

  fail(err: DownloadError): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    this.#request?.destroy(err);
    this.finish();
    this.onFail?.(err);
  }

  finish(): void {
    clearTimeout(this.#deadline);
    this.options.signal?.removeEventListener('abort', this.#onAbort);
  }

  /** Sends a GET on a fresh connection; resolves with the response once its headers are in. */
  open(url: URL, headers: Record<string, string>): Promise<IncomingMessage> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const { connectTimeoutMs, idleTimeoutMs } = this.options;
    const tls = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      let killed: DownloadError | undefined;
      // Destroying with an error guarantees an 'error' event, which settles this promise.
      const kill = (err: DownloadError) => {
        killed ??= err;
        req.destroy(err);
      };
      // agent: false means a fresh socket every time, and also no NODE_USE_ENV_PROXY proxy (the global
      // agent's): a proxy would resolve the name itself, out of the guarded lookup's reach.
      const send = tls ? https.request : http.request;
      const { ca } = this.options;
      const req = send(url, { method: 'GET', headers, agent: false, lookup: this.lookup, ...(ca && { ca }) });
      this.#request = req;
      let timer = setTimeout(
        () => kill(new DownloadTimeoutError('connect', connectTimeoutMs)),
        connectTimeoutMs,
      );
      req.once('socket', (socket) => {
        socket.once(tls ? 'secureConnect' : 'connect', () => {
          clearTimeout(timer);
          timer = setTimeout(() => kill(new DownloadTimeoutError('idle', idleTimeoutMs)), idleTimeoutMs);
        });
      });
      req.once('response', (res) => {
        clearTimeout(timer);
        resolve(res);
      });
      // Kept for the request's whole life: errors after the response are the transfer's business.
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(this.#failure ?? killed ?? asDownloadError(err, url.href));
      });
      req.end();
    });
  }
}

/** Refuses nonsensical limits before anything is sent. */
export function checkOptions(o: DownloadOptions): void {
  for (const key of ['maxBytes', 'connectTimeoutMs', 'idleTimeoutMs', 'totalTimeoutMs'] as const) {
    if (!Number.isSafeInteger(o[key]) || o[key] <= 0)
      throw new RangeError(`${key} must be a positive integer`);
  }
  for (const key of ['maxRedirects', 'maxResumes'] as const) {
    if (!Number.isSafeInteger(o[key]) || o[key] < 0)
      throw new RangeError(`${key} must be a non-negative integer`);
  }
  const { minBytesPerSecond = 0, rateWindowMs } = o;
  if (!Number.isSafeInteger(minBytesPerSecond) || minBytesPerSecond < 0)
    throw new RangeError('minBytesPerSecond must be a non-negative integer');
  if (minBytesPerSecond > 0 && (!Number.isSafeInteger(rateWindowMs) || rateWindowMs! <= 0))
    throw new RangeError('rateWindowMs must be a positive integer when minBytesPerSecond is set');
}

export function aborted(signal: AbortSignal): DownloadAbortedError {
  return new DownloadAbortedError('the download was aborted', { cause: signal.reason });
}

export function asDownloadError(err: unknown, where: string): DownloadError {
  if (err instanceof DownloadError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new NetworkError(`${where}: ${message}`, err);
}
