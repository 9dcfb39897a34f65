import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Metrics } from '../ops/metrics.ts';
import { requestIdOf } from '../ops/request-id.ts';
import type { Derive } from './derive.ts';
import type { DeliveryQuery } from './gate.ts';
import type { Origin } from './origin.ts';

/**
 * A delivery URL with nothing for Fastify to do: `/a/<id>` or `/v/<id>`, optionally with a preset variant's
 * file name (`/a/<id>/thumb.webp`); no query, no percent-encoding (so each parameter is the path segment as
 * sent), and parameters no longer than Fastify's 100-character limit (a longer one gets Fastify's own
 * answer).
 */
const PLAIN_DELIVERY_PATH = /^\/([av])\/([^/?#%]{1,100})(?:\/([^/?#%]{1,100}))?$/;
const NO_QUERY: DeliveryQuery = Object.freeze({});
const NOBODY = async () => null;

/** A transform URL as the transform service parsed it: the shortcut reads the id and hands it back. */
export interface ParsedTransform {
  readonly id: string;
}

/**
 * What the shortcut needs of the transform service (src/media/transforms.ts): `transform` gets back what
 * `tryParse` returned.
 */
export interface FastTransforms<Parsed extends ParsedTransform = ParsedTransform> {
  tryParse(pathname: string): Parsed | null;
  transform(parsed: Parsed): Derive;
  variant(file: string): Derive;
}

/**
 * The delivery surface's CORS answers (src/http/cors.ts), computed at start: the headers for a request's
 * Origin (or for none), to be copied, never modified.
 */
export interface FastCors {
  response(origin: string | undefined): OutgoingHttpHeaders;
}

/**
 * The public GET and HEAD that a CDN sends (`/a/<id>`, `/v/<id>`, a preset variant `/a/<id>/<file>`, or
 * a correctly signed transform URL `/t/<signature>/<options>/<id>`; no query, no Authorization),
 * answered straight from the HTTP server's request event instead of through Fastify. The origin's work
 * for a small cached body is a few microseconds; Fastify's routing, hooks and reply around it are about
 * half of such a response's CPU (docs/benchmarks.md, "The delivery shortcut"). What Fastify does for
 * these requests is done here too: the request id (in the response and in problem documents), the CORS
 * headers of the delivery surface when it has origins, the request metrics under the same route labels.
 * Everything else takes the Fastify route, which ends in the same `Origin`: requests with credentials in
 * the query or an Authorization header, the other methods (a preflight's OPTIONS too), any URL this
 * pattern does not match, and all requests while a delivery rate limit or debug request logging is
 * configured or the server is closing (Fastify then answers 503 and closes the connection).
 */

export class FastDelivery {
  /** Set when the server begins to close. */
  closing = false;
  /** Requests answered here rather than by Fastify (the tests check the shortcut is taken). */
  handled = 0;
  /** Of those, the ones answered from memory before the request event returned (no promise at all). */
  atOnce = 0;
  readonly #origin: Origin;
  readonly #metrics: Metrics;
  readonly #enabled: boolean;
  readonly #transforms: FastTransforms | undefined;
  readonly #cors: FastCors | undefined;

  constructor(
    origin: Origin,
    metrics: Metrics,
    options: { enabled: boolean; transforms?: FastTransforms | undefined; cors?: FastCors | undefined },
  ) {
    this.#origin = origin;
    this.#metrics = metrics;
    this.#enabled = options.enabled;
    this.#transforms = options.transforms;
    this.#cors = options.cors;
  }

  /** Answers `req` and returns true, or returns false without touching either for Fastify to handle. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method;
    if (!this.#enabled || this.closing || (method !== 'GET' && method !== 'HEAD')) return false;
    if (req.headers.authorization !== undefined) return false;
    const path = req.url!;
    const match = PLAIN_DELIVERY_PATH.exec(path);
    if (match) {
      const latest = match[1] === 'a';
      const kind = latest ? 'latest' : 'version';
      const file = match[3];
      if (file === undefined) {
        this.#serve(req, res, kind, match[2]!, latest ? '/a/:id' : '/v/:id');
        return true;
      }
      // A preset variant: the transform service is loaded with the media pipeline.
      if (!this.#transforms) return false;
      const route = latest ? '/a/:id/:file' : '/v/:id/:file';
      this.#serve(req, res, kind, match[2]!, route, this.#transforms.variant(file));
      return true;
    }
    // A transform URL with a valid signature and no query (a malformed or unsigned one gets Fastify's
    // answer, with its problem document).
    if (!this.#transforms || !path.startsWith('/t/') || path.includes('?')) return false;
    const parsed = this.#transforms.tryParse(path);
    if (!parsed) return false;
    const kind = parsed.id.startsWith('ver_') ? 'version' : 'latest';
    this.#serve(req, res, kind, parsed.id, '/t/*', this.#transforms.transform(parsed));
    return true;
  }

  #serve(
    req: IncomingMessage,
    res: ServerResponse,
    kind: 'latest' | 'version',
    id: string,
    route: string,
    derive?: Derive,
  ): void {
    this.handled++;
    const started = performance.now();
    const method = req.method!;
    const requestId = requestIdOf(req);
    const responseHeaders: OutgoingHttpHeaders = { 'x-request-id': requestId };
    if (this.#cors) Object.assign(responseHeaders, this.#cors.response(req.headers.origin));
    const request = {
      method,
      path: req.url!,
      headers: req.headers,
      requestId,
      responseHeaders,
      query: NO_QUERY,
      principal: NOBODY,
    };
    const pending = this.#origin.serve(kind, id, request, res, derive);
    if (pending) void pending.then(() => this.#record(method, route, res, started));
    else {
      this.atOnce++;
      this.#record(method, route, res, started);
    }
  }

  #record(method: string, route: string, res: ServerResponse, started: number): void {
    this.#metrics.recordRequest(method, route, res.statusCode, (performance.now() - started) / 1000);
  }
}
