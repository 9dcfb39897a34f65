import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { checkPurge, networkFailure, statusFailure } from '../http.ts';
import type { CdnCapabilities, CdnProvider, PurgeRequest, PurgeResult, TagHeader } from '../provider.ts';

/**
 * A Varnish in front of Conveyor, purged over HTTP as its VCL allows (deploy/ ships one): what this
 * client sends, and all the VCL needs to accept from an allowed client, is
 *
 *   - a URL purge: `PURGE <path?query>` with `Host: <the URL's host>`, which the VCL answers with
 *     `return (purge)` (the object under that host and URL, every variant);
 *   - a tag purge: `PURGE /` with `Host: <baseUrl's host>` and `xkey-purge: <tag> <tag> ...`, or
 *     `xkey-softpurge: ...` for a soft purge, which the VCL hands to varnish-modules' `xkey.purge()` /
 *     `xkey.softpurge()`; it may report the count in an `xkey-purged` header.
 *
 * Any 2xx is success. The method is configurable (some VCLs use `BAN` or a private verb). Requests go out
 * with node:http, not fetch: a purge must carry the public host in `Host`, which fetch does not let a
 * caller set.
 *
 * https://github.com/varnish/varnish-modules/blob/master/src/vmod_xkey.vcc
 * https://varnish-cache.org/docs/trunk/users-guide/purging.html
 */

/** The header this edge reads cache tags from, and its limit. */
export const VARNISH_TAG_HEADER: TagHeader = { name: 'xkey', separator: ' ', maxBytes: 8 * 1024 };

/**
 * Tags per xkey purge. Varnish refuses a request header longer than `http_req_hdr_len` (8 KiB by
 * default): 128 tags of up to 63 bytes fit in it.
 */
export const VARNISH_MAX_TAGS = 128;

export interface VarnishOptions {
  name: string;
  /** Public base URL viewers reach the Varnish at. */
  baseUrl: string;
  /** Where this process reaches the Varnish to purge it, e.g. `http://127.0.0.1:6081`. */
  apiUrl: string;
  /** The purge method the VCL accepts: `PURGE` unless it says otherwise. */
  purgeMethod?: string;
  /** Tags per xkey purge, within the Varnish's `http_req_hdr_len`. */
  maxTags?: number;
  timeoutMs: number;
}

export class VarnishProvider implements CdnProvider {
  readonly name: string;
  readonly kind = 'varnish' as const;
  readonly baseUrl: string;
  readonly capabilities: CdnCapabilities;
  /**
   * xkey reads space-separated keys from `xkey` response headers; a response header longer than
   * `http_resp_hdr_len` (8 KiB by default) fails the fetch.
   */
  readonly tagHeader: TagHeader = VARNISH_TAG_HEADER;
  readonly #apiUrl: URL;
  readonly #method: string;
  readonly #timeoutMs: number;

  constructor(options: VarnishOptions) {
    this.name = options.name;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#apiUrl = new URL(options.apiUrl);
    this.#method = options.purgeMethod ?? 'PURGE';
    this.#timeoutMs = options.timeoutMs;
    this.capabilities = {
      purge: { urls: { maxItems: 1 }, tags: { maxItems: options.maxTags ?? VARNISH_MAX_TAGS } },
      // xkey-softpurge makes tagged objects stale. A URL purge has no soft form in Varnish: a soft URL
      // purge is sent as a hard one, which leaves nothing stale behind either.
      softPurge: true,
      signing: false,
      usage: false,
    };
  }

  async purge(request: PurgeRequest, signal?: AbortSignal): Promise<PurgeResult> {
    const items = checkPurge(this.name, this.capabilities, request);
    if (request.kind === 'urls') {
      const target = new URL(items[0]!, `${this.baseUrl}/`);
      await this.#send(`${target.pathname}${target.search}`, { host: target.host }, signal);
    } else {
      const header = request.kind === 'tags' && request.soft ? 'xkey-softpurge' : 'xkey-purge';
      await this.#send('/', { host: new URL(this.baseUrl).host, [header]: items.join(' ') }, signal);
    }
    return {};
  }

  #send(path: string, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<void> {
    const what = `${this.#method} ${path}`;
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const send = this.#apiUrl.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        {
          protocol: this.#apiUrl.protocol,
          hostname: this.#apiUrl.hostname.replace(/^\[|\]$/g, ''),
          port: this.#apiUrl.port,
          method: this.#method,
          path,
          headers: { ...headers, 'content-length': '0' },
          signal: both,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', (error) =>
            reject(networkFailure(this.name, what, error, timeout, this.#timeoutMs)),
          );
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve();
            const retryAfter = res.headers['retry-after'] ?? null;
            const body = Buffer.concat(chunks).toString('utf8');
            reject(statusFailure(this.name, what, status, retryAfter, body));
          });
        },
      );
      req.on('error', (error) => reject(networkFailure(this.name, what, error, timeout, this.#timeoutMs)));
      req.end();
    });
  }
}
