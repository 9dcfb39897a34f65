import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConveyorError } from '../errors.ts';
import { toConveyorError, unauthenticated, writeProblem } from '../problems.ts';
import { requestIdOf } from './request-id.ts';

/** What a /metrics answer is made of: the registry's (or the cluster's) rendering. */
export type RenderMetrics = () => Promise<{ contentType: string; body: string }>;

/**
 * Whether a request may read /metrics: anyone when no token is configured; otherwise only with
 * `Authorization: Bearer <token>`. RFC 6750 §2.1: `credentials = "Bearer" 1*SP b64token`, and RFC 9110
 * §11.1: the scheme is "a case-insensitive token". Both sides are hashed before the constant-time
 * comparison, so that neither the token's characters nor its length show in the time taken.
 */
export function metricsAuthorized(authorization: string | undefined, token: string | undefined): boolean {
  if (token === undefined) return true;
  const given = /^Bearer +([^\s]+)$/i.exec(authorization ?? '')?.[1];
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given ?? ''), digest(token)) && given !== undefined;
}

/** The 401 of a /metrics request without the token (`error="invalid_token"` when one was sent). */
export function metricsUnauthenticated(authorization: string | undefined): ConveyorError {
  return unauthenticated(
    'Use Authorization: Bearer <metrics token>',
    /^Bearer(?: |$)/i.test(authorization ?? ''),
  );
}

export interface MetricsListener {
  /** `http://<host>:<port>/metrics`, with the port actually bound. */
  url: string;
  close(): Promise<void>;
}

/**
 * A listener of its own for `GET /metrics` (and HEAD), apart from the main port so that it can be bound
 * to an internal interface or firewalled: `serve` with `metricsPort` (in the cluster primary when there
 * are several processes), and `conveyor worker` with `workerMetricsPort`. Anything else is a 404 or 405
 * problem, as on the main port.
 */
export async function listenMetrics(options: {
  host: string;
  port: number;
  token: string | undefined;
  render: RenderMetrics;
  log: { error(obj: object, msg: string): void };
}): Promise<MetricsListener> {
  const server = createServer((request, response) => {
    void answer(request, response, options);
  });
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // A scraper's keep-alive connection must not hold the shutdown.
        server.closeAllConnections();
      }),
  };
}

async function answer(
  request: IncomingMessage,
  response: ServerResponse,
  options: Parameters<typeof listenMetrics>[0],
): Promise<void> {
  const requestId = requestIdOf(request);
  const path = (request.url ?? '/').split('?')[0]!;
  try {
    if (path !== '/metrics') {
      throw new ConveyorError('not_found', `No route for ${request.method} ${path}`);
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      throw new ConveyorError('method_not_allowed', '/metrics answers GET and HEAD only', {
        headers: { allow: 'GET, HEAD' },
      });
    }
    if (!metricsAuthorized(request.headers.authorization, options.token))
      throw metricsUnauthenticated(request.headers.authorization);
    const { contentType, body } = await options.render().catch((error: unknown) => {
      options.log.error({ err: error, reqId: requestId }, 'metrics failed');
      throw new ConveyorError('unavailable', 'The metrics could not be collected; the log says why');
    });
    response.writeHead(200, {
      'content-type': contentType,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-request-id': requestId,
    });
    response.end(request.method === 'HEAD' ? undefined : body);
  } catch (error) {
    const about = { instance: path, requestId };
    writeProblem(response, request.method, toConveyorError(error), about, { 'x-request-id': requestId });
  }
}
