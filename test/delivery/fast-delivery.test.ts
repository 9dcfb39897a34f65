import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { type Reply, request } from '../helpers/http.ts';

/**
 * The delivery shortcut (src/delivery/fast-delivery.ts) answers plain public GET and HEAD without Fastify. It
 * must be invisible: every request it takes is answered exactly as the Fastify route answers it. The
 * Fastify route is reached with the same request plus an `Authorization` header, which public content
 * ignores and which the shortcut leaves to Fastify.
 */

const THROUGH_FASTIFY = { authorization: 'Bearer not-a-key' };

/** A 404's Cache-Control by default (CONVEYOR_CACHE_NOT_FOUND_S_MAX_AGE). */
const NEGATIVE_CACHING = 'public, max-age=0, s-maxage=10';

/** A minimal PDF: active content, sandboxed (and an attachment when so configured). */
const PDF = Buffer.from('%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n');

/** What must be equal between the two paths: everything but the date and what is random per response. */
function comparable(reply: Reply): unknown {
  const { date: _date, ...headers } = reply.headers;
  const boundary = /boundary=([^;\s]+)/.exec(String(headers['content-type'] ?? ''))?.[1];
  const normalise = (text: string) => (boundary ? text.replaceAll(boundary, 'BOUNDARY') : text);
  for (const [name, value] of Object.entries(headers)) headers[name] = normalise(String(value));
  return { status: reply.status, headers, body: normalise(reply.body.toString('latin1')) };
}

describe('delivery shortcut', () => {
  let server: TestServer;
  const paths: Record<string, string> = {};
  let etag = '';

  before(async () => {
    // Metadata stays known between two requests however slow the machine (the at-once checks below).
    server = await startConveyor(undefined, { deliveryMetadataTtlMs: 60_000 });
    const big = await upload(server, Buffer.alloc(200_000, 7), { filename: 'ré sumé.bin' });
    const html = await upload(server, '<script>alert(1)</script>', {
      filename: 'page.html',
      contentType: 'text/html',
    });
    const secret = await upload(server, 'secret', { filename: 's.txt', visibility: 'private' });
    const version = await server.json('POST', `/api/v1/assets/${big.id}/publish`);
    etag = big.etag;
    paths.latest = `/a/${big.id}`;
    paths.version = `/v/${version.body.id}`;
    paths.active = `/a/${html.id}`;
    paths.private = `/a/${secret.id}`;
    const pdf = await upload(server, PDF, { filename: 'report.pdf', contentType: 'application/pdf' });
    paths.pdf = `/a/${pdf.id}`;
    // Preset variants of content that is not an image: 404 from both ways, problem documents alike.
    paths.variant = `/a/${big.id}/thumb.webp`;
    paths.versionVariant = `/v/${version.body.id}/small.jpg`;
    paths.badVariant = `/a/${big.id}/bad!name.webp`;
    paths.unknown = '/a/ast_0000000000000000000000000';
    paths.malformed = '/v/not-an-id';
  });
  after(() => server.close());

  const cases: [string, string, Record<string, string>][] = [
    ['GET', 'plain', {}],
    ['HEAD', 'plain', {}],
    ['GET', 'matching If-None-Match', { 'if-none-match': 'ETAG' }],
    ['HEAD', 'matching If-None-Match', { 'if-none-match': 'ETAG' }],
    ['GET', 'one range', { range: 'bytes=10-99' }],
    ['GET', 'two ranges', { range: 'bytes=0-1,-5' }],
    ['GET', 'unsatisfiable range', { range: 'bytes=999999-' }],
    ['GET', 'stale If-Range', { range: 'bytes=0-9', 'if-range': '"other"' }],
    ['GET', 'failing If-Match', { 'if-match': '"other"' }],
    ['HEAD', 'failing If-Match', { 'if-match': '"other"' }],
    ['GET', 'If-Modified-Since', { 'if-modified-since': 'Fri, 01 Jan 2100 00:00:00 GMT' }],
  ];

  it('answers every request exactly as the Fastify route does', async () => {
    const fast = server.conveyor.app.fastDelivery;
    for (const [which, path] of Object.entries(paths)) {
      for (const [method, label, given] of cases) {
        const headers: Record<string, string> = { ...given, 'x-request-id': 'same-id' };
        if (headers['if-none-match']) headers['if-none-match'] = etag;
        const before = fast.handled;
        const direct = await request(server, method, path, headers);
        assert.equal(fast.handled, before + 1, `${method} ${which} ${label} takes the shortcut`);
        const routed = await request(server, method, path, { ...headers, ...THROUGH_FASTIFY });
        assert.equal(
          fast.handled,
          before + 1,
          `${method} ${which} ${label} with Authorization goes to Fastify`,
        );
        // The one thing Authorization changes: a 404 that shared caches may keep (negative caching) is
        // no-store for an authorized request.
        if (direct.status === 404 && direct.headers['cache-control'] === NEGATIVE_CACHING) {
          assert.equal(routed.headers['cache-control'], 'no-store', `${method} ${which} ${label}`);
          routed.headers['cache-control'] = NEGATIVE_CACHING;
        }
        assert.deepEqual(comparable(direct), comparable(routed), `${method} ${which} ${label}`);
      }
    }
  });

  it('answers from memory exactly as after a lookup, and at once where nothing is left to wait for', async () => {
    const fast = server.conveyor.app.fastDelivery;
    // Multipart bodies are streamed; everything else of public content is in memory once looked up.
    const streamed = new Set(['two ranges']);
    for (const [which, path] of Object.entries(paths)) {
      const isPublic = ['latest', 'version', 'active', 'pdf'].includes(which);
      for (const [method, label, given] of cases) {
        const headers: Record<string, string> = { ...given, 'x-request-id': 'same-id' };
        if (headers['if-none-match']) headers['if-none-match'] = etag;
        server.conveyor.lookup.invalidate();
        let atOnce = fast.atOnce;
        const cold = await request(server, method, path, headers);
        assert.equal(
          fast.atOnce,
          atOnce,
          `${method} ${which} ${label}: the first request waits for the lookup`,
        );
        atOnce = fast.atOnce;
        const warm = await request(server, method, path, headers);
        const expected = isPublic && !streamed.has(label) ? atOnce + 1 : atOnce;
        assert.equal(fast.atOnce, expected, `${method} ${which} ${label}: answered at once or not`);
        assert.deepEqual(comparable(warm), comparable(cold), `${method} ${which} ${label}`);
      }
    }
  });

  it('serves what a CDN asks for: the bytes, the request id, the request metrics', async () => {
    const reply = await request(server, 'GET', paths.latest!, { 'x-request-id': 'cdn-123' });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.length, 200_000);
    assert.equal(reply.headers['x-request-id'], 'cdn-123');
    const generated = await request(server, 'GET', paths.latest!, { 'x-request-id': 'bad id with spaces' });
    assert.match(String(generated.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    const metrics = (await request(server, 'GET', '/metrics')).body.toString();
    const count = (route: string, status: string) =>
      Number(
        new RegExp(
          `^conveyor_http_requests_total\\{method="GET",route="${route}",status="${status}"\\} (\\d+)`,
          'm',
        ).exec(metrics)?.[1] ?? 0,
      );
    assert.ok(count('/a/:id', '200') >= 2, 'GET 200 counted under the route label');
    assert.ok(count('/v/:id', '404') >= 1, 'a 404 of a version URL counted too');
  });

  it('leaves everything else to Fastify', async () => {
    const fast = server.conveyor.app.fastDelivery;
    const others: [string, string][] = [
      ['GET', `${paths.private}?token=cvt_nope`],
      ['GET', `${paths.latest}?x=1`],
      ['GET', '/a/ast%5F0'],
      ['GET', `/a/${'z'.repeat(101)}`],
      ['GET', `${paths.latest}/`],
      ['DELETE', paths.latest!],
      ['OPTIONS', paths.latest!],
      ['GET', '/healthz'],
    ];
    for (const [method, path] of others) {
      const before = fast.handled;
      const reply = await request(server, method, path);
      assert.equal(fast.handled, before, `${method} ${path} is Fastify's`);
      assert.ok(reply.status < 500, `${method} ${path} -> ${reply.status}`);
    }
  });

  it('serves active content as an attachment exactly as the Fastify route does, when so configured', async () => {
    const attaching = await startConveyor(undefined, { deliveryActiveContent: 'attachment' });
    try {
      const pdf = await upload(attaching, PDF, { filename: 'report.pdf', contentType: 'application/pdf' });
      const fast = attaching.conveyor.app.fastDelivery;
      for (const [method, given] of [
        ['GET', {}],
        ['HEAD', {}],
        ['GET', { range: 'bytes=0-3' }],
        ['GET', { 'if-none-match': pdf.etag }],
      ] as const) {
        const headers = { ...given, 'x-request-id': 'same-id' };
        const before = fast.handled;
        const direct = await request(attaching, method, `/a/${pdf.id}`, headers);
        assert.equal(fast.handled, before + 1, `${method} takes the shortcut`);
        const routed = await request(attaching, method, `/a/${pdf.id}`, { ...headers, ...THROUGH_FASTIFY });
        assert.deepEqual(comparable(direct), comparable(routed), `${method} ${JSON.stringify(given)}`);
        if (direct.status !== 304) {
          assert.equal(direct.headers['content-disposition'], 'attachment; filename="report.pdf"');
        }
        assert.match(String(direct.headers['content-security-policy']), /sandbox/);
      }
    } finally {
      await attaching.close();
    }
  });

  it('is off while a delivery rate limit is configured', async () => {
    const limited = await startConveyor(undefined, { rateLimitDelivery: 1000 });
    try {
      const asset = await upload(limited, 'hello');
      const reply = await request(limited, 'GET', `/a/${asset.id}`);
      assert.equal(reply.status, 200);
      assert.ok(reply.headers.ratelimit, 'the limit is applied and announced');
      assert.equal(limited.conveyor.app.fastDelivery.handled, 0);
    } finally {
      await limited.close();
    }
  });
});
