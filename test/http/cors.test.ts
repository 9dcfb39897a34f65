import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { type Reply, request } from '../helpers/http.ts';

/**
 * CORS per surface (src/http/cors.ts): preflights answered without credentials, headers on every answer
 * to an allowed origin (problems included), nothing for other origins, and delivery's headers the same
 * through the shortcut (src/delivery/fast-delivery.ts) as through Fastify.
 */

const APP = 'https://app.example.com';
const OTHER = 'https://evil.example.net';
const TUS = { 'tus-resumable': '1.0.0' };

function list(value: string | string[] | undefined): string[] {
  return String(value ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

/** An answer to APP: its origin allowed, Vary: Origin, and the named headers exposed. */
function assertAllowed(reply: Reply, expose: string[], what: string): void {
  assert.equal(reply.headers['access-control-allow-origin'], APP, what);
  assert.ok(list(reply.headers.vary).includes('origin'), `${what}: Vary ${reply.headers.vary}`);
  const exposed = list(reply.headers['access-control-expose-headers']);
  for (const name of expose)
    assert.ok(exposed.includes(name.toLowerCase()), `${what}: ${name} in ${exposed}`);
  assert.equal(reply.headers['access-control-allow-credentials'], undefined, what);
}

/** An answer to any other origin: no CORS, but Vary: Origin (a cache must not reuse it for APP). */
function assertRefused(reply: Reply, what: string): void {
  for (const name of Object.keys(reply.headers)) {
    assert.ok(!name.startsWith('access-control-'), `${what}: ${name}`);
  }
  assert.ok(list(reply.headers.vary).includes('origin'), `${what}: Vary ${reply.headers.vary}`);
}

function preflight(origin: string, method: string, headers: string): Record<string, string> {
  return { origin, 'access-control-request-method': method, 'access-control-request-headers': headers };
}

describe('CORS with an origin list on every surface', () => {
  let server: TestServer;
  let assetId = '';

  before(async () => {
    server = await startConveyor(undefined, {
      corsApiOrigins: `${APP},http://localhost:3000`,
      corsUploadsOrigins: APP,
      corsDeliveryOrigins: APP,
      corsMaxAgeSeconds: 120,
      // Metadata stays known between requests, so that the shortcut answers at once.
      deliveryMetadataTtlMs: 60_000,
    });
    assetId = (await upload(server, Buffer.alloc(1000, 3), { filename: 'a.bin' })).id;
  });
  after(() => server?.close());

  it('answers an API preflight 204 without credentials, before the authentication', async () => {
    for (const [path, method] of [
      ['/api/v1/assets', 'POST'],
      [`/api/v1/assets/${assetId}`, 'DELETE'],
      ['/api/v1/jobs?state=failed', 'GET'],
    ] as const) {
      const reply = await request(
        server,
        'OPTIONS',
        path,
        preflight(APP, method, 'authorization,content-type'),
      );
      assert.equal(reply.status, 204, path);
      assert.equal(reply.body.length, 0);
      assert.equal(reply.headers['access-control-allow-origin'], APP, path);
      assert.ok(list(reply.headers['access-control-allow-methods']).includes(method.toLowerCase()));
      const allowed = list(reply.headers['access-control-allow-headers']);
      for (const name of ['authorization', 'content-type']) assert.ok(allowed.includes(name), name);
      assert.equal(reply.headers['access-control-max-age'], '120');
      assert.equal(reply.headers.vary, 'Origin');
      assert.ok(reply.headers['x-request-id']);
    }
  });

  it('answers a tus preflight 204 without credentials, with the protocol headers allowed', async () => {
    const headers = 'authorization,tus-resumable,upload-length,upload-metadata,upload-offset,content-type';
    for (const [path, method] of [
      ['/api/v1/uploads', 'POST'],
      [`/api/v1/uploads/${'0'.repeat(32)}`, 'PATCH'],
      [`/api/v1/uploads/${'0'.repeat(32)}`, 'HEAD'],
    ] as const) {
      const reply = await request(server, 'OPTIONS', path, preflight(APP, method, headers));
      assert.equal(reply.status, 204, path);
      assert.equal(reply.headers['access-control-allow-origin'], APP);
      assert.ok(list(reply.headers['access-control-allow-methods']).includes(method.toLowerCase()));
      const allowed = list(reply.headers['access-control-allow-headers']);
      for (const name of [...headers.split(','), 'upload-defer-length', 'upload-concat']) {
        assert.ok(allowed.includes(name), `${name} in ${allowed}`);
      }
      // The method override is not served (a POST to an upload answers 405), so it is not offered either.
      assert.ok(!allowed.includes('x-http-method-override'));
    }
  });

  it('gives a preflight from another origin the answer it would get without CORS', async () => {
    const api = await request(server, 'OPTIONS', '/api/v1/assets', preflight(OTHER, 'POST', 'authorization'));
    assert.equal(api.status, 404);
    assertRefused(api, 'API preflight');
    const tus = await request(
      server,
      'OPTIONS',
      '/api/v1/uploads',
      preflight(OTHER, 'POST', 'tus-resumable'),
    );
    // tus discovery (no credential needed) answers, but with no CORS header the browser refuses it.
    assert.equal(tus.status, 204);
    assertRefused(tus, 'tus preflight');
    // The uploads surface lists APP only, not the API's second origin.
    const local = 'http://localhost:3000';
    const elsewhere = await request(
      server,
      'OPTIONS',
      '/api/v1/uploads',
      preflight(local, 'POST', 'tus-resumable'),
    );
    assert.equal(elsewhere.status, 204);
    assertRefused(elsewhere, 'tus preflight from an API origin');
    const delivery = await request(server, 'OPTIONS', `/a/${assetId}`, preflight(OTHER, 'GET', 'range'));
    assert.equal(delivery.status, 404);
    assertRefused(delivery, 'delivery preflight');
  });

  it('puts the CORS headers on API answers to an allowed origin, problems included', async () => {
    const ok = await request(server, 'GET', `/api/v1/assets/${assetId}`, {
      origin: APP,
      authorization: `Bearer ${server.adminKey}`,
    });
    assert.equal(ok.status, 200);
    assertAllowed(ok, ['X-Request-Id', 'ETag', 'Location', 'Retry-After'], 'GET asset');
    const unauthenticated = await request(server, 'GET', `/api/v1/assets/${assetId}`, { origin: APP });
    assert.equal(unauthenticated.status, 401);
    assert.match(String(unauthenticated.headers['content-type']), /^application\/problem\+json/);
    assertAllowed(unauthenticated, ['WWW-Authenticate'], '401');
    const missing = await request(server, 'GET', '/api/v1/nothing-here', { origin: APP });
    assert.equal(missing.status, 404);
    assertAllowed(missing, [], '404');
    const refused = await request(server, 'GET', `/api/v1/assets/${assetId}`, {
      origin: OTHER,
      authorization: `Bearer ${server.adminKey}`,
    });
    assert.equal(refused.status, 200);
    assertRefused(refused, 'another origin');
    const noOrigin = await request(server, 'GET', `/api/v1/assets/${assetId}`, {
      authorization: `Bearer ${server.adminKey}`,
    });
    assertRefused(noOrigin, 'no Origin');
    // What has no CORS surface stays as it was.
    const health = await request(server, 'GET', '/healthz', { origin: APP });
    assert.equal(health.headers['access-control-allow-origin'], undefined);
    assert.equal(health.headers.vary, undefined);
  });

  it("puts the CORS headers on tus answers, not the library's own", async () => {
    const auth = { origin: APP, authorization: `Bearer ${server.adminKey}`, ...TUS };
    const created = await server.fetch('/api/v1/uploads', {
      method: 'POST',
      headers: { ...auth, 'upload-length': '5' },
    });
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('access-control-allow-origin'), APP);
    const exposed = list(created.headers.get('access-control-expose-headers') ?? '');
    for (const name of [
      'location',
      'upload-offset',
      'upload-length',
      'upload-expires',
      'tus-resumable',
      'asset-id',
    ]) {
      assert.ok(exposed.includes(name), `${name} in ${exposed}`);
    }
    const location = created.headers.get('location')!;
    const head = await request(server, 'HEAD', location, auth);
    assert.equal(head.status, 200);
    assertAllowed(head, ['Upload-Offset', 'Upload-Expires'], 'HEAD');
    const wrongOffset = await server.fetch(location, {
      method: 'PATCH',
      headers: { ...auth, 'upload-offset': '3', 'content-type': 'application/offset+octet-stream' },
      body: 'xy',
    });
    assert.equal(wrongOffset.status, 409);
    assert.equal(wrongOffset.headers.get('access-control-allow-origin'), APP);
    const unauthenticated = await request(server, 'HEAD', location, { origin: APP, ...TUS });
    assert.equal(unauthenticated.status, 401);
    assertAllowed(unauthenticated, ['Asset-Id'], 'tus 401');
  });

  it('answers a delivery preflight and allows GET, conditional and range answers, through the shortcut', async () => {
    const fast = server.conveyor.app.fastDelivery;
    const pre = await request(
      server,
      'OPTIONS',
      `/a/${assetId}`,
      preflight(APP, 'GET', 'range,if-none-match'),
    );
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], APP);
    assert.deepEqual(list(pre.headers['access-control-allow-methods']), ['get', 'head']);
    const allowed = list(pre.headers['access-control-allow-headers']);
    for (const name of ['range', 'if-none-match', 'if-modified-since', 'if-range'])
      assert.ok(allowed.includes(name));

    const expose = ['ETag', 'Content-Range', 'Accept-Ranges', 'Content-Length', 'X-Request-Id'];
    const before = fast.handled;
    const full = await request(server, 'GET', `/a/${assetId}`, { origin: APP });
    assert.equal(full.status, 200);
    assertAllowed(full, expose, '200');
    const etag = String(full.headers.etag);
    const notModified = await request(server, 'GET', `/a/${assetId}`, { origin: APP, 'if-none-match': etag });
    assert.equal(notModified.status, 304);
    assertAllowed(notModified, expose, '304');
    const partial = await request(server, 'GET', `/a/${assetId}`, { origin: APP, range: 'bytes=0-9' });
    assert.equal(partial.status, 206);
    assertAllowed(partial, expose, '206');
    const unsatisfiable = await request(server, 'GET', `/a/${assetId}`, {
      origin: APP,
      range: 'bytes=5000-',
    });
    assert.equal(unsatisfiable.status, 416);
    assertAllowed(unsatisfiable, expose, '416');
    const head = await request(server, 'HEAD', `/a/${assetId}`, { origin: APP });
    assertAllowed(head, expose, 'HEAD');
    const refused = await request(server, 'GET', `/a/${assetId}`, { origin: OTHER });
    assert.equal(refused.status, 200);
    assertRefused(refused, 'another origin');
    const noOrigin = await request(server, 'GET', `/a/${assetId}`);
    assertRefused(noOrigin, 'no Origin');
    assert.equal(fast.handled, before + 7, 'all through the shortcut');
  });

  it('answers the same through Fastify, and for private content with a token', async () => {
    const fast = server.conveyor.app.fastDelivery;
    const before = fast.handled;
    // A private asset is read with an access token in the query: the Fastify route.
    const secret = await upload(server, 'secret', { filename: 's.txt', visibility: 'private' });
    const token = await server.json('POST', `/api/v1/assets/${secret.id}/tokens`, { ttlSeconds: 60 });
    const reply = await request(server, 'GET', `/a/${secret.id}?token=${token.body.token}`, { origin: APP });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'secret');
    assertAllowed(reply, ['ETag'], 'private with token');
    const method = await request(server, 'DELETE', `/a/${assetId}`, { origin: APP });
    assert.equal(method.status, 405);
    assertAllowed(method, [], '405');
    assert.equal(fast.handled, before);
    // Without its token (the shortcut's, which answers private content as unknown).
    const hidden = await request(server, 'GET', `/a/${secret.id}`, { origin: APP });
    assert.equal(hidden.status, 404);
    assertAllowed(hidden, [], 'private without token');
  });

  it("keeps a transform's Vary: Accept beside Vary: Origin", async () => {
    const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#369' } })
      .png()
      .toBuffer();
    const image = await upload(server, png, { filename: 'p.png', contentType: 'image/png' });
    const signed = await server.json('POST', `/api/v1/assets/${image.id}/transform-url`, {
      width: 20,
      format: 'auto',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const fast = server.conveyor.app.fastDelivery;
    for (const round of ['first (rendered)', 'second (from memory)']) {
      const before = fast.handled;
      const reply = await request(server, 'GET', signed.body.path, { origin: APP, accept: 'image/webp' });
      assert.equal(reply.status, 200, round);
      assert.equal(fast.handled, before + 1, round);
      assert.deepEqual(list(reply.headers.vary).sort(), ['accept', 'origin'], round);
      assert.equal(reply.headers['access-control-allow-origin'], APP, round);
    }
  });
});

describe('CORS with * for delivery, through Fastify (a delivery rate limit is on)', () => {
  let server: TestServer;
  let assetId = '';

  before(async () => {
    server = await startConveyor(undefined, { corsDeliveryOrigins: '*', rateLimitDelivery: 100_000 });
    assetId = (await upload(server, Buffer.alloc(100, 1), { filename: 'b.bin' })).id;
  });
  after(() => server?.close());

  it('allows every origin on delivery without Vary: Origin, and leaves the API as it was', async () => {
    const fast = server.conveyor.app.fastDelivery;
    const pre = await request(server, 'OPTIONS', `/a/${assetId}`, preflight(OTHER, 'GET', 'range'));
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], '*');
    assert.equal(pre.headers.vary, undefined);
    assert.equal(pre.headers['access-control-max-age'], '600');
    for (const origin of [OTHER, undefined]) {
      const reply = await request(server, 'GET', `/a/${assetId}`, origin ? { origin } : {});
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['access-control-allow-origin'], '*');
      assert.ok(list(reply.headers['access-control-expose-headers']).includes('ratelimit'));
      assert.ok(reply.headers.ratelimit, 'the rate limit applies');
      assert.equal(reply.headers.vary, undefined);
    }
    const range = await request(server, 'GET', `/a/${assetId}`, { origin: OTHER, range: 'bytes=1-2' });
    assert.equal(range.status, 206);
    assert.equal(range.headers['access-control-allow-origin'], '*');
    assert.equal(fast.handled, 0, 'the shortcut is off');
    // No API origins: its preflight and answers are as without CORS.
    const api = await request(server, 'OPTIONS', '/api/v1/assets', preflight(OTHER, 'GET', 'authorization'));
    assert.equal(api.status, 404);
    assert.equal(api.headers['access-control-allow-origin'], undefined);
    assert.equal(api.headers.vary, undefined);
    const tus = await request(
      server,
      'OPTIONS',
      '/api/v1/uploads',
      preflight(OTHER, 'POST', 'tus-resumable'),
    );
    // tus discovery, which needs no credential, without any CORS header: the browser refuses it.
    assert.equal(tus.status, 204);
    assert.equal(tus.headers['access-control-allow-origin'], undefined);
  });
});
