import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { multipartByteranges, newBoundary } from '../../src/delivery/byteranges.ts';
import type { ByteRange } from '../../src/storage/blob-store.ts';

const DATA = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) % 256));
const BOUNDARY = 'THIS_STRING_SEPARATES';

/** Streams `data[range]` in chunks of `chunkSize` bytes. */
function opener(data: Buffer, chunkSize = 7, log?: string[]) {
  return async (r: ByteRange): Promise<Readable> => {
    log?.push(`open ${r.start}-${r.end}`);
    const bytes = data.subarray(r.start, r.end + 1);
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
    const stream = Readable.from(chunks, { objectMode: false });
    stream.on('end', () => log?.push(`end ${r.start}-${r.end}`));
    return stream;
  };
}

async function collect(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

interface Part {
  headers: Record<string, string>;
  body: Buffer;
}

/** A strict reader of the RFC 2046 layout, as a client would parse the body. */
function parseMultipart(body: Buffer, boundary: string): Part[] {
  const first = Buffer.from(`--${boundary}\r\n`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  assert.ok(body.subarray(0, first.length).equals(first), 'body starts with the first delimiter');
  const parts: Part[] = [];
  let pos = first.length;
  for (;;) {
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    assert.ok(headerEnd !== -1, 'part headers end with an empty line');
    const headers: Record<string, string> = {};
    for (const line of body.subarray(pos, headerEnd).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const next = body.indexOf(delimiter, headerEnd + 4);
    assert.ok(next !== -1, 'every part is followed by a delimiter');
    parts.push({ headers, body: body.subarray(headerEnd + 4, next) });
    const after = body.subarray(next + delimiter.length, next + delimiter.length + 2).toString('latin1');
    if (after === '--') {
      assert.equal(
        body.subarray(next + delimiter.length + 2).toString('latin1'),
        '\r\n',
        'nothing after the close',
      );
      return parts;
    }
    assert.equal(after, '\r\n');
    pos = next + delimiter.length + 2;
  }
}

async function build(ranges: ByteRange[], data = DATA, contentType = 'application/pdf') {
  const result = multipartByteranges({
    ranges,
    size: data.length,
    contentType,
    boundary: BOUNDARY,
    open: opener(data),
  });
  const body = await collect(result.body);
  return { result, body, parts: parseMultipart(body, BOUNDARY) };
}

describe('multipartByteranges', () => {
  it('produces the layout of RFC 9110 §14.6 with an exact Content-Length', async () => {
    const { result, body, parts } = await build([
      { start: 500, end: 999 },
      { start: 0, end: 99 },
    ]);
    assert.equal(result.contentType, `multipart/byteranges; boundary=${BOUNDARY}`);
    assert.equal(result.contentLength, body.length);
    assert.equal(parts.length, 2);
    assert.deepEqual(parts[0]!.headers, {
      'content-type': 'application/pdf',
      'content-range': 'bytes 500-999/1000',
    });
    assert.deepEqual(parts[1]!.headers, {
      'content-type': 'application/pdf',
      'content-range': 'bytes 0-99/1000',
    });
    assert.ok(parts[0]!.body.equals(DATA.subarray(500, 1000)));
    assert.ok(parts[1]!.body.equals(DATA.subarray(0, 100)));
  });

  it('writes exactly the expected bytes', async () => {
    const data = Buffer.from('0123456789');
    const result = multipartByteranges({
      ranges: [
        { start: 0, end: 1 },
        { start: 8, end: 9 },
      ],
      size: 10,
      contentType: 'text/plain',
      boundary: 'b',
      open: opener(data),
    });
    const expected =
      '--b\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01' +
      '\r\n--b\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89' +
      '\r\n--b--\r\n';
    assert.equal((await collect(result.body)).toString('latin1'), expected);
    assert.equal(result.contentLength, expected.length);
  });

  it('handles 1-byte parts, the first and last byte, and a single part', async () => {
    const { result, body, parts } = await build([
      { start: 999, end: 999 },
      { start: 0, end: 0 },
    ]);
    assert.equal(result.contentLength, body.length);
    assert.deepEqual(
      parts.map((p) => [p.headers['content-range'], [...p.body]]),
      [
        ['bytes 999-999/1000', [DATA[999]]],
        ['bytes 0-0/1000', [DATA[0]]],
      ],
    );
    const single = await build([{ start: 0, end: 999 }]);
    assert.equal(single.parts.length, 1);
    assert.ok(single.parts[0]!.body.equals(DATA));
    assert.equal(single.result.contentLength, single.body.length);
  });

  it('carries part bytes that look like delimiters and CRLFs unchanged', async () => {
    // Content can hold any fixed boundary; it cannot plausibly hold a fresh random one.
    const data = Buffer.from(`\r\n--${BOUNDARY}\r\n\r\n--${BOUNDARY}--\r\n`);
    const random = newBoundary();
    const result = multipartByteranges({
      ranges: [
        { start: 0, end: 9 },
        { start: 10, end: data.length - 1 },
      ],
      size: data.length,
      contentType: 'text/plain',
      boundary: random,
      open: opener(data),
    });
    const body = await collect(result.body);
    assert.equal(result.contentLength, body.length);
    assert.ok(Buffer.concat(parseMultipart(body, random).map((p) => p.body)).equals(data));
  });

  it('counts multi-byte lengths and large offsets exactly', async () => {
    const ranges = [
      { start: 0, end: 9 },
      { start: 123_456_789_000, end: 123_456_789_999 },
    ];
    const size = 999_999_999_999;
    const fake = async (r: ByteRange) => Readable.from([Buffer.alloc(r.end - r.start + 1, 0x61)]);
    const result = multipartByteranges({
      ranges,
      size,
      contentType: 'video/mp4',
      boundary: BOUNDARY,
      open: fake,
    });
    const body = await collect(result.body);
    assert.equal(result.contentLength, body.length);
    assert.equal(
      parseMultipart(body, BOUNDARY)[1]!.headers['content-range'],
      `bytes 123456789000-123456789999/${size}`,
    );
  });

  it('accepts Uint8Array and string chunks', async () => {
    const parts = [new Uint8Array([0x61, 0x62]), 'cd'];
    const result = multipartByteranges({
      ranges: [
        { start: 0, end: 1 },
        { start: 2, end: 3 },
      ],
      size: 4,
      contentType: 'text/plain',
      boundary: 'b',
      open: async () => Readable.from([parts.shift()!], { objectMode: true }),
    });
    const body = await collect(result.body);
    assert.deepEqual(
      parseMultipart(body, 'b').map((p) => p.body.toString()),
      ['ab', 'cd'],
    );
  });

  it('opens nothing before the body is read, then each part only after the previous one ended', async () => {
    const log: string[] = [];
    const result = multipartByteranges({
      ranges: [
        { start: 0, end: 99 },
        { start: 200, end: 299 },
        { start: 400, end: 499 },
      ],
      size: DATA.length,
      contentType: 'application/octet-stream',
      boundary: BOUNDARY,
      open: opener(DATA, 10, log),
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(log, []);
    await collect(result.body);
    assert.deepEqual(log, [
      'open 0-99',
      'end 0-99',
      'open 200-299',
      'end 200-299',
      'open 400-499',
      'end 400-499',
    ]);
  });

  it('streams a large part through without reading it whole', async () => {
    const partSize = 64 * 1024 * 1024;
    let produced = 0;
    let destroyed = false;
    const source = new Readable({
      read() {
        if (produced >= partSize) return this.push(null);
        produced += 1024;
        this.push(Buffer.alloc(1024));
      },
      destroy(error, callback) {
        destroyed = true;
        callback(error);
      },
    });
    const result = multipartByteranges({
      ranges: [
        { start: 0, end: partSize - 1 },
        { start: partSize, end: partSize },
      ],
      size: partSize + 1,
      contentType: 'application/octet-stream',
      boundary: BOUNDARY,
      open: async () => source,
    });
    let received = 0;
    for await (const chunk of result.body) {
      received += (chunk as Buffer).length;
      if (received > 256 * 1024) break;
    }
    assert.ok(produced < 2 * 1024 * 1024, `read ${produced} bytes ahead of a consumer that took ${received}`);
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(result.body.destroyed);
    assert.ok(destroyed, 'the part stream is destroyed when the body is');
  });

  it('fails the body when a part delivers too few or too many bytes', async () => {
    for (const delta of [-1, 1]) {
      const result = multipartByteranges({
        ranges: [
          { start: 0, end: 9 },
          { start: 20, end: 29 },
        ],
        size: 100,
        contentType: 'text/plain',
        boundary: 'b',
        open: async (r) => Readable.from([Buffer.alloc(r.end - r.start + 1 + delta)]),
      });
      await assert.rejects(collect(result.body), /part 0-9/);
    }
  });

  it('fails the body when a part cannot be opened or breaks mid-way', async () => {
    const unopenable = multipartByteranges({
      ranges: [{ start: 0, end: 9 }],
      size: 10,
      contentType: 'text/plain',
      boundary: 'b',
      open: async () => {
        throw new Error('blob vanished');
      },
    });
    await assert.rejects(collect(unopenable.body), /blob vanished/);

    const broken = multipartByteranges({
      ranges: [{ start: 0, end: 9 }],
      size: 10,
      contentType: 'text/plain',
      boundary: 'b',
      open: async () =>
        new Readable({
          read() {
            this.destroy(new Error('disk read failed'));
          },
        }),
    });
    broken.body.resume();
    const [error] = await once(broken.body, 'error');
    assert.match((error as Error).message, /disk read failed/);
  });

  it('refuses unusable arguments up front', () => {
    const base = {
      ranges: [{ start: 0, end: 9 }],
      size: 10,
      contentType: 'text/plain',
      boundary: 'b',
      open: opener(DATA),
    };
    assert.throws(() => multipartByteranges({ ...base, ranges: [] }), RangeError);
    for (const range of [
      { start: 0, end: 10 },
      { start: 5, end: 4 },
      { start: -1, end: 3 },
      { start: 0.5, end: 3 },
      { start: 0, end: Number.NaN },
    ]) {
      assert.throws(
        () => multipartByteranges({ ...base, ranges: [range] }),
        RangeError,
        JSON.stringify(range),
      );
    }
    for (const boundary of ['', 'a b', 'a"b', 'a;b', 'x'.repeat(71), 'é', 'a\r\nb']) {
      assert.throws(() => multipartByteranges({ ...base, boundary }), TypeError, boundary);
    }
    assert.doesNotThrow(() => multipartByteranges({ ...base, boundary: 'x'.repeat(70) }));
    for (const contentType of ['text/plain\r\nX-Evil: 1', 'text/plain\n', 'text/\u00e9', 'a\0b']) {
      assert.throws(() => multipartByteranges({ ...base, contentType }), TypeError, contentType);
    }
  });
});

describe('newBoundary', () => {
  it('is 32 lowercase hex digits and different every time', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const boundary = newBoundary();
      assert.match(boundary, /^[0-9a-f]{32}$/);
      seen.add(boundary);
    }
    assert.equal(seen.size, 1000);
  });

  it('is accepted by multipartByteranges', async () => {
    const boundary = newBoundary();
    const result = multipartByteranges({
      ranges: [
        { start: 0, end: 4 },
        { start: 10, end: 14 },
      ],
      size: DATA.length,
      contentType: 'image/png',
      boundary,
      open: opener(DATA),
    });
    const parts = parseMultipart(await collect(result.body), boundary);
    assert.equal(parts.length, 2);
  });
});
