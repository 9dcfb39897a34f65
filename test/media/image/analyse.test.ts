import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decode as blurhashDecode, isBlurhashValid } from 'blurhash';
import sharp from 'sharp';
import { thumbHashToApproximateAspectRatio, thumbHashToAverageRGBA, thumbHashToRGBA } from 'thumbhash';
import { flattenOnWhite } from '../../../src/media/image/analyse.ts';
import { analyseImage, hammingDistance } from '../../../src/media/image/index.ts';
import {
  alphaPng,
  halvesJpeg,
  LIMITS,
  near,
  noiseJpeg,
  pngBomb,
  rejectsWith,
  sceneJpeg,
} from './sample-images.ts';

function solid(colour: string, width = 64, height = 48): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: colour } })
    .png()
    .toBuffer();
}

describe('analyseImage', () => {
  it('produces a dominant colour, a ThumbHash, a BlurHash and a pHash in their formats', async () => {
    const result = await analyseImage(await sceneJpeg(640, 400), LIMITS);
    assert.match(result.dominantColour, /^#[0-9a-f]{6}$/);
    assert.match(result.phash, /^[0-9a-f]{16}$/);
    assert.match(result.thumbhash, /^[A-Za-z0-9+/]+=*$/);
    // BlurHash length is 4 + 2 * components: 28 for 4 x 3.
    assert.equal(result.blurhash.length, 28);
    assert.ok(isBlurhashValid(result.blurhash).result);
  });

  it('gets the colour of a solid image right in every placeholder', async () => {
    const result = await analyseImage(await solid('#dd2211'), LIMITS);
    // sharp reports the centre of a 16-level histogram bin, so allow one bin of slack.
    const dominant = [1, 3, 5].map((i) => Number.parseInt(result.dominantColour.slice(i, i + 2), 16));
    assert.ok(near(dominant, [0xdd, 0x22, 0x11], 16), result.dominantColour);

    const average = thumbHashToAverageRGBA(Buffer.from(result.thumbhash, 'base64'));
    assert.ok(
      near([average.r * 255, average.g * 255, average.b * 255, average.a * 255], [0xdd, 0x22, 0x11, 255], 12),
    );

    const pixels = blurhashDecode(result.blurhash, 4, 3);
    assert.ok(near([pixels[0]!, pixels[1]!, pixels[2]!], [0xdd, 0x22, 0x11], 6));
  });

  it('decodes the ThumbHash back to a preview with the image’s aspect ratio', async () => {
    const result = await analyseImage(await sceneJpeg(640, 320), LIMITS);
    const hash = Buffer.from(result.thumbhash, 'base64');
    assert.ok(hash.length >= 5 && hash.length <= 30, `${hash.length} bytes`);
    const preview = thumbHashToRGBA(hash);
    assert.ok(preview.w > preview.h, `${preview.w}x${preview.h}`);
    assert.equal(preview.rgba.length, preview.w * preview.h * 4);
    assert.ok(Math.abs(thumbHashToApproximateAspectRatio(hash) - 2) < 0.3);
  });

  it('auto-rotates first, so placeholders have the shape and layout viewers see', async () => {
    const result = await analyseImage(await halvesJpeg(6), LIMITS);
    const hash = Buffer.from(result.thumbhash, 'base64');
    assert.ok(thumbHashToApproximateAspectRatio(hash) < 0.75, 'displayed portrait');
    // Displayed: red on top, blue below. BlurHash's top-left pixel is red-ish, bottom-left blue-ish.
    const pixels = blurhashDecode(result.blurhash, 2, 4);
    const top = [pixels[0]!, pixels[1]!, pixels[2]!];
    const bottom = [pixels[24]!, pixels[25]!, pixels[26]!];
    assert.ok(top[0]! > top[2]! && bottom[2]! > bottom[0]!, `top ${top}, bottom ${bottom}`);
  });

  it('keeps transparency in the ThumbHash and flattens onto white for the rest', async () => {
    const result = await analyseImage(await alphaPng(), LIMITS);
    const average = thumbHashToAverageRGBA(Buffer.from(result.thumbhash, 'base64'));
    assert.ok(average.a < 0.5, `average alpha ${average.a}`);
    assert.equal(result.dominantColour, '#f8f8f8'); // the white bin: most of the image is background
    const pixels = blurhashDecode(result.blurhash, 1, 1);
    assert.ok(pixels[0]! > 200 && pixels[1]! > 150, `${pixels.slice(0, 3)}`);
  });

  it('gives a resized copy a pHash within a few bits, and a different picture a distant one', async () => {
    const original = await analyseImage(await sceneJpeg(800, 600), LIMITS);
    const resized = await analyseImage(
      await sharp(await sceneJpeg(800, 600))
        .resize(613)
        .jpeg({ quality: 70 })
        .toBuffer(),
      LIMITS,
    );
    const different = await analyseImage(await sceneJpeg(800, 600, 'b'), LIMITS);
    const noise = await analyseImage(await noiseJpeg(800, 600), LIMITS);
    const near = hammingDistance(original.phash, resized.phash);
    assert.ok(near <= 4, `resized copy: ${near} bits`);
    for (const other of [different, noise]) {
      const far = hammingDistance(original.phash, other.phash);
      assert.ok(far >= 20, `different picture: ${far} bits`);
    }
  });

  it('finds a truncated file while decoding, and refuses bombs before decoding', async () => {
    const jpeg = await noiseJpeg(400, 300);
    await rejectsWith(analyseImage(jpeg.subarray(0, jpeg.length >> 1), LIMITS), 'image_corrupt');
    await rejectsWith(analyseImage(pngBomb(50_000, 50_000), LIMITS), 'image_too_large');
  });
});

describe('flattenOnWhite', () => {
  it('composites straight alpha onto white', () => {
    const out = flattenOnWhite(
      Uint8Array.from([255, 0, 0, 255, 255, 0, 0, 0, 0, 0, 0, 128, 10, 20, 30, 255]),
    );
    assert.deepEqual([...out], [255, 0, 0, 255, 255, 255, 255, 255, 127, 127, 127, 255, 10, 20, 30, 255]);
  });
});
