/**
 * Signed delivery URLs
 * ====================
 *
 * A signed URL is an ordinary delivery URL with three extra query parameters:
 *
 *   exp  the expiry instant in Unix seconds, as canonical decimal digits: no sign, no leading zeros
 *        (`0` itself excepted), at most 2^53 - 1.
 *   kid  the id of the signing key: 1 to 64 characters from `A-Z a-z 0-9 . _ ~ -`.
 *   sig  the signature: base64url without padding (RFC 4648 §5) of
 *
 *          HMAC-SHA256(secret, kid + "\n" + path + "\n" + exp)
 *
 *        always 43 characters. The message is the UTF-8 encoding of that string and "\n" is one LF byte
 *        (0x0A); `exp` and `kid` appear exactly as in the query string.
 *
 * `path` is the request path exactly as it appears in the request target: percent-encoding left as sent,
 * no query string, no normalisation of `.`/`..` segments or slashes. Signer and verifier must agree on
 * that byte string, and refusing to normalise means no two paths share a signature. Because `kid` cannot
 * contain LF and `exp` is digits only, the message splits back into its three fields in exactly one way,
 * whatever the path contains.
 *
 * A URL is valid while now < exp; at `exp` itself it has expired.
 *
 * Verification answers:
 *   invalid  a parameter is missing, repeated (not a single string) or malformed; the kid names no key
 *            in the verifier's key list; or the signature does not match (tampered path, exp, kid or sig).
 *            Signatures are compared in constant time (crypto.timingSafeEqual after a length check).
 *   expired  the signature is valid and now >= exp. Only a genuine URL can be reported as expired, so the
 *            answer leaks nothing to someone probing with made-up signatures.
 *   valid    the signature is valid and now < exp.
 *
 * Key rotation: the verifier holds a list of keys and picks one by `kid`. To rotate, add the new key to
 * the list, start signing with it, and remove the old key once every URL it signed has expired.
 * Secrets should be at least 32 random bytes (the HMAC-SHA256 output size, RFC 2104 §3); an empty
 * secret is refused outright, since it usually means a missing configuration value.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface SigningKey {
  id: string;
  secret: Buffer;
}

export type SignatureCheck = 'valid' | 'expired' | 'invalid';

// A type alias rather than an interface so that it stays assignable to Record<string, string>, e.g. to
// build a query with new URLSearchParams(signPath(...)).
export type PathSignature = { exp: string; kid: string; sig: string };

const KID = /^[A-Za-z0-9._~-]{1,64}$/;
const EXP = /^(?:0|[1-9][0-9]{0,15})$/;
const SIG = /^[A-Za-z0-9_-]{43}$/;

/** The query parameters that make `path` valid until `expiresAt` (Unix seconds). */
export function signPath(path: string, expiresAt: number, key: SigningKey): PathSignature {
  if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) {
    throw new RangeError(`expiresAt must be a non-negative integer of Unix seconds, got ${expiresAt}`);
  }
  if (!KID.test(key.id)) throw new TypeError(`unusable signing key id: ${JSON.stringify(key.id)}`);
  if (key.secret.length === 0) throw new TypeError(`signing key ${key.id} has an empty secret`);
  const exp = String(expiresAt);
  return { exp, kid: key.id, sig: signature(key, path, exp) };
}

/**
 * Checks the `exp`, `kid` and `sig` query parameters of a request for `path` (see the scheme above).
 * The parameters are typed unknown because query parsers hand over arrays for repeated parameters.
 */
export function verifyPathSignature(
  path: string,
  q: { exp?: unknown; kid?: unknown; sig?: unknown },
  keys: readonly SigningKey[],
  nowSeconds: number,
): SignatureCheck {
  const { exp, kid, sig } = q;
  if (typeof exp !== 'string' || typeof kid !== 'string' || typeof sig !== 'string') return 'invalid';
  if (!EXP.test(exp) || !KID.test(kid) || !SIG.test(sig)) return 'invalid';
  const expiresAt = Number(exp);
  if (!Number.isSafeInteger(expiresAt)) return 'invalid';
  const key = keys.find((k) => k.id === kid);
  if (key === undefined || key.secret.length === 0) return 'invalid';

  const expected = Buffer.from(signature(key, path, exp), 'latin1');
  const given = Buffer.from(sig, 'latin1');
  // timingSafeEqual throws on unequal lengths; SIG already fixes the length, this keeps it from throwing
  // should the two ever drift apart.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
  return nowSeconds < expiresAt ? 'valid' : 'expired';
}

function signature(key: SigningKey, path: string, exp: string): string {
  return createHmac('sha256', key.secret).update(`${key.id}\n${path}\n${exp}`, 'utf8').digest('base64url');
}
