import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { request } from '../helpers/http.ts';

describe('compression of API answers', () => {
  let server: TestServer;
  let auth: Record<string, string>;
  // Text compresses well; a media type the API would never compress for delivery either way.
  const content = 'compressible text '.repeat(200);
  let assetUrl: string;

  before(async () => {
    server = await startConveyor(undefined, { apiCompressMinBytes: 512 });
    auth = { authorization: `Bearer ${server.adminKey}` };
    for (let i = 0; i < 5; i++) {
      const asset = await upload(server, content, { filename: `file-${i}.txt`, contentType: 'text/plain' });
      assetUrl = new URL(asset.url).pathname;
    }
  });
  after(async () => server?.close());

  it('compresses a large JSON answer with br or gzip as Accept-Encoding asks, and says Vary', async () => {
    const plain = await request(server, 'GET', '/api/v1/assets', auth);
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.ok(plain.body.length >= 512, `the listing is ${plain.body.length} bytes`);
    const expected = JSON.parse(plain.body.toString());
    for (const [accept, encoding, decode] of [
      ['br, gzip', 'br', brotliDecompressSync],
      ['gzip', 'gzip', gunzipSync],
      ['gzip;q=0.5, br;q=1', 'br', brotliDecompressSync],
    ] as const) {
      const res = await request(server, 'GET', '/api/v1/assets', { ...auth, 'accept-encoding': accept });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-encoding'], encoding, accept);
      assert.match(String(res.headers.vary), /accept-encoding/i);
      assert.ok(
        res.body.length < plain.body.length,
        `${encoding}: ${res.body.length} < ${plain.body.length}`,
      );
      assert.deepEqual(JSON.parse(decode(res.body).toString()), expected);
    }
  });

  it('compresses the OpenAPI document', async () => {
    const res = await request(server, 'GET', '/api/v1/openapi.json', { 'accept-encoding': 'gzip' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-encoding'], 'gzip');
    assert.equal(JSON.parse(gunzipSync(res.body).toString()).openapi, '3.1.0');
  });

  it('leaves small answers as they are', async () => {
    const res = await request(server, 'GET', '/api/v1/health', { ...auth, 'accept-encoding': 'br, gzip' });
    assert.ok(res.status < 300, String(res.status));
    assert.ok(res.body.length < 512);
    assert.equal(res.headers['content-encoding'], undefined);
  });

  it('never compresses delivery, whatever the client accepts', async () => {
    for (const method of ['GET', 'HEAD']) {
      const res = await request(server, method, assetUrl, { 'accept-encoding': 'br, gzip, deflate' });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-encoding'], undefined);
      assert.equal(res.headers['content-length'], String(Buffer.byteLength(content)));
      if (method === 'GET') assert.equal(res.body.toString(), content);
    }
  });
});
