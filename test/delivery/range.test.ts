import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Validators } from '../../src/delivery/conditional.ts';
import { ifRangeAllowsPartial, parseRange, type RangeResult } from '../../src/delivery/range.ts';

const OPTS = { maxRanges: 8 };
const NONE: RangeResult = { kind: 'none' };
const UNSATISFIABLE: RangeResult = { kind: 'unsatisfiable' };

function ranges(...pairs: [number, number][]): RangeResult {
  return { kind: 'ranges', ranges: pairs.map(([start, end]) => ({ start, end })) };
}

function parse(header: string | undefined, size: number, options = OPTS): RangeResult {
  return parseRange(header, size, options);
}

describe('parseRange', () => {
  it('ignores an absent or empty field', () => {
    assert.deepEqual(parse(undefined, 100), NONE);
    assert.deepEqual(parse('', 100), NONE);
  });

  it('reads the examples of RFC 9110 §14.1.2 against 10000 bytes', () => {
    assert.deepEqual(parse('bytes=0-499', 10000), ranges([0, 499]));
    assert.deepEqual(parse('bytes=500-999', 10000), ranges([500, 999]));
    assert.deepEqual(parse('bytes=-500', 10000), ranges([9500, 9999]));
    assert.deepEqual(parse('bytes=9500-', 10000), ranges([9500, 9999]));
    assert.deepEqual(parse('bytes=0-0,-1', 10000), ranges([0, 0], [9999, 9999]));
    assert.deepEqual(parse('bytes=500-600,601-999', 10000), ranges([500, 999]));
    assert.deepEqual(parse('bytes=500-700,601-999', 10000), ranges([500, 999]));
  });

  it('treats the unit name case-insensitively', () => {
    for (const unit of ['bytes', 'Bytes', 'BYTES', 'bYtEs']) {
      assert.deepEqual(parse(`${unit}=0-1`, 10), ranges([0, 1]), unit);
    }
  });

  it('allows whitespace around list members and the whole value', () => {
    assert.deepEqual(parse('bytes=0-1 , 5-6', 10), ranges([0, 1], [5, 6]));
    assert.deepEqual(parse('bytes=0-1,\t5-6', 10), ranges([0, 1], [5, 6]));
    assert.deepEqual(parse('  bytes=0-1  ', 10), ranges([0, 1]));
    assert.deepEqual(parse('bytes= 0-1', 10), ranges([0, 1]));
  });

  it('ignores empty list members', () => {
    assert.deepEqual(parse('bytes=0-1,,5-6,', 10), ranges([0, 1], [5, 6]));
    assert.deepEqual(parse('bytes=,0-1', 10), ranges([0, 1]));
  });

  it('ignores units other than bytes', () => {
    for (const header of ['items=0-1', 'byte=0-1', 'bytes0=0-1', 'none=0-1', 'x-bytes=0-1']) {
      assert.deepEqual(parse(header, 100), NONE, header);
    }
  });

  it('ignores syntactically invalid values', () => {
    for (const header of [
      'bytes',
      'bytes 0-1',
      'bytes:0-1',
      '=0-1',
      'bytes=',
      'bytes=,',
      'bytes= , ',
      'bytes=-',
      'bytes=--1',
      'bytes=1--2',
      'bytes=a-b',
      'bytes=0-a',
      'bytes=0x10-20',
      'bytes=+1-2',
      'bytes=1.5-2',
      'bytes=1e3-',
      'bytes=0 -1',
      'bytes=0- 1',
      'bytes=0-1-2',
      'bytes=0-1;5-6',
      'bytes=0-1 5-6',
      'bytes==0-1',
      'bytes=٠-١',
      'bytes =0-1',
    ]) {
      assert.deepEqual(parse(header, 100), NONE, header);
    }
  });

  it('ignores the whole field when one int-range has last-pos before first-pos', () => {
    assert.deepEqual(parse('bytes=1-0', 100), NONE);
    assert.deepEqual(parse('bytes=0-1,5-2', 100), NONE);
    assert.deepEqual(parse('bytes=0-1,abc', 100), NONE);
  });

  it('answers one int-range the same on its quick path as the general parser does', () => {
    // `bytes=a-b` takes the quick path; with an empty list member after it, the same range goes through
    // the general parser (§5.6.1.2: empty members are ignored). Both must agree everywhere.
    const numbers = ['0', '1', '9', '10', '11', '099', '4999', '5000', '5001', '123456789012345'];
    for (const size of [0, 1, 10, 5000]) {
      for (const first of numbers) {
        for (const last of ['', ...numbers]) {
          const quick = `bytes=${first}-${last}`;
          assert.deepEqual(parse(quick, size), parse(`${quick}, `, size), `${quick} of ${size} bytes`);
        }
      }
    }
    assert.deepEqual(parse('bytes=0-9', 10, { maxRanges: 1 }), ranges([0, 9]));
  });

  it('accepts leading zeros', () => {
    assert.deepEqual(parse('bytes=00-0001', 10), ranges([0, 1]));
    assert.deepEqual(parse('bytes=-007', 10), ranges([3, 9]));
  });

  describe('boundaries', () => {
    it('clamps last-pos to the final byte', () => {
      assert.deepEqual(parse('bytes=0-99', 100), ranges([0, 99]));
      assert.deepEqual(parse('bytes=0-100', 100), ranges([0, 99]));
      assert.deepEqual(parse('bytes=50-99999', 100), ranges([50, 99]));
    });

    it('serves the last byte alone', () => {
      assert.deepEqual(parse('bytes=99-99', 100), ranges([99, 99]));
      assert.deepEqual(parse('bytes=99-', 100), ranges([99, 99]));
      assert.deepEqual(parse('bytes=-1', 100), ranges([99, 99]));
    });

    it('finds a first-pos at or past the end unsatisfiable', () => {
      assert.deepEqual(parse('bytes=100-', 100), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=100-100', 100), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=150-200', 100), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=100-,200-300', 100), UNSATISFIABLE);
    });

    it('serves the whole representation for a suffix longer than it', () => {
      assert.deepEqual(parse('bytes=-100', 100), ranges([0, 99]));
      assert.deepEqual(parse('bytes=-101', 100), ranges([0, 99]));
      assert.deepEqual(parse('bytes=-99999', 100), ranges([0, 99]));
    });

    it('finds a zero-length suffix unsatisfiable', () => {
      assert.deepEqual(parse('bytes=-0', 100), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=-000', 100), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=-0,100-', 100), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=-0,0-0', 100), ranges([0, 0]));
    });

    it('drops unsatisfiable members when others are satisfiable', () => {
      assert.deepEqual(parse('bytes=200-300,0-9', 100), ranges([0, 9]));
      assert.deepEqual(parse('bytes=0-9,200-,-0,20-29', 100), ranges([0, 9], [20, 29]));
    });

    it('handles a 1-byte representation', () => {
      assert.deepEqual(parse('bytes=0-0', 1), ranges([0, 0]));
      assert.deepEqual(parse('bytes=0-', 1), ranges([0, 0]));
      assert.deepEqual(parse('bytes=0-5', 1), ranges([0, 0]));
      assert.deepEqual(parse('bytes=-1', 1), ranges([0, 0]));
      assert.deepEqual(parse('bytes=-5', 1), ranges([0, 0]));
      assert.deepEqual(parse('bytes=1-', 1), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=-0', 1), UNSATISFIABLE);
    });

    it('handles a 0-byte representation', () => {
      // Nothing but a non-zero suffix-range is satisfiable against zero bytes...
      assert.deepEqual(parse('bytes=0-0', 0), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=0-', 0), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=-0', 0), UNSATISFIABLE);
      assert.deepEqual(parse('bytes=0-0,5-', 0), UNSATISFIABLE);
      // ...and that one selects no bytes at all, so the Range field is ignored.
      assert.deepEqual(parse('bytes=-1', 0), NONE);
      assert.deepEqual(parse('bytes=0-0,-5', 0), NONE);
      // Invalid values stay ignored.
      assert.deepEqual(parse('bytes=x', 0), NONE);
      assert.deepEqual(parse('items=0-0', 0), NONE);
    });

    it('survives numerals far beyond 2^53 without overflow', () => {
      const huge = '9'.repeat(30);
      const absurd = '9'.repeat(400);
      assert.deepEqual(parse(`bytes=0-${huge}`, 100), ranges([0, 99]));
      assert.deepEqual(parse(`bytes=0-${absurd}`, 100), ranges([0, 99]));
      assert.deepEqual(parse(`bytes=${huge}-`, 100), UNSATISFIABLE);
      assert.deepEqual(parse(`bytes=${absurd}-${absurd}`, 100), UNSATISFIABLE);
      assert.deepEqual(parse(`bytes=-${absurd}`, 100), ranges([0, 99]));
      assert.deepEqual(parse('bytes=9007199254740993-9007199254740992', 100), UNSATISFIABLE);
      const big = Number.MAX_SAFE_INTEGER;
      assert.deepEqual(parse(`bytes=${big - 1}-`, big), ranges([big - 1, big - 1]));
    });
  });

  describe('range count cap', () => {
    it('accepts up to maxRanges members and ignores the field beyond', () => {
      assert.deepEqual(parse('bytes=0-0,2-2,4-4', 10, { maxRanges: 3 }), ranges([0, 0], [2, 2], [4, 4]));
      assert.deepEqual(parse('bytes=0-0,2-2,4-4,6-6', 10, { maxRanges: 3 }), NONE);
    });

    it('counts unsatisfiable and overlapping members, but not empty ones', () => {
      assert.deepEqual(parse('bytes=0-0,100-,200-', 10, { maxRanges: 2 }), NONE);
      assert.deepEqual(parse('bytes=0-,0-,0-', 10, { maxRanges: 2 }), NONE);
      assert.deepEqual(parse('bytes=0-0,,,,2-2', 10, { maxRanges: 2 }), ranges([0, 0], [2, 2]));
    });

    it('ignores every Range field when maxRanges is 0', () => {
      assert.deepEqual(parse('bytes=0-0', 10, { maxRanges: 0 }), NONE);
    });

    it('turns a CVE-2011-3192-style flood into one range or nothing', () => {
      const flood = `bytes=0-,${Array.from({ length: 1300 }, (_, i) => `5-${i}`).join(',')}`;
      assert.deepEqual(parse(flood, 1_000_000), NONE);
      const overlapping = `bytes=${Array.from({ length: 8 }, () => '0-').join(',')}`;
      assert.deepEqual(parse(overlapping, 1_000_000), ranges([0, 999_999]));
    });
  });

  describe('coalescing', () => {
    it('merges overlapping, contained and adjacent ranges', () => {
      assert.deepEqual(parse('bytes=0-10,5-20', 100), ranges([0, 20]));
      assert.deepEqual(parse('bytes=0-50,10-20', 100), ranges([0, 50]));
      assert.deepEqual(parse('bytes=0-9,10-19', 100), ranges([0, 19]));
      assert.deepEqual(parse('bytes=10-19,0-9', 100), ranges([0, 19]));
      assert.deepEqual(parse('bytes=5-5,5-5', 100), ranges([5, 5]));
    });

    it('keeps ranges separated by a gap of one byte or more', () => {
      assert.deepEqual(parse('bytes=0-9,11-19', 100), ranges([0, 9], [11, 19]));
    });

    it('merges transitively', () => {
      assert.deepEqual(parse('bytes=0-9,20-29,10-19', 100), ranges([0, 29]));
      assert.deepEqual(parse('bytes=0-4,10-14,3-11,40-49', 100), ranges([0, 14], [40, 49]));
    });

    it('merges a suffix-range and an open int-range with what they overlap', () => {
      assert.deepEqual(parse('bytes=-5,0-5', 10), ranges([0, 9]));
      assert.deepEqual(parse('bytes=0-4,-5', 10), ranges([0, 9]));
      assert.deepEqual(parse('bytes=0-3,-3', 10), ranges([0, 3], [7, 9]));
      assert.deepEqual(parse('bytes=8-,-5', 10), ranges([5, 9]));
    });

    it('keeps the request order, a merged range standing where its earliest member stood', () => {
      assert.deepEqual(parse('bytes=50-59,0-9', 100), ranges([50, 59], [0, 9]));
      assert.deepEqual(parse('bytes=50-59,0-9,5-20', 100), ranges([50, 59], [0, 20]));
      assert.deepEqual(parse('bytes=50-59,0-9,55-70', 100), ranges([50, 70], [0, 9]));
      assert.deepEqual(parse('bytes=-10,20-29,0-9', 100), ranges([90, 99], [20, 29], [0, 9]));
    });

    it('always yields disjoint, non-adjacent ranges inside the representation', () => {
      let seed = 42;
      const random = (n: number) => {
        seed = (seed * 48_271) % 2_147_483_647;
        return seed % n;
      };
      for (let round = 0; round < 500; round++) {
        const size = 1 + random(60);
        const specs = Array.from({ length: 1 + random(6) }, () => {
          const a = random(70);
          const kind = random(3);
          if (kind === 0) return `-${a}`;
          if (kind === 1) return `${a}-`;
          return `${a}-${a + random(20)}`;
        });
        const result = parse(`bytes=${specs.join(',')}`, size);
        if (result.kind !== 'ranges') continue;
        const sorted = [...result.ranges].sort((x, y) => x.start - y.start);
        for (const [i, r] of sorted.entries()) {
          assert.ok(r.start >= 0 && r.start <= r.end && r.end < size, `${specs} @${size}`);
          if (i > 0) assert.ok(r.start > sorted[i - 1]!.end + 1, `${specs} @${size}`);
        }
      }
    });
  });
});

describe('ifRangeAllowsPartial', () => {
  const v: Validators = { etag: '"v1"', lastModified: new Date('2024-01-10T12:00:00.750Z') };

  it('allows the range when there is no If-Range', () => {
    assert.equal(ifRangeAllowsPartial(undefined, v), true);
  });

  it('allows it for the exact strong entity tag', () => {
    assert.equal(ifRangeAllowsPartial('"v1"', v), true);
    assert.equal(ifRangeAllowsPartial(' "v1" ', v), true);
  });

  it('ignores the range for a different, weak, listed or malformed tag', () => {
    for (const value of ['"v2"', '"V1"', 'W/"v1"', '"v1", "v2"', '"v1', '"v1" x', '*']) {
      assert.equal(ifRangeAllowsPartial(value, v), false, value);
    }
  });

  it('never matches when the server tag is weak', () => {
    assert.equal(ifRangeAllowsPartial('"v1"', { ...v, etag: 'W/"v1"' }), false);
    assert.equal(ifRangeAllowsPartial('W/"v1"', { ...v, etag: 'W/"v1"' }), false);
  });

  it('allows it for the exact Last-Modified second in any date format', () => {
    assert.equal(ifRangeAllowsPartial('Wed, 10 Jan 2024 12:00:00 GMT', v), true);
    assert.equal(ifRangeAllowsPartial('Wednesday, 10-Jan-24 12:00:00 GMT', v), true);
    assert.equal(ifRangeAllowsPartial('Wed Jan 10 12:00:00 2024', v), true);
  });

  it('ignores the range for any other date, even a later one', () => {
    assert.equal(ifRangeAllowsPartial('Wed, 10 Jan 2024 12:00:01 GMT', v), false);
    assert.equal(ifRangeAllowsPartial('Wed, 10 Jan 2024 11:59:59 GMT', v), false);
    assert.equal(ifRangeAllowsPartial('Fri, 31 Dec 9999 23:59:59 GMT', v), false);
  });

  it('ignores the range for a value that is neither', () => {
    for (const value of [
      '',
      ' ',
      'yesterday',
      'v1',
      '2024-01-10T12:00:00Z',
      'wed, 10 jan 2024 12:00:00 gmt',
    ]) {
      assert.equal(ifRangeAllowsPartial(value, v), false, value);
    }
  });
});
