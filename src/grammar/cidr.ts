/**
 * IP addresses and CIDR prefixes as numbers: the grammar of `CONVEYOR_INGEST_ALLOW_ADDRESSES` and of the
 * SSRF guard's range table (src/media/ingest/ssrf.ts), which compares addresses with the arithmetic here.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** An address family, its first address as a number and the prefix length; a single address has the full width. */
export interface Cidr {
  family: 4 | 6;
  base: bigint;
  prefix: number;
}

/** 'a.b.c.d', 'a.b.c.d/n', an IPv6 address or 'x::/n'; null when malformed. */
export function parseCidr(text: string): Cidr | null {
  const [ip = '', bits, extra] = text.trim().split('/');
  if (extra !== undefined) return null;
  const addr = parseAddress(ip);
  if (addr === null) return null;
  const max = addr.family === 4 ? 32 : 128;
  if (bits === undefined) return { ...addr, prefix: max };
  if (!/^[0-9]{1,3}$/.test(bits) || Number(bits) > max) return null;
  return { ...addr, prefix: Number(bits) };
}

/** One address as a full-width prefix; null when `text` is not an IPv4 or IPv6 address. */
export function parseAddress(text: string): Cidr | null {
  if (isIPv4(text)) {
    const base = text.split('.').reduce((acc, o) => (acc << 8n) | BigInt(o), 0n);
    return { family: 4, base, prefix: 32 };
  }
  const ip = text.replace(/%.*$/, ''); // a zone id (fe80::1%eth0) says nothing about the address
  if (!isIPv6(ip)) return null;
  const gap = ip.indexOf('::');
  const left = words(gap < 0 ? ip : ip.slice(0, gap));
  const right = gap < 0 ? [] : words(ip.slice(gap + 2));
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  return { family: 6, base: all.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n), prefix: 128 };
}

/** Whether the prefix `cidr` covers the address (or prefix) `addr`. */
export function contains(cidr: Cidr, addr: Cidr): boolean {
  if (cidr.family !== addr.family) return false;
  const shift = BigInt((cidr.family === 4 ? 32 : 128) - cidr.prefix);
  return cidr.base >> shift === addr.base >> shift;
}

function words(groups: string): number[] {
  if (groups === '') return [];
  return groups.split(':').flatMap((g) => {
    if (!g.includes('.')) return [Number.parseInt(g, 16)];
    const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number);
    return [(a << 8) | b, (c << 8) | d];
  });
}
