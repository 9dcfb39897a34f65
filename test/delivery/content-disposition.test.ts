import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contentDisposition } from '../../src/delivery/content-disposition.ts';

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
