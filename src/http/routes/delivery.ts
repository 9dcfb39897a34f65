import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { etagOf } from '../../assets/service.ts';
import { isActiveContent } from '../../assets/sniff.ts';
import { BlobCache } from '../../delivery/blob-cache.ts';
import { BufferPool } from '../../delivery/buffer-pool.ts';
import { multipartByteranges, newBoundary } from '../../delivery/byteranges.ts';
import { cacheControl } from '../../delivery/cache-policy.ts';
import { evaluatePreconditions } from '../../delivery/conditional.ts';
import { contentDisposition } from '../../delivery/content-disposition.ts';
import { formatHttpDate } from '../../delivery/http-date.ts';
import type { Representation } from '../../delivery/lookup.ts';
import { ifRangeAllowsPartial, parseRange } from '../../delivery/range.ts';
import { ConveyorError } from '../../errors.ts';
import type { ByteRange } from '../../storage/blob-store.ts';
import type { AppDeps } from '../app.ts';
import { enforceRateLimit } from '../auth.ts';
import type { RateLimiter, RateLimitRule } from '../rate-limit.ts';

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

interface FixedHeaders {
  etag: string;
  lastModified: string;
  disposition: string;
  /** Script-capable content, served sandboxed. */
  active: boolean;
}

interface DeliveryQuery {
  token?: string;
  exp?: string;
  kid?: string;
  sig?: string;
}

/**
 * The origin: GET and HEAD of `/a/<assetId>` (latest, mutable) and `/v/<versionId>` (immutable),
 * implementing RFC 9110 conditional requests and ranges and RFC 9111 cache policy. The protocol
 * decisions are pure functions in src/delivery; this file only wires them to the request and reply.
 */
export async function deliveryRoutes(
  app: FastifyInstance,
  opts: { deps: AppDeps; limit: { limiter: RateLimiter; rule: RateLimitRule } | null },
): Promise<void> {
  const { deps, limit } = opts;
  const cache = new BlobCache(deps.store, {
    maxBytes: deps.config.blobCacheBytes,
    maxItemBytes: deps.config.blobCacheItemBytes,
  });
  const pool = new BufferPool({
    maxBufferBytes: deps.config.deliveryBufferMaxBytes,
    maxPooledBytes: deps.config.deliveryBufferPoolBytes,
  });
  /** One part of a multipart/byteranges body: from memory for small blobs, else streamed from storage. */
  const open = async (rep: Representation, r: ByteRange): Promise<Readable> => {
    if (!cache.accepts(rep.size)) return deps.store.get(rep.sha256, r);
    return Readable.from([(await cache.get(rep.sha256)).subarray(r.start, r.end + 1)]);
  };
  /**
   * The body of a 200 or single-range 206: from memory for small blobs; otherwise, up to
   * deliveryBufferMaxBytes, one read into a pooled buffer that the reply sends with its head in one write
   * (the buffer returns to the pool when the response closes); a larger body is streamed.
   */
  const body = async (reply: FastifyReply, rep: Representation, r: ByteRange): Promise<Buffer | Readable> => {
    if (cache.accepts(rep.size)) return (await cache.get(rep.sha256)).subarray(r.start, r.end + 1);
    const length = r.end - r.start + 1;
    if (length > pool.maxBufferBytes) return deps.store.get(rep.sha256, r);
    const lease = pool.acquire(length);
    try {
      await deps.store.readInto(rep.sha256, r, lease.bytes);
    } catch (error) {
      lease.release();
      throw error;
    }
    // Not before 'close': until then the socket may still be sending these bytes. A response that closed
    // already never emits it again, and its buffer is simply left to the garbage collector.
    reply.raw.once('close', lease.release);
    return lease.bytes;
  };
  const policy = {
    latestMaxAge: deps.config.cacheLatestMaxAge,
    latestSMaxAge: deps.config.cacheLatestSMaxAge,
    staleWhileRevalidate: deps.config.cacheStaleWhileRevalidate,
    staleIfError: deps.config.cacheStaleIfError,
  };
  // prom-client hashes a label object on every call; these six children are looked up once.
  const counted = Object.fromEntries(
    DELIVERY_KINDS.map((kind) => [kind, deps.metrics.deliveryResponses.labels(kind)]),
  ) as Record<DeliveryKind, { inc(): void }>;
  const cacheControls = {
    latest: cacheControl('latest', policy),
    version: cacheControl('version', policy),
    private: cacheControl('private', policy),
  };
  /**
   * Header values that depend only on the representation, formatted once per looked-up representation
   * (the lookup hands out the same object for CONVEYOR_DELIVERY_METADATA_TTL_MS): the date and the
   * filename encoding were a visible share of a 304's time.
   */
  const formatted = new WeakMap<Representation, FixedHeaders>();
  const fixedHeaders = (rep: Representation): FixedHeaders => {
    let fixed = formatted.get(rep);
    if (!fixed) {
      fixed = {
        etag: etagOf(rep.sha256),
        lastModified: formatHttpDate(rep.lastModified),
        disposition: contentDisposition(rep.filename, 'inline'),
        active: isActiveContent(rep.contentType),
      };
      formatted.set(rep, fixed);
    }
    return fixed;
  };
  const querySchema = {
    type: 'object',
    properties: {
      token: { type: 'string', maxLength: 256 },
      exp: { type: 'string', maxLength: 32 },
      kid: { type: 'string', maxLength: 64 },
      sig: { type: 'string', maxLength: 128 },
    },
  };

  const serve = async (request: FastifyRequest, reply: FastifyReply, rep: Representation | null) => {
    // The signature covers the path exactly as the client sent it (see signed-url.ts), not the decoded id.
    const path = request.url.split('?')[0]!;
    if (limit) enforceRateLimit(reply, limit.limiter, limit.rule, request.ip);
    if (!rep) throw new ConveyorError('not_found', 'No such asset or version');
    const isPrivate = rep.visibility === 'private';
    if (isPrivate) {
      const query = request.query as DeliveryQuery;
      const principal = request.headers.authorization
        ? await deps.authenticator.identify(request).catch(() => null)
        : null;
      const allowed = await deps.access.mayRead({ id: rep.assetId, tenantId: rep.tenantId }, path, {
        token: query.token,
        signature: query.sig === undefined ? undefined : query,
        principal,
      });
      // One answer for no, unknown, expired, revoked and tampered credentials alike.
      if (!allowed)
        throw new ConveyorError('access_denied', 'Access denied', {
          headers: { 'cache-control': 'private, no-store' },
        });
    }
    await respond(request, reply, rep, isPrivate ? 'private' : rep.kind);
  };

  const respond = async (
    request: FastifyRequest,
    reply: FastifyReply,
    rep: Representation,
    kind: 'latest' | 'version' | 'private',
  ) => {
    const fixed = fixedHeaders(rep);
    const validators = { etag: fixed.etag, lastModified: rep.lastModified };
    reply.header('etag', fixed.etag);
    reply.header('last-modified', fixed.lastModified);
    reply.header('cache-control', cacheControls[kind]);
    reply.header('accept-ranges', 'bytes');
    reply.header('x-content-type-options', 'nosniff');
    if (fixed.active) reply.header('content-security-policy', "sandbox; default-src 'none'");
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
      counted.not_modified.inc();
      // RFC 9110 §15.4.5: the 304 carries the fields a 200 would (ETag, Cache-Control, …) and no content.
      return reply.code(304).send();
    }
    if (outcome === 'precondition-failed') {
      counted.precondition_failed.inc();
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
      ? parseRange(h.range, rep.size, { maxRanges: deps.config.maxRanges })
      : { kind: 'none' as const };

    if (range.kind === 'unsatisfiable') {
      counted.unsatisfiable.inc();
      throw new ConveyorError(
        'range_not_satisfiable',
        `The range is outside the ${rep.size} bytes of content`,
        {
          headers: { 'content-range': `bytes */${rep.size}` },
        },
      );
    }
    reply.header('content-disposition', fixed.disposition);
    if (range.kind === 'ranges' && range.ranges.length === 1) {
      const r = range.ranges[0]!;
      const length = r.end - r.start + 1;
      counted.partial.inc();
      deps.metrics.deliveryBytes.inc(length);
      reply.code(206).header('content-type', rep.contentType);
      reply.header('content-range', `bytes ${r.start}-${r.end}/${rep.size}`).header('content-length', length);
      return reply.send(await body(reply, rep, r));
    }
    if (range.kind === 'ranges') {
      const multipart = multipartByteranges({
        ranges: range.ranges,
        size: rep.size,
        contentType: rep.contentType,
        boundary: newBoundary(),
        open: (r) => open(rep, r),
      });
      counted.multipart.inc();
      deps.metrics.deliveryBytes.inc(multipart.contentLength);
      reply
        .code(206)
        .header('content-type', multipart.contentType)
        .header('content-length', multipart.contentLength);
      return reply.send(multipart.body);
    }

    reply.code(200).header('content-type', rep.contentType).header('content-length', rep.size);
    counted.full.inc();
    if (request.method === 'HEAD') return reply.send();
    deps.metrics.deliveryBytes.inc(rep.size);
    return reply.send(await body(reply, rep, { start: 0, end: rep.size - 1 }));
  };

  app.route<{ Params: { id: string }; Querystring: DeliveryQuery }>({
    method: ['GET', 'HEAD'],
    url: '/a/:id',
    schema: {
      tags: ['delivery'],
      summary: "The asset's latest content (mutable; conditional and range requests)",
      security: [],
      querystring: querySchema,
    },
    handler: async (request, reply) => serve(request, reply, await deps.lookup.latest(request.params.id)),
  });
  app.route<{ Params: { id: string }; Querystring: DeliveryQuery }>({
    method: ['GET', 'HEAD'],
    url: '/v/:id',
    schema: {
      tags: ['delivery'],
      summary: "A published version's content (immutable; conditional and range requests)",
      security: [],
      querystring: querySchema,
    },
    handler: async (request, reply) => serve(request, reply, await deps.lookup.version(request.params.id)),
  });

  // The origin is read-only: other methods get 405 with Allow (RFC 9110 §15.5.6), not a misleading 404.
  app.route({
    method: ['POST', 'PUT', 'PATCH', 'DELETE'],
    url: '/:kind(^[av]$)/:id',
    schema: { hide: true },
    handler: async () => {
      throw new ConveyorError('method_not_allowed', 'Delivery URLs answer GET and HEAD only', {
        headers: { allow: 'GET, HEAD' },
      });
    },
  });
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
