/**
 * The clean-up of client-provided file names before they are stored with an asset or version; delivery
 * later puts them in Content-Disposition (src/delivery/content-disposition.ts).
 */

// C0 controls, DEL and C1 controls (Unicode general category Cc).
export const CONTROL = /\p{Cc}/gu;
// Bidi_Control: ALM, LRM, RLM, LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI. RLO in particular makes
// "invoice\u202Efdp.exe" display as "invoiceexe.pdf".
const BIDI_CONTROL = /\p{Bidi_Control}/gu;
// Windows device names, reserved with any extension and with trailing spaces, in any case.
const WINDOWS_DEVICE = /^(?:CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])[ ]*(?:\..*)?$/iu;

/** What a name with nothing left becomes. */
export const FALLBACK_NAME = 'file';

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
