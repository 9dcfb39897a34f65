/**
 * Test images, made on the fly with sharp (from SVG, noise and raw pixels) or, for the decompression
 * bomb, byte by byte, so that no binary fixture is committed.
 */
import assert from 'node:assert/strict';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import {
  DEFAULT_IMAGE_LIMITS,
  ImageError,
  type ImageErrorCode,
  type ImageLimits,
} from '../../../src/media/image/index.ts';

export const LIMITS: ImageLimits = { ...DEFAULT_IMAGE_LIMITS, timeoutSeconds: 0 };

/** A diagonal two-colour gradient with a few shapes: smooth, with structure, and asymmetric. */
export function sceneSvg(width: number, height: number, variant: 'a' | 'b' = 'a'): Buffer {
  const shapes =
    variant === 'a'
      ? `<circle cx="${width * 0.35}" cy="${height * 0.4}" r="${Math.min(width, height) * 0.25}" fill="#36c"/>
         <rect x="${width * 0.6}" y="${height * 0.55}" width="${width * 0.3}" height="${height * 0.35}" fill="#fd3"/>`
      : `<rect x="${width * 0.05}" y="${height * 0.6}" width="${width * 0.9}" height="${height * 0.1}" fill="#111"/>
         <circle cx="${width * 0.8}" cy="${height * 0.2}" r="${Math.min(width, height) * 0.15}" fill="#c3c"/>
         <rect x="${width * 0.1}" y="${height * 0.1}" width="${width * 0.2}" height="${height * 0.4}" fill="#0cc"/>`;
  const stops = variant === 'a' ? ['#2a6', '#e84'] : ['#fff', '#237'];
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
       <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
         <stop offset="0" stop-color="${stops[0]}"/><stop offset="1" stop-color="${stops[1]}"/>
       </linearGradient></defs>
       <rect width="${width}" height="${height}" fill="url(#g)"/>${shapes}
     </svg>`,
  );
}

export function sceneJpeg(width: number, height: number, variant: 'a' | 'b' = 'a'): Promise<Buffer> {
  return sharp(sceneSvg(width, height, variant))
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** Gaussian noise: incompressible, for the output byte limit and for "truncated" data. */
export function noiseJpeg(width: number, height: number): Promise<Buffer> {
  const noise = { type: 'gaussian' as const, mean: 128, sigma: 60 };
  // The typings want a background even with noise, which replaces it.
  return sharp({ create: { width, height, channels: 3, background: '#000', noise } })
    .jpeg({ quality: 95 })
    .toBuffer();
}

/**
 * 200 x 100 as stored: left half red, right half blue. With orientation 6 ("rotate 90° clockwise to
 * display") a viewer sees it 100 x 200, red on top and blue below.
 */
export function halvesJpeg(orientation?: number): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">
    <rect width="100" height="100" fill="#f00"/><rect x="100" width="100" height="100" fill="#00f"/></svg>`;
  const pipeline = sharp(Buffer.from(svg)).jpeg({ quality: 95 });
  return (orientation === undefined ? pipeline : pipeline.withMetadata({ orientation })).toBuffer();
}

/** 120 x 80, transparent except for an opaque red disc in the middle. */
export function alphaPng(): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">
    <circle cx="60" cy="40" r="20" fill="#f00"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** A JPEG tagged with the Display P3 profile. */
export function p3Jpeg(width: number, height: number): Promise<Buffer> {
  return sharp(sceneSvg(width, height)).withIccProfile('p3').jpeg().toBuffer();
}

/** A JPEG whose EXIF has the fields we keep and several we must never let out. */
export function cameraJpeg(): Promise<Buffer> {
  return sharp(sceneSvg(64, 48))
    .jpeg()
    .withExif({
      IFD0: { Make: 'Canon', Model: 'Canon EOS R5', Artist: 'Jane Doe', Copyright: 'Jane Doe' },
      IFD2: {
        ExposureTime: '1/250',
        FNumber: '28/10',
        ISOSpeedRatings: '400',
        DateTimeOriginal: '2024:05:01 12:34:56',
        OffsetTimeOriginal: '+02:00',
        FocalLength: '50/1',
        LensMake: 'Canon',
        LensModel: 'RF24-70mm F2.8 L IS USM',
        BodySerialNumber: '0123456789',
        CameraOwnerName: 'Jane Doe',
      },
      IFD3: {
        GPSLatitudeRef: 'N',
        GPSLatitude: '48/1 51/1 24/1',
        GPSLongitudeRef: 'E',
        GPSLongitude: '2/1 21/1 3/1',
      },
    })
    .toBuffer();
}

/** An animated GIF of `frames` frames, 50 x 40, alternating red and blue. */
export async function animatedGif(frames: number): Promise<Buffer> {
  const red = await sharp({ create: { width: 50, height: 40, channels: 3, background: '#f00' } })
    .png()
    .toBuffer();
  const blue = await sharp({ create: { width: 50, height: 40, channels: 3, background: '#00f' } })
    .png()
    .toBuffer();
  const list = Array.from({ length: frames }, (_, i) => (i % 2 === 0 ? red : blue));
  return sharp(list, { join: { animated: true } })
    .gif()
    .toBuffer();
}

/**
 * A decompression bomb: a valid PNG whose IHDR declares `width` x `height` RGB pixels, followed by a
 * tiny IDAT. Decoding it would need width * height * 3 bytes; reading its header needs none.
 * PNG (RFC 2083 / ISO 15948): signature, then chunks of length, type, data, CRC-32 over type + data.
 */
export function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  // compression, filter, interlace: 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(64))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

/** The RGBA value of one pixel of an encoded image, after decoding it. */
export async function pixel(image: Buffer, x: number, y: number): Promise<[number, number, number, number]> {
  const { data, info } = await sharp(image).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const at = (y * info.width + x) * 4;
  return [data[at]!, data[at + 1]!, data[at + 2]!, data[at + 3]!];
}

/** Whether two colours are within `tolerance` on every channel (lossy codecs shift colours a little). */
export function near(actual: readonly number[], expected: readonly number[], tolerance = 24): boolean {
  return expected.every((e, i) => Math.abs(actual[i]! - e) <= tolerance);
}

/** Asserts that `promise` rejects with a permanent ImageError of `code`, and returns the error. */
export async function rejectsWith(promise: Promise<unknown>, code: ImageErrorCode): Promise<ImageError> {
  let caught: unknown;
  await promise.then(
    (value) => assert.fail(`expected ${code}, got a result: ${JSON.stringify(value)?.slice(0, 200)}`),
    (error: unknown) => {
      caught = error;
    },
  );
  assert.ok(caught instanceof ImageError, `expected an ImageError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.permanent, true);
  return caught;
}
