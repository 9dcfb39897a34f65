import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppDeps } from '../app.ts';

/**
 * Resumable uploads (tus 1.0) at /api/v1/uploads: authenticated and rate-limited like the rest of the
 * API (the hooks of the enclosing scope), then handed whole to the tus component (src/uploads/tus.ts),
 * which reads the body itself; so this scope parses no bodies and the JSON body limit does not apply
 * (CONVEYOR_MAX_UPLOAD_BYTES does, as Tus-Max-Size).
 */
export async function uploadRoutes(app: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const { uploads } = opts.deps;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    // Headers decided so far (X-Request-Id, RateLimit-*, CORS) would be lost with the hijack: hand them over.
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) reply.raw.setHeader(name, value);
    }
    reply.hijack();
    await uploads.handle(request.raw, reply.raw, request.principal ?? null, { requestId: request.id });
  };
  const schema = { tags: ['uploads'], hide: false };
  app.route({
    method: ['OPTIONS', 'POST'],
    url: '/uploads',
    schema: {
      ...schema,
      summary: 'tus 1.0: discover (OPTIONS) or create (POST, Upload-Length, Upload-Metadata)',
    },
    handler,
  });
  app.route({
    method: ['OPTIONS', 'HEAD', 'PATCH', 'DELETE', 'GET'],
    url: '/uploads/:id',
    schema: {
      ...schema,
      summary: 'tus 1.0: offset (HEAD), append (PATCH, application/offset+octet-stream), terminate (DELETE)',
    },
    handler,
  });
}
