import type { ByteRange } from '../storage/blob-store.ts';
import {
  parseEntityTag,
  parseOwnEntityTag,
  strongMatch,
  truncateToSecond,
  type Validators,
} from './conditional.ts';
import { parseHttpDate } from './http-date.ts';

/**
 * - `none`: serve the whole representation with 200, as if there were no Range field.
 * - `unsatisfiable`: 416 with `Content-Range: bytes *\/<size>`.
 * - `ranges`: 206; one element is a plain single-part response, several are multipart/byteranges.
 */
export type RangeResult =
  | { kind: 'none' }
  | { kind: 'unsatisfiable' }
  | { kind: 'ranges'; ranges: ByteRange[] };

export interface RangeOptions {
  /**
   * Most range-specs accepted in one header; beyond it the header is ignored. Each part costs a header
   * block and a read from storage, so an unbounded list lets a tiny request fan out into a huge amount of
   * work and response bytes: the Apache "Range header DoS" (CVE-2011-3192) sent hundreds of overlapping
   * ranges. RFC 9110 §14.2 allows this: "A server that supports range requests MAY ignore or reject a
   * Range header field that contains an invalid ranges-specifier (Section 14.1.1), a ranges-specifier with
   * more than two overlapping ranges, or a set of many small ranges that are not listed in ascending
   * order, since these are indications of either a broken client or a deliberate denial-of-service attack
   * (Section 17.15)." Coalescing (below) bounds the bytes sent to the representation's size; this cap
   * bounds the number of parts.
   */
  maxRanges: number;
}

interface Spec {
  first: number | null;
  last: number | null;
  suffix: number | null;
}

// ranges-specifier = range-unit "=" range-set; range-unit = token   (RFC 9110 §14.1.1)
const SPECIFIER = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=(.*)$/s;
// int-range = first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length   (RFC 9110 §14.1.2)
const INT_RANGE = /^(\d+)-(\d*)$/;
const SUFFIX_RANGE = /^-(\d+)$/;
// The shape nearly every client sends (a player's or a download manager's one int-range), matched in one
// step instead of split and trimmed; at 15 digits a numeral is still an exact integer. Anything else takes
// the general member loop.
const ONE_INT_RANGE = /^bytes=(\d{1,15})-(\d{0,15})$/;

/**
 * Interprets a Range field value against a representation of `size` bytes. Only called for GET: RFC 9110
 * §14.2, "A server MUST ignore a Range header field received with a request method that is unrecognized
 * or for which range handling is not defined."
 */
export function parseRange(header: string | undefined, size: number, options: RangeOptions): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const specs = parseSpecifier(header);
  // Invalid syntax and units other than bytes are both ignored rather than answered with 416: RFC 9110
  // §14.2, "An origin server MUST ignore a Range header field that contains a range unit it does not
  // understand", plus the permission quoted on RangeOptions.maxRanges for invalid specifiers.
  if (specs === null || specs.length > options.maxRanges) return { kind: 'none' };

  if (size === 0) {
    // RFC 9110 §14.1.2: "When a selected representation has zero length, the only satisfiable form of
    // range-spec in a GET request is a suffix-range with a non-zero suffix-length." Such a range would
    // select zero bytes, which Content-Range cannot express, so we take §14.2's "A server that supports
    // range requests MAY ignore a Range header field when the selected representation has no content"
    // for that case and answer 416 otherwise, as nothing in the set is satisfiable.
    return specs.some((s) => s.suffix !== null && s.suffix > 0)
      ? { kind: 'none' }
      : { kind: 'unsatisfiable' };
  }

  const satisfiable: ByteRange[] = [];
  for (const spec of specs) {
    const range = resolve(spec, size);
    if (range !== null) satisfiable.push(range);
  }
  // RFC 9110 §14.1.1: "A valid ranges-specifier is "satisfiable" if it contains at least one range-spec
  // that is satisfiable, as defined by the indicated range-unit. Otherwise, the ranges-specifier is
  // "unsatisfiable"."
  if (satisfiable.length === 0) return { kind: 'unsatisfiable' };
  return { kind: 'ranges', ranges: coalesce(satisfiable) };
}

/**
 * Whether a Range request may be answered with 206 given its If-Range field (RFC 9110 §13.1.5). False means
 * "ignore the Range field and send the whole representation". Without If-Range the answer is true.
 */
export function ifRangeAllowsPartial(ifRange: string | undefined, v: Validators): boolean {
  if (ifRange === undefined) return true;
  const value = ifRange.trim();
  // RFC 9110 §13.1.5: "A valid entity-tag can be distinguished from a valid HTTP-date by examining the
  // first three characters for a DQUOTE."
  if (value.slice(0, 3).includes('"')) {
    const tag = parseEntityTag(value);
    // "If the entity-tag validator provided exactly matches the ETag field value for the selected
    // representation using the strong comparison function (Section 8.8.3.2), the condition is true."
    // Strong comparison never matches a weak tag, which clients "MUST NOT generate" here anyway.
    return tag !== null && strongMatch(tag, parseOwnEntityTag(v.etag));
  }
  const date = parseHttpDate(value);
  // "If the HTTP-date validator provided exactly matches the Last-Modified field value for the selected
  // representation, the condition is true." Last-Modified is sent at one-second resolution, so that is
  // the resolution compared. Step 1 ("If the HTTP-date validator provided is not a strong validator in
  // the sense defined by Section 8.8.2.2, the condition is false") is the caller's to judge: only it
  // knows whether the representation can change twice within one second. Here the date counts as strong.
  return date !== null && date.getTime() === truncateToSecond(v.lastModified);
}

/** Null when the specifier is invalid or its unit is not bytes; otherwise every range-spec, in order. */
function parseSpecifier(header: string): Spec[] | null {
  const one = ONE_INT_RANGE.exec(header);
  if (one !== null) {
    const spec = intRange(one[1]!, one[2]!);
    return spec === null ? null : [spec];
  }
  const m = SPECIFIER.exec(header.trim());
  // RFC 9110 §14.1.1: "Range unit names are case-insensitive."
  if (m === null || m[1]!.toLowerCase() !== 'bytes') return null;
  const specs: Spec[] = [];
  // range-set = 1#range-spec; list members are separated by commas with optional whitespace, and empty
  // members are ignored (§5.6.1.2), but at least one must be present.
  for (const member of m[2]!.split(',')) {
    const text = member.replace(/^[ \t]+|[ \t]+$/g, '');
    if (text === '') continue;
    const int = INT_RANGE.exec(text);
    if (int !== null) {
      const spec = intRange(int[1]!, int[2]!);
      if (spec === null) return null;
      specs.push(spec);
      continue;
    }
    const suffix = SUFFIX_RANGE.exec(text);
    // Anything else is other-range, which has no meaning for bytes: "A ranges-specifier is invalid if it
    // contains any range-spec that is invalid or undefined for the indicated range-unit." (§14.1.1)
    if (suffix === null) return null;
    specs.push({ first: null, last: null, suffix: toNumber(suffix[1]!) });
  }
  return specs.length === 0 ? null : specs;
}

/** An int-range from its digits (`last` empty when absent), or null when it is invalid. */
function intRange(firstDigits: string, lastDigits: string): Spec | null {
  const first = toNumber(firstDigits);
  const last = lastDigits === '' ? null : toNumber(lastDigits);
  // RFC 9110 §14.1.2: "An int-range is invalid if the last-pos value is present and less than the
  // first-pos."
  return last !== null && last < first ? null : { first, last, suffix: null };
}

/**
 * RFC 9110 §14.1.2: "Recipients MUST anticipate potentially large decimal numerals and prevent parsing
 * errors due to integer conversion overflows." A numeral past 2^53 loses precision as a double but stays
 * far beyond any representation's size, which is all the comparisons below need; a numeral too long even
 * for a double becomes Infinity, which compares just as well.
 */
function toNumber(digits: string): number {
  return Number(digits);
}

function resolve(spec: Spec, size: number): ByteRange | null {
  if (spec.suffix !== null) {
    // RFC 9110 §14.1.2: a range-spec is satisfiable if it is "a suffix-range with a non-zero
    // suffix-length", and "If the selected representation is shorter than the specified suffix-length,
    // the entire representation is used."
    if (spec.suffix === 0) return null;
    return { start: Math.max(0, size - spec.suffix), end: size - 1 };
  }
  const first = spec.first!;
  // Satisfiable if it is "an int-range with a first-pos that is less than the current length of the
  // selected representation". "If the last-pos value is absent, or if the value is greater than or equal
  // to the current length of the representation data, the byte range is interpreted as the remainder of
  // the representation (i.e., the server replaces the value of last-pos with a value that is one less than
  // the current length of the selected representation)."
  if (first >= size) return null;
  return { start: first, end: spec.last === null ? size - 1 : Math.min(spec.last, size - 1) };
}

/**
 * Merges overlapping and adjacent ranges. RFC 9110 §15.3.7.2: "When multiple ranges are requested, a server
 * MAY coalesce any of the ranges that overlap, or that are separated by a gap that is smaller than the
 * overhead of sending multiple parts, regardless of the order in which the corresponding range-spec
 * appeared in the received Range header field."
 *
 * The survivors keep the order of the request: "A server that generates a multipart response SHOULD send
 * the parts in the same order that the corresponding range-spec appeared in the received Range header
 * field, excluding those ranges that were deemed unsatisfiable or that were coalesced into other ranges."
 * A merged range takes the place of its earliest member.
 */
function coalesce(ranges: readonly ByteRange[]): ByteRange[] {
  if (ranges.length === 1) return [...ranges];
  const byStart = ranges
    .map((range, index) => ({ range, index }))
    .sort((a, b) => a.range.start - b.range.start);
  const merged: { range: ByteRange; index: number }[] = [];
  for (const item of byStart) {
    const last = merged.at(-1);
    if (last !== undefined && item.range.start <= last.range.end + 1) {
      last.range = { start: last.range.start, end: Math.max(last.range.end, item.range.end) };
      last.index = Math.min(last.index, item.index);
    } else {
      merged.push({ range: { ...item.range }, index: item.index });
    }
  }
  return merged.sort((a, b) => a.index - b.index).map((m) => m.range);
}
