import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { ConveyorError } from '../../errors.ts';
import type { AppDeps } from '../app.ts';
import { enforceRateLimit } from '../auth.ts';
import type { DeliveryQuery, Origin } from '../origin.ts';
import type { RateLimiter, RateLimitRule } from '../rate-limit.ts';

/**
 * The delivery URLs as Fastify routes: `/a/<assetId>` (latest, mutable) and `/v/<versionId>` (immutable).
 * They document the URLs in the OpenAPI document, validate the credentials a query may carry, apply the
 * optional delivery rate limit, and hand the request to the `Origin`, which writes the response. The
 * plain public GET usually never gets here: src/http/fast-delivery.ts hands it to the origin directly.
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
    },
  };
  for (const [url, kind, summary] of [
    ['/a/:id', 'latest', "The asset's latest content (mutable; conditional and range requests)"],
    ['/v/:id', 'version', "A published version's content (immutable; conditional and range requests)"],
  ] as const) {
    app.route<{ Params: { id: string }; Querystring: DeliveryQuery }>({
      method: ['GET', 'HEAD'],
      url,
      schema: { tags: ['delivery'], summary, security: [], querystring: querySchema },
      handler: async (request, reply) => {
        // Thrown before the reply is handed over, so Fastify's error handler answers a 429.
        if (limit) enforceRateLimit(reply, limit.limiter, limit.rule, request.ip);
        const responseHeaders = reply.getHeaders() as OutgoingHttpHeaders;
        reply.hijack();
        await origin.serve(
          kind,
          request.params.id,
          {
            method: request.method,
            path: request.url.split('?')[0]!,
            headers: request.headers,
            requestId: request.id,
            responseHeaders,
            query: request.query,
            principal: () => deps.authenticator.identify(request),
          },
          reply.raw,
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
