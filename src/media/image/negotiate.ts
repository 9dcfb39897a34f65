/**
 * Choosing an image transform's output format.
 *
 * A transform URL asks for a concrete format, for `source` (keep the source's format; the default) or for
 * `auto` (pick from the request's Accept header). Only `auto` makes the answer depend on the request, so
 * only then does the route send `Vary: Accept`. RFC 9110 §12.1: "A Vary header field (Section 12.5.5) is
 * often sent in a response subject to proactive negotiation to indicate what parts of the request
 * information were used in the selection algorithm."
 *
 * `auto` uses Accept to decide what is ACCEPTABLE, and the server's own order to decide what is PREFERRED:
 * avif > webp > the source-compatible fallback (png when the source has alpha, else jpeg) > the other of
 * jpeg/png. The magnitudes of q values are deliberately not compared. Browsers rank image types by how
 * they list them, not by what suits a photo: Safari 17 sends `image/png` at q=1 but jpeg only through
 * `image/*;q=0.8`, so following q would turn every photo into a PNG several times larger. RFC 9110 §12.1
 * puts the choice with the server ("preferences are sent by the user agent in a request to encourage an
 * algorithm located at the server to select the preferred representation") and warns that "A user agent
 * cannot rely on proactive negotiation preferences being consistently honored". What we do honour is
 * the one hard meaning a weight has, §12.4.2: "a value of 0 means "not acceptable"".
 *
 * avif and webp count as acceptable only when the client names them (`image/avif`), never through
 * `image/*` or `*\/*`: clients sent those wildcards for years before they could decode either format
 * (Chrome before 85 sent `image/webp,image/apng,image/*,*\/*;q=0.8`, curl sends `*\/*`). jpeg and png are
 * decodable by everything, so wildcards do count for them.
 */
import { OUTPUT_FORMATS, type OutputFormat, type RequestedFormat } from '../../grammar/transform-spec.ts';

export interface SourceImage {
  /**
   * The source's format as the decoder names it (`jpeg`, `png`, `webp`, `avif`, `gif`, `tiff`, `heif`,
   * `svg`, ...). Only the four output formats are ever kept as they are; anything else is converted.
   */
  format: string;
  hasAlpha: boolean;
}

export interface FormatChoice {
  format: OutputFormat;
  /** The choice depends on the Accept header: send `Vary: Accept`. */
  varyAccept: boolean;
}

/** The final format for a request; `allowed` is the configured list of output formats (not empty). */
export function resolveFormat(
  requested: RequestedFormat,
  accept: string | undefined,
  source: SourceImage,
  allowed: readonly OutputFormat[],
): FormatChoice {
  if (requested === 'auto') return negotiateFormat(accept, source, allowed);
  if (requested === 'source') return { format: sourceCompatibleFormat(source, allowed), varyAccept: false };
  // The URL parser has already refused formats that are not allowed.
  return { format: requested, varyAccept: false };
}

/**
 * `source`: the source's own format when it is an allowed output format, else the fallback that keeps
 * what the source has (transparency) in the most widely decodable form.
 */
export function sourceCompatibleFormat(source: SourceImage, allowed: readonly OutputFormat[]): OutputFormat {
  const own = OUTPUT_FORMATS.find((f) => f === source.format);
  if (own !== undefined && allowed.includes(own)) return own;
  return fallbackOrder(source, allowed)[0]!;
}

/** `auto`: see the header comment for the policy. */
export function negotiateFormat(
  accept: string | undefined,
  source: SourceImage,
  allowed: readonly OutputFormat[],
): FormatChoice {
  const candidates = (['avif', 'webp'] as OutputFormat[])
    .filter((f) => allowed.includes(f))
    .concat(fallbackOrder(source, allowed).filter((f) => f === 'jpeg' || f === 'png'));
  // Dropping a source's transparency is worse than anything Accept could ask for, so with alpha jpeg is
  // no candidate at all (unless it is all the configuration allows, which fallbackOrder then returns).
  const usable =
    source.hasAlpha && candidates.some((f) => f !== 'jpeg')
      ? candidates.filter((f) => f !== 'jpeg')
      : candidates;
  const fallback = usable.find((f) => f === 'jpeg' || f === 'png') ?? fallbackOrder(source, allowed)[0]!;
  if (usable.length <= 1) return { format: usable[0] ?? fallback, varyAccept: false };

  if (accept === undefined) return { format: fallback, varyAccept: true };
  const ranges = parseAccept(accept);
  const chosen = usable.find((f) => quality(ranges, f, f === 'jpeg' || f === 'png') > 0);
  // RFC 9110 §12.4.1: "If a content negotiation header field is present in a request and none of the
  // available representations for the response can be considered acceptable according to it, the origin
  // server can either honor the header field by sending a 406 (Not Acceptable) response or disregard the
  // header field by treating the response as if it is not subject to content negotiation for that request
  // header field." An <img> cannot show a 406, so we disregard it.
  return { format: chosen ?? fallback, varyAccept: true };
}

/**
 * What `auto` reads of an Accept value: whether there is one, and which output formats it makes
 * acceptable (as `negotiateFormat` weighs them). Two values with the same signature negotiate the same
 * format for every source and configuration, so a remembered answer may be keyed by it.
 */
export function acceptSignature(accept: string | undefined): string {
  if (accept === undefined) return '-';
  const ranges = parseAccept(accept);
  let signature = '';
  for (const format of OUTPUT_FORMATS) {
    signature += quality(ranges, format, format === 'jpeg' || format === 'png') > 0 ? '1' : '0';
  }
  return signature;
}

/** Allowed formats in the order that best keeps the source: lossless with alpha, lossy without. */
function fallbackOrder(source: SourceImage, allowed: readonly OutputFormat[]): OutputFormat[] {
  const order: OutputFormat[] = source.hasAlpha
    ? ['png', 'webp', 'avif', 'jpeg']
    : ['jpeg', 'webp', 'png', 'avif'];
  const usable = order.filter((f) => allowed.includes(f));
  if (usable.length === 0) throw new RangeError('no output format is allowed');
  return usable;
}

export interface MediaRange {
  /** Lower-cased: RFC 9110 §8.3.1, "The type and subtype tokens are case-insensitive." */
  type: string;
  subtype: string;
  /** 0 to 1, in thousandths. */
  q: number;
}

// RFC 9110 §5.6.2: token = 1*tchar
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
const QVALUE = /^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * The media ranges of an Accept field value, in order. RFC 9110 §12.5.1:
 *
 *   Accept = #( media-range [ weight ] )
 *   media-range = ( "*\/*" / ( type "/" "*" ) / ( type "/" subtype ) ) parameters
 *
 * Malformed members are skipped rather than failing the whole field, as one odd entry should not cost a
 * browser its avif. Parameters other than q are ignored: no image client sends them, and our
 * representations have none to compare them with.
 */
export function parseAccept(field: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const member of splitOutsideQuotes(field, ',')) {
    const [range = '', ...params] = splitOutsideQuotes(member, ';').map((part) => part.trim());
    const slash = range.indexOf('/');
    const type = range.slice(0, slash).toLowerCase();
    const subtype = range.slice(slash + 1).toLowerCase();
    if (slash === -1 || !TOKEN.test(type) || !TOKEN.test(subtype) || (type === '*' && subtype !== '*')) {
      continue;
    }
    let q = 1000;
    let valid = true;
    for (const param of params) {
      const eq = param.indexOf('=');
      if (eq === -1) continue;
      // ABNF literals are case-insensitive (RFC 5234 §2.3), so `Q=0.5` is a weight too.
      if (param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
      const value = param.slice(eq + 1).trim();
      if (!QVALUE.test(value)) valid = false;
      else q = Math.round(Number(value) * 1000);
    }
    if (valid) ranges.push({ type, subtype, q: q / 1000 });
  }
  return ranges;
}

/**
 * The weight `ranges` give to image/<format>. RFC 9110 §12.5.1: "Media ranges can be overridden by more
 * specific media ranges or specific media types. If more than one media range applies to a given type,
 * the most specific reference has precedence." A type no range covers is not acceptable. When the same
 * range is listed twice, the lower weight wins: a client that once says "not acceptable" means it.
 */
export function quality(ranges: readonly MediaRange[], format: OutputFormat, wildcards: boolean): number {
  let best = -1;
  let q = 0;
  for (const r of ranges) {
    const specificity =
      r.type === 'image' && r.subtype === format
        ? 2
        : wildcards && r.type === 'image' && r.subtype === '*'
          ? 1
          : wildcards && r.type === '*'
            ? 0
            : -1;
    if (specificity < 0 || specificity < best) continue;
    q = specificity > best ? r.q : Math.min(q, r.q);
    best = specificity;
  }
  return q;
}

/** Splits on `separator` except inside quoted-strings (RFC 9110 §5.6.4), which parameters may use. */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === separator) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.filter((p) => p.trim() !== '');
}
