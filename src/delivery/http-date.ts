/**
 * HTTP-date (RFC 9110 §5.6.7): the preferred IMF-fixdate for what we send, and all three historic
 * spellings for what we receive.
 *
 * Parsing follows the ABNF strictly: "HTTP-date is case sensitive", so `sun, 06 nov 1994 ...` and dates
 * with extra interior whitespace are rejected (null), which the conditional-request rules then treat as
 * "not a valid HTTP-date" and ignore. Only surrounding whitespace is tolerated, because field-value OWS
 * is not part of the value. The day-name is checked for syntax but not against the date: it is
 * redundant, and refusing a request over a wrong weekday helps nobody.
 */

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const DAY_L = '(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)';
const MONTH = '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';

// IMF-fixdate  = day-name "," SP date1 SP time-of-day SP GMT      ; Sun, 06 Nov 1994 08:49:37 GMT
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`);
// rfc850-date  = day-name-l "," SP date2 SP time-of-day SP GMT    ; Sunday, 06-Nov-94 08:49:37 GMT
const RFC850_DATE = new RegExp(`^${DAY_L}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`);
// asctime-date = day-name SP date3 SP time-of-day SP year         ; Sun Nov  6 08:49:37 1994
// date3        = month SP ( 2DIGIT / ( SP DIGIT ) )
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} (\\d{2}| \\d) ${TIME} (\\d{4})$`);

/**
 * Formats `d` as an IMF-fixdate, dropping milliseconds (HTTP dates have one-second resolution).
 * Throws RangeError for an invalid Date or a year outside 0000–9999, which the 4DIGIT year cannot carry.
 */
export function formatHttpDate(d: Date): string {
  const time = d.getTime();
  if (Number.isNaN(time)) throw new RangeError('invalid Date');
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) throw new RangeError(`year ${year} cannot be written as an HTTP-date`);
  // RFC 9110 §5.6.7: "When a sender generates a field that contains one or more timestamps defined as
  // HTTP-date, the sender MUST generate those timestamps in the IMF-fixdate format."
  return (
    `${DAY_NAMES[d.getUTCDay()]}, ${pad(d.getUTCDate(), 2)} ${MONTHS[d.getUTCMonth()]} ${pad(year, 4)} ` +
    `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)} GMT`
  );
}

/**
 * Parses any of the three HTTP-date formats; null when `s` is none of them or names an impossible
 * instant (31 Feb, 24:00:00, ...).
 *
 * `now` only matters for the two-digit years of rfc850-date and exists so tests can pin the clock.
 */
export function parseHttpDate(s: string, now: Date = new Date()): Date | null {
  // RFC 9110 §5.6.7: "A recipient that parses a timestamp value in an HTTP field MUST accept all three
  // HTTP-date formats."
  const value = s.trim();
  let m = IMF_FIXDATE.exec(value);
  if (m) return build(Number(m[3]), m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
  m = ASCTIME_DATE.exec(value);
  if (m) return build(Number(m[6]), m[1]!, Number(m[2]!.trim()), m[3]!, m[4]!, m[5]!);
  m = RFC850_DATE.exec(value);
  if (m) {
    const month = MONTHS.indexOf(m[2] as (typeof MONTHS)[number]);
    const year = fullYear(Number(m[3]), [month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])], now);
    return build(year, m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
  }
  return null;
}

/**
 * RFC 9110 §5.6.7: "Recipients of a timestamp value in rfc850-date format, which uses a two-digit year,
 * MUST interpret a timestamp that appears to be more than 50 years in the future as representing the most
 * recent year in the past that had the same last two digits."
 *
 * The comparison is made on the (year, month, day, h, m, s) tuple rather than on a Date so that 29 Feb is
 * judged before we know whether the chosen year is a leap year. A year more than 50 years in the past is
 * moved forward a century, which keeps the chosen year within the 100-year window the rule implies.
 */
function fullYear(yy: number, rest: readonly number[], now: Date): number {
  const nowYear = now.getUTCFullYear();
  const nowRest = [
    now.getUTCMonth(),
    now.getUTCDate(),
    now.getUTCHours(),
    now.getUTCMinutes(),
    now.getUTCSeconds(),
  ];
  let year = nowYear - (nowYear % 100) + yy;
  if (compareTuples([year, ...rest], [nowYear + 50, ...nowRest]) > 0) year -= 100;
  else if (compareTuples([year, ...rest], [nowYear - 50, ...nowRest]) <= 0) year += 100;
  return year;
}

function compareTuples(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) {
    const diff = a[i]! - b[i]!;
    if (diff !== 0) return diff;
  }
  return 0;
}

function build(
  year: number,
  monthName: string,
  day: number,
  hh: string,
  mm: string,
  ss: string,
): Date | null {
  const month = MONTHS.indexOf(monthName as (typeof MONTHS)[number]);
  const hour = Number(hh);
  const minute = Number(mm);
  const second = Number(ss);
  // RFC 9110 §5.6.7: time-of-day "00:00:00 - 23:59:60 (leap second)". POSIX time has no leap seconds, so
  // :60 lands on the first second of the next minute, as it does for every POSIX clock.
  if (hour > 23 || minute > 59 || second > 60 || day < 1) return null;
  const d = new Date(0);
  d.setUTCFullYear(year, month, day);
  // A day past the end of the month rolls over into the next one; that is how 31 Feb is detected.
  if (d.getUTCMonth() !== month) return null;
  d.setUTCHours(hour, minute, second, 0);
  return d;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
