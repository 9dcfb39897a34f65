/**
 * Hostile images: small files that declare (or decode to) as much as the probe lets through, made
 * byte by byte or with sharp at run time so that no binary fixture is committed. Each is the worst
 * case of one decoder within the default limits (50 MP per frame, 500 frames):
 *
 *   png-rgba16        7071 x 7071 16-bit RGBA PNG, one colour: 400 MB of pixels in 600 KB
 *   png-interlaced    the same, Adam7-interlaced: libpng cannot stream an interlaced image
 *   png-chunks        64 x 64 with a zTXt chunk that inflates to 256 MB and a 64 MB iCCP profile
 *   jpeg-progressive  7071 x 7071 progressive 4:4:4 JPEG: the decoder holds every DCT coefficient
 *   webp-canvas       an animated WebP with a 7071 x 7071 canvas and 500 frames of 1 x 1 (24 KB)
 *   gif-large         a 7071 x 7071 GIF (a large logical screen with small frames is no threat:
 *                     libnsgif shrinks screens over 2048 px to the frames)
 *   avif-large        a 7071 x 7071 AVIF, one colour: about 1 KB
 *   tiff-float-strip  7071 x 7071 RGBA 32-bit float TIFF in one deflated strip (800 MB decoded)
 *   tiff-pages        500 pages, each 7071 x 7071, all pointing at one deflated strip
 *   svg-elements      an SVG of a million elements (28 MB), not an accepted format by default: what it
 *                     costs is finding that out (librsvg parses the whole document for a header)
 *
 * Generation takes a few seconds each (deflating hundreds of MB of one repeated pattern, or encoding
 * 50 MP with sharp); bench and tests write them into a temporary folder once and pass paths around.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32, createDeflate } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';

/** Just under the default 50,000,000-pixel limit. */
export const SIDE = 7071;

export const HOSTILE_IMAGES = [
  'png-rgba16',
  'png-interlaced',
  'png-chunks',
  'jpeg-progressive',
  'webp-canvas',
  'gif-large',
  'avif-large',
  'tiff-float-strip',
  'tiff-pages',
  'svg-elements',
] as const;
export type HostileImage = (typeof HOSTILE_IMAGES)[number];

/** The seven that cost the most memory to process (docs/benchmarks.md, "Hostile images"). */
export const SEVEN_BOMBS: readonly HostileImage[] = [
  'png-rgba16',
  'png-interlaced',
  'jpeg-progressive',
  'webp-canvas',
  'gif-large',
  'avif-large',
  'tiff-float-strip',
];

/** Writes every hostile image into `dir`; returns their paths by name. */
export async function writeHostileImages(
  dir: string,
  names: readonly HostileImage[] = HOSTILE_IMAGES,
): Promise<Record<HostileImage, string>> {
  const paths = {} as Record<HostileImage, string>;
  for (const name of names) {
    const path = join(dir, name);
    await writeFile(path, await hostileImage(name));
    paths[name] = path;
  }
  return paths;
}

export async function hostileImage(name: HostileImage): Promise<Buffer> {
  switch (name) {
    case 'png-rgba16':
      return png(SIDE, SIDE, { depth: 16, colourType: 6, interlaced: false });
    case 'png-interlaced':
      return png(SIDE, SIDE, { depth: 16, colourType: 6, interlaced: true });
    case 'png-chunks':
      return pngWithHugeChunks();
    case 'jpeg-progressive':
      return solid().jpeg({ progressive: true, chromaSubsampling: '4:4:4', quality: 100 }).toBuffer();
    case 'webp-canvas':
      return animatedWebp(SIDE, SIDE, 500);
    case 'gif-large':
      return solid().gif().toBuffer();
    case 'avif-large':
      // 4:4:4 (sharp's default for AVIF) at the fastest effort: a few seconds, about 1 KB.
      return solid().avif({ effort: 0, quality: 1 }).toBuffer();
    case 'tiff-float-strip':
      return tiff(SIDE, SIDE, 1);
    case 'tiff-pages':
      return tiff(SIDE, SIDE, 500, { bits: 8, float: false });
    case 'svg-elements':
      return Buffer.from(
        `<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">${'<rect width="1" height="1"/>'.repeat(1_000_000)}</svg>`,
      );
  }
}

function solid(): Sharp {
  return sharp({ create: { width: SIDE, height: SIDE, channels: 3, background: '#3a7' } });
}

// --- PNG (ISO 15948) --------------------------------------------------------------------------------

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function ihdr(width: number, height: number, depth: number, colourType: number, interlaced: boolean): Buffer {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(width, 0);
  data.writeUInt32BE(height, 4);
  data[8] = depth;
  data[9] = colourType;
  data[12] = interlaced ? 1 : 0;
  return chunk('IHDR', data);
}

/** Adam7's passes: first column and row, column and row step. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

/** One colour everywhere: rows of filter 0 and a repeated pixel, deflated as a stream. */
async function png(
  width: number,
  height: number,
  { depth, colourType, interlaced }: { depth: 8 | 16; colourType: 2 | 6; interlaced: boolean },
): Promise<Buffer> {
  const bytesPerPixel = ((colourType === 6 ? 4 : 3) * depth) / 8;
  const pixel = Buffer.from([0x33, 0x33, 0xaa, 0xaa, 0x77, 0x77, 0xff, 0xff]).subarray(0, bytesPerPixel);
  const passes = interlaced
    ? ADAM7.map(([x0, y0, dx, dy]) => [Math.ceil((width - x0) / dx), Math.ceil((height - y0) / dy)] as const)
    : [[width, height] as const];
  const parts: Buffer[] = [];
  for (const [w, h] of passes) {
    if (w <= 0 || h <= 0) continue;
    const row = Buffer.alloc(1 + w * bytesPerPixel);
    for (let i = 1; i < row.length; i += bytesPerPixel) pixel.copy(row, i);
    parts.push(...repeatRows(row, h));
  }
  const idat = await deflateParts(parts);
  return Buffer.concat([
    SIGNATURE,
    ihdr(width, height, depth, colourType, interlaced),
    // IDAT chunks are at most 2^31 - 1 bytes; these are far smaller.
    chunk('IDAT', idat),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** `count` copies of `row`, as a few large buffers that all share one allocation. */
function repeatRows(row: Buffer, count: number): Buffer[] {
  const perBlock = Math.max(1, Math.floor((4 * 1024 * 1024) / row.length));
  const block = Buffer.alloc(row.length * Math.min(perBlock, count));
  for (let i = 0; i < block.length; i += row.length) row.copy(block, i);
  const out: Buffer[] = [];
  for (let left = count; left > 0; left -= perBlock) {
    out.push(left >= perBlock ? block : block.subarray(0, left * row.length));
  }
  return out;
}

/** zlib-deflates the concatenation of `parts` without ever holding it whole. */
async function deflateParts(parts: readonly Buffer[]): Promise<Buffer> {
  const deflate = createDeflate({ level: 9, memLevel: 9 });
  const out: Buffer[] = [];
  deflate.on('data', (data: Buffer) => out.push(data));
  const done = new Promise<void>((resolve, reject) => {
    deflate.on('end', resolve);
    deflate.on('error', reject);
  });
  for (const part of parts) {
    if (!deflate.write(part)) await new Promise((resolve) => deflate.once('drain', resolve));
  }
  deflate.end();
  await done;
  return Buffer.concat(out);
}

/** 64 x 64, with a zTXt that inflates to 256 MB and an iCCP profile that inflates to 64 MB. */
async function pngWithHugeChunks(): Promise<Buffer> {
  const small = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#a37' } })
    .png()
    .toBuffer();
  // Keep the signature and IHDR of sharp's PNG, insert the chunks before its IDAT.
  const afterIhdr = 8 + 8 + 13 + 4;
  const text = await deflateParts(repeatRows(Buffer.alloc(1024 * 1024, 0x41), 256));
  const profile = await deflateParts(repeatRows(Buffer.alloc(1024 * 1024, 0x00), 64));
  return Buffer.concat([
    small.subarray(0, afterIhdr),
    chunk('iCCP', Buffer.concat([Buffer.from('bomb\0\0', 'latin1'), profile])),
    chunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), text])),
    small.subarray(afterIhdr),
  ]);
}

// --- WebP (RFC 9649) ---------------------------------------------------------------------------------

function riffChunk(fourcc: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.write(fourcc, 0, 'latin1');
  head.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, data, data.length % 2 === 1 ? Buffer.alloc(1) : Buffer.alloc(0)]);
}

function uint24(value: number): Buffer {
  const out = Buffer.alloc(3);
  out.writeUIntLE(value, 0, 3);
  return out;
}

/** A `width` x `height` canvas with `frames` frames of 1 x 1 (a lossless pixel made by sharp). */
async function animatedWebp(width: number, height: number, frames: number): Promise<Buffer> {
  const dot = await sharp({ create: { width: 1, height: 1, channels: 4, background: '#f00f' } })
    .webp({ lossless: true })
    .toBuffer();
  const vp8l = dot.subarray(12); // RIFF header (12 bytes), then the VP8L chunk
  const vp8x = Buffer.concat([Buffer.from([0x02 | 0x10, 0, 0, 0]), uint24(width - 1), uint24(height - 1)]);
  const anim = Buffer.from([0, 0, 0, 0, 0, 0]); // background colour, loop forever
  const frame = riffChunk(
    'ANMF',
    Buffer.concat([uint24(0), uint24(0), uint24(0), uint24(0), uint24(100), Buffer.from([0]), vp8l]),
  );
  const body = Buffer.concat([
    Buffer.from('WEBP', 'latin1'),
    riffChunk('VP8X', vp8x),
    riffChunk('ANIM', anim),
    ...Array.from({ length: frames }, () => frame),
  ]);
  return Buffer.concat([Buffer.from('RIFF', 'latin1'), uint24(body.length), Buffer.from([0]), body]);
}

// --- TIFF 6.0, little-endian -------------------------------------------------------------------------

/**
 * `pages` IFDs of `width` x `height` RGBA, each one strip (RowsPerStrip = height), deflated, all
 * pointing at the same strip data. Float samples by default: 16 bytes per pixel.
 */
async function tiff(
  width: number,
  height: number,
  pages: number,
  { bits, float }: { bits: 8 | 32; float: boolean } = { bits: 32, float: true },
): Promise<Buffer> {
  const bytesPerPixel = (4 * bits) / 8;
  const row = Buffer.alloc(width * bytesPerPixel);
  if (float) for (let i = 0; i < row.length; i += 4) row.writeFloatLE(0.5, i);
  else row.fill(0x80);
  const strip = await deflateParts(repeatRows(row, height));
  // Header, the IFDs, their two four-SHORT arrays, then the strip: content sniffers (file-type) read
  // only the head of a file, and want to see the first IFD there.
  const entries = 12;
  const ifdSize = 2 + entries * 12 + 4;
  const firstIfd = 8;
  const bitsOffset = firstIfd + pages * ifdSize;
  const formatOffset = bitsOffset + 8;
  const stripOffset = formatOffset + 8;
  const ifds: Buffer[] = [];
  for (let page = 0; page < pages; page++) {
    const at = firstIfd + page * ifdSize;
    const next = page + 1 < pages ? at + ifdSize : 0;
    const ifd = Buffer.alloc(ifdSize);
    ifd.writeUInt16LE(entries, 0);
    const tags: [number, number, number, number][] = [
      // tag, type (3 SHORT, 4 LONG), count, value or offset
      [256, 4, 1, width],
      [257, 4, 1, height],
      [258, 3, 4, bitsOffset], // BitsPerSample, four SHORTs
      [259, 3, 1, 8], // Compression: Adobe deflate
      [262, 3, 1, 2], // Photometric: RGB
      [273, 4, 1, stripOffset],
      [277, 3, 1, 4], // SamplesPerPixel
      [278, 4, 1, height], // RowsPerStrip: the whole image
      [279, 4, 1, strip.length],
      [284, 3, 1, 1], // PlanarConfiguration: chunky
      [338, 3, 1, 2], // ExtraSamples: unassociated alpha
      [339, 3, 4, formatOffset], // SampleFormat, four SHORTs
    ];
    tags.forEach(([tag, type, count, value], i) => {
      const at = 2 + i * 12;
      ifd.writeUInt16LE(tag, at);
      ifd.writeUInt16LE(type, at + 2);
      ifd.writeUInt32LE(count, at + 4);
      if (type === 3 && count === 1) ifd.writeUInt16LE(value, at + 8);
      else ifd.writeUInt32LE(value, at + 8);
    });
    ifd.writeUInt32LE(next, 2 + entries * 12);
    ifds.push(ifd);
  }
  const header = Buffer.alloc(8);
  header.write('II', 0, 'latin1');
  header.writeUInt16LE(42, 2);
  header.writeUInt32LE(firstIfd, 4);
  const arrays = Buffer.alloc(16);
  for (let s = 0; s < 4; s++) {
    arrays.writeUInt16LE(bits, s * 2);
    // 3: IEEE float, 1: unsigned integer
    arrays.writeUInt16LE(float ? 3 : 1, 8 + s * 2);
  }
  return Buffer.concat([header, ...ifds, arrays, strip]);
}
