/**
 * Probing: what an image is, from its header alone, and whether Conveyor will touch it.
 *
 * libvips reads only the header for metadata() (for PNG: the chunks up to the first IDAT), so the
 * answer costs microseconds and a few kilobytes however large the image claims to be. Every refusal
 * happens before anything is decoded, these here:
 *
 *   image_unsupported      not an image, or a format outside `limits.inputFormats`
 *   image_corrupt          a recognised format whose header is damaged or cut short, or an empty file
 *   image_too_large        width x height of one frame above `limits.maxInputPixels` (decompression
 *                          bombs: a 100-byte PNG can declare 50,000 x 50,000 pixels, 7.5 GB decoded)
 *   image_too_many_frames  more pages or animation frames than `limits.maxFrames`
 *
 * The pixel limit is per frame, and so is libvips' own (limitInputPixels counts the pages a pipeline
 * loads): every pipeline here loads the first page or frame only, so an animation costs no more to
 * process than its first frame, and the frame limit bounds only the header scan. Within the pixel
 * limit, memory still depends on the decoder: the probe reports what cost.ts needs to estimate it
 * (channels, sample depth, progressive or not, chroma subsampling), and each step (analysis,
 * transform, variant set), knowing its outputs, refuses with image_too_large what it could never fit
 * into `limits.maxWorkingBytes`.
 *
 * Before libvips looks at the data at all, it must start like one of the binary formats libvips
 * decodes (unless SVG is accepted): libvips would otherwise try its text loaders too, and librsvg parses
 * a whole SVG document to read its dimensions. A 28 MB SVG of a million elements takes 1.6 GB and 9 s
 * only to be refused as a format that is not accepted.
 *
 * What a header cannot show is damage further in: a JPEG cut off halfway has an intact header and
 * probes fine. Decoding finds it (analyseImage's small thumbnail is the cheap way) and reports
 * image_corrupt; the same failOn level applies there.
 */
import { open } from 'node:fs/promises';
import sharp, { type Metadata } from 'sharp';
import { own } from '../../own.ts';
import { ImageError } from './errors.ts';
import { parseSafeExif, type SafeExif } from './exif.ts';
import { type ImageInput, type ImageLimits, type InputFormat, run } from './libvips.ts';

export interface ProbeResult {
  format: InputFormat;
  /** The IANA media type of the input, e.g. image/jpeg. */
  mediaType: string;
  /** Dimensions as displayed, i.e. after the EXIF orientation is applied; what viewers and transforms see. */
  width: number;
  height: number;
  /** Dimensions as stored in the file (of one frame, for animations). */
  rawWidth: number;
  rawHeight: number;
  /** EXIF orientation 1-8; 1 when absent. 5-8 swap width and height. */
  orientation: number;
  hasAlpha: boolean;
  /** Bands as decoded: 3 for RGB, 4 for RGBA or CMYK, ... */
  channels: number;
  /** A progressive JPEG, or an interlaced PNG or GIF: decoders that need the whole frame at once. */
  progressive: boolean;
  /** JPEG only: `4:2:0`, `4:4:4`, `4:4:4:4` (CMYK), ... */
  chromaSubsampling?: string;
  /** Pages or animation frames; 1 for a still image. */
  pages: number;
  /** libvips' interpretation of the pixels: srgb, cmyk, b-w, rgb16, grey16, ... */
  colourSpace: string;
  /** Bits per channel sample format: uchar (8-bit), ushort (16-bit), float, ... */
  depth: string;
  hasIccProfile: boolean;
  /** The allow-listed EXIF fields (see exif.ts); `{}` when there is no EXIF or none of them. */
  exif: SafeExif;
}

const MEDIA_TYPES: Record<string, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  avif: 'image/avif',
  heic: 'image/heic',
  tiff: 'image/tiff',
  svg: 'image/svg+xml',
  jp2: 'image/jp2',
  jxl: 'image/jxl',
};

/** Reads the header of `input` and returns what it says, or throws an ImageError (see above). */
export async function probeImage(input: ImageInput, limits: ImageLimits): Promise<ProbeResult> {
  if (!limits.inputFormats.includes('svg')) {
    const head = await leadingBytes(input);
    // An empty file goes on to libvips, which calls it corrupt, as it does a cut-off header.
    if (head.length > 0 && !hasBinarySignature(head)) {
      throw new ImageError('image_unsupported', 'The data is not an image in a supported format');
    }
  }
  // No pixel cap on this call: metadata() decodes no pixels, and sharp's cap would refuse the image
  // before we could read the dimensions we put in the error. The check follows right below, and
  // every pipeline that does decode (openInput) carries the cap into libvips as well.
  const meta = await run(() => sharp(input, { limitInputPixels: false, failOn: limits.failOn }).metadata());

  const format = inputFormat(meta);
  if (!limits.inputFormats.includes(format)) {
    throw new ImageError('image_unsupported', `Images in ${format} format are not accepted`, {
      details: { format, accepted: limits.inputFormats },
    });
  }

  const rawWidth = meta.width;
  // For animations sharp reports the height of one frame unless asked for all pages; pageHeight is
  // there for the formats that can also report the whole strip.
  const rawHeight = meta.pageHeight ?? meta.height;
  if (!(rawWidth >= 1 && rawHeight >= 1)) {
    throw new ImageError('image_corrupt', `The image header declares ${rawWidth}x${rawHeight} pixels`);
  }
  const pixels = rawWidth * rawHeight;
  if (pixels > limits.maxInputPixels) {
    throw new ImageError(
      'image_too_large',
      `The image is ${rawWidth}x${rawHeight} (${pixels} pixels); at most ${limits.maxInputPixels} are allowed`,
      { details: { width: rawWidth, height: rawHeight, pixels, limit: limits.maxInputPixels } },
    );
  }
  const pages = meta.pages ?? 1;
  if (pages > limits.maxFrames) {
    throw new ImageError(
      'image_too_many_frames',
      `The image has ${pages} frames; at most ${limits.maxFrames} are allowed`,
      { details: { pages, limit: limits.maxFrames } },
    );
  }

  const orientation =
    meta.orientation !== undefined && meta.orientation >= 1 && meta.orientation <= 8 ? meta.orientation : 1;
  // Orientations 5-8 include a quarter turn (EXIF 2.32 §4.6.4, Orientation).
  const turned = orientation >= 5;
  return {
    format,
    mediaType: own(MEDIA_TYPES, format) ?? meta.mediaType ?? 'application/octet-stream',
    width: turned ? rawHeight : rawWidth,
    height: turned ? rawWidth : rawHeight,
    rawWidth,
    rawHeight,
    orientation,
    hasAlpha: meta.hasAlpha,
    channels: meta.channels,
    progressive: meta.isProgressive,
    ...(meta.chromaSubsampling ? { chromaSubsampling: meta.chromaSubsampling } : {}),
    pages,
    colourSpace: meta.space,
    depth: meta.depth,
    hasIccProfile: meta.hasProfile,
    exif: parseSafeExif(meta.exif),
  };
}

/** sharp's decoder name, with HEIF told apart by codec: AVIF is a web format, HEIC is not. */
function inputFormat(meta: Metadata): InputFormat {
  if (meta.format === 'heif') return meta.compression === 'av1' ? 'avif' : 'heic';
  return meta.format;
}

const SIGNATURE_BYTES = 12;

async function leadingBytes(input: ImageInput): Promise<Buffer> {
  if (Buffer.isBuffer(input)) return input.subarray(0, SIGNATURE_BYTES);
  const file = await open(input, 'r');
  try {
    const head = Buffer.alloc(SIGNATURE_BYTES);
    const { bytesRead } = await file.read(head, 0, SIGNATURE_BYTES, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

/** Whether `head` starts like a binary image format libvips decodes (their published signatures). */
function hasBinarySignature(head: Buffer): boolean {
  const at = (offset: number, bytes: string) =>
    head.subarray(offset, offset + bytes.length).equals(Buffer.from(bytes, 'latin1'));
  return (
    at(0, '\xff\xd8\xff') || // JPEG
    at(0, '\x89PNG\r\n\x1a\n') ||
    at(0, 'GIF8') ||
    (at(0, 'RIFF') && at(8, 'WEBP')) ||
    at(0, 'II*\0') || // TIFF, little- and big-endian, and BigTIFF
    at(0, 'MM\0*') ||
    at(0, 'II+\0') ||
    at(0, 'MM\0+') ||
    at(4, 'ftyp') || // ISO BMFF: AVIF, HEIC
    at(0, '\0\0\0\x0cjP  ') || // JPEG 2000: JP2 box, or a bare codestream
    at(0, '\xff\x4f\xff\x51') ||
    at(0, '\xff\x0a') || // JPEG XL: bare codestream, or the container
    at(0, '\0\0\0\x0cJXL ')
  );
}
