import type { FastifyInstance } from 'fastify';
import { metricsAuthorized, metricsUnauthenticated } from '../../ops/metrics-endpoint.ts';
import type { AppDeps } from '../app.ts';

/**
 * Liveness, readiness and Prometheus metrics, meant for the orchestrator and scraper: the first two
 * unauthenticated (they say nothing of any tenant), /metrics only with `metricsToken` when one is set, and
 * not here at all when `metricsPort` gives it a listener of its own (src/ops/metrics-endpoint.ts).
 */
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

  if (deps.config.metricsPort !== undefined) return;
  const token = deps.config.metricsToken;
  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    if (!metricsAuthorized(request.headers.authorization, token)) throw metricsUnauthenticated();
    const { contentType, body } = await deps.metrics.render();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}
