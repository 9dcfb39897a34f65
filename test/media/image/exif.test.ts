import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { captureTime, parseSafeExif } from '../../../src/media/image/exif.ts';

// TIFF field types.
const ASCII = 2;
const SHORT = 3;
const LONG = 4;
const RATIONAL = 5;

interface Field {
  tag: number;
  type: number;
  /** Strings for ASCII; numbers for SHORT/LONG; [numerator, denominator] pairs flattened for RATIONAL. */
  value: string | number[];
  /** Overrides the count written in the entry (to lie about it). */
  count?: number;
  /** Overrides the value offset written in the entry (to point somewhere else). */
  offset?: number;
}

/**
 * A minimal EXIF block: "Exif\0\0", a TIFF header, IFD0 and optionally an Exif IFD (IFD0 gets the
 * 0x8769 pointer to it automatically), each followed by its out-of-line values.
 */
function exifBlock(
  ifd0: Field[],
  exifIfd?: Field[],
  options: { bigEndian?: boolean; prefix?: boolean } = {},
) {
  const little = !options.bigEndian;
  const bytes: number[] = [];
  const u16 = (at: number, v: number) => {
    const [a, b] = [v & 0xff, (v >> 8) & 0xff];
    bytes[at] = little ? a : b;
    bytes[at + 1] = little ? b : a;
  };
  const u32 = (at: number, v: number) => {
    const parts = [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
    for (let i = 0; i < 4; i++) bytes[at + i] = little ? parts[i]! : parts[3 - i]!;
  };
  const valueBytes = (field: Field): number[] => {
    const out: number[] = [];
    const push = (size: number, v: number) => {
      const start = out.length;
      for (let i = 0; i < size; i++) out.push(0);
      for (let i = 0; i < size; i++) {
        const byte = Math.floor(v / 256 ** i) & 0xff;
        out[start + (little ? i : size - 1 - i)] = byte;
      }
    };
    if (typeof field.value === 'string') return [...Buffer.from(`${field.value}\0`, 'latin1')];
    for (const v of field.value) push(field.type === SHORT ? 2 : 4, v);
    return out;
  };
  const count = (field: Field) =>
    field.count ??
    (typeof field.value === 'string'
      ? field.value.length + 1
      : field.type === RATIONAL
        ? field.value.length / 2
        : field.value.length);

  const writeIfd = (at: number, fields: Field[]): number => {
    u16(at, fields.length);
    let data = at + 2 + fields.length * 12 + 4;
    fields.forEach((field, i) => {
      const entry = at + 2 + i * 12;
      u16(entry, field.tag);
      u16(entry + 2, field.type);
      u32(entry + 4, count(field));
      const value = valueBytes(field);
      if (field.offset !== undefined) {
        u32(entry + 8, field.offset);
      } else if (value.length <= 4) {
        for (let j = 0; j < 4; j++) bytes[entry + 8 + j] = value[j] ?? 0;
      } else {
        u32(entry + 8, data);
        value.forEach((b, j) => {
          bytes[data + j] = b;
        });
        data += value.length + (value.length % 2);
      }
    });
    u32(at + 2 + fields.length * 12, 0); // no next IFD
    return data;
  };

  bytes.push(...(little ? [0x49, 0x49] : [0x4d, 0x4d]));
  u16(2, 42);
  u32(4, 8);
  const fields0 = exifIfd ? [...ifd0, { tag: 0x8769, type: LONG, value: [0] }] : ifd0;
  const end0 = writeIfd(8, fields0);
  if (exifIfd) {
    // Patch the pointer now that we know where the Exif IFD starts.
    u32(8 + 2 + (fields0.length - 1) * 12 + 8, end0);
    writeIfd(end0, exifIfd);
  }
  const tiff = Buffer.from(Array.from(bytes, (b) => b ?? 0));
  return options.prefix === false ? tiff : Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
}

const CAMERA: Field[] = [
  { tag: 0x010f, type: ASCII, value: 'Nikon' },
  { tag: 0x0110, type: ASCII, value: 'Z 8' },
];
const SHOT: Field[] = [
  { tag: 0x829a, type: RATIONAL, value: [1, 1000] },
  { tag: 0x829d, type: RATIONAL, value: [40, 10] },
  { tag: 0x8827, type: SHORT, value: [3200] },
  { tag: 0x9003, type: ASCII, value: '2023:12:31 23:59:58' },
  { tag: 0x920a, type: RATIONAL, value: [850, 10] },
  { tag: 0xa405, type: SHORT, value: [85] },
  { tag: 0xa434, type: ASCII, value: 'NIKKOR Z 85mm f/1.2 S' },
];
const EXPECTED = {
  make: 'Nikon',
  model: 'Z 8',
  lensModel: 'NIKKOR Z 85mm f/1.2 S',
  capturedAt: '2023-12-31T23:59:58',
  exposureTime: 0.001,
  fNumber: 4,
  iso: 3200,
  focalLength: 85,
  focalLengthIn35mm: 85,
};

describe('parseSafeExif', () => {
  it('reads the allow-listed fields in either byte order, with or without the Exif prefix', () => {
    assert.deepEqual(parseSafeExif(exifBlock(CAMERA, SHOT)), EXPECTED);
    assert.deepEqual(parseSafeExif(exifBlock(CAMERA, SHOT, { bigEndian: true })), EXPECTED);
    assert.deepEqual(parseSafeExif(exifBlock(CAMERA, SHOT, { prefix: false })), EXPECTED);
  });

  it('returns {} for nothing, garbage and foreign structures', () => {
    assert.deepEqual(parseSafeExif(undefined), {});
    assert.deepEqual(parseSafeExif(Buffer.alloc(0)), {});
    assert.deepEqual(parseSafeExif(Buffer.from('Exif\0\0')), {});
    assert.deepEqual(parseSafeExif(Buffer.from('Exif\0\0XX*\0\x08\0\0\0', 'latin1')), {});
    const wrongMagic = exifBlock(CAMERA);
    wrongMagic[8] = 43;
    assert.deepEqual(parseSafeExif(wrongMagic), {});
  });

  it('never reads tags outside the allow-list, nor the GPS IFD or the thumbnail IFD', () => {
    const block = exifBlock(
      [
        ...CAMERA,
        { tag: 0x013b, type: ASCII, value: 'Artist Name' },
        { tag: 0x8298, type: ASCII, value: 'Copyright Holder' },
        { tag: 0x8825, type: LONG, value: [8] }, // GPS IFD pointer (aimed at IFD0 itself)
      ],
      [
        ...SHOT,
        { tag: 0xa430, type: ASCII, value: 'Owner Name' },
        { tag: 0xa431, type: ASCII, value: 'SERIAL123' },
        { tag: 0xa435, type: ASCII, value: 'LENSSERIAL' },
        { tag: 0x927c, type: ASCII, value: 'maker note' },
        { tag: 0xa420, type: ASCII, value: 'unique id' },
      ],
    );
    assert.deepEqual(parseSafeExif(block), EXPECTED);
  });

  it('accepts ISO as a LONG and ignores values of the wrong type', () => {
    const exif = parseSafeExif(
      exifBlock(CAMERA, [
        { tag: 0x8827, type: LONG, value: [102400] },
        { tag: 0x829d, type: ASCII, value: 'f/2.8' },
        { tag: 0x920a, type: SHORT, value: [50] },
        { tag: 0xa434, type: SHORT, value: [1] },
      ]),
    );
    assert.deepEqual(exif, { make: 'Nikon', model: 'Z 8', iso: 102400 });
  });

  it('drops zero denominators, zero values and blank strings', () => {
    const exif = parseSafeExif(
      exifBlock(
        [
          { tag: 0x010f, type: ASCII, value: '   ' },
          { tag: 0x0110, type: ASCII, value: '' },
        ],
        [
          { tag: 0x829a, type: RATIONAL, value: [1, 0] },
          { tag: 0x829d, type: RATIONAL, value: [0, 10] },
          { tag: 0x8827, type: SHORT, value: [0] },
        ],
      ),
    );
    assert.deepEqual(exif, {});
  });

  it('strips control characters and caps strings at 128 bytes', () => {
    const exif = parseSafeExif(
      exifBlock([
        { tag: 0x010f, type: ASCII, value: 'Can\x1b[31mon\x07 ' },
        { tag: 0x0110, type: ASCII, value: 'M'.repeat(500) },
      ]),
    );
    assert.deepEqual(exif, { make: 'Can[31mon', model: 'M'.repeat(128) });
  });

  it('keeps the first of a repeated tag', () => {
    const exif = parseSafeExif(
      exifBlock([
        { tag: 0x010f, type: ASCII, value: 'First' },
        { tag: 0x010f, type: ASCII, value: 'Second' },
      ]),
    );
    assert.deepEqual(exif, { make: 'First' });
  });

  it('drops fields whose values lie outside the block', () => {
    const exif = parseSafeExif(
      exifBlock([
        { tag: 0x010f, type: ASCII, value: 'Long enough to be out of line', offset: 0xfffffff0 },
        { tag: 0x0110, type: ASCII, value: 'Z 8', count: 0x7fffffff },
      ]),
    );
    assert.deepEqual(exif, {});
  });

  it('survives an Exif pointer that points back at IFD0 or past the end', () => {
    const loop = exifBlock([...CAMERA, { tag: 0x8769, type: LONG, value: [8] }]);
    assert.deepEqual(parseSafeExif(loop), { make: 'Nikon', model: 'Z 8' });
    const away = exifBlock([...CAMERA, { tag: 0x8769, type: LONG, value: [0xffffff00] }]);
    assert.deepEqual(parseSafeExif(away), { make: 'Nikon', model: 'Z 8' });
  });

  it('never throws on any truncation or on random damage', () => {
    const block = exifBlock(CAMERA, SHOT);
    for (let length = 0; length <= block.length; length++) parseSafeExif(block.subarray(0, length));
    let seed = 1;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 2000; round++) {
      const damaged = Buffer.from(block);
      for (let k = 0; k < 4; k++) damaged[6 + Math.floor(random() * (damaged.length - 6))] = random() * 256;
      const exif = parseSafeExif(damaged);
      for (const value of Object.values(exif)) assert.ok(typeof value === 'string' || Number.isFinite(value));
    }
  });
});

describe('captureTime', () => {
  it('turns EXIF date-times into ISO 8601, with the offset when there is a valid one', () => {
    assert.equal(captureTime('2024:05:01 12:34:56', undefined), '2024-05-01T12:34:56');
    assert.equal(captureTime('2024:05:01 12:34:56', '+02:00'), '2024-05-01T12:34:56+02:00');
    assert.equal(captureTime('2024:05:01 12:34:56', '-09:30'), '2024-05-01T12:34:56-09:30');
    assert.equal(captureTime('2024:05:01 12:34:56', '2'), '2024-05-01T12:34:56');
    assert.equal(captureTime('2024:05:01 12:34:56', '+2:00'), '2024-05-01T12:34:56');
  });

  it('refuses blanks, other spellings and impossible dates', () => {
    for (const bad of [
      undefined,
      '',
      '    :  :     :  :  ',
      '2024-05-01 12:34:56',
      '2024:05:01T12:34:56',
      '2024:13:01 12:34:56',
      '2024:00:01 12:34:56',
      '2024:05:32 12:34:56',
      '2024:05:01 24:00:00',
      '2024:05:01 12:60:00',
      '0000:00:00 00:00:00',
      '2024:05:01 12:34:56 ',
    ]) {
      assert.equal(captureTime(bad, '+00:00'), undefined, String(bad));
    }
  });
});
