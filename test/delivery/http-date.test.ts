import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatHttpDate, parseHttpDate } from '../../src/delivery/http-date.ts';

// The instant RFC 9110 §5.6.7 spells in all three formats.
const RFC_INSTANT = Date.UTC(1994, 10, 6, 8, 49, 37);

describe('formatHttpDate', () => {
  it('writes the IMF-fixdate of the RFC example', () => {
    assert.equal(formatHttpDate(new Date(RFC_INSTANT)), 'Sun, 06 Nov 1994 08:49:37 GMT');
  });

  it('drops milliseconds instead of rounding', () => {
    assert.equal(formatHttpDate(new Date(RFC_INSTANT + 999)), 'Sun, 06 Nov 1994 08:49:37 GMT');
  });

  it('names every month and weekday', () => {
    const expected = [
      'Fri, 01 Jan 2021',
      'Mon, 01 Feb 2021',
      'Mon, 01 Mar 2021',
      'Thu, 01 Apr 2021',
      'Sat, 01 May 2021',
      'Tue, 01 Jun 2021',
      'Thu, 01 Jul 2021',
      'Sun, 01 Aug 2021',
      'Wed, 01 Sep 2021',
      'Fri, 01 Oct 2021',
      'Mon, 01 Nov 2021',
      'Wed, 01 Dec 2021',
    ];
    for (let month = 0; month < 12; month++) {
      assert.equal(formatHttpDate(new Date(Date.UTC(2021, month, 1))), `${expected[month]} 00:00:00 GMT`);
    }
  });

  it('pads every field to its fixed width', () => {
    assert.equal(formatHttpDate(new Date(Date.UTC(2009, 1, 3, 4, 5, 6))), 'Tue, 03 Feb 2009 04:05:06 GMT');
    assert.equal(formatHttpDate(new Date('0999-12-31T23:59:59Z')), 'Tue, 31 Dec 0999 23:59:59 GMT');
  });

  it('handles the epoch, instants before it, and the last representable second', () => {
    assert.equal(formatHttpDate(new Date(0)), 'Thu, 01 Jan 1970 00:00:00 GMT');
    assert.equal(formatHttpDate(new Date(-1)), 'Wed, 31 Dec 1969 23:59:59 GMT');
    assert.equal(formatHttpDate(new Date('9999-12-31T23:59:59.999Z')), 'Fri, 31 Dec 9999 23:59:59 GMT');
  });

  it('refuses invalid dates and years that do not fit four digits', () => {
    assert.throws(() => formatHttpDate(new Date(Number.NaN)), RangeError);
    assert.throws(() => formatHttpDate(new Date('+010000-01-01T00:00:00Z')), RangeError);
    assert.throws(() => formatHttpDate(new Date('-000001-01-01T00:00:00Z')), RangeError);
  });
});

describe('parseHttpDate', () => {
  const now = new Date('2025-06-01T00:00:00Z');

  it('accepts all three formats of the RFC example as the same instant', () => {
    for (const value of [
      'Sun, 06 Nov 1994 08:49:37 GMT',
      'Sunday, 06-Nov-94 08:49:37 GMT',
      'Sun Nov  6 08:49:37 1994',
      'Sun Nov 06 08:49:37 1994',
    ]) {
      assert.equal(parseHttpDate(value, now)?.getTime(), RFC_INSTANT, value);
    }
  });

  it('tolerates whitespace around the value only', () => {
    assert.equal(parseHttpDate(' \tSun, 06 Nov 1994 08:49:37 GMT \t')?.getTime(), RFC_INSTANT);
    assert.equal(parseHttpDate('Sun,  06 Nov 1994 08:49:37 GMT'), null);
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37  GMT'), null);
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37GMT'), null);
    assert.equal(parseHttpDate('Sun Nov   6 08:49:37 1994'), null);
  });

  it('is case-sensitive, as HTTP-date is', () => {
    assert.equal(parseHttpDate('sun, 06 nov 1994 08:49:37 gmt'), null);
    assert.equal(parseHttpDate('Sun, 06 NOV 1994 08:49:37 GMT'), null);
    assert.equal(parseHttpDate('SUNDAY, 06-Nov-94 08:49:37 GMT'), null);
  });

  it('does not check the weekday against the date', () => {
    assert.equal(parseHttpDate('Mon, 06 Nov 1994 08:49:37 GMT')?.getTime(), RFC_INSTANT);
  });

  it('rejects other spellings and garbage', () => {
    for (const value of [
      '',
      ' ',
      'now',
      '1994-11-06T08:49:37Z',
      '784111777',
      'Sun, 06 Nov 1994 08:49:37 UTC',
      'Sun, 06 Nov 1994 08:49:37 +0000',
      'Sun, 06 Nov 1994 08:49:37',
      'Sun, 6 Nov 1994 08:49:37 GMT',
      'Sun, 06 Nov 94 08:49:37 GMT',
      'Sun, 06 Nov 1994 8:49:37 GMT',
      'Sun, 06 Nov 1994 08:49 GMT',
      'Sun, 06 Nov 1994 08:49:37.5 GMT',
      'Sun 06 Nov 1994 08:49:37 GMT',
      'Sun, 06-Nov-94 08:49:37 GMT',
      'Sunday, 06 Nov 1994 08:49:37 GMT',
      'Sunday, 06-Nov-1994 08:49:37 GMT',
      'Sun Nov  6 08:49:37 94',
      'Sun Nov  6 08:49:37 1994 GMT',
      'Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT',
      'Xyz, 06 Nov 1994 08:49:37 GMT',
      'Sun, 06 Noe 1994 08:49:37 GMT',
      'Sun, ٠٦ Nov 1994 08:49:37 GMT',
    ]) {
      assert.equal(parseHttpDate(value, now), null, JSON.stringify(value));
    }
  });

  it('rejects impossible calendar dates and times', () => {
    assert.equal(parseHttpDate('Fri, 31 Feb 2023 00:00:00 GMT'), null);
    assert.equal(parseHttpDate('Wed, 29 Feb 2023 00:00:00 GMT'), null);
    assert.equal(parseHttpDate('Thu, 31 Apr 2025 00:00:00 GMT'), null);
    assert.equal(parseHttpDate('Sun, 00 Nov 1994 08:49:37 GMT'), null);
    assert.equal(parseHttpDate('Sun, 32 Nov 1994 08:49:37 GMT'), null);
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 24:00:00 GMT'), null);
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:60:00 GMT'), null);
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:61 GMT'), null);
    assert.equal(parseHttpDate('Sun Nov  0 08:49:37 1994'), null);
  });

  it('accepts leap days and edge times', () => {
    assert.equal(parseHttpDate('Thu, 29 Feb 2024 00:00:00 GMT')?.toISOString(), '2024-02-29T00:00:00.000Z');
    assert.equal(parseHttpDate('Tue, 29 Feb 2000 23:59:59 GMT')?.toISOString(), '2000-02-29T23:59:59.000Z');
    assert.equal(parseHttpDate('Thu, 01 Jan 1970 00:00:00 GMT')?.getTime(), 0);
    assert.equal(parseHttpDate('Wed, 31 Dec 1969 23:59:59 GMT')?.getTime(), -1000);
    assert.equal(parseHttpDate('Mon, 01 Jan 0001 00:00:00 GMT')?.toISOString(), '0001-01-01T00:00:00.000Z');
  });

  it('maps a leap second onto the next POSIX second', () => {
    assert.equal(parseHttpDate('Sat, 31 Dec 2016 23:59:60 GMT')?.toISOString(), '2017-01-01T00:00:00.000Z');
  });

  it('round-trips whatever formatHttpDate writes', () => {
    for (const ms of [
      0,
      RFC_INSTANT,
      951_782_400_000,
      1_709_164_800_123,
      4_102_444_799_999,
      -2_208_988_800_000,
    ]) {
      const d = new Date(ms);
      assert.equal(parseHttpDate(formatHttpDate(d))?.getTime(), Math.floor(ms / 1000) * 1000);
    }
  });

  describe('rfc850 two-digit years', () => {
    it('keeps a year up to 50 years ahead in the current century', () => {
      assert.equal(parseHttpDate('Monday, 01-Jan-25 00:00:00 GMT', now)?.getUTCFullYear(), 2025);
      assert.equal(parseHttpDate('Monday, 01-Jan-74 00:00:00 GMT', now)?.getUTCFullYear(), 2074);
      // 2075-06-01T00:00:00 is exactly 50 years ahead: not "more than".
      assert.equal(parseHttpDate('Saturday, 01-Jun-75 00:00:00 GMT', now)?.getUTCFullYear(), 2075);
    });

    it('moves a timestamp more than 50 years ahead back one century', () => {
      assert.equal(parseHttpDate('Saturday, 01-Jun-75 00:00:01 GMT', now)?.getUTCFullYear(), 1975);
      assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', now)?.getUTCFullYear(), 1994);
      assert.equal(parseHttpDate('Friday, 31-Dec-99 23:59:59 GMT', now)?.getUTCFullYear(), 1999);
    });

    it('reads the two digits relative to the clock', () => {
      const late = new Date('2095-01-01T00:00:00Z');
      // 2001 would be 94 years ago; 2101 is 6 years ahead and the nearer reading.
      assert.equal(parseHttpDate('Saturday, 01-Jan-01 00:00:00 GMT', late)?.getUTCFullYear(), 2101);
      // 2046 is 49 years ago and stays; 2045 is exactly 50 years ago and becomes 50 years ahead, so the
      // readings form the window (now - 50 years, now + 50 years].
      assert.equal(parseHttpDate('Saturday, 01-Jan-46 00:00:00 GMT', late)?.getUTCFullYear(), 2046);
      assert.equal(parseHttpDate('Saturday, 01-Jan-45 00:00:00 GMT', late)?.getUTCFullYear(), 2145);
      assert.equal(parseHttpDate('Saturday, 01-Jan-94 00:00:00 GMT', late)?.getUTCFullYear(), 2094);
    });

    it('checks 29 February against the year finally chosen', () => {
      assert.equal(
        parseHttpDate('Thursday, 29-Feb-24 12:00:00 GMT', now)?.toISOString(),
        '2024-02-29T12:00:00.000Z',
      );
      assert.equal(parseHttpDate('Saturday, 29-Feb-25 12:00:00 GMT', now), null);
      // 00 is read as 2000 (a leap year) in 2025, as 1900 (not one) once 2000 is more than 50 years ahead.
      assert.equal(parseHttpDate('Tuesday, 29-Feb-00 12:00:00 GMT', now)?.getUTCFullYear(), 2000);
      assert.equal(parseHttpDate('Tuesday, 29-Feb-00 12:00:00 GMT', new Date('1949-01-01T00:00:00Z')), null);
    });

    it('uses the real clock by default', () => {
      const yy = String(new Date().getUTCFullYear() % 100).padStart(2, '0');
      const parsed = parseHttpDate(`Monday, 01-Jan-${yy} 00:00:00 GMT`);
      assert.equal(parsed?.getUTCFullYear(), new Date().getUTCFullYear());
    });
  });
});
