import type { OutgoingHttpHeaders } from 'node:http';
import type { onRequestHookHandler } from 'fastify';
import type { Config } from '../config/config.ts';

/**
 * CORS (Fetch standard, "CORS protocol") for the three surfaces a browser may call from another origin,
 * each with its own list of origins (CONVEYOR_CORS_*_ORIGINS; none by default, and then nothing here runs):
 *
 *   api       /api/v1/*, uploads aside: Authorization and JSON bodies
 *   uploads   /api/v1/uploads[/<id>]: tus, whose headers a client sends and reads
 *   delivery  /a, /v, /t: GET and HEAD, conditional and range requests; may be `*`
 *
 * All header values are computed here once, at start, for each listed origin: a request costs one look-up
 * of its Origin header (src/delivery/fast-delivery.ts takes the delivery surface's answers too).
 *
 * - A preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed origin is answered
 *   204 here, before routing's hooks: before authentication (a browser never sends credentials on a
 *   preflight) and before rate limits.
 * - Every other response of the surface to an allowed origin, problems (401, 404, 429) included, carries
 *   Access-Control-Allow-Origin with that origin, and Access-Control-Expose-Headers naming the headers a
 *   client reads. A surface that lists origins sends `Vary: Origin` on every response, allowed origin or
 *   not, so that a cache never hands one origin's answer to another; `*` needs none.
 * - A request from an origin not on the list (a preflight too) is answered exactly as without CORS: the
 *   preflight of an API route gets the route's ordinary answer (401 or 404), no CORS headers, so the
 *   browser refuses the request and nothing is run.
 *
 * No Access-Control-Allow-Credentials: the API takes its credential from the Authorization header, which
 * a cross-origin fetch may send once the preflight allows it; no cookies are read.
 */

/** What one surface accepts and shows. */
interface SurfaceRules {
  methods: readonly string[];
  /** Request headers a browser may send beyond the CORS-safelisted ones. */
  allowHeaders: readonly string[];
  /** Response headers a script may read beyond the CORS-safelisted ones. */
  exposeHeaders: readonly string[];
}

const COMMON_EXPOSED = ['X-Request-Id', 'Retry-After', 'RateLimit', 'RateLimit-Policy', 'Content-Length'];

const API: SurfaceRules = {
  methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
  allowHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
  exposeHeaders: ['Location', 'ETag', 'WWW-Authenticate', ...COMMON_EXPOSED],
};

/**
 * tus 1.0: every header of the protocol, even those answered 400 (deferred length, concatenation); not
 * X-HTTP-Method-Override, which the upload routes do not serve (a POST to an upload is 405).
 */
const UPLOADS: SurfaceRules = {
  methods: ['POST', 'HEAD', 'PATCH', 'DELETE'],
  allowHeaders: [
    ...API.allowHeaders,
    'Tus-Resumable',
    'Upload-Length',
    'Upload-Offset',
    'Upload-Metadata',
    'Upload-Defer-Length',
    'Upload-Concat',
  ],
  exposeHeaders: [
    'Location',
    'Asset-Id',
    'Tus-Resumable',
    'Tus-Version',
    'Tus-Extension',
    'Tus-Max-Size',
    'Upload-Offset',
    'Upload-Length',
    'Upload-Metadata',
    'Upload-Expires',
    'WWW-Authenticate',
    ...COMMON_EXPOSED,
  ],
};

const DELIVERY: SurfaceRules = {
  methods: ['GET', 'HEAD'],
  allowHeaders: [
    'Range',
    'If-None-Match',
    'If-Modified-Since',
    'If-Range',
    'If-Match',
    'If-Unmodified-Since',
    // Private content may be read with an API key or JWT instead of a token in the URL.
    'Authorization',
    'X-Request-Id',
  ],
  exposeHeaders: ['ETag', 'Content-Range', 'Accept-Ranges', 'Content-Disposition', ...COMMON_EXPOSED],
};

const VARY_ORIGIN: OutgoingHttpHeaders = Object.freeze({ vary: 'Origin' });

/** The CORS answers of one surface, computed once. */
export class CorsSurface {
  /** For `*`: the headers of every response; for a list: those of a request from elsewhere (Vary). */
  readonly #otherwise: OutgoingHttpHeaders;
  /** For `*`: the preflight answer to any origin. */
  readonly #anyPreflight: OutgoingHttpHeaders | undefined;
  readonly #responses = new Map<string, OutgoingHttpHeaders>();
  readonly #preflights = new Map<string, OutgoingHttpHeaders>();

  constructor(origins: '*' | readonly string[], rules: SurfaceRules, maxAgeSeconds: number) {
    const expose = rules.exposeHeaders.join(', ');
    const preflight = {
      'access-control-allow-methods': rules.methods.join(', '),
      'access-control-allow-headers': rules.allowHeaders.join(', '),
      'access-control-max-age': String(maxAgeSeconds),
    };
    if (origins === '*') {
      this.#otherwise = Object.freeze({
        'access-control-allow-origin': '*',
        'access-control-expose-headers': expose,
      });
      this.#anyPreflight = Object.freeze({ 'access-control-allow-origin': '*', ...preflight });
      return;
    }
    this.#otherwise = VARY_ORIGIN;
    for (const origin of origins) {
      const allow = { 'access-control-allow-origin': origin, vary: 'Origin' };
      this.#responses.set(origin, Object.freeze({ ...allow, 'access-control-expose-headers': expose }));
      this.#preflights.set(origin, Object.freeze({ ...allow, ...preflight }));
    }
  }

  /** The headers to add to an answer to a request with this Origin (never to be modified). */
  response(origin: string | undefined): OutgoingHttpHeaders {
    return (origin !== undefined && this.#responses.get(origin)) || this.#otherwise;
  }

  /** The headers of the 204 answering a preflight from this origin; undefined when it is not allowed. */
  preflight(origin: string): OutgoingHttpHeaders | undefined {
    return this.#anyPreflight ?? this.#preflights.get(origin);
  }
}

/** The surfaces that have origins configured, and which one a URL belongs to. */
export class CorsPolicy {
  readonly api: CorsSurface | undefined;
  readonly uploads: CorsSurface | undefined;
  readonly delivery: CorsSurface | undefined;
  readonly #uploadsPath: string;

  constructor(
    config: Pick<
      Config,
      'corsApiOrigins' | 'corsUploadsOrigins' | 'corsDeliveryOrigins' | 'corsMaxAgeSeconds'
    >,
    paths: { uploads: string },
  ) {
    const surface = (origins: '*' | readonly string[] | undefined, rules: SurfaceRules) =>
      origins === undefined ? undefined : new CorsSurface(origins, rules, config.corsMaxAgeSeconds);
    this.api = surface(config.corsApiOrigins, API);
    this.uploads = surface(config.corsUploadsOrigins, UPLOADS);
    this.delivery = surface(config.corsDeliveryOrigins, DELIVERY);
    this.#uploadsPath = paths.uploads;
  }

  get enabled(): boolean {
    return this.api !== undefined || this.uploads !== undefined || this.delivery !== undefined;
  }

  /** The surface of a request URL (path and query as sent), if it has CORS. */
  surfaceOf(url: string): CorsSurface | undefined {
    if (url.startsWith('/api/')) {
      const uploads = this.#uploadsPath;
      if (url.startsWith(uploads)) {
        const next = url.charAt(uploads.length);
        if (next === '' || next === '/' || next === '?') return this.uploads;
      }
      return this.api;
    }
    if (url.startsWith('/a/') || url.startsWith('/v/') || url.startsWith('/t/')) return this.delivery;
    return undefined;
  }
}

/**
 * The root onRequest hook (runs for every request Fastify routes, unmatched ones included, before the
 * hooks of the API's scope): answers an allowed preflight, and puts the CORS headers of the request's
 * surface on the reply, from where the routes that write their own response (delivery, tus) take them.
 */
export function corsHook(policy: CorsPolicy): onRequestHookHandler {
  return (request, reply, done) => {
    const surface = policy.surfaceOf(request.url);
    if (!surface) {
      done();
      return;
    }
    const origin = request.headers.origin;
    if (
      request.method === 'OPTIONS' &&
      origin !== undefined &&
      request.headers['access-control-request-method'] !== undefined
    ) {
      const preflight = surface.preflight(origin);
      if (preflight) {
        reply.code(204).headers(preflight).send();
        return;
      }
    }
    reply.headers(surface.response(origin));
    done();
  };
}
