import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { BACKENDS, havePostgres, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { type Reply, request } from '../helpers/http.ts';

/**
 * The origin over real sockets: RFC 9110 conditional requests and ranges, RFC 9111 cache policy, and the
 * safety headers, on both SQLite + fs and PostgreSQL + S3. Requests go through node:http (or a raw socket
 * where the exact bytes on the wire matter) so nothing is normalised or decoded on the way.
 */

/**
 * Sends one HTTP/1.1 request on a raw socket with `Connection: close` and answers the status line, the
 * header block and every byte after it, so a body the client library would hide (on HEAD or 304) shows.
 */
function rawExchange(
  server: TestServer,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; head: string; after: Buffer }> {
  const { hostname, port } = new URL(server.url);
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, 'Connection: close'];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return new Promise((resolve, reject) => {
    // Write without half-closing: Node's server drops a request whose socket ends before the response.
    const socket = net.connect(Number(port), hostname, () => socket.write(`${lines.join('\r\n')}\r\n\r\n`));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0)
        return reject(new Error(`no complete response: ${JSON.stringify(all.toString('latin1'))}`));
      const head = all.subarray(0, end).toString('latin1');
      resolve({ status: Number(head.split(' ')[1]), head, after: all.subarray(end + 4) });
    });
  });
}

/** Header fields that legitimately differ between two responses to the same request. */
const PER_RESPONSE = new Set(['date', 'x-request-id', 'connection', 'keep-alive']);

function stableHeaders(headers: http.IncomingHttpHeaders): Record<string, unknown> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !PER_RESPONSE.has(name)));
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Splits a multipart/byteranges body back into its parts (RFC 9110 §14.6, RFC 2046 §5.1.1). */
function parseByteranges(
  contentType: string,
  body: Buffer,
): { headers: Record<string, string>; bytes: Buffer }[] {
  const m = /^multipart\/byteranges; boundary=("?)([^";]+)\1$/.exec(contentType);
  assert.ok(m, `not multipart/byteranges: ${contentType}`);
  const delimiter = Buffer.from(`--${m[2]}`, 'latin1');
  const parts: { headers: Record<string, string>; bytes: Buffer }[] = [];
  assert.equal(body.indexOf(delimiter), 0, 'the body starts with the first delimiter');
  let at = delimiter.length;
  for (;;) {
    if (body.subarray(at, at + 4).toString('latin1') === '--\r\n') {
      assert.equal(at + 4, body.length, 'nothing follows the close delimiter');
      return parts;
    }
    assert.equal(body.subarray(at, at + 2).toString('latin1'), '\r\n');
    const headEnd = body.indexOf('\r\n\r\n', at + 2);
    assert.ok(headEnd > 0, 'part header block ends');
    const headers: Record<string, string> = {};
    for (const line of body
      .subarray(at + 2, headEnd)
      .toString('latin1')
      .split('\r\n')) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n', 'latin1'), delimiter]), headEnd + 4);
    assert.ok(next > 0, 'a delimiter follows every part');
    parts.push({ headers, bytes: body.subarray(headEnd + 4, next) });
    at = next + 2 + delimiter.length;
  }
}

function assertProblem(res: Reply, status: number): any {
  assert.equal(res.status, status);
  assert.match(res.headers['content-type'] ?? '', /^application\/problem\+json(;|$)/);
  const problem = JSON.parse(res.body.toString('utf8'));
  assert.equal(problem.status, status);
  return problem;
}

// 100 printable ASCII bytes, all distinct in their neighbourhood, so any off-by-one shows.
const CONTENT = Buffer.from(
  Array.from({ length: 100 }, (_, i) => String.fromCharCode(33 + ((i * 7) % 94))).join(''),
);
const FILENAME = 'naïve café.txt';
const DISPOSITION = `inline; filename="na_ve caf_.txt"; filename*=UTF-8''na%C3%AFve%20caf%C3%A9.txt`;
// The matrix asset's content is dated in the past so that "later" dates are not in the future.
const MODIFIED_MS = Date.UTC(2024, 0, 15, 10, 30, 0, 500);
const LAST_MODIFIED = 'Mon, 15 Jan 2024 10:30:00 GMT';
const LATEST_CACHE = 'public, max-age=60, s-maxage=3600, stale-while-revalidate=60';
const VERSION_CACHE = 'public, max-age=31536000, immutable';
const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.from('0000000d49484452000000010000000108060000001f15c489', 'hex'),
  Buffer.alloc(64, 0x41),
]);
/** A minimal PDF (its `%PDF-` signature is what the upload sniffs). */
const PDF = Buffer.from('%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n');

const postgresSkip = (await havePostgres()) ? false : 'PostgreSQL is not running';

for (const backend of BACKENDS) {
  const skip = backend.database === 'postgres' ? postgresSkip : false;
  describe(`delivery over HTTP on ${backend.database} + ${backend.storage}`, { skip }, () => {
    let server: TestServer;
    let asset: any;
    let path: string;
    let versionPath: string;

    before(async () => {
      server = await startConveyor(backend);
      asset = await upload(server, CONTENT, { filename: FILENAME, contentType: 'text/plain' });
      await server.conveyor.db.kysely
        .updateTable('assets')
        .set({ content_updated_at: MODIFIED_MS })
        .where('id', '=', asset.id)
        .execute();
      path = `/a/${asset.id}`;
      const version = await server.json('POST', `/api/v1/assets/${asset.id}/publish`);
      assert.equal(version.status, 201);
      versionPath = `/v/${version.body.id}`;
    });
    after(async () => server?.close());

    describe('200', () => {
      it('carries the validators, type, length, disposition, safety and cache headers', async () => {
        const res = await request(server, 'GET', path);
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, CONTENT);
        assert.equal(res.headers.etag, `"${sha256(CONTENT)}"`);
        assert.equal(res.headers.etag, asset.etag);
        assert.equal(res.headers['last-modified'], LAST_MODIFIED);
        assert.equal(res.headers['content-length'], '100');
        assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
        assert.equal(res.headers['x-content-type-options'], 'nosniff');
        assert.equal(res.headers['accept-ranges'], 'bytes');
        assert.equal(res.headers['content-disposition'], DISPOSITION);
        assert.equal(res.headers['cache-control'], LATEST_CACHE);
        assert.equal(res.headers['content-security-policy'], undefined);
      });

      it('sends only ASCII in Content-Disposition, whatever the file name holds', async () => {
        const evil = await upload(server, 'x', { filename: 'a"b\r\nX-Injected: 1 %41 ☃.txt' });
        const res = await rawExchange(server, 'GET', `/a/${evil.id}`);
        assert.equal(res.status, 200);
        assert.match(res.head, /^[\x20-\x7e\r\n]*$/);
        assert.doesNotMatch(res.head, /^x-injected/im);
        const disposition = /^content-disposition: (.*)$/im.exec(res.head)![1]!;
        assert.equal(
          disposition,
          `inline; filename="a_bX-Injected: 1 _41 _.txt"; filename*=UTF-8''a%22bX-Injected%3A%201%20%2541%20%E2%98%83.txt`,
        );
      });

      it('marks a version URL immutable, with the same validators and bytes', async () => {
        const res = await request(server, 'GET', versionPath);
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, CONTENT);
        assert.equal(res.headers['cache-control'], VERSION_CACHE);
        assert.equal(res.headers.etag, asset.etag);
        assert.equal(res.headers['content-length'], '100');
        assert.equal(res.headers['content-disposition'], DISPOSITION);
      });
    });

    describe('HEAD', () => {
      for (const which of ['latest', 'version'] as const) {
        it(`answers exactly the headers of GET and no body (${which})`, async () => {
          const target = which === 'latest' ? path : versionPath;
          const get = await request(server, 'GET', target);
          const head = await request(server, 'HEAD', target);
          assert.equal(head.status, 200);
          assert.deepEqual(stableHeaders(head.headers), stableHeaders(get.headers));
          const raw = await rawExchange(server, 'HEAD', target);
          assert.equal(raw.status, 200);
          assert.match(raw.head, /^content-length: 100$/im);
          assert.equal(raw.after.length, 0, 'no bytes after the header block');
        });
      }

      it('ignores Range and answers the full 200 headers', async () => {
        const res = await rawExchange(server, 'HEAD', path, { Range: 'bytes=0-9' });
        assert.equal(res.status, 200);
        assert.match(res.head, /^content-length: 100$/im);
        assert.doesNotMatch(res.head, /^content-range:/im);
        assert.equal(res.after.length, 0);
      });
    });

    describe('If-None-Match', () => {
      const notModifiedCases: [string, () => string][] = [
        ['the exact tag', () => asset.etag],
        ['the weak form of the tag', () => `W/${asset.etag}`],
        ['a list holding the tag', () => `"nope", W/"other",${asset.etag} , "x"`],
        ['*', () => '*'],
      ];
      for (const [name, value] of notModifiedCases) {
        it(`answers 304 without content for ${name}`, async () => {
          const res = await request(server, 'GET', path, { 'If-None-Match': value() });
          assert.equal(res.status, 304);
          assert.equal(res.headers.etag, asset.etag);
          assert.equal(res.headers['cache-control'], LATEST_CACHE);
          assert.equal(res.headers['last-modified'], LAST_MODIFIED);
          assert.equal(res.body.length, 0);
          // A 304 has no content; a Content-Length, if any, may only state the length a 200 would have.
          if (res.headers['content-length'] !== undefined) assert.equal(res.headers['content-length'], '100');
          const raw = await rawExchange(server, 'GET', path, { 'If-None-Match': value() });
          assert.equal(raw.status, 304);
          assert.equal(raw.after.length, 0, 'no bytes after the header block');
          assert.doesNotMatch(raw.head, /^transfer-encoding:/im);
        });
      }

      it('answers 304 on a version URL with the immutable policy, and to HEAD', async () => {
        const res = await request(server, 'GET', versionPath, { 'If-None-Match': asset.etag });
        assert.equal(res.status, 304);
        assert.equal(res.headers['cache-control'], VERSION_CACHE);
        const head = await rawExchange(server, 'HEAD', path, { 'If-None-Match': asset.etag });
        assert.equal(head.status, 304);
        assert.equal(head.after.length, 0);
      });

      it('answers 200 with the content when no tag matches', async () => {
        for (const value of ['"nope"', `"${'0'.repeat(64)}", W/"x"`, asset.etag.slice(1, -1), '']) {
          const res = await request(server, 'GET', path, { 'If-None-Match': value });
          assert.equal(res.status, 200, `If-None-Match: ${value}`);
          assert.deepEqual(res.body, CONTENT);
        }
      });
    });

    describe('If-Modified-Since', () => {
      it('answers 304 for a date equal to or later than Last-Modified', async () => {
        for (const value of [
          LAST_MODIFIED,
          'Tue, 16 Jan 2024 00:00:00 GMT',
          'Monday, 15-Jan-24 10:30:00 GMT',
        ]) {
          const res = await request(server, 'GET', path, { 'If-Modified-Since': value });
          assert.equal(res.status, 304, value);
          assert.equal(res.body.length, 0);
          assert.equal(res.headers.etag, asset.etag);
          assert.equal(res.headers['cache-control'], LATEST_CACHE);
        }
      });

      it('answers 200 for an earlier date', async () => {
        const res = await request(server, 'GET', path, {
          'If-Modified-Since': 'Mon, 15 Jan 2024 10:29:59 GMT',
        });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, CONTENT);
      });

      it('is ignored when If-None-Match is present', async () => {
        const res = await request(server, 'GET', path, {
          'If-None-Match': '"nope"',
          'If-Modified-Since': 'Tue, 16 Jan 2024 00:00:00 GMT',
        });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, CONTENT);
      });

      it('is ignored when invalid or in the future', async () => {
        const future = new Date(Date.now() + 86_400_000).toUTCString();
        for (const value of [
          'yesterday',
          'mon, 15 jan 2024 10:30:00 gmt',
          `${LAST_MODIFIED}, ${LAST_MODIFIED}`,
          future,
        ]) {
          const res = await request(server, 'GET', path, { 'If-Modified-Since': value });
          assert.equal(res.status, 200, value);
          assert.deepEqual(res.body, CONTENT);
        }
      });
    });

    describe('If-Match and If-Unmodified-Since', () => {
      it('answers 412 problem+json for a tag that does not match strongly', async () => {
        for (const value of ['"nope"', `W/${asset.etag}`]) {
          const res = await request(server, 'GET', path, { 'If-Match': value });
          const problem = assertProblem(res, 412);
          assert.equal(problem.code, 'precondition_failed');
          assert.ok(!res.body.includes(CONTENT), 'no content in the 412');
        }
      });

      it('answers 200 for the current tag, a list holding it, and *', async () => {
        for (const value of [asset.etag, `"nope", ${asset.etag}`, '*']) {
          const res = await request(server, 'GET', path, { 'If-Match': value });
          assert.equal(res.status, 200, value);
          assert.deepEqual(res.body, CONTENT);
        }
      });

      it('answers 412 when modified after If-Unmodified-Since, 200 otherwise', async () => {
        const failed = await request(server, 'GET', path, {
          'If-Unmodified-Since': 'Mon, 15 Jan 2024 10:29:59 GMT',
        });
        assertProblem(failed, 412);
        for (const value of [LAST_MODIFIED, 'Tue, 16 Jan 2024 00:00:00 GMT', 'not a date']) {
          const res = await request(server, 'GET', path, { 'If-Unmodified-Since': value });
          assert.equal(res.status, 200, value);
        }
        // If-Match takes precedence over If-Unmodified-Since (RFC 9110 §13.2.2).
        const both = await request(server, 'GET', path, {
          'If-Match': asset.etag,
          'If-Unmodified-Since': 'Mon, 15 Jan 2024 10:29:59 GMT',
        });
        assert.equal(both.status, 200);
      });
    });

    describe('Range', () => {
      const single: [string, number, number][] = [
        ['bytes=0-9', 0, 9],
        ['bytes=10-', 10, 99],
        ['bytes=-5', 95, 99],
        ['bytes=90-1000', 90, 99],
        ['bytes=-1000', 0, 99],
        ['bytes=99-99', 99, 99],
        ['bytes=0-4,3-8', 0, 8],
      ];
      for (const [range, start, end] of single) {
        it(`answers 206 for ${range}`, async () => {
          const res = await request(server, 'GET', path, { Range: range });
          assert.equal(res.status, 206);
          assert.equal(res.headers['content-range'], `bytes ${start}-${end}/100`);
          assert.equal(res.headers['content-length'], String(end - start + 1));
          assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
          assert.equal(res.headers.etag, asset.etag);
          assert.equal(res.headers['cache-control'], LATEST_CACHE);
          assert.deepEqual(res.body, CONTENT.subarray(start, end + 1));
        });
      }

      it('answers 206 for a range of a version URL', async () => {
        const res = await request(server, 'GET', versionPath, { Range: 'bytes=50-59' });
        assert.equal(res.status, 206);
        assert.equal(res.headers['content-range'], 'bytes 50-59/100');
        assert.deepEqual(res.body, CONTENT.subarray(50, 60));
      });

      it('answers 416 with Content-Range bytes */size when nothing is satisfiable', async () => {
        for (const range of ['bytes=1000-', 'bytes=100-', 'bytes=100-200, 500-']) {
          const res = await request(server, 'GET', path, { Range: range });
          assertProblem(res, 416);
          assert.equal(res.headers['content-range'], 'bytes */100', range);
          assert.ok(!res.body.includes(CONTENT.subarray(0, 20)));
        }
      });

      it('ignores a malformed Range or another unit and answers 200 with everything', async () => {
        for (const range of ['bytes=abc', 'items=0-1', 'bytes=5-2', 'bytes=', 'bytes 0-1', 'bytes=0-1;x']) {
          const res = await request(server, 'GET', path, { Range: range });
          assert.equal(res.status, 200, range);
          assert.equal(res.headers['content-range'], undefined);
          assert.deepEqual(res.body, CONTENT);
        }
      });

      it('answers several ranges with multipart/byteranges that parse back to the right bytes', async () => {
        const res = await request(server, 'GET', path, { Range: 'bytes=0-4, 10-14,-3,1000-' });
        assert.equal(res.status, 206);
        assert.equal(res.headers['content-range'], undefined);
        assert.equal(res.headers['content-length'], String(res.body.length));
        assert.equal(res.headers.etag, asset.etag);
        const parts = parseByteranges(res.headers['content-type']!, res.body);
        assert.deepEqual(
          parts.map((p) => p.headers),
          [
            { 'content-type': 'text/plain; charset=utf-8', 'content-range': 'bytes 0-4/100' },
            { 'content-type': 'text/plain; charset=utf-8', 'content-range': 'bytes 10-14/100' },
            { 'content-type': 'text/plain; charset=utf-8', 'content-range': 'bytes 97-99/100' },
          ],
        );
        assert.deepEqual(
          parts.map((p) => p.bytes),
          [CONTENT.subarray(0, 5), CONTENT.subarray(10, 15), CONTENT.subarray(97, 100)],
        );
      });

      it('ignores more ranges than allowed (maxRanges) and answers 200', async () => {
        const many = Array.from({ length: server.config.maxRanges + 1 }, (_, i) => `${i * 3}-${i * 3}`);
        const res = await request(server, 'GET', path, { Range: `bytes=${many.join(',')}` });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, CONTENT);
      });
    });

    describe('If-Range', () => {
      it('answers 206 for the current ETag or a date equal to Last-Modified', async () => {
        for (const value of [asset.etag, LAST_MODIFIED]) {
          const res = await request(server, 'GET', path, { Range: 'bytes=0-9', 'If-Range': value });
          assert.equal(res.status, 206, value);
          assert.deepEqual(res.body, CONTENT.subarray(0, 10));
        }
      });

      it('answers 200 with everything for a stale or weak ETag, or another date', async () => {
        for (const value of [
          `"${'0'.repeat(64)}"`,
          `W/${asset.etag}`,
          'Mon, 15 Jan 2024 10:30:01 GMT',
          'Mon, 15 Jan 2024 10:29:59 GMT',
          'garbage',
        ]) {
          const res = await request(server, 'GET', path, { Range: 'bytes=0-9', 'If-Range': value });
          assert.equal(res.status, 200, value);
          assert.equal(res.headers['content-range'], undefined);
          assert.deepEqual(res.body, CONTENT);
        }
      });
    });

    describe('replacing content', () => {
      it('gives the latest URL a new ETag while a version URL keeps the old bytes', async () => {
        const first = await upload(server, 'first content', { filename: 'r.txt', contentType: 'text/plain' });
        const published = await server.json('POST', `/api/v1/assets/${first.id}/publish`);
        const put = await server.fetch(`/api/v1/assets/${first.id}/content`, {
          method: 'PUT',
          body: 'second, longer content',
          headers: { 'content-type': 'text/plain' },
        });
        assert.equal(put.status, 200);
        const replaced = (await put.json()) as any;
        assert.notEqual(replaced.etag, first.etag);

        const latest = await request(server, 'GET', `/a/${first.id}`, { 'If-None-Match': first.etag });
        assert.equal(latest.status, 200);
        assert.equal(latest.headers.etag, replaced.etag);
        assert.equal(latest.headers.etag, `"${sha256(Buffer.from('second, longer content'))}"`);
        assert.equal(latest.body.toString(), 'second, longer content');

        const stale = await request(server, 'GET', `/a/${first.id}`, {
          Range: 'bytes=0-4',
          'If-Range': first.etag,
        });
        assert.equal(stale.status, 200);
        assert.equal(stale.body.toString(), 'second, longer content');

        const version = await request(server, 'GET', `/v/${published.body.id}`);
        assert.equal(version.status, 200);
        assert.equal(version.headers.etag, first.etag);
        assert.equal(version.body.toString(), 'first content');
        const revalidated = await request(server, 'GET', `/v/${published.body.id}`, {
          'If-None-Match': first.etag,
        });
        assert.equal(revalidated.status, 304);
      });

      it('does not splice two contents for If-Range by date, even when the content changes within one second', async () => {
        // HTTP dates have one-second resolution. If two contents shared a Last-Modified, a client resuming
        // the first with If-Range: <date> would get the tail of the second (RFC 9110 §13.1.5). Conveyor
        // moves Last-Modified to a later second on every content change, so the old date never matches.
        const a = await upload(server, 'AAAAAAAAAAAAAAAAAAAA', {
          filename: 's.txt',
          contentType: 'text/plain',
        });
        const before = await request(server, 'GET', `/a/${a.id}`);
        const put = await server.fetch(`/api/v1/assets/${a.id}/content`, {
          method: 'PUT',
          body: 'BBBBBBBBBBBBBBBBBBBB',
          headers: { 'content-type': 'text/plain' },
        });
        assert.equal(put.status, 200);
        const afterPut = await request(server, 'HEAD', `/a/${a.id}`);
        assert.notEqual(afterPut.headers['last-modified'], before.headers['last-modified']);
        const resumed = await request(server, 'GET', `/a/${a.id}`, {
          Range: 'bytes=10-',
          'If-Range': before.headers['last-modified']!,
        });
        assert.equal(resumed.status, 200, "If-Range with the old content's date must not yield 206");
        assert.equal(resumed.body.toString(), 'BBBBBBBBBBBBBBBBBBBB');
      });
    });

    describe('empty content', () => {
      it('answers 200 with Content-Length 0, and 416 to bytes=0-0', async () => {
        const empty = await upload(server, Buffer.alloc(0), { filename: 'empty.bin' });
        assert.equal(empty.size, 0);
        const res = await request(server, 'GET', `/a/${empty.id}`);
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-length'], '0');
        assert.equal(res.body.length, 0);
        assert.equal(res.headers.etag, `"${sha256(Buffer.alloc(0))}"`);
        const head = await rawExchange(server, 'HEAD', `/a/${empty.id}`);
        assert.equal(head.status, 200);
        assert.match(head.head, /^content-length: 0$/im);
        const range = await request(server, 'GET', `/a/${empty.id}`, { Range: 'bytes=0-0' });
        assertProblem(range, 416);
        assert.equal(range.headers['content-range'], 'bytes */0');
      });
    });

    describe('unknown and malformed ids', () => {
      const notFound = [
        '/a/nonsense',
        `/a/ast_${'0'.repeat(26)}`,
        `/a/ast_${'z'.repeat(26)}`,
        `/v/ver_${'0'.repeat(26)}`,
        '/v/nonsense',
        '/v/../../etc/passwd',
        '/v/..%2F..%2Fetc%2Fpasswd',
        '/a/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
        '/a/ast_%00',
        '/a/',
        '/v/',
      ];
      for (const target of notFound) {
        it(`answers 404 problem+json for ${target}`, async () => {
          const res = await request(server, 'GET', target);
          assert.equal(res.status, 404, `${target}: ${res.body.toString().slice(0, 200)}`);
          assertProblem(res, 404);
          const head = await rawExchange(server, 'HEAD', target);
          assert.equal(head.status, 404);
          assert.equal(head.after.length, 0);
        });
      }

      // Ids the router cannot even decode or that exceed its parameter length: a 4xx is right, but it must
      // still be problem+json like every other error, never Fastify's own JSON and never a 500.
      const malformed: [string, string][] = [
        ['/a/%ff%fe', 'invalid percent-encoding'],
        ['/a/ast_%', 'a truncated percent-encoding'],
        [`/a/${'x'.repeat(5000)}`, 'a 5000-character id'],
      ];
      for (const [target, name] of malformed) {
        it(`answers a 4xx problem+json for ${name}`, async () => {
          const res = await request(server, 'GET', target);
          assert.ok(
            [400, 404, 414].includes(res.status),
            `${res.status} ${res.body.toString().slice(0, 200)}`,
          );
          assertProblem(res, res.status);
        });
      }

      it('lets shared caches keep a 404 briefly (negative caching), but not an authorized one', async () => {
        for (const target of [`/a/ast_${'0'.repeat(26)}`, `/v/ver_${'0'.repeat(26)}`, '/a/nonsense']) {
          for (const method of ['GET', 'HEAD']) {
            const res = await request(server, method, target);
            assert.equal(res.status, 404);
            assert.equal(
              res.headers['cache-control'],
              'public, max-age=0, s-maxage=10',
              `${method} ${target}`,
            );
            const authorized = await request(server, method, target, {
              authorization: `Bearer ${server.adminKey}`,
            });
            assert.equal(authorized.status, 404);
            assert.equal(authorized.headers['cache-control'], 'no-store', `${method} ${target} authorized`);
          }
        }
      });

      it('answers 404 for an asset id used as a version id and the reverse', async () => {
        assert.equal((await request(server, 'GET', `/v/${asset.id}`)).status, 404);
        assert.equal((await request(server, 'GET', `/a/${versionPath.slice(3)}`)).status, 404);
      });
    });

    describe('active content', () => {
      it('serves text/html with a sandboxing Content-Security-Policy', async () => {
        const html = await upload(server, '<!doctype html><script>alert(1)</script>', {
          filename: 'x.html',
          contentType: 'text/html',
        });
        assert.equal(html.contentType, 'text/html; charset=utf-8');
        const res = await request(server, 'GET', `/a/${html.id}`);
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
        assert.match(String(res.headers['content-security-policy']), /(^|;\s*)sandbox(\s*;|$)/);
        assert.equal(res.headers['x-content-type-options'], 'nosniff');
        const partial = await request(server, 'GET', `/a/${html.id}`, { Range: 'bytes=0-4' });
        assert.equal(partial.status, 206);
        assert.match(String(partial.headers['content-security-policy']), /(^|;\s*)sandbox(\s*;|$)/);
      });

      it('serves image/svg+xml with a sandboxing Content-Security-Policy', async () => {
        const svg = await upload(
          server,
          '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
          { filename: 'x.svg', contentType: 'image/svg+xml' },
        );
        const res = await request(server, 'GET', `/a/${svg.id}`);
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-type'], svg.contentType);
        assert.match(svg.contentType, /^image\/svg\+xml/);
        assert.match(String(res.headers['content-security-policy']), /(^|;\s*)sandbox(\s*;|$)/);
      });

      it('serves a PDF sandboxed and inline, on 200, 206, 304 and HEAD alike', async () => {
        const pdf = await upload(server, PDF, { filename: 'report.pdf', contentType: 'application/pdf' });
        assert.equal(pdf.contentType, 'application/pdf');
        const path = `/a/${pdf.id}`;
        const full = await request(server, 'GET', path);
        const head = await request(server, 'HEAD', path);
        const partial = await request(server, 'GET', path, { range: 'bytes=0-3' });
        const notModified = await request(server, 'GET', path, { 'if-none-match': pdf.etag });
        assert.deepEqual(
          [full.status, head.status, partial.status, notModified.status],
          [200, 200, 206, 304],
        );
        assert.deepEqual(full.body, PDF);
        for (const res of [full, head, partial, notModified]) {
          assert.match(String(res.headers['content-security-policy']), /(^|;\s*)sandbox(\s*;|$)/);
          assert.equal(res.headers['x-content-type-options'], 'nosniff');
        }
        for (const res of [full, head, partial]) {
          assert.equal(res.headers['content-disposition'], 'inline; filename="report.pdf"');
        }
      });

      it('stores and serves a PNG declared as text/html as image/png', async () => {
        const png = await upload(server, PNG, { filename: 'x.html', contentType: 'text/html' });
        assert.equal(png.contentType, 'image/png');
        const res = await request(server, 'GET', `/a/${png.id}`);
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-type'], 'image/png');
        assert.deepEqual(res.body, PNG);
      });
    });
  });
}

describe('active content as attachments (deliveryActiveContent=attachment)', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor(undefined, { deliveryActiveContent: 'attachment' });
  });
  after(() => server.close());

  it('serves PDF, HTML and SVG as sandboxed attachments, and everything else inline as before', async () => {
    const cases: [Buffer | string, string, string, 'attachment' | 'inline', boolean][] = [
      [PDF, 'report.pdf', 'application/pdf', 'attachment', true],
      ['<!doctype html><script>alert(1)</script>', 'x.html', 'text/html', 'attachment', true],
      ['<svg xmlns="http://www.w3.org/2000/svg"/>', 'x.svg', 'image/svg+xml', 'attachment', true],
      [PNG, 'x.png', 'image/png', 'inline', false],
      ['just text', 'x.txt', 'text/plain', 'inline', false],
    ];
    for (const [bytes, filename, contentType, disposition, sandboxed] of cases) {
      const asset = await upload(server, bytes, { filename, contentType });
      for (const [method, headers] of [
        ['GET', {}],
        ['HEAD', {}],
        ['GET', { range: 'bytes=0-1' }],
      ] as const) {
        const res = await request(server, method, `/a/${asset.id}`, headers);
        assert.ok([200, 206].includes(res.status), `${method} ${filename}: ${res.status}`);
        assert.equal(
          res.headers['content-disposition'],
          `${disposition}; filename="${filename}"`,
          `${method} ${filename}`,
        );
        assert.equal(res.headers['content-security-policy'] !== undefined, sandboxed, filename);
        assert.equal(res.headers['x-content-type-options'], 'nosniff');
      }
    }
  });
});
