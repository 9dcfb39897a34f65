import {
  type CryptoKey,
  createRemoteJWKSet,
  errors,
  type FlattenedJWSInput,
  type JWSHeaderParameters,
  type JWTPayload,
  jwtVerify,
} from 'jose';
import { own } from '../own.ts';
import { isRole, ROLES, type Role } from './principal.ts';

export interface JwtConfig {
  /** Shared HS256 secret (UTF-8 bytes of the string, at least 32 of them). */
  secret?: string;
  /** JSON Web Key Set URL for RS256, PS256, ES256 and EdDSA tokens. */
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  /** Top-level claim naming the tenant, e.g. `tenant` or `https://example.com/tenant`. */
  tenantClaim: string;
  /** Top-level claim holding one of the roles. */
  roleClaim: string;
  clockToleranceSeconds: number;
  maxLifetimeSeconds: number;
}

export interface JwtPrincipal {
  tenantId: string;
  role: Role;
  subject: string | null;
  expiresAt: Date;
}

/** A rejected token. The message is safe to show a client: it never contains the token or its claims. */
export class JwtError extends Error {
  override name = 'JwtError';
}

/**
 * The signing keys could not be fetched from the JWKS URL (network failure, timeout, non-200, bad JSON).
 * The token is still rejected, but this is the server's fault, so the HTTP layer may answer 503, not 401.
 */
export class JwksUnavailableError extends JwtError {
  override name = 'JwksUnavailableError';
}

// RFC 7518 section 3.2: "A key of the same size as the hash output (for instance, 256 bits for "HS256")
// or larger MUST be used with this algorithm."
const MIN_SECRET_BYTES = 32;

// Algorithms are pinned per key source so a token can never pick its own verification method: HS256 is
// only ever checked against the configured secret, and asymmetric algorithms only against JWKS keys, so a
// token HMAC-signed with a published RSA public key (algorithm confusion) finds no key to match. `none` is
// never listed.
const SECRET_ALGORITHMS = ['HS256'];
const JWKS_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'];

// Far above any real access token; stops a client from making us base64-decode and JSON-parse megabytes.
const MAX_TOKEN_LENGTH = 8192;

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Whether a Bearer token has the compact JWS shape (three base64url segments; the signature may be empty so
 * that `alg: none` tokens reach the verifier and are refused as such instead of as an unknown API key).
 */
export function looksLikeJwt(token: string): boolean {
  return token.length <= MAX_TOKEN_LENGTH && JWT_SHAPE.test(token);
}

type GetKey = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey | Uint8Array>;

/**
 * Builds a verifier for platform-minted JWTs, or returns null when neither a secret nor a JWKS URL is set.
 * Configuration mistakes throw here, at startup, rather than on the first request.
 */
export function createJwtVerifier(c: JwtConfig): ((token: string) => Promise<JwtPrincipal>) | null {
  if (c.secret === undefined && c.jwksUrl === undefined) return null;
  validateConfig(c);

  const secretKey = c.secret === undefined ? undefined : new TextEncoder().encode(c.secret);
  // createRemoteJWKSet caches the set (10 minutes) and refetches on an unknown `kid` at most once per
  // 30 seconds, so rotating keys are picked up without letting junk `kid`s hammer the key server.
  const jwks = c.jwksUrl === undefined ? undefined : createRemoteJWKSet(new URL(c.jwksUrl));
  const algorithms = [...(secretKey ? SECRET_ALGORITHMS : []), ...(jwks ? JWKS_ALGORITHMS : [])];

  const getKey: GetKey = async (header, token) => {
    // jose has already refused any `alg` outside `algorithms`, so each branch only sees its own family.
    if (secretKey && header.alg !== undefined && SECRET_ALGORITHMS.includes(header.alg)) return secretKey;
    if (jwks && header.alg !== undefined && JWKS_ALGORITHMS.includes(header.alg)) {
      try {
        return await jwks(header, token);
      } catch (err) {
        const keyNotInSet =
          err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys;
        if (keyNotInSet) throw err;
        throw new JwksUnavailableError('token signing keys are unavailable, try again later', { cause: err });
      }
    }
    throw new JwtError('token algorithm is not accepted');
  };

  return async (token) => {
    if (token.length > MAX_TOKEN_LENGTH) throw new JwtError('token is too large');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        algorithms,
        issuer: c.issuer,
        audience: c.audience,
        clockTolerance: c.clockToleranceSeconds,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw translate(err);
    }
    return toPrincipal(payload, c);
  };
}

function validateConfig(c: JwtConfig): void {
  if (c.secret !== undefined && Buffer.byteLength(c.secret, 'utf8') < MIN_SECRET_BYTES) {
    throw new Error(`JWT secret must be at least ${MIN_SECRET_BYTES} bytes long for HS256`);
  }
  if (c.jwksUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(c.jwksUrl);
    } catch {
      throw new Error('JWKS URL is not a valid URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('JWKS URL must be http(s)');
  }
  if (!c.tenantClaim) throw new Error('JWT tenant claim name must not be empty');
  if (!c.roleClaim) throw new Error('JWT role claim name must not be empty');
  if (!(Number.isFinite(c.clockToleranceSeconds) && c.clockToleranceSeconds >= 0)) {
    throw new Error('JWT clock tolerance must be a non-negative number of seconds');
  }
  if (!(Number.isFinite(c.maxLifetimeSeconds) && c.maxLifetimeSeconds > 0)) {
    throw new Error('JWT maximum lifetime must be a positive number of seconds');
  }
}

function toPrincipal(payload: JWTPayload, c: JwtConfig): JwtPrincipal {
  // jose has checked that `exp` is present, numeric and not past, and `iat` numeric when present.
  const exp = payload.exp!;
  const now = Math.floor(Date.now() / 1000);
  const tolerance = c.clockToleranceSeconds;
  if (payload.iat !== undefined) {
    // Without this a token claiming to be issued next year could pass the lifetime check below while staying
    // valid for a year.
    if (payload.iat > now + tolerance) throw new JwtError('token is issued in the future');
    if (exp - payload.iat > c.maxLifetimeSeconds) throw new JwtError('token lifetime is too long');
  } else if (exp - now > c.maxLifetimeSeconds + tolerance) {
    throw new JwtError('token lifetime is too long');
  }

  const tenantId = own(payload, c.tenantClaim);
  if (typeof tenantId !== 'string' || tenantId === '') {
    throw new JwtError(`token "${c.tenantClaim}" claim must be a non-empty string`);
  }
  const role = own(payload, c.roleClaim);
  if (!isRole(role)) {
    throw new JwtError(`token "${c.roleClaim}" claim must be one of ${ROLES.join(', ')}`);
  }
  // RFC 7519 section 4.1.2: "The "sub" value is a case-sensitive string containing a StringOrURI value."
  if (payload.sub !== undefined && typeof payload.sub !== 'string') {
    throw new JwtError('token "sub" claim must be a string');
  }
  return { tenantId, role, subject: payload.sub ?? null, expiresAt: new Date(exp * 1000) };
}

/** Maps jose's errors (whose messages and properties may carry claims) to client-safe messages. */
function translate(err: unknown): JwtError {
  if (err instanceof JwtError) return err;
  if (err instanceof errors.JWTExpired) return new JwtError('token has expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return new JwtError(`token is missing the "${err.claim}" claim`);
    switch (err.claim) {
      case 'iss':
        return new JwtError('token issuer is not accepted');
      case 'aud':
        return new JwtError('token audience is not accepted');
      case 'nbf':
        return new JwtError('token is not valid yet');
      default:
        return new JwtError(`token "${err.claim}" claim is invalid`);
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return new JwtError('token algorithm is not accepted');
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new JwtError('token signature is invalid');
  if (err instanceof errors.JWKSNoMatchingKey) return new JwtError('token signing key is not recognised');
  if (err instanceof errors.JWKSMultipleMatchingKeys) return new JwtError('token signing key is ambiguous');
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid)
    return new JwtError('token is malformed');
  return new JwtError('token is invalid');
}
