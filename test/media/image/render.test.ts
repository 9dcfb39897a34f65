import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import type { ResolvedSpec } from '../../../src/grammar/transform-spec.ts';
import {
  DEFAULT_RENDER_OPTIONS,
  type RenderOptions,
  renderTransform,
} from '../../../src/media/image/index.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';
import {
  alphaPng,
  animatedGif,
  cameraJpeg,
  halvesJpeg,
  LIMITS,
  near,
  noiseJpeg,
  p3Jpeg,
  pixel,
  pngBomb,
  rejectsWith,
  sceneJpeg,
} from './sample-images.ts';

const OPTIONS: RenderOptions = { ...DEFAULT_RENDER_OPTIONS, limits: LIMITS };
const BASE: ResolvedSpec = { fit: 'cover', gravity: 'center', format: 'jpeg', dpr: 1 };
const RED = [255, 0, 0];
const BLUE = [0, 0, 255];
const WHITE = [255, 255, 255];

function spec(overrides: Partial<ResolvedSpec>): ResolvedSpec {
  return { ...BASE, ...overrides };
}

describe('renderTransform', () => {
  let scene: Buffer;
  let tmp: TempDir;
  before(async () => {
    scene = await sceneJpeg(800, 600);
    tmp = await makeTempDir('conveyor-render-');
  });
  after(() => tmp.cleanup());

  it('gives each fit mode its dimensions, as decoded from the output', async () => {
    const expected = {
      cover: [300, 300],
      contain: [300, 300],
      fill: [300, 300],
      inside: [300, 225],
      outside: [400, 300],
    } as const;
    for (const [fit, [width, height]] of Object.entries(expected)) {
      const out = await renderTransform(
        scene,
        spec({ width: 300, height: 300, fit: fit as ResolvedSpec['fit'] }),
        OPTIONS,
      );
      const meta = await sharp(out.data).metadata();
      assert.deepEqual([meta.width, meta.height], [width, height], fit);
      assert.deepEqual([out.width, out.height, out.bytes], [width, height, out.data.length], fit);
    }
  });

  it('encodes every output format, with its content type', async () => {
    const decoded = { jpeg: 'jpeg', png: 'png', webp: 'webp', avif: 'heif' } as const;
    for (const format of ['jpeg', 'png', 'webp', 'avif'] as const) {
      const out = await renderTransform(scene, spec({ width: 64, format }), OPTIONS);
      const meta = await sharp(out.data).metadata();
      assert.equal(meta.format, decoded[format]);
      assert.equal(out.format, format);
      assert.equal(out.contentType, `image/${format}`);
      assert.deepEqual([meta.width, meta.height], [64, 48]);
    }
  });

  it('multiplies by dpr, and clamps to the maximum output dimension', async () => {
    const out = await renderTransform(scene, spec({ width: 150, height: 100, dpr: 2.5 }), OPTIONS);
    assert.deepEqual([out.width, out.height], [375, 250]);
    const capped = await renderTransform(scene, spec({ width: 300, height: 150, dpr: 2 }), {
      ...OPTIONS,
      maxOutputDimension: 200,
    });
    assert.deepEqual([capped.width, capped.height], [200, 100]);
  });

  it('does not enlarge unless allowed', async () => {
    const inside = await renderTransform(scene, spec({ width: 1600, fit: 'inside' }), OPTIONS);
    assert.deepEqual([inside.width, inside.height], [800, 600]);
    const cover = await renderTransform(scene, spec({ width: 1200, height: 1200 }), OPTIONS);
    assert.deepEqual([cover.width, cover.height], [600, 600]);
    const enlarged = await renderTransform(scene, spec({ width: 1000, fit: 'inside' }), {
      ...OPTIONS,
      enlarge: true,
    });
    assert.deepEqual([enlarged.width, enlarged.height], [1000, 750]);
  });

  it('applies EXIF orientation 6: rotated dimensions and pixels, no orientation left in the output', async () => {
    // Stored 200x100 red|blue; displayed 100x200 red over blue.
    const out = await renderTransform(
      await halvesJpeg(6),
      spec({ width: 50, fit: 'inside', format: 'png' }),
      OPTIONS,
    );
    const meta = await sharp(out.data).metadata();
    assert.deepEqual([meta.width, meta.height], [50, 100]);
    assert.equal(meta.orientation, undefined);
    assert.ok(near(await pixel(out.data, 25, 10), RED), 'top is red');
    assert.ok(near(await pixel(out.data, 25, 90), BLUE), 'bottom is blue');
  });

  it('crops by compass gravity and by focal point, in displayed coordinates', async () => {
    const tall = await halvesJpeg(6); // displayed 100x200: red over blue
    const square = { width: 40, height: 40, format: 'png' as const };
    const north = await renderTransform(tall, spec({ ...square, gravity: 'north' }), OPTIONS);
    const south = await renderTransform(tall, spec({ ...square, gravity: 'south' }), OPTIONS);
    const focalLow = await renderTransform(tall, spec({ ...square, gravity: { x: 0.5, y: 0.8 } }), OPTIONS);
    const focalHigh = await renderTransform(tall, spec({ ...square, gravity: { x: 0.2, y: 0.05 } }), OPTIONS);
    for (const [out, colour, label] of [
      [north, RED, 'north'],
      [south, BLUE, 'south'],
      [focalLow, BLUE, 'focal 0.8'],
      [focalHigh, RED, 'focal 0.05'],
    ] as const) {
      assert.deepEqual([out.width, out.height], [40, 40], label);
      assert.ok(near(await pixel(out.data, 1, 1), colour), `${label} top left`);
      assert.ok(near(await pixel(out.data, 38, 38), colour), `${label} bottom right`);
    }
  });

  it('supports the content-aware strategies for cover', async () => {
    for (const gravity of ['attention', 'entropy'] as const) {
      const out = await renderTransform(scene, spec({ width: 100, height: 200, gravity }), OPTIONS);
      assert.deepEqual([out.width, out.height], [100, 200], gravity);
    }
    // Meaningless for contain, which centres instead of failing.
    const contain = await renderTransform(
      scene,
      spec({ width: 100, height: 200, fit: 'contain', gravity: 'attention' }),
      OPTIONS,
    );
    assert.deepEqual([contain.width, contain.height], [100, 200]);
  });

  it('flattens transparency onto white for JPEG and keeps it for WebP', async () => {
    const png = await alphaPng(); // 120x80, transparent with a red disc in the middle
    const jpeg = await renderTransform(png, spec({ width: 120, fit: 'inside', format: 'jpeg' }), OPTIONS);
    const meta = await sharp(jpeg.data).metadata();
    assert.equal(meta.hasAlpha, false);
    assert.equal(meta.channels, 3);
    assert.ok(near(await pixel(jpeg.data, 2, 2), WHITE), 'corner is white, not black');
    assert.ok(near(await pixel(jpeg.data, 60, 40), RED), 'disc stays red');

    const webp = await renderTransform(png, spec({ width: 120, fit: 'inside', format: 'webp' }), OPTIONS);
    assert.equal((await sharp(webp.data).metadata()).hasAlpha, true);
    assert.equal((await pixel(webp.data, 2, 2))[3], 0);
  });

  it('pads contain with white for JPEG and with transparency otherwise', async () => {
    const wide = { width: 100, height: 100, fit: 'contain' as const };
    const jpeg = await renderTransform(scene, spec({ ...wide, format: 'jpeg' }), OPTIONS);
    assert.ok(near(await pixel(jpeg.data, 50, 2), WHITE), 'top band is white');
    const png = await renderTransform(scene, spec({ ...wide, format: 'png' }), OPTIONS);
    assert.equal((await pixel(png.data, 50, 2))[3], 0, 'top band is transparent');
    assert.equal((await pixel(png.data, 50, 50))[3], 255, 'the picture is opaque');
  });

  it('strips EXIF but keeps the ICC profile', async () => {
    const fromCamera = await renderTransform(await cameraJpeg(), spec({ width: 32, fit: 'inside' }), OPTIONS);
    const meta = await sharp(fromCamera.data).metadata();
    assert.equal(meta.exif, undefined);
    assert.equal(meta.xmp, undefined);

    const source = await p3Jpeg(200, 150);
    const sourceIcc = (await sharp(source).metadata()).icc!;
    for (const format of ['jpeg', 'webp', 'png'] as const) {
      const out = await renderTransform(source, spec({ width: 50, fit: 'inside', format }), OPTIONS);
      const icc = (await sharp(out.data).metadata()).icc;
      assert.ok(icc !== undefined, `${format} has a profile`);
      assert.ok(icc.equals(sourceIcc), `${format} carries the source's profile`);
    }
  });

  it('applies quality, blur and sharpen', async () => {
    const noise = await noiseJpeg(200, 200);
    const high = await renderTransform(noise, spec({ width: 200, quality: 95 }), OPTIONS);
    const low = await renderTransform(noise, spec({ width: 200, quality: 30 }), OPTIONS);
    assert.ok(low.bytes < high.bytes / 2, `q30 ${low.bytes} vs q95 ${high.bytes}`);
    const blurred = await renderTransform(noise, spec({ width: 200, quality: 95, blur: 5 }), OPTIONS);
    assert.ok(blurred.bytes < high.bytes / 4, `blurred ${blurred.bytes} vs ${high.bytes}`);
    const sharpened = await renderTransform(scene, spec({ width: 200, sharpen: 2 }), OPTIONS);
    const plain = await renderTransform(scene, spec({ width: 200 }), OPTIONS);
    assert.notDeepEqual(sharpened.data, plain.data);
    assert.deepEqual([sharpened.width, sharpened.height], [200, 150]);
  });

  it('reads from a path as well as from a buffer', async () => {
    const path = join(tmp.path, 'scene.jpg');
    await writeFile(path, scene);
    const out = await renderTransform(path, spec({ width: 80, height: 60 }), OPTIONS);
    assert.deepEqual([out.width, out.height], [80, 60]);
  });

  it('renders the first frame of an animation as a still', async () => {
    const out = await renderTransform(
      await animatedGif(3),
      spec({ width: 50, fit: 'inside', format: 'webp' }),
      OPTIONS,
    );
    const meta = await sharp(out.data).metadata();
    assert.equal(meta.pages ?? 1, 1);
    assert.deepEqual([meta.width, meta.height], [50, 40]);
    assert.ok(near(await pixel(out.data, 25, 20), RED));
  });

  it('refuses an output over the byte limit', async () => {
    const noise = await noiseJpeg(300, 300);
    const error = await rejectsWith(
      renderTransform(noise, spec({ width: 300, format: 'png' }), { ...OPTIONS, maxOutputBytes: 10_000 }),
      'image_output_too_large',
    );
    assert.equal(error.details.limit, 10_000);
  });

  it('refuses bombs, truncated and corrupt files with permanent errors', async () => {
    await rejectsWith(
      renderTransform(pngBomb(50_000, 50_000), spec({ width: 10 }), OPTIONS),
      'image_too_large',
    );
    const jpeg = await noiseJpeg(400, 300);
    await rejectsWith(
      renderTransform(jpeg.subarray(0, jpeg.length >> 1), spec({ width: 100 }), OPTIONS),
      'image_corrupt',
    );
    // A PNG whose header is fine but whose IHDR checksum is wrong: found only while decoding.
    const png = Buffer.from(
      await sharp(await sceneJpeg(64, 64))
        .png()
        .toBuffer(),
    );
    png[29] = png[29]! ^ 0xff;
    await rejectsWith(renderTransform(png, spec({ width: 32 }), OPTIONS), 'image_corrupt');
    await rejectsWith(
      renderTransform(Buffer.from('not an image at all'), spec({ width: 10 }), OPTIONS),
      'image_unsupported',
    );
  });

  it('abandons a pipeline that runs past the time limit', async () => {
    // A flat PNG decodes in no time; a Gaussian blur of sigma 100 over 16 MP takes seconds.
    const big = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: '#888' } })
      .png({ compressionLevel: 1 })
      .toBuffer();
    // image_timeout is libvips giving up on the pipeline part-way; a pipeline that ran to the end answers
    // an image. (How soon after the limit it gives up depends on the machine, so it is not measured.)
    await rejectsWith(
      renderTransform(big, spec({ blur: 100 }), { ...OPTIONS, limits: { ...LIMITS, timeoutSeconds: 1 } }),
      'image_timeout',
    );
  });

  it('refuses a maximum dimension beyond what WebP can encode', async () => {
    await assert.rejects(
      renderTransform(scene, spec({ width: 10 }), { ...OPTIONS, maxOutputDimension: 20_000 }),
      RangeError,
    );
  });
});
