import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contentDisposition, sanitizeFilename } from '../../src/delivery/content-disposition.ts';

/** What an RFC 6266 user agent would save: filename* when present, else filename. */
function savedName(header: string): string {
  const extended = /; filename\*=UTF-8''([^;]*)$/.exec(header);
  if (extended) return decodeURIComponent(extended[1]!);
  return /; filename="([^"]*)"$/.exec(header)![1]!;
}

describe('contentDisposition', () => {
  it('uses the plain parameter alone for names it carries faithfully', () => {
    assert.equal(contentDisposition('report.pdf', 'attachment'), 'attachment; filename="report.pdf"');
    assert.equal(contentDisposition('report.pdf', 'inline'), 'inline; filename="report.pdf"');
    assert.equal(
      contentDisposition('my report (final).pdf', 'inline'),
      'inline; filename="my report (final).pdf"',
    );
    assert.equal(
      contentDisposition("it's;50%off=.txt", 'attachment'),
      'attachment; filename="it\'s;50%off=.txt"',
    );
  });

  it('adds filename* with UTF-8 percent-encoding for non-ASCII names', () => {
    assert.equal(
      contentDisposition('résumé.pdf', 'attachment'),
      `attachment; filename="r_sum_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`,
    );
    assert.equal(
      contentDisposition('日本語.txt', 'inline'),
      `inline; filename="___.txt"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt`,
    );
  });

  it('replaces each non-ASCII code point, even outside the BMP, by one underscore', () => {
    assert.equal(
      contentDisposition('😀.png', 'attachment'),
      `attachment; filename="_.png"; filename*=UTF-8''%F0%9F%98%80.png`,
    );
  });

  it('replaces quotes and backslashes rather than escaping them', () => {
    assert.equal(
      contentDisposition('say "hi".txt', 'attachment'),
      `attachment; filename="say _hi_.txt"; filename*=UTF-8''say%20%22hi%22.txt`,
    );
    assert.equal(
      contentDisposition('a\\b.txt', 'attachment'),
      `attachment; filename="a_b.txt"; filename*=UTF-8''a%5Cb.txt`,
    );
  });

  it('keeps %XX sequences out of the plain parameter', () => {
    assert.equal(
      contentDisposition('100%25.txt', 'attachment'),
      `attachment; filename="100_25.txt"; filename*=UTF-8''100%2525.txt`,
    );
    assert.equal(contentDisposition('%zz.txt', 'attachment'), 'attachment; filename="%zz.txt"');
    assert.equal(contentDisposition('50%.txt', 'attachment'), 'attachment; filename="50%.txt"');
  });

  it('drops control characters from both parameters', () => {
    assert.equal(
      contentDisposition('a\u0000b\r\n\u007f\u0085c.txt', 'attachment'),
      'attachment; filename="abc.txt"',
    );
    assert.equal(
      contentDisposition('é\tx', 'attachment'),
      `attachment; filename="_x"; filename*=UTF-8''%C3%A9x`,
    );
  });

  it('falls back to "file" for a name with nothing left', () => {
    assert.equal(contentDisposition('', 'attachment'), 'attachment; filename="file"');
    assert.equal(contentDisposition('\r\n\t', 'inline'), 'inline; filename="file"');
  });

  it('encodes a lone surrogate as U+FFFD', () => {
    assert.equal(
      contentDisposition('\ud800.txt', 'attachment'),
      `attachment; filename="_.txt"; filename*=UTF-8''%EF%BF%BD.txt`,
    );
  });

  it('percent-encodes everything outside attr-char', () => {
    const name = "a b'c(d)e*f,g/h:i;j<k=l>m?n@o[p]q{r}s!#$&+-.^_`|~ü";
    const header = contentDisposition(name, 'attachment');
    const value = header.split("filename*=UTF-8''")[1]!;
    assert.match(value, /^(?:[A-Za-z0-9!#$&+\-.^_`|~]|%[0-9A-F]{2})+$/);
    assert.ok(
      value.startsWith(
        'a%20b%27c%28d%29e%2Af%2Cg%2Fh%3Ai%3Bj%3Ck%3Dl%3Em%3Fn%40o%5Bp%5Dq%7Br%7Ds!#$&+-.^_`|~',
      ),
    );
  });

  it('always emits a printable ASCII header value that decodes back to the name', () => {
    for (const name of [
      'plain.txt',
      'naïve café.doc',
      'ünïcödé "q" \\ %41.bin',
      '👨‍👩‍👧 family.jpg',
      'a;b=c.txt',
    ]) {
      const header = contentDisposition(name, 'attachment');
      assert.match(header, /^[\x20-\x7e]*$/, name);
      assert.equal(savedName(header), name);
    }
  });
});

describe('sanitizeFilename', () => {
  const clean = (name: string, max = 255) => sanitizeFilename(name, max);

  it('leaves ordinary names alone', () => {
    for (const name of ['photo.jpg', 'My Report (v2).final.pdf', 'résumé.pdf', '日本語.txt', 'a', '😀']) {
      assert.equal(clean(name), name);
    }
  });

  it('keeps only the last path segment, for / and \\ alike', () => {
    assert.equal(clean('../../etc/passwd'), 'passwd');
    assert.equal(clean('C:\\Users\\eve\\evil.exe'), 'evil.exe');
    assert.equal(clean('a/b\\c/d.txt'), 'd.txt');
    assert.equal(clean('/abs/path.txt'), 'path.txt');
    assert.equal(clean('dir/'), 'file');
    assert.equal(clean('dir\\'), 'file');
  });

  it('drops C0, DEL and C1 control characters', () => {
    assert.equal(clean('a\u0000b\u0007c\u001fd\u007fe\u0080f\u0085g\u009fh.txt'), 'abcdefgh.txt');
    assert.equal(clean('line\r\nbreak.txt'), 'linebreak.txt');
  });

  it('drops bidi controls that disguise an extension', () => {
    assert.equal(clean('invoice\u202Efdp.exe'), 'invoicefdp.exe');
    for (const ch of [
      '\u061C',
      '\u200E',
      '\u200F',
      '\u202A',
      '\u202B',
      '\u202C',
      '\u202D',
      '\u2066',
      '\u2069',
    ]) {
      assert.equal(clean(`a${ch}b.txt`), 'ab.txt', ch.codePointAt(0)!.toString(16));
    }
  });

  it('trims whitespace and removes leading dots', () => {
    assert.equal(clean('  spaced name.txt \t'), 'spaced name.txt');
    assert.equal(clean('.bashrc'), 'bashrc');
    assert.equal(clean('...hidden.txt'), 'hidden.txt');
    assert.equal(clean('. . .x'), 'x');
    assert.equal(clean('\u00a0\u3000name.txt\u2003'), 'name.txt');
    assert.equal(clean('name.'), 'name.');
  });

  it('replaces names that are only dots, whitespace or nothing with "file"', () => {
    for (const name of ['', '.', '..', '...', '   ', ' . ', '\u202E', '\u0000', '../..', 'a/..', 'a/.']) {
      assert.equal(clean(name), 'file', JSON.stringify(name));
    }
  });

  it('prefixes Windows device names', () => {
    assert.equal(clean('CON'), '_CON');
    assert.equal(clean('con.txt'), '_con.txt');
    assert.equal(clean('Nul.tar.gz'), '_Nul.tar.gz');
    assert.equal(clean('LPT1.log'), '_LPT1.log');
    assert.equal(clean('COM9'), '_COM9');
    assert.equal(clean('COM¹.txt'), '_COM¹.txt');
    assert.equal(clean('AUX .txt'), '_AUX .txt');
    assert.equal(clean('CONSOLE.txt'), 'CONSOLE.txt');
    assert.equal(clean('icon.png'), 'icon.png');
    assert.equal(clean('COM10'), 'COM10');
  });

  it('composes to NFC and replaces lone surrogates', () => {
    assert.equal(clean('e\u0301.txt'), '\u00e9.txt');
    assert.equal(clean('\ud83d.txt'), '\ufffd.txt');
  });

  it('keeps names of exactly maxLength bytes', () => {
    const name = `${'a'.repeat(251)}.txt`;
    assert.equal(clean(name), name);
  });

  it('cuts the stem to fit, keeping the extension', () => {
    assert.equal(clean(`${'a'.repeat(300)}.txt`), `${'a'.repeat(251)}.txt`);
    assert.equal(clean(`${'a'.repeat(30)}.tar.gz`, 20), `${'a'.repeat(17)}.gz`);
  });

  it('counts UTF-8 bytes and never splits a code point', () => {
    const result = clean(`${'é'.repeat(200)}.pdf`);
    assert.equal(result, `${'é'.repeat(125)}.pdf`);
    assert.equal(Buffer.byteLength(result), 254);
    const emoji = clean('😀'.repeat(10), 17);
    assert.equal(emoji, '😀'.repeat(4));
  });

  it('never splits a grapheme cluster', () => {
    const family = '👨‍👩‍👧';
    assert.equal(Buffer.byteLength(family), 18);
    assert.equal(clean(`${family}${family}.jpg`, 30), `${family}.jpg`);
    assert.equal(clean(`x${family}.jpg`, 20), 'x.jpg');
  });

  it('trims whitespace left at the cut', () => {
    assert.equal(clean(`abc${' '.repeat(20)}def.txt`, 16), 'abc.txt');
  });

  it('cuts the whole name when the extension leaves no room for a stem', () => {
    assert.equal(clean(`a.${'b'.repeat(300)}`, 20), `a.${'b'.repeat(18)}`);
    assert.equal(clean('x'.repeat(300), 16), 'x'.repeat(16));
  });

  it('cannot be cut into a device name', () => {
    assert.equal(clean('CONSOLE.txt', 7), '_CO.txt');
  });

  it('refuses a maxLength too small for "file"', () => {
    for (const max of [-1, 0, 3, 4.5, Number.NaN]) {
      assert.throws(() => sanitizeFilename('a.txt', max), RangeError, String(max));
    }
    assert.equal(sanitizeFilename('', 4), 'file');
  });

  it('always returns a non-empty name within maxLength bytes', () => {
    const alphabet = ['a', 'Z', '.', ' ', '/', '\\', 'é', '😀', '\u0301', '\u202E', '\u0000', '‍', '-', '日'];
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 48_271) % 2_147_483_647;
      return seed % n;
    };
    for (let round = 0; round < 1000; round++) {
      const name = Array.from({ length: random(40) }, () => alphabet[random(alphabet.length)]).join('');
      const max = 4 + random(30);
      const result = sanitizeFilename(name, max);
      assert.ok(result.length > 0, JSON.stringify(name));
      assert.ok(Buffer.byteLength(result) <= max, `${JSON.stringify(name)} -> ${JSON.stringify(result)}`);
      assert.ok(!/[/\\\p{Cc}\p{Bidi_Control}]/u.test(result), JSON.stringify(result));
      assert.ok(!result.startsWith('.') && result === result.trim(), JSON.stringify(result));
      assert.ok(result.isWellFormed());
    }
  });
});
