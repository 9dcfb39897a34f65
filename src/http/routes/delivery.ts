import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { DeliveryQuery } from '../../delivery/gate.ts';
import type { Origin } from '../../delivery/origin.ts';
import { ConveyorError } from '../../errors.ts';
import type { AppDeps } from '../app.ts';
import { enforceRateLimit } from '../auth.ts';
import type { RateLimiter, RateLimitRule } from '../rate-limit.ts';
import { deliveryResponses, documentOnly } from '../schemas.ts';

/** Query parameters that carry credentials for private content (access.ts). */
const CREDENTIALS = ['token', 'exp', 'kid', 'sig', 'scope'];

/** An HLS URL as sent: the id, then the ladder file's path (checked by the video delivery). */
const HLS_PATH = /^\/[av]\/[^/]+\/hls\/(.+)$/;

/** The segments of an HLS URL, as the OpenAPI document names them (the route is a wildcard). */
const HlsParams = {
  type: 'object',
  required: ['id', 'path'],
  properties: {
    id: { type: 'string' },
    path: {
      type: 'string',
      description:
        'master.m3u8, or a file of the ladder as its playlists name it: h264-240p/index.m3u8, h264-240p/init.mp4, h264-240p/seg_00001.m4s',
    },
  },
};

/**
 * Each method is a route of its own, so that each is an operation of its own in the OpenAPI document
 * (one route with both would be documented as one operation twice). HEAD comes first, and as a list:
 * Fastify then adds no HEAD route of its own for the GET, and @fastify/swagger shows it under its own
 * operationId (it leaves out a route whose method is the string 'HEAD', or suffixes its operationId).
 */
const DELIVERY_METHODS = ['HEAD', 'GET'] as const;

/** The segments of a transform URL, as the OpenAPI document names them (the route is a wildcard). */
const TransformParams = {
  type: 'object',
  required: ['signature', 'options', 'source'],
  properties: {
    signature: {
      type: 'string',
      description: '{kid}.{sig}, or _ for a preset when unsigned presets are allowed',
    },
    options: { type: 'string', description: 'e.g. w:512,h:512,fit:cover,f:webp, or preset:thumb' },
    source: {
      type: 'string',
      description: 'An asset id (latest content) or a version id, with an optional .{ext}',
    },
  },
};

/**
 * The delivery URLs as Fastify routes: `/a/<assetId>` (latest, mutable) and `/v/<versionId>` (immutable).
 * They document the URLs in the OpenAPI document, validate the credentials a query may carry, apply the
 * optional delivery rate limit, and hand the request to the `Origin`, which writes the response. The
 * plain public GET usually never gets here: src/delivery/fast-delivery.ts hands it to the origin directly.
 */
export async function deliveryRoutes(
  app: FastifyInstance,
  opts: { deps: AppDeps; origin: Origin; limit: { limiter: RateLimiter; rule: RateLimitRule } | null },
): Promise<void> {
  const { deps, origin, limit } = opts;
  const querySchema = {
    type: 'object',
    properties: {
      token: { type: 'string', maxLength: 256 },
      exp: { type: 'string', maxLength: 32 },
      kid: { type: 'string', maxLength: 64 },
      sig: { type: 'string', maxLength: 128 },
      scope: { type: 'string', maxLength: 256 },
    },
  };
  const { transforms } = deps.media;
  const originRequest = (
    request: FastifyRequest,
    responseHeaders: OutgoingHttpHeaders,
    query: DeliveryQuery,
  ) => ({
    method: request.method,
    path: request.url.split('?')[0]!,
    headers: request.headers,
    requestId: request.id,
    responseHeaders,
    query,
    principal: () => deps.authenticator.identify(request),
  });

  // The content itself, and (with a file name) one of its preset variants, e.g. thumb.webp.
  for (const [url, kind, name, summary] of [
    [
      '/a/:id',
      'latest',
      'AssetContent',
      "The asset's latest content (mutable; conditional and range requests)",
    ],
    [
      '/v/:id',
      'version',
      'VersionContent',
      "A published version's content (immutable; conditional and range requests)",
    ],
    [
      '/a/:id/:file',
      'latest',
      'AssetVariant',
      "A preset variant of the asset's latest content, e.g. thumb.webp (mutable)",
    ],
    [
      '/v/:id/:file',
      'version',
      'VersionVariant',
      'A preset variant of a published version, e.g. thumb.webp (immutable)',
    ],
  ] as const) {
    const variant = url.endsWith('/:file');
    for (const method of DELIVERY_METHODS) {
      app.route<{ Params: { id: string; file?: string }; Querystring: DeliveryQuery }>({
        method: [method],
        url,
        schema: {
          operationId: `${method.toLowerCase()}${name}`,
          tags: ['delivery'],
          summary,
          security: [],
          querystring: querySchema,
          response: deliveryResponses(method, variant ? 'variant' : 'content'),
        },
        handler: async (request, reply) => {
          // Thrown before the reply is handed over, so Fastify's error handler answers a 429.
          if (limit) enforceRateLimit(reply, limit.limiter, limit.rule, request.ip);
          const responseHeaders = reply.getHeaders() as OutgoingHttpHeaders;
          const { id, file } = request.params;
          reply.hijack();
          await origin.serve(
            kind,
            id,
            originRequest(request, responseHeaders, request.query),
            reply.raw,
            file === undefined ? undefined : transforms.variant(file),
          );
        },
      });
    }
  }

  // A video's HLS ladder: the master playlist and the files it leads to. Fastify routes; the fast path's
  // pattern never matches these URLs (three segments or more after the id).
  const { videoDelivery } = deps.media;
  for (const [prefix, kind, name, summary] of [
    [
      '/a/:id/hls',
      'latest',
      'AssetHls',
      "A file of the HLS ladder of the asset's latest content: master.m3u8, media playlists, segments",
    ],
    [
      '/v/:id/hls',
      'version',
      'VersionHls',
      "A file of a published version's HLS ladder: master.m3u8, media playlists, segments (immutable)",
    ],
  ] as const) {
    for (const method of DELIVERY_METHODS) {
      app.route<{ Params: { id: string }; Querystring: DeliveryQuery }>({
        method: [method],
        url: `${prefix}/*`,
        schema: {
          operationId: `${method.toLowerCase()}${name}`,
          tags: ['delivery'],
          summary,
          description:
            'The complete ladder of the content (docs/api.md, "Video output"); 404 while it is encoding. A private asset\'s playlists carry the grant they were requested with (?token=, or a prefix-signed ?exp=&kid=&scope=&sig= from POST /api/v1/assets/{id}/signed-url with prefix: hls) in every URI.',
          security: [],
          querystring: querySchema,
          response: deliveryResponses(method, 'content'),
        },
        config: documentOnly({ url: `${prefix}/:path`, schema: { params: HlsParams } }),
        handler: async (request, reply) => {
          if (limit) enforceRateLimit(reply, limit.limiter, limit.rule, request.ip);
          const path = request.url.split('?')[0]!;
          const file = HLS_PATH.exec(path)?.[1];
          const derive = file === undefined ? null : videoDelivery.derive(file, request.query);
          // A path no ladder can hold: the same answer as an id that does not exist.
          if (!derive) throw new ConveyorError('not_found', 'No such asset or version');
          const responseHeaders = reply.getHeaders() as OutgoingHttpHeaders;
          reply.hijack();
          await origin.serve(
            kind,
            request.params.id,
            originRequest(request, responseHeaders, request.query),
            reply.raw,
            derive,
          );
        },
      });
    }
  }

  for (const method of DELIVERY_METHODS) {
    app.route<{ Querystring: DeliveryQuery }>({
      method: [method],
      url: '/t/*',
      schema: {
        operationId: `${method.toLowerCase()}Transform`,
        tags: ['delivery'],
        summary: 'An on-the-fly transform of an asset or version',
        description:
          'Options such as w:512,h:512,fit:cover,g:attention,q:80,f:webp,dpr:2 (docs/api.md, "Transforms"). Signed with HMAC-SHA256 ({kid}.{sig}); `_` for presets when unsigned presets are allowed. 400 for malformed options, 403 for a bad signature, 503 with Retry-After when too many renders are waiting. Private sources need a token or a signed delivery URL, as for /a and /v.',
        security: [],
        querystring: querySchema,
        response: deliveryResponses(method, 'transform'),
      },
      // Fastify routes the wildcard; the document shows the URL's three segments by name.
      config: documentOnly({ url: '/t/:signature/:options/:source', schema: { params: TransformParams } }),
      handler: async (request, reply) => {
        if (limit) enforceRateLimit(reply, limit.limiter, limit.rule, request.ip);
        const parsed = transforms.parse(request.url.split('?')[0]!);
        // Only credentials may ride in the query; anything else would make CDN cache entries of its own.
        const extra = Object.keys(request.query).filter((name) => !CREDENTIALS.includes(name));
        if (extra.length > 0) {
          throw new ConveyorError('bad_request', `Transform URLs take no query parameters (${extra[0]})`);
        }
        const kind = parsed.id.startsWith('ver_') ? 'version' : 'latest';
        const responseHeaders = reply.getHeaders() as OutgoingHttpHeaders;
        reply.hijack();
        await origin.serve(
          kind,
          parsed.id,
          originRequest(request, responseHeaders, request.query),
          reply.raw,
          transforms.transform(parsed),
        );
      },
    });
  }

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
