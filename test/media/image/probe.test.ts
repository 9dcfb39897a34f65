import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ImageError, probeImage } from '../../../src/media/image/index.ts';
import { openInput } from '../../../src/media/image/libvips.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';
import {
  alphaPng,
  animatedGif,
  cameraJpeg,
  halvesJpeg,
  LIMITS,
  noiseJpeg,
  p3Jpeg,
  pngBomb,
  rejectsWith,
  sceneJpeg,
  sceneSvg,
} from './sample-images.ts';

describe('probeImage', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('conveyor-probe-');
  });
  after(() => tmp.cleanup());

  it('describes a plain JPEG from a buffer and from a path alike', async () => {
    const jpeg = await sceneJpeg(320, 200);
    const path = join(tmp.path, 'scene.jpg');
    await writeFile(path, jpeg);
    for (const input of [jpeg, path]) {
      assert.deepEqual(await probeImage(input, LIMITS), {
        format: 'jpeg',
        mediaType: 'image/jpeg',
        width: 320,
        height: 200,
        rawWidth: 320,
        rawHeight: 200,
        orientation: 1,
        hasAlpha: false,
        channels: 3,
        progressive: false,
        chromaSubsampling: '4:2:0',
        pages: 1,
        colourSpace: 'srgb',
        depth: 'uchar',
        hasIccProfile: false,
        exif: {},
      });
    }
  });

  it('reports oriented and stored dimensions for EXIF orientation 6', async () => {
    const probe = await probeImage(await halvesJpeg(6), LIMITS);
    assert.equal(probe.orientation, 6);
    assert.deepEqual([probe.rawWidth, probe.rawHeight], [200, 100]);
    assert.deepEqual([probe.width, probe.height], [100, 200]);
  });

  it('keeps the stored dimensions for orientations without a quarter turn', async () => {
    for (const orientation of [1, 2, 3, 4]) {
      const probe = await probeImage(await halvesJpeg(orientation), LIMITS);
      assert.deepEqual([probe.width, probe.height], [200, 100], `orientation ${orientation}`);
    }
    for (const orientation of [5, 7, 8]) {
      const probe = await probeImage(await halvesJpeg(orientation), LIMITS);
      assert.deepEqual([probe.width, probe.height], [100, 200], `orientation ${orientation}`);
    }
  });

  it('reports alpha, ICC profiles and 16-bit depth', async () => {
    const png = await probeImage(await alphaPng(), LIMITS);
    assert.equal(png.format, 'png');
    assert.equal(png.mediaType, 'image/png');
    assert.equal(png.hasAlpha, true);
    assert.equal((await probeImage(await p3Jpeg(64, 48), LIMITS)).hasIccProfile, true);
    const deep = await sharp(sceneSvg(32, 32)).toColourspace('rgb16').png().toBuffer();
    assert.equal((await probeImage(deep, LIMITS)).depth, 'ushort');
  });

  it('recognises AVIF, WebP and GIF, and counts animation frames', async () => {
    const still = sharp(sceneSvg(40, 30));
    assert.equal(
      (await probeImage(await still.clone().avif({ effort: 0 }).toBuffer(), LIMITS)).format,
      'avif',
    );
    assert.equal((await probeImage(await still.clone().webp().toBuffer(), LIMITS)).format, 'webp');
    const gif = await probeImage(await animatedGif(3), LIMITS);
    assert.deepEqual([gif.format, gif.width, gif.height, gif.pages], ['gif', 50, 40, 3]);
  });

  it('keeps only the safe EXIF subset: no GPS, serial numbers or names', async () => {
    const jpeg = await cameraJpeg();
    // The source does carry what we drop, so the test would notice if the reader started passing it on.
    const raw = (await sharp(jpeg).metadata()).exif!.toString('latin1');
    for (const secret of ['0123456789', 'Jane Doe']) assert.ok(raw.includes(secret), secret);

    const { exif } = await probeImage(jpeg, LIMITS);
    assert.deepEqual(exif, {
      make: 'Canon',
      model: 'Canon EOS R5',
      lensMake: 'Canon',
      lensModel: 'RF24-70mm F2.8 L IS USM',
      capturedAt: '2024-05-01T12:34:56+02:00',
      exposureTime: 1 / 250,
      fNumber: 2.8,
      iso: 400,
      focalLength: 50,
    });
    const text = JSON.stringify(exif);
    for (const secret of ['0123456789', 'Jane', 'GPS', '48']) assert.ok(!text.includes(secret), secret);
  });

  it('refuses a decompression bomb from its header, without allocating', async () => {
    // The header declares 2.5 gigapixels and carries 64 bytes of pixels: only the header can have been read.
    const bomb = pngBomb(50_000, 50_000);
    assert.ok(bomb.length < 200, `the bomb is ${bomb.length} bytes`);
    const rssBefore = process.memoryUsage().rss;
    const error = await rejectsWith(probeImage(bomb, LIMITS), 'image_too_large');
    const grew = process.memoryUsage().rss - rssBefore;
    // Decoding would need 7.5 GB; allow a few MB of noise from the allocator and the test runner.
    assert.ok(grew < 32 * 1024 * 1024, `RSS grew by ${(grew / 1e6).toFixed(1)} MB`);
    assert.deepEqual(error.details, {
      width: 50_000,
      height: 50_000,
      pixels: 2_500_000_000,
      limit: LIMITS.maxInputPixels,
    });
  });

  it('applies the pixel limit to one frame, inclusively', async () => {
    const png = await sharp(sceneSvg(100, 50)).png().toBuffer();
    assert.equal((await probeImage(png, { ...LIMITS, maxInputPixels: 5000 })).width, 100);
    await rejectsWith(probeImage(png, { ...LIMITS, maxInputPixels: 4999 }), 'image_too_large');
  });

  it('has libvips enforce the same pixel cap in every decoding pipeline', async () => {
    // Even were the probe skipped, the pipeline itself refuses before decoding.
    await assert.rejects(openInput(pngBomb(50_000, 50_000), LIMITS).resize(10).toBuffer(), /pixel limit/);
  });

  it('refuses more frames than allowed', async () => {
    const gif = await animatedGif(4);
    assert.equal((await probeImage(gif, { ...LIMITS, maxFrames: 4 })).pages, 4);
    const error = await rejectsWith(probeImage(gif, { ...LIMITS, maxFrames: 3 }), 'image_too_many_frames');
    assert.deepEqual(error.details, { pages: 4, limit: 3 });
  });

  it('refuses formats outside the allow-list, and data that is no image at all', async () => {
    const svg = sceneSvg(20, 20);
    await rejectsWith(probeImage(svg, LIMITS), 'image_unsupported');
    assert.equal((await probeImage(svg, { ...LIMITS, inputFormats: ['svg'] })).format, 'svg');
    const jpeg = await sceneJpeg(20, 20);
    await rejectsWith(probeImage(jpeg, { ...LIMITS, inputFormats: ['png'] }), 'image_unsupported');
    await rejectsWith(probeImage(Buffer.from('%PDF-1.7 hello, not an image'), LIMITS), 'image_unsupported');
    await rejectsWith(probeImage(Buffer.from('GIF89a'), LIMITS), 'image_corrupt');
  });

  it('refuses data that starts like no binary image format before libvips reads it, unless SVG is accepted', async () => {
    // A cut-off SVG: librsvg, were it to parse it, would fail on it (image_corrupt).
    const broken = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect');
    await rejectsWith(probeImage(broken, LIMITS), 'image_unsupported');
    await rejectsWith(probeImage(broken, { ...LIMITS, inputFormats: ['svg'] }), 'image_corrupt');
    const path = join(tmp.path, 'broken.svg');
    await writeFile(path, broken);
    await rejectsWith(probeImage(path, LIMITS), 'image_unsupported');
    await rejectsWith(
      probeImage(Buffer.from('P6\n2 2\n255\n\0\0\0\0\0\0\0\0\0\0\0\0'), LIMITS),
      'image_unsupported',
    );
  });

  it('refuses empty, damaged and cut-off headers as corrupt', async () => {
    const jpeg = await noiseJpeg(64, 64);
    const png = await sharp(sceneSvg(64, 64)).png().toBuffer();
    await rejectsWith(probeImage(Buffer.alloc(0), LIMITS), 'image_corrupt');
    await rejectsWith(probeImage(jpeg.subarray(0, 100), LIMITS), 'image_corrupt');
    await rejectsWith(probeImage(png.subarray(0, 20), LIMITS), 'image_corrupt');
    const badDepth = Buffer.from(png);
    badDepth[24] = 7; // IHDR bit depth: PNG allows 1, 2, 4, 8 and 16
    await rejectsWith(probeImage(badDepth, LIMITS), 'image_corrupt');
    const noWidth = Buffer.from(png);
    noWidth.writeUInt32BE(0, 16);
    await rejectsWith(probeImage(noWidth, LIMITS), 'image_corrupt');
  });

  it('leaves environment failures (a missing file) retryable', async () => {
    const missing = join(tmp.path, 'nope.jpg');
    await assert.rejects(probeImage(missing, LIMITS), (error: unknown) => {
      assert.ok(!(error instanceof ImageError));
      return true;
    });
  });
});
