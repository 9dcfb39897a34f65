/**
 * Image transform URLs
 * ====================
 *
 *   GET /t/{signature}/{options}/{id}[.{ext}]
 *
 * {options}: comma-separated `key:value` pairs such as `w:512,h:512,g:attention,q:80`, or
 * `preset:<name>[,f:<format>]`. Grammar, limits, canonical form and the default output format
 * (`source`: keep the source's) are documented in transform-options.ts, whose API is re-exported here.
 *
 * {id}: an asset id (its latest version) or a version id; 1-100 characters of `A-Z a-z 0-9 _ -`. There is
 * no dot in an id, so the first dot starts the extension.
 * {ext}: jpg | jpeg | png | webp | avif, lower case. It sets the output format as f: does (an f: naming
 * another format is an error) and serves CDNs that decide what to cache by extension.
 *
 * No query string belongs to the scheme: it is neither signed nor read, so the route should refuse one
 * rather than let every `?x=1` become another CDN cache entry.
 *
 * {signature}: `{kid}.{sig}`, or `_` for an unsigned preset.
 *   kid         the signing key's id: 1-64 characters of `A-Z a-z 0-9 . _ ~ -`, as for signed delivery
 *               URLs. sig never contains a dot, so the LAST dot separates the two.
 *   sig         base64url without padding (RFC 4648 §5) of the first 16 bytes of
 *
 *                 HMAC-SHA256(secret, kid + "\n" + signedPart)
 *
 *               always 22 characters; the message is UTF-8 and "\n" one LF byte.
 *   signedPart  everything after the signature segment, exactly as in the request target:
 *               `/{options}/{id}[.{ext}]`. Nothing is normalised. The grammar only admits characters that
 *               are never percent-encoded (RFC 3986 §3.3 allows ":" and "," in a path segment as they
 *               are), so a percent-encoded variant does not parse, let alone verify.
 *
 * Truncation follows RFC 2104 §5: "We recommend that the output length t be not less than half the
 * length of the hash output (to match the birthday attack bound) and not less than 80 bits". 16 bytes is
 * half of SHA-256's 32, and saves 21 characters per URL in srcset lists.
 *
 * `_` (unsigned) is honoured only for `preset:<name>[,f:<format>]` options, and only when configuration
 * allows unsigned presets: the images anyone can then create are bounded by presets × formats × assets.
 *
 * Keys: the kid-indexed list used for signed delivery URLs can be shared. The two schemes' messages never
 * coincide: signedPart must be printable ASCII (both sides check), so a transform message holds exactly
 * one LF and a delivery message at least two; and a 22-character sig is never accepted where 43 are
 * expected, nor the reverse. Rotation: add the new key, sign with it, and keep the old one listed while
 * URLs it signed are in use. Transform URLs do not expire (they live in HTML), so that means until the
 * pages embedding them are rebuilt.
 *
 * Worked example, with kid `k2025` and the 32-byte secret 000102…1f (hex):
 *
 *   signedPart  /w:512,h:512,g:attention,q:80/ver_01jd3m5x8k9q2w7e4r6t0y1v3h.webp
 *   shell       printf 'k2025\n%s' "$signedPart" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$HEX \
 *                 -binary | head -c 16 | base64 | tr '+/' '-_' | tr -d =
 *   sig         x-OBL4wpvxfpo0txwZrAMQ
 *   URL         /t/k2025.x-OBL4wpvxfpo0txwZrAMQ/w:512,h:512,g:attention,q:80/ver_01jd3m5x8k9q2w7e4r6t0y1v3h.webp
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SigningKey } from '../../delivery/signed-url.ts';
import {
  allowedFormat,
  formatOptions,
  formatPreset,
  type ParsedOptions,
  parseOptions,
  show,
  type TransformLimits,
  type TransformPresets,
  type TransformRequest,
  TransformUrlError,
} from '../../grammar/transform-options.ts';
import type { RequestedFormat } from '../../grammar/transform-spec.ts';

export {
  cacheKey,
  DEFAULT_TRANSFORM_LIMITS,
  devicePixels,
  formatOptions,
  formatPreset,
  type ParsedOptions,
  parseOptions,
  type TransformLimits,
  type TransformPresets,
  type TransformRequest,
  TransformUrlError,
} from '../../grammar/transform-options.ts';

export const EXTENSIONS = { jpg: 'jpeg', jpeg: 'jpeg', png: 'png', webp: 'webp', avif: 'avif' } as const;
export type TransformExtension = keyof typeof EXTENSIONS;

export const TRANSFORM_PREFIX = '/t/';
export const UNSIGNED = '_';

export interface ParsedTransformPath extends ParsedOptions {
  /** The raw signature segment, for verifyTransformSignature. */
  signature: string;
  /** `/{options}/{id}[.{ext}]` exactly as received: the signed bytes. */
  signedPart: string;
  id: string;
  /** Already folded into spec.format. */
  ext: TransformExtension | undefined;
}

const ID = /^[A-Za-z0-9_-]{1,100}$/;
// The same key ids as src/delivery/signed-url.ts.
const KID = /^[A-Za-z0-9._~-]{1,64}$/;
const SIG = /^[A-Za-z0-9_-]{22}$/;
// Printable ASCII: what a request target carries unencoded, and never an LF (see the header).
const SIGNABLE = /^\/[\x21-\x7e]*$/;

/**
 * Splits, parses and validates a transform request's path (without the query string). Throws
 * TransformUrlError. The signature is not checked here: see verifyTransformSignature and
 * authorizeTransform.
 */
export function parseTransformPath(
  pathname: string,
  limits: TransformLimits,
  presets: TransformPresets,
): ParsedTransformPath {
  const parts = pathname.startsWith(TRANSFORM_PREFIX)
    ? pathname.slice(TRANSFORM_PREFIX.length).split('/')
    : [];
  const [signature, options, file] = parts;
  if (parts.length !== 3 || signature === undefined || signature === '' || options === undefined || !file) {
    throw new TransformUrlError('a transform path is /t/{signature}/{options}/{id}[.{ext}]');
  }
  const dot = file.indexOf('.');
  const id = dot === -1 ? file : file.slice(0, dot);
  if (!ID.test(id)) throw new TransformUrlError('the id must be 1 to 100 characters of A-Z a-z 0-9 _ -');
  const ext = dot === -1 ? undefined : file.slice(dot + 1);
  if (ext !== undefined && !isExtension(ext)) {
    throw new TransformUrlError(
      `unsupported extension ${show(ext)}; use jpg, jpeg, png, webp or avif`,
      'ext',
    );
  }

  const parsed = parseOptions(options, limits, presets);
  if (ext !== undefined) {
    const format = allowedFormat('ext', EXTENSIONS[ext], limits);
    if (parsed.formatGiven && parsed.spec.format !== format) {
      throw new TransformUrlError(`f:${parsed.spec.format} contradicts the extension .${ext}`, 'f');
    }
    parsed.spec.format = format;
  }
  return {
    ...parsed,
    signature,
    signedPart: pathname.slice(TRANSFORM_PREFIX.length + signature.length),
    id,
    ext,
  };
}

/** The signature segment (`{kid}.{sig}`) for `signedPart`, which is `/{options}/{id}[.{ext}]`. */
export function signTransformPath(signedPart: string, key: SigningKey): string {
  if (!KID.test(key.id)) throw new TypeError(`unusable signing key id: ${JSON.stringify(key.id)}`);
  if (key.secret.length === 0) throw new TypeError(`signing key ${key.id} has an empty secret`);
  if (!SIGNABLE.test(signedPart)) throw new TypeError('a signed part is "/" and printable ASCII');
  return `${key.id}.${mac(key, signedPart)}`;
}

/** Checks a signature segment against the bytes it must cover. `_` is reported, not judged. */
export function verifyTransformSignature(
  segment: string,
  signedPart: string,
  keys: readonly SigningKey[],
): 'valid' | 'invalid' | 'unsigned' {
  if (segment === UNSIGNED) return 'unsigned';
  const dot = segment.lastIndexOf('.');
  const kid = segment.slice(0, dot);
  const sig = segment.slice(dot + 1);
  if (dot === -1 || !KID.test(kid) || !SIG.test(sig) || !SIGNABLE.test(signedPart)) return 'invalid';
  const key = keys.find((k) => k.id === kid);
  if (key === undefined || key.secret.length === 0) return 'invalid';
  const expected = Buffer.from(mac(key, signedPart), 'latin1');
  const given = Buffer.from(sig, 'latin1');
  // Comparing the canonical spelling rather than decoded bytes also refuses other padding bits in the
  // last character; the length check only keeps timingSafeEqual from throwing.
  return given.length === expected.length && timingSafeEqual(given, expected) ? 'valid' : 'invalid';
}

export type TransformAccess = 'signed' | 'unsigned-preset' | 'denied';

/** Whether a parsed request may be rendered: signed, or an unsigned preset where configuration allows. */
export function authorizeTransform(
  parsed: ParsedTransformPath,
  keys: readonly SigningKey[],
  allowUnsignedPresets: boolean,
): TransformAccess {
  const check = verifyTransformSignature(parsed.signature, parsed.signedPart, keys);
  if (check === 'valid') return 'signed';
  if (check === 'unsigned' && allowUnsignedPresets && parsed.preset !== undefined) return 'unsigned-preset';
  return 'denied';
}

export type TransformTarget = TransformRequest | { preset: string; format?: RequestedFormat };

/**
 * The path (`/t/...`, without the origin) of a transform of `id`. With `key` null it is unsigned, which
 * only presets may be. With `ext` the format travels in the extension, so the target's format must be
 * `source` (or absent, for a preset) or the extension's own. Limits are not checked: the server building
 * URLs is trusted, and the one serving them checks.
 */
export function buildTransformUrl(
  target: TransformTarget,
  id: string,
  key: SigningKey | null,
  ext?: TransformExtension,
): string {
  if (!ID.test(id)) throw new TypeError(`unusable id: ${JSON.stringify(id)}`);
  if (ext !== undefined && !isExtension(ext))
    throw new TypeError(`unknown extension: ${JSON.stringify(ext)}`);
  const extFormat = ext === undefined ? undefined : EXTENSIONS[ext];
  const format = target.format;
  if (extFormat !== undefined && format !== undefined && format !== 'source' && format !== extFormat) {
    throw new RangeError(`f:${format} contradicts the extension .${ext}`);
  }
  let options: string;
  if ('preset' in target) {
    options = formatPreset(target.preset, extFormat === undefined ? format : undefined);
  } else if (key === null) {
    throw new TypeError('only presets can be unsigned');
  } else if (extFormat === undefined) {
    options = formatOptions(target);
  } else {
    // The extension says the format; f: only stands in when there would be nothing else to say.
    options = formatOptions({ ...target, format: 'source' });
    if (options === 'f:source') options = `f:${extFormat}`;
  }
  const signedPart = `/${options}/${id}${ext === undefined ? '' : `.${ext}`}`;
  return `${TRANSFORM_PREFIX}${key === null ? UNSIGNED : signTransformPath(signedPart, key)}${signedPart}`;
}

function isExtension(ext: string): ext is TransformExtension {
  return Object.hasOwn(EXTENSIONS, ext);
}

function mac(key: SigningKey, signedPart: string): string {
  return createHmac('sha256', key.secret)
    .update(`${key.id}\n${signedPart}`, 'utf8')
    .digest()
    .subarray(0, 16)
    .toString('base64url');
}
