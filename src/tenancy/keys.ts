import { createHash, randomBytes } from 'node:crypto';

/**
 * API keys look like `cvk_<43 base64url characters>` (256 random bits). Only the SHA-256 of the whole key
 * is stored, plus a visible prefix (`cvk_` and 8 characters) so people can tell keys apart in lists.
 * A fast hash is right here: brute-forcing a 256-bit random secret is hopeless with or without stretching,
 * and a per-request bcrypt would cost milliseconds on every API call.
 */
export const KEY_PREFIX = 'cvk_';

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function visiblePrefix(key: string): string {
  return key.slice(0, KEY_PREFIX.length + 8);
}

export function looksLikeApiKey(value: string): boolean {
  return value.startsWith(KEY_PREFIX) && value.length >= KEY_PREFIX.length + 20 && value.length <= 200;
}
