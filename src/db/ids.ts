import { randomBytes } from 'node:crypto';

/**
 * Identifiers like `ast_01jd3m5x8k9q2w7e4r6t0y1u3i`: a type prefix, then 26 Crockford base32 characters
 * (48 bits of milliseconds, 80 random bits), so ids sort by creation time and cursor pagination can
 * order by id alone.
 */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

export type IdPrefix = 'ten' | 'key' | 'ast' | 'ver' | 'tok' | 'aud' | 'job' | 'crd' | 'wkr' | 'sch';

export function newId(prefix: IdPrefix, now = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const random = randomBytes(10);
  let rest = '';
  // 80 bits -> 16 characters of 5 bits.
  let acc = 0n;
  for (const byte of random) acc = (acc << 8n) | BigInt(byte);
  for (let i = 0; i < 16; i++) {
    rest = ALPHABET[Number(acc & 31n)] + rest;
    acc >>= 5n;
  }
  return `${prefix}_${time}${rest}`;
}

const ID_SHAPE = /^[a-z]{3}_[0-9a-hjkmnp-tv-z]{26}$/;

/** Whether `value` could be an id of this kind; anything else is answered 404 without a query. */
export function isId(prefix: IdPrefix, value: string): boolean {
  return value.startsWith(`${prefix}_`) && ID_SHAPE.test(value);
}
