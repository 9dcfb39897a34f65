/**
 * The HTTP fields a resumed download relies on (RFC 9110): which validator may go in If-Range, and what
 * a 206's Content-Range says. Pure functions, apart from the downloader that uses them.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { parseHttpDate } from '../../delivery/http-date.ts';

/** The validator to send in If-Range, or undefined when the response offers no strong one. */
export function ifRangeValidator(h: IncomingHttpHeaders): string | undefined {
  // RFC 9110 §13.1.5: "A client MUST NOT generate an If-Range header field containing an entity tag that
  // is marked as weak."
  if (h.etag !== undefined) return /^"[\x21\x23-\x7e\x80-\xff]*"$/.test(h.etag) ? h.etag : undefined;
  // "A client MUST NOT generate an If-Range header field containing an HTTP-date unless the client has no
  // entity tag for the corresponding representation and the date is a strong validator in the sense
  // defined by Section 8.8.2.2", which for a client means (§8.8.2.2) the response "includes a Date value
  // which is at least one second after the Last-Modified value".
  const modified = parseHttpDate(h['last-modified'] ?? '');
  const date = parseHttpDate(h.date ?? '');
  if (modified === null || date === null) return undefined;
  return date.getTime() - modified.getTime() >= 1000 ? h['last-modified'] : undefined;
}

/** `bytes first-last/complete` (RFC 9110 §14.4); complete is undefined for `*`. */
export function parseContentRange(
  value: string | undefined,
): { first: number; last: number; complete: number | undefined } | undefined {
  const m = /^bytes ([0-9]{1,15})-([0-9]{1,15})\/([0-9]{1,15}|\*)$/.exec(value?.trim() ?? '');
  if (m === null) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  const complete = m[3] === '*' ? undefined : Number(m[3]);
  // "A Content-Range field value is invalid if it contains a range-resp that has a last-pos value less
  // than its first-pos value, or a complete-length value less than or equal to its last-pos value."
  if (last < first || (complete !== undefined && complete <= last)) return undefined;
  return { first, last, complete };
}

export function parseLength(value: string | undefined): number | undefined {
  return value !== undefined && /^[0-9]{1,15}$/.test(value) ? Number(value) : undefined;
}
