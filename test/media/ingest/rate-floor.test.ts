import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TooSlowError } from '../../../src/media/ingest/download-errors.ts';
import { RateFloor } from '../../../src/media/ingest/rate-floor.ts';

/** A floor of `min` B/s over `windowMs` on a clock the test moves. */
function floor(min: number, windowMs: number) {
  let t = 1_000_000;
  const rate = new RateFloor(min, windowMs, () => t);
  return {
    rate,
    /** Moves the clock to `ms` after the start, and samples. */
    at(ms: number) {
      t = 1_000_000 + ms;
      return rate.sample();
    },
    move(ms: number) {
      t = 1_000_000 + ms;
    },
  };
}

describe('RateFloor', () => {
  it('gives no verdict before a whole window was measured', () => {
    const f = floor(100, 1000);
    assert.equal(f.at(200), undefined);
    assert.equal(f.at(999), undefined);
    assert.deepEqual(f.at(1000), { bytesPerSecond: 0, ms: 1000 });
  });

  it('passes a rate at the minimum and fails one just under it', () => {
    const ok = floor(100, 1000);
    const slow = floor(100, 1000);
    for (let ms = 200; ms <= 5000; ms += 200) {
      ok.rate.add(20); // 100 B/s
      slow.rate.add(19); // 95 B/s
      assert.equal(ok.at(ms), undefined, `at ${ms} ms`);
      const verdict = slow.at(ms);
      if (ms < 1000) assert.equal(verdict, undefined);
      else assert.deepEqual(verdict, { bytesPerSecond: 95, ms: 1000 });
    }
  });

  it('slides: bytes older than the window stop counting', () => {
    const f = floor(100, 1000);
    f.rate.add(10_000); // a burst, then silence
    for (let ms = 200; ms <= 1000; ms += 200) assert.equal(f.at(ms), undefined);
    assert.deepEqual(f.at(1200), { bytesPerSecond: 0, ms: 1000 });
  });

  it('measures from the newest sample at least a window old when samples come late', () => {
    const f = floor(100, 1000);
    f.rate.add(50);
    assert.equal(f.at(300), undefined);
    f.rate.add(50);
    assert.equal(f.at(900), undefined);
    // Late: the base is the start (the sample at 300 is not a window old yet); 100 B over 1.25 s.
    assert.deepEqual(f.at(1250), { bytesPerSecond: 80, ms: 1250 });
    // Base: the sample at 300 (50 B then, 100 now): 50 B over 1.1 s.
    assert.deepEqual(f.at(1400), { bytesPerSecond: (50 * 1000) / 1100, ms: 1100 });
  });

  it('does not count the time the consumer holds the download back', () => {
    const f = floor(100, 1000);
    f.rate.add(60);
    assert.equal(f.at(500), undefined);
    f.move(600);
    f.rate.pause();
    f.rate.pause(); // twice is once
    // No verdict while paused, however long.
    assert.equal(f.at(60_000), undefined);
    f.move(60_100);
    f.rate.resume();
    f.rate.resume();
    f.rate.add(40);
    // 100 B over 1 s of unpaused time (600 ms before the pause, 400 after it): the minimum, not 100 B over
    // the 60.5 s since the start.
    assert.equal(f.at(60_500), undefined);
    assert.deepEqual(f.at(61_500), { bytesPerSecond: 0, ms: 1000 });
  });

  it('the error says how slow, over how long, and the minimum; it is retryable', () => {
    const e = new TooSlowError(0.5, 1000, 1000);
    assert.equal(e.message, 'too slow: 0.5 B/s over 1 s, minimum 1000 B/s');
    assert.equal(e.code, 'download_too_slow');
    assert.equal(e.retryable, true);
    assert.equal(
      new TooSlowError(812.34, 30_040, 1024).message,
      'too slow: 812 B/s over 30 s, minimum 1024 B/s',
    );
    assert.equal(
      new TooSlowError(12.345, 1250, 100).message,
      'too slow: 12.3 B/s over 1.3 s, minimum 100 B/s',
    );
  });
});
