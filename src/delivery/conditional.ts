import { parseHttpDate } from './http-date.ts';

/** The validators of the selected representation, as sent in ETag and Last-Modified. */
export interface Validators {
  /** A quoted strong entity tag, e.g. `"5d41402abc4b2a76"`. */
  etag: string;
  lastModified: Date;
}

/** Raw request field values; undefined when the field is absent. */
export interface ConditionalHeaders {
  ifMatch?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  ifUnmodifiedSince?: string;
}

export type PreconditionOutcome = 'proceed' | 'not-modified' | 'precondition-failed';

export interface EntityTag {
  weak: boolean;
  /** The opaque-tag without its quotes. */
  opaque: string;
}

export interface EntityTagList {
  /** True only when the whole field value is `*`. */
  any: boolean;
  tags: EntityTag[];
}

/**
 * Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since against the selected
 * representation. If-Range (step 5) belongs to range handling: see ifRangeAllowsPartial in range.ts.
 *
 * Call it only for a request that would otherwise succeed: RFC 9110 §13.2.1, "A server MUST ignore all
 * received preconditions if its response to the same request without those conditions, prior to
 * processing the request content, would have been a status code other than a 2xx (Successful) or 412
 * (Precondition Failed)." The representation always exists here, so `*` always matches.
 *
 * Methods are compared case-sensitively, as method tokens are (RFC 9110 §9.1).
 *
 * `now` is the origin server's clock, used to discard If-Modified-Since dates in the future.
 */
export function evaluatePreconditions(
  method: string,
  h: ConditionalHeaders,
  v: Validators,
  now?: Date,
): PreconditionOutcome {
  const getOrHead = method === 'GET' || method === 'HEAD';
  // RFC 9110 §13.2.1: "A server MUST ignore the conditional request header fields defined by this
  // specification when received with a request method that does not involve the selection or modification
  // of a selected representation, such as CONNECT, OPTIONS, or TRACE."
  if (method === 'CONNECT' || method === 'OPTIONS' || method === 'TRACE') return 'proceed';
  // The two shapes nearly every request has, answered before anything is parsed: no precondition at all,
  // and a revalidation that sends back exactly our ETag (one strong tag, so the weak comparison of step 3
  // finds it; If-Modified-Since is then ignored, as step 4 says).
  if (h.ifMatch === undefined && h.ifUnmodifiedSince === undefined) {
    if (h.ifNoneMatch === undefined && h.ifModifiedSince === undefined) return 'proceed';
    if (h.ifNoneMatch === v.etag) return getOrHead ? 'not-modified' : 'precondition-failed';
  }
  const current = parseOwnEntityTag(v.etag);
  const lastModified = truncateToSecond(v.lastModified);

  // RFC 9110 §13.2.2: "1. When recipient is the origin server and If-Match is present, evaluate the
  // If-Match precondition: if true, continue to step 3; if false, respond 412 (Precondition Failed) unless
  // it can be determined that the state-changing request has already succeeded".
  // We never make that determination: delivery only reads, so there is no prior change to recognise.
  if (h.ifMatch !== undefined) {
    if (!ifMatchHolds(h.ifMatch, current)) return 'precondition-failed';
  } else if (h.ifUnmodifiedSince !== undefined) {
    // "2. When recipient is the origin server, If-Match is not present, and If-Unmodified-Since is present,
    // evaluate the If-Unmodified-Since precondition: if true, continue to step 3; if false, respond 412"
    // §13.1.4: "A recipient MUST ignore the If-Unmodified-Since header field if the received field value is
    // not a valid HTTP-date (including when the field value appears to be a list of dates)."
    const date = parseHttpDate(h.ifUnmodifiedSince, now);
    // §13.1.4: "If the selected representation's last modification date is earlier than or equal to the
    // date provided in the field value, the condition is true. Otherwise, the condition is false."
    if (date !== null && lastModified > date.getTime()) return 'precondition-failed';
  }

  // "3. When If-None-Match is present, evaluate the If-None-Match precondition: if true, continue to step 5;
  // if false for GET/HEAD, respond 304 (Not Modified); if false for other methods, respond 412"
  if (h.ifNoneMatch !== undefined) {
    if (!ifNoneMatchHolds(h.ifNoneMatch, current)) return getOrHead ? 'not-modified' : 'precondition-failed';
    return 'proceed';
  }

  // "4. When the method is GET or HEAD, If-None-Match is not present, and If-Modified-Since is present,
  // evaluate the If-Modified-Since precondition: if true, continue to step 5; if false, respond 304"
  if (getOrHead && h.ifModifiedSince !== undefined) {
    // §13.1.3: "A recipient MUST ignore the If-Modified-Since header field if the received field value is
    // not a valid HTTP-date, the field value has more than one member, or if the request method is neither
    // GET nor HEAD." A list of IMF-fixdates never parses as one date, so the strict parser covers the
    // "more than one member" case.
    const clock = now ?? new Date();
    const date = parseHttpDate(h.ifModifiedSince, clock);
    // §13.1.3: "A recipient MUST interpret an If-Modified-Since field value's timestamp in terms of the
    // origin server's clock." A date ahead of that clock (client clock skew, or a forged value) would hide
    // every change made before it, so, as RFC 2616 §14.25 spelled out, "A date which is later than the
    // server's current time is invalid."
    if (date === null || date.getTime() > clock.getTime()) return 'proceed';
    // §13.1.3: "If the selected representation's last modification date is earlier or equal to the date
    // provided in the field value, the condition is false. Otherwise, the condition is true."
    if (lastModified <= date.getTime()) return 'not-modified';
  }
  return 'proceed';
}

/**
 * Parses `"*" / #entity-tag` (RFC 9110 §8.8.3, §13.1.1). Members that are not entity tags are dropped, as
 * are empty list members ("a recipient MUST parse and ignore a reasonable number of empty list elements",
 * §5.6.1.2). `*` counts only as the entire value: the grammar has no list containing `*`, so inside a list
 * it is just another malformed member.
 */
export function parseEntityTagList(header: string): EntityTagList {
  if (header.trim() === '*') return { any: true, tags: [] };
  const tags: EntityTag[] = [];
  let i = 0;
  while (i < header.length) {
    i = skipOws(header, i);
    if (header[i] === ',') {
      i++;
      continue;
    }
    if (i >= header.length) break;
    const tag = readEntityTag(header, i);
    if (tag !== null) {
      const after = skipOws(header, tag.end);
      if (after >= header.length || header[after] === ',') {
        tags.push(tag.tag);
        i = after;
        continue;
      }
    }
    // A malformed member: resume after the next comma. Commas are legal inside an opaque-tag, so a
    // malformed member can swallow a following good one; that only happens to garbage input.
    const comma = header.indexOf(',', tag === null ? i : tag.end);
    if (comma === -1) break;
    i = comma + 1;
  }
  return { any: false, tags };
}

/** Parses a single entity tag such as `"abc"` or `W/"abc"`, surrounding whitespace allowed. */
export function parseEntityTag(value: string): EntityTag | null {
  const start = skipOws(value, 0);
  const tag = readEntityTag(value, start);
  if (tag === null || skipOws(value, tag.end) !== value.length) return null;
  return tag.tag;
}

/**
 * RFC 9110 §8.8.3.2: "Strong comparison: two entity tags are equivalent if both are not weak and their
 * opaque-tags match character-by-character."
 */
export function strongMatch(a: EntityTag, b: EntityTag): boolean {
  return !a.weak && !b.weak && a.opaque === b.opaque;
}

/**
 * RFC 9110 §8.8.3.2: "Weak comparison: two entity tags are equivalent if their opaque-tags match
 * character-by-character, regardless of either or both being tagged as "weak"."
 */
export function weakMatch(a: EntityTag, b: EntityTag): boolean {
  return a.opaque === b.opaque;
}

/** Parses the server's own ETag; a malformed one is a programming error, not a client error. */
export function parseOwnEntityTag(etag: string): EntityTag {
  const tag = parseEntityTag(etag);
  if (tag === null) throw new TypeError(`not an entity tag: ${JSON.stringify(etag)}`);
  return tag;
}

/** HTTP dates carry whole seconds, so Last-Modified is compared as it was sent. */
export function truncateToSecond(d: Date): number {
  return Math.floor(d.getTime() / 1000) * 1000;
}

function ifMatchHolds(header: string, current: EntityTag): boolean {
  const list = parseEntityTagList(header);
  // RFC 9110 §13.1.1: "1. If the field value is "*", the condition is true if the origin server has a
  // current representation for the target resource. 2. If the field value is a list of entity tags, the
  // condition is true if any of the listed tags match the entity tag of the selected representation.
  // 3. Otherwise, the condition is false."
  // "An origin server MUST use the strong comparison function when comparing entity tags for If-Match"
  if (list.any) return true;
  return list.tags.some((tag) => strongMatch(tag, current));
}

function ifNoneMatchHolds(header: string, current: EntityTag): boolean {
  const list = parseEntityTagList(header);
  // RFC 9110 §13.1.2: "1. If the field value is "*", the condition is false if the origin server has a
  // current representation for the target resource. 2. If the field value is a list of entity tags, the
  // condition is false if one of the listed tags matches the entity tag of the selected representation.
  // 3. Otherwise, the condition is true."
  // "A recipient MUST use the weak comparison function when comparing entity tags for If-None-Match"
  if (list.any) return false;
  return !list.tags.some((tag) => weakMatch(tag, current));
}

// entity-tag = [ weak ] opaque-tag; weak = %s"W/"; opaque-tag = DQUOTE *etagc DQUOTE
// etagc = %x21 / %x23-7E / obs-text   (RFC 9110 §8.8.3; obs-text = %x80-FF)
function readEntityTag(s: string, start: number): { tag: EntityTag; end: number } | null {
  let i = start;
  let weak = false;
  if (s.startsWith('W/', i)) {
    weak = true;
    i += 2;
  }
  if (s[i] !== '"') return null;
  const open = ++i;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) return { tag: { weak, opaque: s.slice(open, i) }, end: i + 1 };
    if (!(c === 0x21 || (c >= 0x23 && c <= 0x7e) || (c >= 0x80 && c <= 0xff))) return null;
  }
  return null;
}

function skipOws(s: string, i: number): number {
  while (s[i] === ' ' || s[i] === '\t') i++;
  return i;
}
