/**
 * The safe EXIF subset
 * ====================
 *
 * EXIF carries much more than photographers expect: GPS position, camera and lens serial numbers, the
 * owner's name, an embedded thumbnail (which may still show what was cropped away) and opaque maker
 * notes. Conveyor keeps only what a gallery shows about how a picture was taken, and nothing else.
 *
 * This reader is an allow-list by construction rather than a general parser: it reads IFD0 and the Exif
 * sub-IFD that IFD0 points to, and only the tags listed below. It never follows the GPS or
 * interoperability pointers, the IFD1 (thumbnail) link or the maker note, so what must not leave
 * cannot, whatever the file contains. A general parser (e.g. the exif-reader package) would decode all
 * of that and leave the filtering to us; this one is ~150 lines with no dependency.
 *
 * The input is `metadata().exif` from sharp: "Exif\0\0" followed by a TIFF structure (CIPA DC-008
 * "Exif 2.32" §4.5.2: byte order "II" or "MM", 42, then the offset of IFD0; offsets count from the
 * start of the TIFF header). Hostile input is expected: every offset is bounds-checked, entry counts
 * are capped, and anything malformed yields fewer fields, never an exception.
 */

export interface SafeExif {
  make?: string;
  model?: string;
  lensMake?: string;
  lensModel?: string;
  /**
   * DateTimeOriginal as ISO 8601: `2024-05-01T12:34:56`, with the OffsetTimeOriginal suffix
   * (`+02:00`) when the camera recorded one. Without it the time is the camera's local clock.
   */
  capturedAt?: string;
  /** Seconds, e.g. 0.004 for 1/250 s. */
  exposureTime?: number;
  fNumber?: number;
  iso?: number;
  /** Millimetres. */
  focalLength?: number;
  focalLengthIn35mm?: number;
}

const IFD0 = { make: 0x010f, model: 0x0110, exifPointer: 0x8769 } as const;
const EXIF_IFD = {
  exposureTime: 0x829a,
  fNumber: 0x829d,
  iso: 0x8827,
  dateTimeOriginal: 0x9003,
  offsetTimeOriginal: 0x9011,
  focalLength: 0x920a,
  focalLengthIn35mm: 0xa405,
  lensMake: 0xa433,
  lensModel: 0xa434,
} as const;

// TIFF field types (TIFF 6.0 §2) and their sizes in bytes.
const ASCII = 2;
const SHORT = 3;
const LONG = 4;
const RATIONAL = 5;
const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8 };

const MAX_ENTRIES = 512;
const MAX_STRING = 128;

interface Entry {
  type: number;
  count: number;
  /** Offset of the value within the TIFF structure (inline values point into the entry itself). */
  at: number;
}

class Reader {
  readonly #tiff: Buffer;
  readonly #little: boolean;

  constructor(tiff: Buffer, little: boolean) {
    this.#tiff = tiff;
    this.#little = little;
  }

  u16(at: number): number | undefined {
    if (at < 0 || at + 2 > this.#tiff.length) return undefined;
    return this.#little ? this.#tiff.readUInt16LE(at) : this.#tiff.readUInt16BE(at);
  }

  u32(at: number): number | undefined {
    if (at < 0 || at + 4 > this.#tiff.length) return undefined;
    return this.#little ? this.#tiff.readUInt32LE(at) : this.#tiff.readUInt32BE(at);
  }

  /** The allow-listed entries of the IFD at `offset`; any other tag is skipped unread. */
  entries(offset: number, wanted: ReadonlySet<number>): Map<number, Entry> {
    const found = new Map<number, Entry>();
    const count = this.u16(offset);
    if (count === undefined || count > MAX_ENTRIES) return found;
    for (let i = 0; i < count; i++) {
      const entry = offset + 2 + i * 12;
      const tag = this.u16(entry);
      const type = this.u16(entry + 2);
      const n = this.u32(entry + 4);
      if (tag === undefined || type === undefined || n === undefined) break;
      const size = TYPE_SIZE[type];
      if (!wanted.has(tag) || size === undefined || n === 0 || found.has(tag)) continue;
      const total = size * n;
      const at = total <= 4 ? entry + 8 : this.u32(entry + 8);
      if (at === undefined || at + total > this.#tiff.length) continue;
      found.set(tag, { type, count: n, at });
    }
    return found;
  }

  ascii(entry: Entry | undefined): string | undefined {
    if (entry?.type !== ASCII) return undefined;
    const raw = this.#tiff.subarray(entry.at, entry.at + Math.min(entry.count, MAX_STRING));
    const end = raw.indexOf(0);
    // Latin-1 never fails to decode; control characters would only garble a UI or a log line.
    const text = raw
      .subarray(0, end === -1 ? raw.length : end)
      .toString('latin1')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
      .replace(/[\u0000-\u001f\u007f-\u009f]/g, '')
      .trim();
    return text === '' ? undefined : text;
  }

  integer(entry: Entry | undefined): number | undefined {
    if (entry?.type === SHORT) return this.u16(entry.at);
    if (entry?.type === LONG) return this.u32(entry.at);
    return undefined;
  }

  rational(entry: Entry | undefined): number | undefined {
    if (entry?.type !== RATIONAL) return undefined;
    const numerator = this.u32(entry.at);
    const denominator = this.u32(entry.at + 4);
    if (numerator === undefined || !denominator) return undefined;
    return numerator / denominator;
  }
}

/** The allow-listed fields of an EXIF block (see above); `{}` for anything unreadable. */
export function parseSafeExif(exif: Buffer | undefined): SafeExif {
  if (exif === undefined) return {};
  const tiff = exif.subarray(0, 6).toString('latin1') === 'Exif\0\0' ? exif.subarray(6) : exif;
  const order = tiff.subarray(0, 2).toString('latin1');
  if (order !== 'II' && order !== 'MM') return {};
  const reader = new Reader(tiff, order === 'II');
  if (reader.u16(2) !== 42) return {};
  const ifd0Offset = reader.u32(4);
  if (ifd0Offset === undefined) return {};

  const ifd0 = reader.entries(ifd0Offset, new Set(Object.values(IFD0)));
  const pointer = reader.integer(ifd0.get(IFD0.exifPointer));
  const exifIfd =
    pointer === undefined || pointer === ifd0Offset
      ? new Map<number, Entry>()
      : reader.entries(pointer, new Set(Object.values(EXIF_IFD)));

  const result: SafeExif = {
    make: reader.ascii(ifd0.get(IFD0.make)),
    model: reader.ascii(ifd0.get(IFD0.model)),
    lensMake: reader.ascii(exifIfd.get(EXIF_IFD.lensMake)),
    lensModel: reader.ascii(exifIfd.get(EXIF_IFD.lensModel)),
    capturedAt: captureTime(
      reader.ascii(exifIfd.get(EXIF_IFD.dateTimeOriginal)),
      reader.ascii(exifIfd.get(EXIF_IFD.offsetTimeOriginal)),
    ),
    exposureTime: positive(reader.rational(exifIfd.get(EXIF_IFD.exposureTime))),
    fNumber: positive(reader.rational(exifIfd.get(EXIF_IFD.fNumber))),
    iso: positive(reader.integer(exifIfd.get(EXIF_IFD.iso))),
    focalLength: positive(reader.rational(exifIfd.get(EXIF_IFD.focalLength))),
    focalLengthIn35mm: positive(reader.integer(exifIfd.get(EXIF_IFD.focalLengthIn35mm))),
  };
  for (const key of Object.keys(result) as (keyof SafeExif)[]) {
    if (result[key] === undefined) delete result[key];
  }
  return result;
}

// Exif 2.32 §4.6.5, DateTimeOriginal: "YYYY:MM:DD HH:MM:SS"; unknown parts may be blanks, which we drop.
const DATE_TIME = /^(\d{4}):(\d{2}):(\d{2}) (\d{2}):(\d{2}):(\d{2})$/;
// OffsetTimeOriginal: "±HH:MM".
const OFFSET = /^[+-]\d{2}:\d{2}$/;

/** Exported for the tests. */
export function captureTime(dateTime: string | undefined, offset: string | undefined): string | undefined {
  const m = dateTime === undefined ? null : DATE_TIME.exec(dateTime);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const valid =
    year >= 1800 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= 31 &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 60;
  if (!valid) return undefined;
  const local = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}`;
  return offset !== undefined && OFFSET.test(offset) ? local + offset : local;
}

function positive(n: number | undefined): number | undefined {
  return n !== undefined && Number.isFinite(n) && n > 0 ? n : undefined;
}
