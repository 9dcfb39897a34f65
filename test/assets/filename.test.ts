import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sanitizeFilename } from '../../src/assets/filename.ts';

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
