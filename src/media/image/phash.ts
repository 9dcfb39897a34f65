/**
 * Perceptual hash: a 64-bit DCT hash (the "pHash" of phash.org, as also computed by Python's
 * imagehash.phash, up to which coefficients are kept).
 *
 *   1. The image, auto-oriented and flattened onto white, is reduced to 32 x 32 greyscale, ignoring
 *      its aspect ratio (analyse.ts does this with sharp).
 *   2. A 2-D DCT-II of those 1024 values.
 *   3. The 8 x 8 block of lowest frequencies, skipping row 0 and column 0 (the DC term and the pure
 *      horizontal/vertical ramps, which say more about overall brightness than about content):
 *      coefficients (u, v) for u, v in 1..8.
 *   4. Each of those 64 coefficients becomes one bit: 1 if it is above their median, else 0; bits in
 *      row-major order (u, then v), most significant first, written as 16 lowercase hex digits.
 *
 * Comparing: the Hamming distance (hammingDistance below) between two hashes, 0-64. The same picture
 * re-encoded, resized or mildly recompressed lands within a few bits (typically 0-6); unrelated
 * pictures land near 32. A threshold around 10 is the usual "near-duplicate" cut-off. Because the
 * median splits the coefficients in half, a typical hash has about 32 bits set; an image with no
 * detail at all (a flat colour) hashes to all zeros.
 */

export const PHASH_SIZE = 32;
const LOW = 8;

// cos((2x + 1) u pi / 2N) for u in 0..LOW and x in 0..N-1; only the frequencies we keep are needed.
const COS: Float64Array[] = Array.from({ length: LOW + 1 }, (_, u) =>
  Float64Array.from({ length: PHASH_SIZE }, (_, x) =>
    Math.cos(((2 * x + 1) * u * Math.PI) / (2 * PHASH_SIZE)),
  ),
);

/** The pHash (see above) of a 32 x 32 greyscale image given as 1024 row-major samples. */
export function phashFromGrey(grey: ArrayLike<number>): string {
  if (grey.length !== PHASH_SIZE * PHASH_SIZE) {
    throw new RangeError(`expected ${PHASH_SIZE * PHASH_SIZE} greyscale samples, got ${grey.length}`);
  }
  // Separable DCT: along each row first (v indexes horizontal frequency), then down each column.
  const rows = new Float64Array(PHASH_SIZE * (LOW + 1));
  for (let y = 0; y < PHASH_SIZE; y++) {
    for (let v = 1; v <= LOW; v++) {
      let sum = 0;
      for (let x = 0; x < PHASH_SIZE; x++) sum += grey[y * PHASH_SIZE + x]! * COS[v]![x]!;
      rows[y * (LOW + 1) + v] = sum;
    }
  }
  const coefficients: number[] = [];
  for (let u = 1; u <= LOW; u++) {
    for (let v = 1; v <= LOW; v++) {
      let sum = 0;
      for (let y = 0; y < PHASH_SIZE; y++) sum += rows[y * (LOW + 1) + v]! * COS[u]![y]!;
      // Rounding error on a flat image is ~1e-12, which would otherwise decide bits at random.
      coefficients.push(Math.abs(sum) < 1e-6 ? 0 : sum);
    }
  }
  const median = medianOf(coefficients);
  let hash = 0n;
  for (const c of coefficients) hash = (hash << 1n) | (c > median ? 1n : 0n);
  return hash.toString(16).padStart(16, '0');
}

const HASH = /^[0-9a-f]{16}$/;

/** The number of differing bits between two pHashes, 0-64. */
export function hammingDistance(a: string, b: string): number {
  if (!HASH.test(a) || !HASH.test(b)) throw new RangeError('a pHash is 16 lowercase hex digits');
  let diff = BigInt(`0x${a}`) ^ BigInt(`0x${b}`);
  let bits = 0;
  while (diff > 0n) {
    bits += Number(diff & 1n);
    diff >>= 1n;
  }
  return bits;
}

function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
