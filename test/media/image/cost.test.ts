import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import {
  analysisBytes,
  checkWorkingMemory,
  type DecodeFacts,
  decodeBytes,
  transformBytes,
  variantsBytes,
} from '../../../src/media/image/cost.ts';
import {
  analyseImage,
  configureRuntime,
  DEFAULT_RENDER_OPTIONS,
  DEFAULT_VARIANT_OPTIONS,
  MemoryBudget,
  probeImage,
  renderTransform,
  renderVariants,
} from '../../../src/media/image/index.ts';
import { LIMITS, rejectsWith, sceneSvg } from './sample-images.ts';

const MB = 1024 * 1024;
const side = 7000; // 49 MP

function facts(overrides: Partial<DecodeFacts>): DecodeFacts {
  return {
    format: 'jpeg',
    rawWidth: side,
    rawHeight: side,
    channels: 3,
    depth: 'uchar',
    progressive: false,
    orientation: 1,
    ...overrides,
  };
}

describe('working memory estimates', () => {
  it('tell decoders apart at the same pixel count: streaming, canvas, coefficients, whole frame, AVIF', () => {
    const baseline = decodeBytes(facts({}));
    const progressive420 = decodeBytes(facts({ progressive: true, chromaSubsampling: '4:2:0' }));
    const progressive444 = decodeBytes(facts({ progressive: true, chromaSubsampling: '4:4:4' }));
    const webp = decodeBytes(facts({ format: 'webp', channels: 4 }));
    const interlaced16 = decodeBytes(
      facts({ format: 'png', channels: 4, depth: 'ushort', progressive: true }),
    );
    const avif = decodeBytes(facts({ format: 'avif' }));
    const ordered = [baseline, progressive420, webp, progressive444, interlaced16, avif];
    assert.deepEqual(
      ordered,
      [...ordered].sort((a, b) => a - b),
    );
    // The measured figures they stand for (docs/benchmarks.md): 930 MB for the AVIF, 444 MB for the
    // interlaced PNG, 307 MB for the progressive 4:4:4 JPEG, all at 50 MP.
    assert.ok(avif > 900 * 1e6 && avif < 1200 * 1e6, `${avif}`);
    assert.ok(interlaced16 > 444 * 1e6, `${interlaced16}`);
    assert.ok(progressive444 > 307 * 1e6, `${progressive444}`);
  });

  it('counts a quarter turn (EXIF 5-8) as needing the whole image, and deeper samples as more bytes', () => {
    assert.ok(decodeBytes(facts({ orientation: 6 })) > 3 * decodeBytes(facts({ orientation: 1 })));
    assert.ok(
      decodeBytes(facts({ format: 'tiff', depth: 'float' })) === 4 * decodeBytes(facts({ format: 'tiff' })),
    );
    assert.ok(
      decodeBytes(facts({ format: 'avif', depth: 'ushort' })) > decodeBytes(facts({ format: 'avif' })),
    );
  });

  it('adds the encoder: AVIF outputs cost more than the others, and grow with the output', () => {
    const source = facts({});
    const small = { width: 512, height: 512 };
    const large = { width: 4096, height: 4096 };
    assert.ok(transformBytes(source, small, 'avif') > transformBytes(source, small, 'webp'));
    assert.ok(transformBytes(source, large, 'webp') > transformBytes(source, small, 'webp'));
    assert.ok(analysisBytes(source) < transformBytes(source, small, 'jpeg'));
    const intermediate = { width: 2048, height: 2048 };
    const withAvif = variantsBytes(source, intermediate, [{ size: intermediate, format: 'avif' }]);
    const withoutAvif = variantsBytes(source, intermediate, [{ size: intermediate, format: 'jpeg' }]);
    assert.ok(withAvif > withoutAvif);
  });

  it('refuses above the limit with image_too_large and the figures', () => {
    checkWorkingMemory(100 * MB, { ...LIMITS, maxWorkingBytes: 100 * MB });
    assert.throws(
      () => checkWorkingMemory(100 * MB + 1, { ...LIMITS, maxWorkingBytes: 100 * MB }),
      (error: Error & { code?: string; details?: object }) => {
        assert.equal(error.code, 'image_too_large');
        assert.deepEqual(error.details, { estimatedBytes: 100 * MB + 1, limit: 100 * MB });
        assert.match(error.message, /about 101 MiB of memory; at most 100 MiB/);
        return true;
      },
    );
  });
});

describe('the probe reports what the estimates need', () => {
  it('progressive JPEG and its chroma subsampling, interlaced PNG, channels', async () => {
    const scene = sceneSvg(64, 48);
    const progressive = await sharp(scene).jpeg({ progressive: true, chromaSubsampling: '4:4:4' }).toBuffer();
    const baseline = await sharp(scene).jpeg().toBuffer();
    const interlaced = await sharp(scene).png({ progressive: true }).toBuffer();
    const p = await probeImage(progressive, LIMITS);
    assert.deepEqual([p.progressive, p.chromaSubsampling, p.channels], [true, '4:4:4', 3]);
    const b = await probeImage(baseline, LIMITS);
    assert.deepEqual([b.progressive, b.chromaSubsampling], [false, '4:2:0']);
    const i = await probeImage(interlaced, LIMITS);
    assert.deepEqual([i.progressive, i.chromaSubsampling, i.channels], [true, undefined, 4]);
  });
});

describe('every step checks its estimate and waits for the budget', () => {
  const progressiveJpeg = () =>
    sharp(sceneSvg(1600, 1200)).jpeg({ progressive: true, chromaSubsampling: '4:4:4' }).toBuffer();
  const spec = { width: 64, height: 64, fit: 'inside', gravity: 'center', dpr: 1, format: 'webp' } as const;

  it('refuses an image whose step would need more than maxWorkingBytes, before decoding', async () => {
    const jpeg = await progressiveJpeg();
    // 1.9 MP of 4:4:4 coefficients (3 x 2.2 bytes per pixel) is about 12 MiB, plus the fixed 16 MiB.
    const limits = { ...LIMITS, maxWorkingBytes: 24 * MB };
    await rejectsWith(analyseImage(jpeg, limits), 'image_too_large');
    await rejectsWith(renderTransform(jpeg, spec, { ...DEFAULT_RENDER_OPTIONS, limits }), 'image_too_large');
    await rejectsWith(
      renderVariants(jpeg, [{ name: 'thumb', width: 64, fit: 'inside', gravity: 'center' }], ['webp'], {
        ...DEFAULT_VARIANT_OPTIONS,
        limits,
      }),
      'image_too_large',
    );
    const enough = { ...LIMITS, maxWorkingBytes: 64 * MB };
    assert.equal(
      (await renderTransform(jpeg, spec, { ...DEFAULT_RENDER_OPTIONS, limits: enough })).width,
      64,
    );
  });

  it('holds a render back while the budget is taken, and runs it once room is freed', {
    timeout: 120_000,
  }, async () => {
    const jpeg = await progressiveJpeg();
    const budget = new MemoryBudget(LIMITS.maxWorkingBytes);
    let release!: () => void;
    const occupied = budget.run(budget.capacity, () => new Promise<void>((resolve) => (release = resolve)));
    const analysis = analyseImage(jpeg, LIMITS, { budget });
    const render = renderTransform(jpeg, spec, { ...DEFAULT_RENDER_OPTIONS, limits: LIMITS, budget });
    const variants = renderVariants(
      jpeg,
      [{ name: 'thumb', width: 64, fit: 'inside', gravity: 'center' }],
      ['webp'],
      {
        ...DEFAULT_VARIANT_OPTIONS,
        limits: LIMITS,
        budget,
      },
    );
    // Each probes its header, then queues for its estimate.
    while (budget.load.waiting < 3) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(budget.load.running, 1);
    release();
    await occupied;
    const [a, r, v] = await Promise.all([analysis, render, variants]);
    assert.match(a.phash, /^[0-9a-f]{16}$/);
    assert.equal(r.width, 64);
    assert.equal(v.length, 1);
    assert.deepEqual(budget.load, { reserved: 0, running: 0, waiting: 0 });
  });
});

describe('configureRuntime', () => {
  it("sets libvips' threads and operation cache, and 0 threads restores sharp's choice", () => {
    const threads = sharp.concurrency();
    try {
      configureRuntime({ threads: 3, cache: { memoryBytes: 5 * MB, files: 2, items: 7 } });
      assert.equal(sharp.concurrency(), 3);
      const cache = sharp.cache();
      assert.deepEqual([cache.memory.max, cache.files.max, cache.items.max], [5, 2, 7]);
      configureRuntime({ threads: 0, cache: { memoryBytes: 0, files: 0, items: 0 } });
      assert.equal(sharp.concurrency(), threads);
      assert.equal(sharp.cache().items.max, 0);
    } finally {
      sharp.concurrency(threads);
      sharp.cache(true);
    }
  });
});
