/**
 * Content-Disposition (RFC 6266) with RFC 8187 extended parameters. Stored file names were cleaned on
 * the way in (src/assets/filename.ts); this only makes a header of one.
 */

import { CONTROL, FALLBACK_NAME } from '../assets/filename.ts';

// RFC 8187 §3.2.1: attr-char = ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" / "`"
// / "|" / "~"
const ATTR_CHAR = /^[A-Za-z0-9!#$&+\-.^_`|~]$/;

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
