import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hammingDistance, PHASH_SIZE, phashFromGrey } from '../../../src/media/image/phash.ts';

const N = PHASH_SIZE;

/** A deterministic, detailed 32x32 test pattern. */
function pattern(seed: number): number[] {
  let s = seed;
  const random = () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
  return Array.from({ length: N * N }, (_, i) => {
    const x = i % N;
    const y = Math.floor(i / N);
    return Math.round(100 + 60 * Math.sin(x / (3 + seed)) * Math.cos(y / 5) + 40 * random());
  });
}

/** The documented algorithm, written the slow and obvious way. */
function referencePhash(grey: readonly number[]): string {
  const c: number[] = [];
  for (let u = 1; u <= 8; u++) {
    for (let v = 1; v <= 8; v++) {
      let sum = 0;
      for (let y = 0; y < N; y++) {
        for (let x = 0; x < N; x++) {
          sum +=
            grey[y * N + x]! *
            Math.cos(((2 * y + 1) * u * Math.PI) / (2 * N)) *
            Math.cos(((2 * x + 1) * v * Math.PI) / (2 * N));
        }
      }
      c.push(sum);
    }
  }
  const sorted = [...c].sort((a, b) => a - b);
  const median = (sorted[31]! + sorted[32]!) / 2;
  return c
    .map((x) => (x > median ? '1' : '0'))
    .reduce((hex, _bit, i, bits) => {
      if (i % 4 !== 0) return hex;
      return hex + Number.parseInt(bits.slice(i, i + 4).join(''), 2).toString(16);
    }, '');
}

function popcount(hex: string): number {
  return [...hex].reduce((n, d) => n + Number.parseInt(d, 16).toString(2).replaceAll('0', '').length, 0);
}

describe('phashFromGrey', () => {
  it('matches the documented algorithm computed directly', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const grey = pattern(seed);
      assert.equal(phashFromGrey(grey), referencePhash(grey), `seed ${seed}`);
    }
  });

  it('writes 16 lowercase hex digits with half the bits set', () => {
    for (const seed of [1, 2, 3]) {
      const hash = phashFromGrey(pattern(seed));
      assert.match(hash, /^[0-9a-f]{16}$/);
      assert.equal(popcount(hash), 32);
    }
  });

  it('hashes a featureless image to zero', () => {
    assert.equal(phashFromGrey(new Array(N * N).fill(128)), '0000000000000000');
    assert.equal(phashFromGrey(new Uint8Array(N * N)), '0000000000000000');
  });

  it('ignores brightness and contrast, which only move the DC term or scale every coefficient', () => {
    const grey = pattern(7);
    const hash = phashFromGrey(grey);
    assert.equal(phashFromGrey(grey.map((g) => g + 40)), hash);
    assert.equal(phashFromGrey(grey.map((g) => g * 0.5)), hash);
  });

  it('complements the hash of a negative image', () => {
    const grey = pattern(3);
    const negative = phashFromGrey(grey.map((g) => 255 - g));
    assert.equal(hammingDistance(phashFromGrey(grey), negative), 64);
  });

  it('refuses anything but 32x32 samples', () => {
    assert.throws(() => phashFromGrey(new Uint8Array(N * N - 1)), RangeError);
    assert.throws(() => phashFromGrey([]), RangeError);
  });
});

describe('hammingDistance', () => {
  it('counts differing bits', () => {
    assert.equal(hammingDistance('0000000000000000', '0000000000000000'), 0);
    assert.equal(hammingDistance('0000000000000000', '0000000000000001'), 1);
    assert.equal(hammingDistance('8000000000000000', '0000000000000001'), 2);
    assert.equal(hammingDistance('0f0f0f0f0f0f0f0f', 'f0f0f0f0f0f0f0f0'), 64);
    assert.equal(hammingDistance('ffffffffffffffff', '0000000000000000'), 64);
    assert.equal(hammingDistance('a5a5a5a5a5a5a5a5', 'a5a5a5a5a5a5a5a4'), 1);
  });

  it('is symmetric', () => {
    const a = phashFromGrey(pattern(1));
    const b = phashFromGrey(pattern(2));
    assert.equal(hammingDistance(a, b), hammingDistance(b, a));
  });

  it('refuses strings that are not pHashes', () => {
    for (const bad of [
      '',
      '0',
      '000000000000000',
      '00000000000000000',
      'FFFFFFFFFFFFFFFF',
      'g000000000000000',
    ]) {
      assert.throws(() => hammingDistance(bad, '0000000000000000'), RangeError, bad);
      assert.throws(() => hammingDistance('0000000000000000', bad), RangeError, bad);
    }
  });
});
