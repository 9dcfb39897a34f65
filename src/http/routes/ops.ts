import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../app.ts';

/** Liveness, readiness and Prometheus metrics: unauthenticated, meant for the orchestrator and scraper. */
export async function opsRoutes(app: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const { deps } = opts;
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { hide: true } }, async (request, reply) => {
    const checks = await deps.ready();
    const ok = Object.values(checks).every((c) => c === 'ok');
    if (!ok) request.log.warn({ checks }, 'not ready');
    return reply
      .code(ok ? 200 : 503)
      .header('cache-control', 'no-store')
      .send({ status: ok ? 'ok' : 'unavailable', checks });
  });

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const { contentType, body } = await deps.metrics.render();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}
