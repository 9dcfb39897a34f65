import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { isActiveContent, peek, sniffContentType } from '../../src/assets/sniff.ts';

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

describe('content sniffing', () => {
  it('trusts the bytes over the declaration', async () => {
    assert.equal(await sniffContentType(PNG, 'text/html'), 'image/png');
    assert.equal(
      await sniffContentType(Buffer.from([0, 1, 2, 3, 255]), 'image/png'),
      'application/octet-stream',
    );
  });

  it('lets the client choose only among text types for text', async () => {
    assert.equal(await sniffContentType(Buffer.from('a,b\n1,2\n'), 'text/csv'), 'text/csv; charset=utf-8');
    assert.equal(await sniffContentType(Buffer.from('{"a":1}'), 'application/json'), 'application/json');
    assert.equal(
      await sniffContentType(Buffer.from('hello'), 'application/x-evil'),
      'text/plain; charset=utf-8',
    );
    assert.equal(await sniffContentType(Buffer.from('hello'), undefined), 'text/plain; charset=utf-8');
  });

  it('counts UTF-8 cut at the end of the head as text, invalid UTF-8 as binary', async () => {
    const euro = Buffer.from('€', 'utf8');
    assert.equal(
      await sniffContentType(Buffer.concat([Buffer.from('price '), euro.subarray(0, 2)]), undefined),
      'text/plain; charset=utf-8',
    );
    assert.equal(
      await sniffContentType(Buffer.from([0x61, 0xff, 0x62]), undefined),
      'application/octet-stream',
    );
  });

  it('marks types a browser may run script or a plugin in active, and no others', () => {
    for (const type of [
      'text/html; charset=utf-8',
      'Text/HTML',
      'application/xhtml+xml',
      'image/svg+xml',
      'application/mathml+xml',
      'application/xslt+xml',
      'application/rss+xml',
      'application/dash+xml',
      'text/xml; charset=utf-8',
      'application/xml',
      'text/xsl',
      'text/javascript; charset=utf-8',
      'application/javascript',
      'application/ecmascript',
      'application/pdf',
      'application/x-shockwave-flash',
    ]) {
      assert.ok(isActiveContent(type), type);
    }
    for (const type of [
      'image/png',
      'text/plain; charset=utf-8',
      'text/css; charset=utf-8',
      'text/csv',
      'text/vtt; charset=utf-8',
      'application/json',
      'application/x-mpegurl',
      'video/mp4',
      'application/postscript',
      'application/octet-stream',
      'application/xmlfoo',
    ]) {
      assert.ok(!isActiveContent(type), type);
    }
  });

  it('peeks without losing bytes, for short and long streams', async () => {
    const short = await peek(Readable.from([Buffer.from('abc')]), 10);
    assert.equal(short.head.toString(), 'abc');
    assert.equal(await text(short.body), 'abc');
    const chunks = Array.from({ length: 50 }, (_, i) => Buffer.from(`${i}`.padStart(100, '-')));
    const long = await peek(Readable.from(chunks), 250);
    assert.equal(long.head.length, 250);
    assert.equal(await text(long.body), Buffer.concat(chunks).toString());
  });

  it('passes a source error on to the body', async () => {
    const source = new Readable({ read() {} });
    source.push(Buffer.alloc(5000, 1));
    const { body } = await peek(source, 100);
    const consumed = text(body);
    source.destroy(new Error('client went away'));
    await assert.rejects(consumed, /client went away/);
  });
});
