import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import {
  DEFAULT_VARIANT_FORMATS,
  DEFAULT_VARIANT_OPTIONS,
  DEFAULT_VARIANT_PRESETS,
  type RenderedVariant,
  renderVariants,
  VARIANT_ENCODERS,
  type VariantOptions,
  type VariantPreset,
} from '../../../src/media/image/index.ts';
import {
  alphaPng,
  animatedGif,
  LIMITS,
  near,
  noiseJpeg,
  pixel,
  pngBomb,
  rejectsWith,
  sceneSvg,
} from './sample-images.ts';

const OPTIONS: VariantOptions = { ...DEFAULT_VARIANT_OPTIONS, limits: LIMITS };
// AVIF at effort 4 costs seconds per megapixel on two cores; the tests that are not about the
// defaults use a cheap effort.
const FAST: VariantOptions = {
  ...OPTIONS,
  encoders: { ...VARIANT_ENCODERS, avif: { quality: 50, effort: 0 } },
};

const DECODER_NAME = { jpeg: 'jpeg', png: 'png', webp: 'webp', avif: 'heif' } as const;

describe('renderVariants', () => {
  /** 800x600 stored, orientation 6 (displayed 600x800), Display P3, with EXIF. */
  let photo: Buffer;
  let variants: RenderedVariant[];

  before(async () => {
    photo = await sharp(sceneSvg(800, 600))
      .withIccProfile('p3')
      .withExif({ IFD0: { Make: 'Canon', Model: 'EOS R5', Artist: 'Jane Doe' } })
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer();
    const meta = await sharp(photo).metadata();
    assert.equal(meta.orientation, 6);
    assert.ok(meta.exif !== undefined && meta.hasProfile);
    variants = await renderVariants(photo, DEFAULT_VARIANT_PRESETS, DEFAULT_VARIANT_FORMATS, OPTIONS);
  });

  it('renders every default preset in every default format, in order', () => {
    assert.deepEqual(
      variants.map((v) => `${v.preset}.${v.format}`),
      DEFAULT_VARIANT_PRESETS.flatMap((p) => DEFAULT_VARIANT_FORMATS.map((f) => `${p.name}.${f}`)),
    );
  });

  it('auto-rotates, never upscales width-only presets, and crops the thumbnail square', async () => {
    const expected: Record<string, [number, number]> = {
      thumb: [150, 150],
      small: [480, 640],
      medium: [600, 800], // the source is only 600 wide as displayed
      large: [600, 800],
    };
    for (const v of variants) {
      const meta = await sharp(v.data).metadata();
      const label = `${v.preset}.${v.format}`;
      assert.deepEqual([meta.width, meta.height], expected[v.preset], label);
      assert.deepEqual([v.width, v.height], expected[v.preset], label);
      assert.equal(meta.format, DECODER_NAME[v.format], label);
      assert.equal(v.contentType, `image/${v.format}`, label);
      assert.equal(v.bytes, v.data.length, label);
    }
  });

  it('strips EXIF and orientation but keeps the ICC profile', async () => {
    const sourceIcc = (await sharp(photo).metadata()).icc!;
    for (const v of variants) {
      const meta = await sharp(v.data).metadata();
      const label = `${v.preset}.${v.format}`;
      assert.equal(meta.exif, undefined, label);
      assert.equal(meta.orientation, undefined, label);
      assert.ok(meta.icc?.equals(sourceIcc), `${label} keeps the P3 profile`);
    }
  });

  it('uses the configured encoder settings', async () => {
    const heavy = variants.find((v) => v.preset === 'small' && v.format === 'jpeg')!;
    const light = await renderVariants(photo, [DEFAULT_VARIANT_PRESETS[1]!], ['jpeg'], {
      ...FAST,
      encoders: { ...VARIANT_ENCODERS, jpeg: { quality: 20, mozjpeg: false } },
    });
    assert.ok(light[0]!.bytes < heavy.bytes * 0.75, `${light[0]!.bytes} vs ${heavy.bytes}`);
    assert.equal((await sharp(heavy.data).metadata()).isProgressive, true, 'mozjpeg writes progressive JPEG');
  });

  it('takes custom presets and format lists', async () => {
    const presets: VariantPreset[] = [
      { name: 'square', width: 64, height: 64, fit: 'contain', gravity: 'center' },
      { name: 'strip', width: 100, height: 20, fit: 'fill', gravity: 'center' },
      { name: 'tall', height: 90, fit: 'inside', gravity: 'center' },
    ];
    const out = await renderVariants(photo, presets, ['png'], FAST);
    assert.deepEqual(
      out.map((v) => [v.preset, v.format, v.width, v.height]),
      [
        ['square', 'png', 64, 64],
        ['strip', 'png', 100, 20],
        ['tall', 'png', 68, 90],
      ],
    );
  });

  it('cuts a cover thumbnail of a panorama without upscaling it', async () => {
    const panorama = await sharp(sceneSvg(2000, 100)).jpeg().toBuffer();
    const out = await renderVariants(panorama, DEFAULT_VARIANT_PRESETS.slice(0, 2), ['webp'], FAST);
    // The thumb box shrinks to the source's 100 px height and stays square.
    assert.deepEqual(
      out.map((v) => [v.preset, v.width, v.height]),
      [
        ['thumb', 100, 100],
        ['small', 480, 24],
      ],
    );
  });

  it('flattens alpha for JPEG and keeps it for WebP and AVIF', async () => {
    const out = await renderVariants(
      await alphaPng(),
      [{ name: 'same', width: 120, fit: 'inside', gravity: 'center' }],
      ['jpeg', 'webp', 'avif'],
      FAST,
    );
    const [jpeg, webp, avif] = out;
    assert.equal((await sharp(jpeg!.data).metadata()).hasAlpha, false);
    assert.ok(near(await pixel(jpeg!.data, 2, 2), [255, 255, 255]), 'transparent becomes white');
    assert.ok(near(await pixel(jpeg!.data, 60, 40), [255, 0, 0]));
    assert.equal((await pixel(webp!.data, 2, 2))[3], 0);
    assert.equal((await sharp(avif!.data).metadata()).hasAlpha, true);
  });

  it('makes still variants from the first frame of an animation', async () => {
    const out = await renderVariants(
      await animatedGif(3),
      DEFAULT_VARIANT_PRESETS.slice(0, 1),
      ['webp', 'jpeg'],
      FAST,
    );
    for (const v of out) {
      const meta = await sharp(v.data).metadata();
      assert.equal(meta.pages ?? 1, 1, v.format);
      assert.deepEqual([v.width, v.height], [40, 40]);
      assert.ok(near(await pixel(v.data, 20, 20), [255, 0, 0]), v.format);
    }
  });

  it('refuses the whole set when one output is over the byte limit', async () => {
    const noise = await noiseJpeg(600, 400);
    await rejectsWith(
      renderVariants(noise, DEFAULT_VARIANT_PRESETS, ['webp', 'jpeg'], { ...FAST, maxOutputBytes: 60_000 }),
      'image_output_too_large',
    );
  });

  it('refuses bombs, truncated and corrupt inputs with permanent errors', async () => {
    await rejectsWith(
      renderVariants(pngBomb(50_000, 50_000), DEFAULT_VARIANT_PRESETS, ['webp'], FAST),
      'image_too_large',
    );
    const jpeg = await noiseJpeg(400, 300);
    await rejectsWith(
      renderVariants(jpeg.subarray(0, jpeg.length >> 1), DEFAULT_VARIANT_PRESETS, ['webp'], FAST),
      'image_corrupt',
    );
    await rejectsWith(
      renderVariants(Buffer.from('nope'), DEFAULT_VARIANT_PRESETS, ['webp'], FAST),
      'image_unsupported',
    );
  });

  it('reports progress after each output and stops between outputs when aborted', async () => {
    const seen: string[] = [];
    const controller = new AbortController();
    const reason = new Error('job cancelled');
    await assert.rejects(
      renderVariants(photo, DEFAULT_VARIANT_PRESETS, ['webp', 'jpeg'], {
        ...FAST,
        signal: controller.signal,
        onProgress: (done, total) => {
          seen.push(`${done}/${total}`);
          if (done === 3) controller.abort(reason);
        },
      }),
      (error) => error === reason,
    );
    assert.deepEqual(seen, ['1/8', '2/8', '3/8']);
    await assert.rejects(
      renderVariants(photo, DEFAULT_VARIANT_PRESETS, ['webp'], {
        ...FAST,
        signal: AbortSignal.abort(reason),
      }),
      (error) => error === reason,
    );
  });

  it('refuses duplicate preset names and formats', async () => {
    const twice = [DEFAULT_VARIANT_PRESETS[0]!, DEFAULT_VARIANT_PRESETS[0]!];
    await assert.rejects(renderVariants(photo, twice, ['webp'], FAST), RangeError);
    await assert.rejects(renderVariants(photo, DEFAULT_VARIANT_PRESETS, ['webp', 'webp'], FAST), RangeError);
  });
});
