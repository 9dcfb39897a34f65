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

  // Degraded storage (short of free space) is still ready: delivery and reads work on a full disk, and
  // taking every process out of rotation would turn a full disk into a full outage. Writes answer 507.
  app.get('/readyz', { schema: { hide: true } }, async (request, reply) => {
    const checks = await deps.ready();
    const results = Object.values(checks);
    const ready = !results.includes('failed');
    const status = !ready ? 'unavailable' : results.includes('degraded') ? 'degraded' : 'ok';
    if (status !== 'ok') request.log.warn({ checks }, ready ? 'ready, but degraded' : 'not ready');
    return reply
      .code(ready ? 200 : 503)
      .header('cache-control', 'no-store')
      .send({ status, checks });
  });

  if (deps.config.metricsPort !== undefined) return;
  const token = deps.config.metricsToken;
  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    if (!metricsAuthorized(request.headers.authorization, token))
      throw metricsUnauthenticated(request.headers.authorization);
    const { contentType, body } = await deps.metrics.render();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}
