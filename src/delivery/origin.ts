import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { etagOf } from '../assets/service.ts';
import { isActiveContent } from '../assets/sniff.ts';
import type { Config } from '../config/config.ts';
import { ConveyorError } from '../errors.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { CounterChild } from '../ops/prom.ts';
import { toConveyorError, writeProblem } from '../problems.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import type { AccessService } from './access.ts';
import { Bodies } from './bodies.ts';
import { multipartByteranges, newBoundary } from './byteranges.ts';
import { cacheControl } from './cache-policy.ts';
import { evaluatePreconditions } from './conditional.ts';
import { contentDisposition } from './content-disposition.ts';
import { Derivations, type Derive } from './derive.ts';
import { authorize, missing, type OriginRequest } from './gate.ts';
import { formatHttpDate } from './http-date.ts';
import type { DeliveryLookup, Representation } from './lookup.ts';
import { ifRangeAllowsPartial, parseRange } from './range.ts';

/** The `kind` label values of conveyor_delivery_responses_total. */
const DELIVERY_KINDS = [
  'full',
  'partial',
  'multipart',
  'not_modified',
  'precondition_failed',
  'unsatisfiable',
] as const;
type DeliveryKind = (typeof DELIVERY_KINDS)[number];

export interface OriginDeps {
  store: BlobStore;
  lookup: DeliveryLookup;
  access: AccessService;
  metrics: Metrics;
  /** The settings the origin reads: its cache policy and the limits of its memos, pool and ranges. */
  settings: Pick<
    Config,
    | 'deliveryMetadataTtlMs'
    | 'transformCacheEntries'
    | 'cacheLatestMaxAge'
    | 'cacheLatestSMaxAge'
    | 'cacheStaleWhileRevalidate'
    | 'cacheStaleIfError'
    | 'cacheNotFoundSMaxAge'
    | 'blobCacheBytes'
    | 'blobCacheItemBytes'
    | 'deliveryBufferMaxBytes'
    | 'deliveryBufferPoolBytes'
    | 'maxRanges'
    | 'deliveryActiveContent'
  >;
  /** Where a failure that is our fault (a 500) is reported. */
  log: { error(obj: object, msg: string): void };
  /**
   * The cache-tag headers of public responses for the configured CDNs (src/cdn/tags.ts); absent when no
   * configured CDN reads tags.
   */
  tags?: { headersFor(rep: Representation): OutgoingHttpHeaders } | undefined;
}

interface FixedHeaders {
  etag: string;
  lastModified: string;
  disposition: string;
  /** Content a browser may run script in (sniff.ts): sandboxed, and an attachment if so configured. */
  active: boolean;
}

/**
 * The origin: GET and HEAD of `/a/<assetId>` (latest, mutable) and `/v/<versionId>` (immutable),
 * implementing RFC 9110 conditional requests and ranges and RFC 9111 cache policy. The protocol decisions
 * are pure functions in this folder; this class applies them to a request and writes the response on
 * Node's own `ServerResponse`. It is called from two places: the Fastify routes (which add the query's
 * validation, Authorization and an optional rate limit) and, for the plain public GET that a CDN sends,
 * straight from the HTTP server (see src/delivery/fast-delivery.ts), where Fastify's routing and hooks would be
 * most of the work.
 */
export class Origin {
  readonly #deps: OriginDeps;
  readonly #bodies: Bodies;
  readonly #derivations: Derivations;
  readonly #cacheControls: Record<'latest' | 'version' | 'private' | 'missing', string>;
  /** The counter children of the six kinds of delivery response, looked up once. */
  readonly #counted = {} as Record<DeliveryKind, CounterChild>;
  /**
   * Header values that depend only on the representation, formatted once per looked-up representation
   * (the lookup hands out the same object for CONVEYOR_DELIVERY_METADATA_TTL_MS): the date and the
   * filename encoding were a visible share of a 304's time.
   */
  readonly #formatted = new WeakMap<Representation, FixedHeaders>();

  constructor(deps: OriginDeps) {
    this.#deps = deps;
    const { settings } = deps;
    this.#bodies = new Bodies(deps.store, settings);
    this.#derivations = new Derivations({
      ttlMs: settings.deliveryMetadataTtlMs,
      maxEntries: settings.transformCacheEntries,
    });
    const policy = {
      latestMaxAge: settings.cacheLatestMaxAge,
      latestSMaxAge: settings.cacheLatestSMaxAge,
      staleWhileRevalidate: settings.cacheStaleWhileRevalidate,
      staleIfError: settings.cacheStaleIfError,
      notFoundSMaxAge: settings.cacheNotFoundSMaxAge,
    };
    this.#cacheControls = {
      latest: cacheControl('latest', policy),
      version: cacheControl('version', policy),
      private: cacheControl('private', policy),
      missing: cacheControl('missing', policy),
    };
    for (const kind of DELIVERY_KINDS) this.#counted[kind] = deps.metrics.deliveryResponses.labels(kind);
  }

  /**
   * Answers `request` for the asset (`latest`) or version (`version`) `id` on `res`. Never throws or
   * rejects: every failure becomes a problem response (or, once the body has begun, a destroyed response).
   *
   * When everything the answer needs is in this process's memos (the representation in the lookup's, what
   * a derive step makes of it in `Derivations`, and the bytes in the body's, or a read the store does at
   * once), the response is written before this returns, and it returns undefined: the hit path of a CDN's
   * requests costs no promise and no microtask (a quarter of a small response's CPU, docs/benchmarks.md).
   * Otherwise it returns a promise that resolves once the whole response has been handed to the socket.
   */
  serve(
    kind: 'latest' | 'version',
    id: string,
    request: OriginRequest,
    res: ServerResponse,
    derive?: Derive,
  ): Promise<void> | undefined {
    // An asset id never names a version, nor the reverse. Private content needs the access check, which
    // may have to look a token up: always the long way.
    const source = this.#deps.lookup.remembered.getNow(id);
    if (!source || source.kind !== kind || source.visibility === 'private') {
      return this.#serveLater(kind, id, request, res, derive);
    }
    let rep = source;
    let derivedHeaders: OutgoingHttpHeaders | undefined;
    if (derive) {
      const derived = this.#derivations.getNow(derive, source, request);
      if (!derived) return this.#serveLater(kind, id, request, res, derive);
      ({ rep, headers: derivedHeaders } = derived);
    }
    const headers = withHeaders({ ...request.responseHeaders }, derivedHeaders);
    try {
      const pending = this.#respond(request, res, rep, rep.kind, headers, undefined);
      return pending?.catch((error: unknown) => this.#fail(error, request, res, headers));
    } catch (error) {
      this.#fail(error, request, res, headers);
      return undefined;
    }
  }

  /** `serve` from the start, waiting for whatever is not in memory: the lookup, access, derive, bytes. */
  async #serveLater(
    kind: 'latest' | 'version',
    id: string,
    request: OriginRequest,
    res: ServerResponse,
    derive: Derive | undefined,
  ): Promise<void> {
    // Built up as the request is evaluated; a problem keeps what was decided before it, so a 412 or 416
    // still carries the representation's ETag and Last-Modified.
    const headers: OutgoingHttpHeaders = { ...request.responseHeaders };
    try {
      const { lookup } = this.#deps;
      let rep = await (kind === 'latest' ? lookup.latest(id) : lookup.version(id));
      if (!rep) throw missing(request, this.#cacheControls.missing);
      const isPrivate = rep.visibility === 'private';
      if (isPrivate) await authorize(this.#deps.access, rep, request, this.#cacheControls.missing);
      let bytes: Buffer | undefined;
      if (derive) {
        const derived = await this.#derivations.get(derive, rep, request);
        rep = derived.rep;
        bytes = derived.bytes;
        withHeaders(headers, derived.headers);
      }
      await this.#respond(request, res, rep, isPrivate ? 'private' : rep.kind, headers, bytes);
    } catch (error) {
      this.#fail(error, request, res, headers);
    }
  }

  /**
   * Decides and writes the response for `rep`. Synchronous (undefined) when the body is at hand or none is
   * needed; a promise when the bytes must be waited for or the body is streamed. Throws (or rejects) a
   * ConveyorError for a 412 or 416, for `#fail` to answer, before anything is written.
   */
  #respond(
    request: OriginRequest,
    res: ServerResponse,
    rep: Representation,
    policy: 'latest' | 'version' | 'private',
    headers: OutgoingHttpHeaders,
    bytes: Buffer | undefined,
  ): Promise<void> | undefined {
    const fixed = this.#fixedHeaders(rep);
    const validators = { etag: fixed.etag, lastModified: rep.lastModified };
    headers.etag = fixed.etag;
    headers['last-modified'] = fixed.lastModified;
    headers['cache-control'] = this.#cacheControls[policy];
    if (policy !== 'private' && this.#deps.tags) Object.assign(headers, this.#deps.tags.headersFor(rep));
    headers['accept-ranges'] = 'bytes';
    headers['x-content-type-options'] = 'nosniff';
    if (fixed.active) headers['content-security-policy'] = "sandbox; default-src 'none'";
    const h = request.headers;
    const outcome = evaluatePreconditions(
      request.method,
      {
        ifMatch: h['if-match'],
        ifNoneMatch: h['if-none-match'],
        ifModifiedSince: h['if-modified-since'],
        ifUnmodifiedSince: h['if-unmodified-since'],
      },
      validators,
    );
    if (outcome === 'not-modified') {
      this.#counted.not_modified.inc();
      // RFC 9110 §15.4.5: the 304 carries the fields a 200 would (ETag, Cache-Control, …) and no content.
      res.writeHead(304, headers).end();
      return undefined;
    }
    if (outcome === 'precondition-failed') {
      this.#counted.precondition_failed.inc();
      throw new ConveyorError(
        'precondition_failed',
        'The representation does not match the request preconditions',
      );
    }

    // RFC 9110 §14.2: "A server MUST ignore a Range header field received with a request method that is
    // unrecognized or for which range handling is not defined. For this specification, GET is the only
    // method defined to be capable of handling range requests." So HEAD answers as a full GET would.
    const wantsRange =
      request.method === 'GET' &&
      h.range !== undefined &&
      ifRangeAllowsPartial(single(h['if-range']), validators);
    const range = wantsRange
      ? parseRange(h.range, rep.size, { maxRanges: this.#deps.settings.maxRanges })
      : { kind: 'none' as const };

    if (range.kind === 'unsatisfiable') {
      this.#counted.unsatisfiable.inc();
      throw new ConveyorError(
        'range_not_satisfiable',
        `The range is outside the ${rep.size} bytes of content`,
        {
          headers: { 'content-range': `bytes */${rep.size}` },
        },
      );
    }
    headers['content-disposition'] = fixed.disposition;
    const { metrics } = this.#deps;
    if (range.kind === 'ranges' && range.ranges.length === 1) {
      const r = range.ranges[0]!;
      const length = r.end - r.start + 1;
      this.#counted.partial.inc();
      metrics.deliveryBytes.inc(length);
      headers['content-type'] = rep.contentType;
      headers['content-range'] = `bytes ${r.start}-${r.end}/${rep.size}`;
      headers['content-length'] = length;
      return this.#send(
        res,
        206,
        headers,
        bytes ? bytes.subarray(r.start, r.end + 1) : this.#bodies.body(res, rep, r),
      );
    }
    if (range.kind === 'ranges') {
      const multipart = multipartByteranges({
        ranges: range.ranges,
        size: rep.size,
        contentType: rep.contentType,
        boundary: newBoundary(),
        open: (r) =>
          bytes
            ? Promise.resolve(Readable.from([bytes.subarray(r.start, r.end + 1)]))
            : this.#bodies.part(rep, r),
      });
      this.#counted.multipart.inc();
      metrics.deliveryBytes.inc(multipart.contentLength);
      headers['content-type'] = multipart.contentType;
      headers['content-length'] = multipart.contentLength;
      return this.#send(res, 206, headers, multipart.body);
    }

    headers['content-type'] = rep.contentType;
    headers['content-length'] = rep.size;
    this.#counted.full.inc();
    if (request.method === 'HEAD') {
      res.writeHead(200, headers).end();
      return undefined;
    }
    metrics.deliveryBytes.inc(rep.size);
    return this.#send(
      res,
      200,
      headers,
      bytes ?? this.#bodies.body(res, rep, { start: 0, end: rep.size - 1 }),
    );
  }

  #fixedHeaders(rep: Representation): FixedHeaders {
    let fixed = this.#formatted.get(rep);
    if (!fixed) {
      const active = isActiveContent(rep.contentType);
      const download = active && this.#deps.settings.deliveryActiveContent === 'attachment';
      fixed = {
        etag: etagOf(rep.sha256),
        lastModified: formatHttpDate(rep.lastModified),
        disposition: contentDisposition(rep.filename, download ? 'attachment' : 'inline'),
        active,
      };
      this.#formatted.set(rep, fixed);
    }
    return fixed;
  }

  /**
   * Writes head and body: a buffer in one write with the head, at once; a stream piped. A body still to
   * come is waited for first, so that a failure to get it is still answered as a problem.
   */
  #send(
    res: ServerResponse,
    status: number,
    headers: OutgoingHttpHeaders,
    body: Buffer | Promise<Buffer | Readable> | Readable,
  ): Promise<void> | undefined {
    if (Buffer.isBuffer(body)) {
      res.writeHead(status, headers).end(body);
      return undefined;
    }
    if (body instanceof Promise) return body.then((arrived) => this.#send(res, status, headers, arrived));
    res.writeHead(status, headers);
    // A client that goes away mid-body is not a failure of ours; a storage read that fails is (and, the
    // head being out, can only end the response early: the client sees a body shorter than announced).
    return pipeline(body, res).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ERR_STREAM_PREMATURE_CLOSE') throw error;
    });
  }

  /** Answers a failure as a problem document, or cuts the response short once the body has begun. */
  #fail(error: unknown, request: OriginRequest, res: ServerResponse, headers: OutgoingHttpHeaders): void {
    const problem = toConveyorError(error);
    if (problem.status >= 500) {
      this.#deps.log.error({ err: error, reqId: request.requestId, url: request.path }, 'delivery failed');
    }
    if (res.headersSent) {
      res.destroy(problem);
      return;
    }
    delete headers['content-disposition'];
    writeProblem(
      res,
      request.method,
      problem,
      { instance: request.path, requestId: request.requestId },
      headers,
    );
  }
}

/**
 * Adds a derive step's headers (Vary: Accept of a negotiated format) to those decided before the origin
 * (Vary: Origin of CORS), keeping both Vary lists.
 */
function withHeaders(
  headers: OutgoingHttpHeaders,
  more: OutgoingHttpHeaders | undefined,
): OutgoingHttpHeaders {
  if (more === undefined) return headers;
  const vary = headers.vary;
  Object.assign(headers, more);
  if (vary !== undefined && more.vary !== undefined) headers.vary = `${String(vary)}, ${String(more.vary)}`;
  return headers;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
