import type { FastifyReply, FastifyRequest } from 'fastify';
import { ConveyorError } from '../errors.ts';
import { unauthenticated } from '../problems.ts';
import { JwksUnavailableError, type JwtPrincipal, looksLikeJwt } from '../tenancy/jwt.ts';
import type { Principal } from '../tenancy/principal.ts';
import type { TenancyService } from '../tenancy/service.ts';
import { type RateLimiter, type RateLimitRule, rateLimitHeaders } from './rate-limit.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /**
     * The route's clients cannot always set headers (EventSource, a browser's WebSocket): without an
     * Authorization header, the credential may come as `?access_token=`. (The URL is redacted in logs:
     * see SECRET_PARAMS in app.ts.)
     */
    accessTokenQuery?: boolean;
    /**
     * The route answers without a credential too (tus discovery, which says what the server supports):
     * a credential that is given is checked all the same, and a bad one is still a 401.
     */
    credentialOptional?: boolean;
  }
}

export interface Authenticator {
  /**
   * The principal behind the request's `Authorization: Bearer` (or its `?access_token=` on a route that
   * takes one), or null when there is none. Throws 401 when invalid.
   */
  identify(request: FastifyRequest): Promise<Principal | null>;
}

const BEARER = /^Bearer +([^\s]+) *$/i;
// The same credential as BEARER takes after its `Bearer ` prefix.
const QUERY_TOKEN = /^ *([^\s]+) *$/;

export function createAuthenticator(deps: {
  tenancy: TenancyService;
  verifyJwt: ((token: string) => Promise<JwtPrincipal>) | null;
}): Authenticator {
  return {
    async identify(request) {
      const credential = credentialOf(request);
      if (credential === undefined) return null;
      if (deps.verifyJwt && looksLikeJwt(credential)) {
        try {
          const jwt = await deps.verifyJwt(credential);
          if (!(await deps.tenancy.tenantExists(jwt.tenantId)))
            throw unauthenticated('Unknown tenant in token', true);
          return {
            tenantId: jwt.tenantId,
            role: jwt.role,
            operator: false,
            keyId: null,
            // Qualified by tenant: subjects are only unique within the platform's tenant, and the actor
            // is the per-key rate-limit bucket, which must never be shared across tenants.
            actor: `jwt:${jwt.tenantId}:${jwt.subject ?? 'anonymous'}`,
          };
        } catch (error) {
          if (error instanceof JwksUnavailableError) {
            throw new ConveyorError('unavailable', 'The token signing keys cannot be fetched right now');
          }
          if (error instanceof ConveyorError) throw error;
          throw unauthenticated(`Invalid token: ${(error as Error).message}`, true);
        }
      }
      const principal = await deps.tenancy.authenticateKey(credential);
      if (!principal) throw unauthenticated('Unknown or revoked API key', true);
      return principal;
    },
  };
}

/** The request's credential: undefined when it carries none, 401 when it carries one malformed. */
function credentialOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  let match: RegExpExecArray | null;
  if (header !== undefined) match = BEARER.exec(header);
  else {
    if (request.routeOptions.config?.accessTokenQuery !== true) return undefined;
    const token = (request.query as Record<string, unknown> | undefined)?.['access_token'];
    if (typeof token !== 'string' || token === '') return undefined;
    match = QUERY_TOKEN.exec(token);
  }
  if (!match) {
    // A Bearer credential that does not parse is a malformed token; another scheme is none at all.
    const bearer = header === undefined || /^Bearer(?: |$)/i.test(header);
    throw unauthenticated('Use Authorization: Bearer <API key or JWT>', bearer);
  }
  return match[1]!;
}

/** Applies a limiter to one key and either sets the RateLimit headers or throws 429 with Retry-After. */
export function enforceRateLimit(
  reply: FastifyReply,
  limiter: RateLimiter | null,
  rule: RateLimitRule | null,
  key: string,
): void {
  if (!limiter || !rule) return;
  const decision = limiter.take(key);
  const headers = rateLimitHeaders(rule, decision);
  if (!decision.allowed) {
    throw new ConveyorError(
      'rate_limited',
      `Rate limit "${rule.name}" exceeded; retry in ${decision.retryAfterSeconds}s`,
      {
        headers,
      },
    );
  }
  // Two limits can apply to one request (address and key); the draft's fields are lists, so both are kept.
  for (const [name, value] of Object.entries(headers)) {
    const previous = reply.getHeader(name);
    reply.header(name, previous === undefined ? value : `${String(previous)}, ${value}`);
  }
}
