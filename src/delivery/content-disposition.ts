/**
 * Content-Disposition (RFC 6266) with RFC 8187 extended parameters, and the clean-up of client-provided
 * file names before they are stored.
 */

// C0 controls, DEL and C1 controls (Unicode general category Cc).
const CONTROL = /\p{Cc}/gu;
// Bidi_Control: ALM, LRM, RLM, LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI. RLO in particular makes
// "invoice\u202Efdp.exe" display as "invoiceexe.pdf".
const BIDI_CONTROL = /\p{Bidi_Control}/gu;
// Windows device names, reserved with any extension and with trailing spaces, in any case.
const WINDOWS_DEVICE = /^(?:CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])[ ]*(?:\..*)?$/iu;
// RFC 8187 §3.2.1: attr-char = ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" / "`"
// / "|" / "~"
const ATTR_CHAR = /^[A-Za-z0-9!#$&+\-.^_`|~]$/;

const FALLBACK_NAME = 'file';

/**
 * `inline; filename="..."` or `attachment; filename="..."`, adding `filename*=UTF-8''...` when the plain
 * parameter cannot carry the name faithfully.
 *
 * The plain `filename` follows RFC 6266 Appendix D: always the quoted-string form; "Avoid including the
 * "\" character in the quoted-string form of the filename parameter, as escaping is not implemented by
 * some user agents"; "Avoid including the percent character followed by two hexadecimal characters (e.g.,
 * %A9) in the filename parameter, since some existing implementations consider it to be an escape
 * character"; "Avoid using non-ASCII characters in the filename parameter." So `"`, `\` and the `%` of
 * such a sequence become `_`, each non-ASCII code point becomes one `_`, and controls are dropped (from
 * both forms: they have no business in a file name).
 */
export function contentDisposition(filename: string, type: 'inline' | 'attachment'): string {
  let name = filename.toWellFormed().replace(CONTROL, '');
  if (name === '') name = FALLBACK_NAME;
  const ascii = asciiFallback(name);
  let value = `${type}; filename="${ascii}"`;
  // RFC 6266 Appendix D: "Include the "filename*" parameter where the desired filename cannot be expressed
  // faithfully using the "filename" form." and "When the "filename*" parameter is used, it should be placed
  // after the "filename" parameter, as some user agents handle multiple params incorrectly."
  if (ascii !== name) value += `; filename*=UTF-8''${encodeRfc8187(name)}`;
  return value;
}

/**
 * Cleans a client-provided file name for storage and later use in Content-Disposition, in this order:
 * last path segment (`/` or `\`), NFC, controls (C0, DEL, C1) and bidi controls removed, whitespace trimmed,
 * leading dots removed (which also disposes of `.` and `..`), then cut to `maxLength` UTF-8 bytes on a
 * grapheme boundary (never inside a code point, nor between an emoji and its modifiers) keeping the
 * extension when it fits. Windows device names such as `CON.txt` get a `_` prefix. Empty becomes `file`.
 */
export function sanitizeFilename(name: string, maxLength: number): string {
  if (!Number.isInteger(maxLength) || maxLength < FALLBACK_NAME.length) {
    throw new RangeError(
      `maxLength must be an integer of at least ${FALLBACK_NAME.length}, got ${maxLength}`,
    );
  }
  const segment = name.split(/[/\\]/).at(-1)!;
  let clean = segment.toWellFormed().normalize('NFC').replace(CONTROL, '').replace(BIDI_CONTROL, '');
  // Dots and whitespace can alternate (". .bashrc"), so both are stripped from the front in one pass.
  clean = clean.replace(/^[\s.]+|\s+$/gu, '');
  if (clean === '') return FALLBACK_NAME;
  clean = truncate(clean, maxLength);
  if (WINDOWS_DEVICE.test(clean)) clean = truncate(`_${clean}`, maxLength);
  return clean === '' ? FALLBACK_NAME : clean;
}

function asciiFallback(name: string): string {
  let out = '';
  for (const ch of name.replace(/%(?=[0-9A-Fa-f]{2})/g, '_')) {
    const code = ch.codePointAt(0)!;
    out += code > 0x7e || ch === '"' || ch === '\\' ? '_' : ch;
  }
  return out;
}

// RFC 8187 §3.2.1: value-chars = *( pct-encoded / attr-char ), and "Producers MUST use the "UTF-8"
// ([RFC3629]) character encoding."
function encodeRfc8187(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && ATTR_CHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const segmenter = new Intl.Segmenter('en', { granularity: 'grapheme' });

function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** Longest prefix of whole graphemes within `budget` UTF-8 bytes. */
function prefix(s: string, budget: number): string {
  let out = '';
  let used = 0;
  for (const { segment } of segmenter.segment(s)) {
    const size = byteLength(segment);
    if (used + size > budget) break;
    out += segment;
    used += size;
  }
  return out;
}

function truncate(name: string, maxLength: number): string {
  if (byteLength(name) <= maxLength) return name;
  const dot = name.lastIndexOf('.');
  if (dot > 0) {
    const extension = name.slice(dot);
    const stem = prefix(name.slice(0, dot), maxLength - byteLength(extension)).trimEnd();
    // An "extension" that leaves no room for a name is not worth keeping; cut the whole name instead.
    if (stem !== '') return stem + extension;
  }
  return prefix(name, maxLength).trimEnd();
}
