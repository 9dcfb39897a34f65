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
 *
 * Prefix-signed URLs (a directory grant)
 * --------------------------------------
 *
 * A video's HLS ladder is a tree of files (`/v/<id>/hls/master.m3u8`, `.../h264-240p/index.m3u8`,
 * `.../h264-240p/seg_00001.m4s`), and a player follows the playlists' relative URIs to all of them. A
 * single-path signature opens one of those files only, so a prefix signature opens a whole folder. It
 * adds a fourth query parameter:
 *
 *   scope  the path prefix the signature covers: `/`, then one or more names of `A-Z a-z 0-9 . _ ~ -`
 *          each followed by `/` (so it starts and ends with `/`), no `.` or `..` name; at most 256
 *          characters. Conveyor mints `/a/<assetId>/hls/` and `/v/<versionId>/hls/` only.
 *   sig    base64url without padding of
 *
 *            HMAC-SHA256(secret, kid + "\n" + scope + "\n" + exp + "\n*")
 *
 * It differs from the single-path signature in three ways:
 * - it verifies for every request path that starts with `scope` and continues with a relative path of
 *   names made of `A-Z a-z 0-9 . _ -`, each starting with a letter or digit, separated by single `/`:
 *   no percent-encoding, no `.` or `..` step, no empty name, so the path that was authorised is the path
 *   that is routed (a proxy that normalises `a/../b` cannot lead a prefix grant out of its folder);
 * - the message ends with the field `*`. A single-path message ends with `exp`, decimal digits, so no
 *   single-path signature verifies as a prefix signature nor the reverse, even for a path equal to a
 *   scope;
 * - the URL names the prefix it was signed for (`scope`), which every URI of a served playlist carries
 *   on unchanged, with `exp`, `kid` and `sig`.
 * Expiry, key ids, rotation and the valid/expired/invalid answers are as above.
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
/** A prefix: names (no `.` or `..`) each followed by `/`, after a leading `/`. */
const SCOPE = /^\/(?:(?!\.{1,2}\/)[A-Za-z0-9._~-]+\/)+$/;
const SCOPE_MAX = 256;
/** What may follow the scope in a request path it covers. */
const UNDER_SCOPE = /^[A-Za-z0-9][A-Za-z0-9._-]*(?:\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

// As PathSignature: a type alias, so that it builds a query with new URLSearchParams(signPrefix(...)).
export type PrefixSignature = { exp: string; kid: string; scope: string; sig: string };

/** The query parameters that make `path` valid until `expiresAt` (Unix seconds). */
export function signPath(path: string, expiresAt: number, key: SigningKey): PathSignature {
  if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) {
    throw new RangeError(`expiresAt must be a non-negative integer of Unix seconds, got ${expiresAt}`);
  }
  checkKey(key);
  const exp = String(expiresAt);
  return { exp, kid: key.id, sig: signature(key, `${path}\n${exp}`) };
}

/** The query parameters that make every path under `scope` valid until `expiresAt` (Unix seconds). */
export function signPrefix(scope: string, expiresAt: number, key: SigningKey): PrefixSignature {
  if (!isScope(scope)) throw new TypeError(`not a signable prefix: ${JSON.stringify(scope)}`);
  if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) {
    throw new RangeError(`expiresAt must be a non-negative integer of Unix seconds, got ${expiresAt}`);
  }
  checkKey(key);
  const exp = String(expiresAt);
  return { exp, kid: key.id, scope, sig: signature(key, `${scope}\n${exp}\n*`) };
}

/**
 * Checks the `exp`, `kid`, `scope` and `sig` query parameters of a request for `path` against the prefix
 * scheme above: `invalid` too when `path` is not under `scope`.
 */
export function verifyPrefixSignature(
  path: string,
  q: { exp?: unknown; kid?: unknown; sig?: unknown; scope?: unknown },
  keys: readonly SigningKey[],
  nowSeconds: number,
): SignatureCheck {
  const { scope, exp } = q;
  if (typeof scope !== 'string' || !isScope(scope) || !path.startsWith(scope)) return 'invalid';
  if (!UNDER_SCOPE.test(path.slice(scope.length))) return 'invalid';
  if (typeof exp !== 'string') return 'invalid';
  return check(`${scope}\n${exp}\n*`, q, keys, nowSeconds);
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
  if (typeof q.exp !== 'string') return 'invalid';
  return check(`${path}\n${q.exp}`, q, keys, nowSeconds);
}

/** Verifies `sig` over `kid + "\n" + message`; `message` holds `exp`, which is checked here. */
function check(
  message: string,
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

  const expected = Buffer.from(signature(key, message), 'latin1');
  const given = Buffer.from(sig, 'latin1');
  // timingSafeEqual throws on unequal lengths; SIG already fixes the length, this keeps it from throwing
  // should the two ever drift apart.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
  return nowSeconds < expiresAt ? 'valid' : 'expired';
}

/** The signature of `kid + "\n" + message`. */
function signature(key: SigningKey, message: string): string {
  return createHmac('sha256', key.secret).update(`${key.id}\n${message}`, 'utf8').digest('base64url');
}

function checkKey(key: SigningKey): void {
  if (!KID.test(key.id)) throw new TypeError(`unusable signing key id: ${JSON.stringify(key.id)}`);
  if (key.secret.length === 0) throw new TypeError(`signing key ${key.id} has an empty secret`);
}

function isScope(scope: string): boolean {
  return scope.length <= SCOPE_MAX && SCOPE.test(scope);
}
