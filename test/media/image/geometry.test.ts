import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FITS } from '../../../src/grammar/transform-spec.ts';
import {
  focalCrop,
  intermediateScale,
  planResize,
  type ResizePlan,
  type Size,
  scaledSize,
} from '../../../src/media/image/geometry.ts';

const NO_ENLARGE = { maxDimension: 4096, enlarge: false };
const ENLARGE = { maxDimension: 4096, enlarge: true };
const UNCAPPED = { maxDimension: 16383, enlarge: false };
const SRC: Size = { width: 4000, height: 3000 };

describe('planResize', () => {
  it('gives each fit its dimensions for a box smaller than the source', () => {
    const box = { width: 400, height: 400 };
    assert.deepEqual(planResize(SRC, { ...box, fit: 'cover' }, NO_ENLARGE), {
      mode: 'cover',
      width: 400,
      height: 400,
    });
    assert.deepEqual(planResize(SRC, { ...box, fit: 'contain' }, NO_ENLARGE), {
      mode: 'contain',
      width: 400,
      height: 400,
    });
    assert.deepEqual(planResize(SRC, { ...box, fit: 'fill' }, NO_ENLARGE), {
      mode: 'fill',
      width: 400,
      height: 400,
    });
    assert.deepEqual(planResize(SRC, { ...box, fit: 'inside' }, NO_ENLARGE), {
      mode: 'scale',
      width: 400,
      height: 300,
    });
    assert.deepEqual(planResize(SRC, { ...box, fit: 'outside' }, NO_ENLARGE), {
      mode: 'scale',
      width: 533,
      height: 400,
    });
  });

  it('follows the other side when only one is given, whatever the fit', () => {
    for (const fit of FITS) {
      assert.deepEqual(planResize(SRC, { width: 1000, fit }, NO_ENLARGE), {
        mode: 'scale',
        width: 1000,
        height: 750,
      });
      assert.deepEqual(planResize(SRC, { height: 600, fit }, NO_ENLARGE), {
        mode: 'scale',
        width: 800,
        height: 600,
      });
    }
  });

  it('keeps the source size when no box is given', () => {
    assert.deepEqual(planResize({ width: 640, height: 480 }, { fit: 'cover' }, NO_ENLARGE), {
      mode: 'scale',
      width: 640,
      height: 480,
    });
  });

  it('multiplies the box by dpr and rounds', () => {
    assert.deepEqual(planResize(SRC, { width: 300, height: 200, fit: 'cover', dpr: 2 }, NO_ENLARGE), {
      mode: 'cover',
      width: 600,
      height: 400,
    });
    assert.deepEqual(planResize(SRC, { width: 333, fit: 'inside', dpr: 1.5 }, NO_ENLARGE), {
      mode: 'scale',
      width: 500, // 499.5 rounds up
      height: 375,
    });
  });

  it('never enlarges by default: boxless fits stop at the source size', () => {
    const small = { width: 300, height: 200 };
    for (const request of [
      { width: 1000, fit: 'inside' as const },
      { height: 1000, fit: 'cover' as const },
      { width: 1000, height: 1000, fit: 'inside' as const },
      { width: 1000, height: 1000, fit: 'outside' as const },
    ]) {
      assert.deepEqual(planResize(small, request, NO_ENLARGE), { mode: 'scale', width: 300, height: 200 });
    }
  });

  it('never enlarges by default: boxed fits shrink the box and keep its aspect ratio', () => {
    const small = { width: 300, height: 200 };
    // cover needs 2x; the box halves to 200x200 and is cut from the source at 1:1.
    assert.deepEqual(planResize(small, { width: 400, height: 400, fit: 'cover' }, NO_ENLARGE), {
      mode: 'cover',
      width: 200,
      height: 200,
    });
    // contain needs 4/3; the box shrinks to 300x300 and the source sits in it at 1:1.
    assert.deepEqual(planResize(small, { width: 400, height: 400, fit: 'contain' }, NO_ENLARGE), {
      mode: 'contain',
      width: 300,
      height: 300,
    });
    // fill would stretch vertically by 4; the box shrinks until neither axis grows.
    assert.deepEqual(planResize(small, { width: 100, height: 800, fit: 'fill' }, NO_ENLARGE), {
      mode: 'fill',
      width: 25,
      height: 200,
    });
  });

  it('enlarges when allowed', () => {
    const small = { width: 300, height: 200 };
    assert.deepEqual(planResize(small, { width: 400, height: 400, fit: 'cover' }, ENLARGE), {
      mode: 'cover',
      width: 400,
      height: 400,
    });
    assert.deepEqual(planResize(small, { width: 600, fit: 'inside' }, ENLARGE), {
      mode: 'scale',
      width: 600,
      height: 400,
    });
  });

  it('scales anything above maxDimension down uniformly', () => {
    const limits = { maxDimension: 1000, enlarge: false };
    assert.deepEqual(planResize(SRC, { width: 2000, height: 500, fit: 'cover' }, limits), {
      mode: 'cover',
      width: 1000,
      height: 250,
    });
    assert.deepEqual(planResize(SRC, { fit: 'cover' }, limits), { mode: 'scale', width: 1000, height: 750 });
    assert.deepEqual(planResize(SRC, { width: 800, height: 800, fit: 'cover', dpr: 4 }, limits), {
      mode: 'cover',
      width: 1000,
      height: 1000,
    });
  });

  it('never produces a side below 1 or above the limits, nor upscales without leave (sweep)', () => {
    const sizes = [1, 2, 3, 7, 10, 99, 100, 101, 640, 1999, 5000];
    const limits = { maxDimension: 2000, enlarge: false };
    for (const sw of sizes) {
      for (const sh of sizes) {
        for (const w of [undefined, ...sizes]) {
          for (const h of [undefined, 1, 150, 5000]) {
            for (const fit of FITS) {
              const plan = planResize({ width: sw, height: sh }, { width: w, height: h, fit }, limits);
              const label = `${sw}x${sh} -> ${w}x${h} ${fit}: ${JSON.stringify(plan)}`;
              assert.ok(Number.isInteger(plan.width) && Number.isInteger(plan.height), label);
              assert.ok(plan.width >= 1 && plan.height >= 1, label);
              assert.ok(plan.width <= 2000 && plan.height <= 2000, label);
              assertNoUpscale({ width: sw, height: sh }, plan, label);
            }
          }
        }
      }
    }
  });

  it('keeps the aspect ratio of scaled results to within rounding', () => {
    for (const [sw, sh] of [
      [4000, 3000],
      [3001, 1999],
      [17, 9000],
      [9000, 17],
    ] as const) {
      for (const w of [1, 37, 480, 1080, 2048]) {
        const plan = planResize({ width: sw, height: sh }, { width: w, fit: 'inside' }, UNCAPPED);
        const width = Math.min(w, sw);
        assert.equal(plan.width, width);
        assert.ok(
          Math.abs(plan.height - (width * sh) / sw) <= 0.5 || plan.height === 1,
          `${sw}x${sh} @ ${w}`,
        );
      }
    }
  });

  it('refuses nonsense', () => {
    assert.throws(() => planResize({ width: 0, height: 10 }, { fit: 'cover' }, NO_ENLARGE), RangeError);
    assert.throws(() => planResize({ width: 1.5, height: 10 }, { fit: 'cover' }, NO_ENLARGE), RangeError);
    assert.throws(() => planResize(SRC, { width: 0, fit: 'cover' }, NO_ENLARGE), RangeError);
    assert.throws(() => planResize(SRC, { width: -5, fit: 'cover' }, NO_ENLARGE), RangeError);
    assert.throws(() => planResize(SRC, { height: Number.NaN, fit: 'cover' }, NO_ENLARGE), RangeError);
    assert.throws(() => planResize(SRC, { width: 10, fit: 'cover', dpr: 0 }, NO_ENLARGE), RangeError);
    assert.throws(
      () => planResize(SRC, { width: 10, fit: 'cover' }, { maxDimension: 0, enlarge: false }),
      RangeError,
    );
  });
});

/** The source is never sampled at more than 1:1 on either axis. */
function assertNoUpscale(source: Size, plan: ResizePlan, label: string): void {
  const sx = plan.width / source.width;
  const sy = plan.height / source.height;
  const scale =
    plan.mode === 'contain' ? Math.min(sx, sy) : plan.mode === 'cover' ? Math.max(sx, sy) : Math.max(sx, sy);
  assert.ok(scale <= 1 + 1e-9, `${label} scales by ${scale}`);
}

describe('focalCrop', () => {
  it('centres the window on the focal point when the edges allow', () => {
    // 1000x500 source, square output: the window is 500x500 and slides horizontally.
    assert.deepEqual(focalCrop(1000, 500, 100, 100, 0.5, 0.5), {
      left: 250,
      top: 0,
      width: 500,
      height: 500,
    });
    assert.deepEqual(focalCrop(1000, 500, 100, 100, 0.4, 0.9), {
      left: 150,
      top: 0,
      width: 500,
      height: 500,
    });
    // Portrait source, landscape output: the window is full width and slides vertically.
    assert.deepEqual(focalCrop(600, 1200, 300, 100, 0.5, 0.3), {
      left: 0,
      top: 260,
      width: 600,
      height: 200,
    });
  });

  it('stops at the edges', () => {
    assert.deepEqual(focalCrop(1000, 500, 100, 100, 0, 0), { left: 0, top: 0, width: 500, height: 500 });
    assert.deepEqual(focalCrop(1000, 500, 100, 100, 0.1, 0.5), { left: 0, top: 0, width: 500, height: 500 });
    assert.deepEqual(focalCrop(1000, 500, 100, 100, 1, 1), { left: 500, top: 0, width: 500, height: 500 });
    assert.deepEqual(focalCrop(1000, 500, 100, 100, 0.9, 0), { left: 500, top: 0, width: 500, height: 500 });
  });

  it('uses the whole image when the aspect ratios match', () => {
    assert.deepEqual(focalCrop(800, 600, 400, 300, 0.1, 0.9), { left: 0, top: 0, width: 800, height: 600 });
    assert.deepEqual(focalCrop(800, 600, 1600, 1200, 1, 0), { left: 0, top: 0, width: 800, height: 600 });
  });

  it('keeps at least one pixel for extreme aspect ratios', () => {
    assert.deepEqual(focalCrop(10, 10_000, 1000, 1, 0.5, 0.5), { left: 0, top: 5000, width: 10, height: 1 });
    assert.deepEqual(focalCrop(1, 1, 300, 20, 0.5, 0.5), { left: 0, top: 0, width: 1, height: 1 });
  });

  it('is a window of the output aspect ratio, inside the image, containing the focal point, as central as possible (sweep)', () => {
    const fractions = [0, 0.01, 0.1, 0.25, 1 / 3, 0.5, 0.7, 0.99, 1];
    for (let sw = 1; sw <= 13; sw++) {
      for (let sh = 1; sh <= 13; sh++) {
        for (const [ow, oh] of [
          [1, 1],
          [2, 1],
          [1, 3],
          [7, 5],
          [100, 37],
          [5, 13],
        ] as const) {
          for (const fx of fractions) {
            for (const fy of fractions) {
              const c = focalCrop(sw, sh, ow, oh, fx, fy);
              const label = `${sw}x${sh} -> ${ow}x${oh} @ (${fx}, ${fy}): ${JSON.stringify(c)}`;
              assert.ok(Object.values(c).every(Number.isInteger), label);
              assert.ok(c.width >= 1 && c.height >= 1, label);
              assert.ok(c.left >= 0 && c.top >= 0, label);
              assert.ok(c.left + c.width <= sw && c.top + c.height <= sh, label);
              // One side spans the image: the window is as large as the aspect ratio allows.
              assert.ok(c.width === sw || c.height === sh, label);
              // Aspect ratio: each side within rounding of its exact value.
              const scale = Math.max(ow / sw, oh / sh);
              assert.ok(Math.abs(c.width - ow / scale) <= 0.5 || c.width === 1, label);
              assert.ok(Math.abs(c.height - oh / scale) <= 0.5 || c.height === 1, label);
              // The focal point lies inside the window (to the pixel).
              assert.ok(fx * sw >= c.left - 0.5 && fx * sw <= c.left + c.width + 0.5, label);
              assert.ok(fy * sh >= c.top - 0.5 && fy * sh <= c.top + c.height + 0.5, label);
              // Central: off-centre only where the window touches an edge.
              const dx = c.left + c.width / 2 - fx * sw;
              if (Math.abs(dx) > 0.5) assert.ok(c.left === 0 || c.left + c.width === sw, label);
              const dy = c.top + c.height / 2 - fy * sh;
              if (Math.abs(dy) > 0.5) assert.ok(c.top === 0 || c.top + c.height === sh, label);
            }
          }
        }
      }
    }
  });

  it('refuses nonsense', () => {
    assert.throws(() => focalCrop(0, 10, 1, 1, 0.5, 0.5), RangeError);
    assert.throws(() => focalCrop(10, 10, 0, 1, 0.5, 0.5), RangeError);
    assert.throws(() => focalCrop(10, 10, 1, Number.POSITIVE_INFINITY, 0.5, 0.5), RangeError);
    assert.throws(() => focalCrop(10, 10, 1, 1, -0.01, 0.5), RangeError);
    assert.throws(() => focalCrop(10, 10, 1, 1, 0.5, 1.01), RangeError);
    assert.throws(() => focalCrop(10, 10, 1, 1, Number.NaN, 0.5), RangeError);
  });
});

describe('intermediateScale and scaledSize', () => {
  it('is the largest scale any plan needs, at most 1', () => {
    const plans: ResizePlan[] = [
      { mode: 'cover', width: 150, height: 150 },
      { mode: 'scale', width: 2048, height: 1536 },
    ];
    assert.equal(intermediateScale(SRC, plans), 0.512);
    assert.deepEqual(scaledSize(SRC, 0.512), { width: 2048, height: 1536 });
    assert.equal(intermediateScale({ width: 100, height: 100 }, plans), 1);
  });

  it('accounts for cover thumbnails of panoramas, which need more height than the widest preset', () => {
    const panorama = { width: 20_000, height: 1000 };
    const plans: ResizePlan[] = [
      { mode: 'cover', width: 150, height: 150 },
      { mode: 'scale', width: 2048, height: 102 },
    ];
    assert.equal(intermediateScale(panorama, plans), 0.15);
    assert.deepEqual(scaledSize(panorama, 0.15), { width: 3000, height: 150 });
  });

  it('needs only the smaller factor for contain', () => {
    assert.equal(intermediateScale(SRC, [{ mode: 'contain', width: 400, height: 400 }]), 0.1);
  });

  it('rounds up so that no plan falls short, and never beyond the source', () => {
    assert.deepEqual(scaledSize({ width: 3, height: 7 }, 0.5), { width: 2, height: 4 });
    assert.deepEqual(scaledSize({ width: 3, height: 7 }, 0.0001), { width: 1, height: 1 });
    assert.deepEqual(scaledSize({ width: 3, height: 7 }, 1), { width: 3, height: 7 });
  });
});
