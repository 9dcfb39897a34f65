import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  BACKENDS,
  createTenant,
  skipIfNoPostgres,
  startConveyor,
  type TestServer,
} from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { type MotoS3, skipWithoutMoto, startMotoS3 } from '../helpers/moto.ts';
import { sceneJpeg } from '../media/image/sample-images.ts';

const TUS = { 'tus-resumable': '1.0.0' };
const b64 = (text: string) => Buffer.from(text).toString('base64');
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Resumable uploads through the whole server: auth, tenancy, the asset path and image processing. */
for (const backend of BACKENDS) {
  describe(`resumable uploads through the API (${backend.database} + ${backend.storage})`, async () => {
    const skip =
      (await skipIfNoPostgres(backend.database)) || (backend.storage === 's3' && skipWithoutMoto());
    let server: TestServer;
    let moto: MotoS3 | undefined;

    before(async () => {
      if (skip) return;
      // On S3 the whole server runs on moto: tus needs multipart operations s3rver lacks (helpers/moto.ts).
      moto = backend.storage === 's3' ? await startMotoS3() : undefined;
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        ...(moto
          ? {
              s3Endpoint: moto.endpoint,
              s3Bucket: moto.bucket,
              s3Region: moto.region,
              s3AccessKeyId: moto.accessKeyId,
              s3SecretAccessKey: moto.secretAccessKey,
            }
          : {}),
      });
    });
    after(async () => {
      await server?.close();
      await moto?.close();
    });

    async function create(length: number, metadata: string, key?: string): Promise<Response> {
      return server.fetch('/api/v1/uploads', {
        method: 'POST',
        headers: { ...TUS, 'upload-length': String(length), 'upload-metadata': metadata },
        ...(key ? { key } : {}),
      });
    }

    async function patch(location: string, offset: number, body: Buffer, key?: string): Promise<Response> {
      return server.fetch(location, {
        method: 'PATCH',
        headers: {
          ...TUS,
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
        },
        body,
        ...(key ? { key } : {}),
      });
    }

    test('an upload in two parts becomes an asset with the same bytes', { skip }, async () => {
      const bytes = randomBytes(1_500_000);
      const created = await create(bytes.length, `filename ${b64('big.bin')},visibility ${b64('private')}`);
      assert.equal(created.status, 201);
      const location = new URL(created.headers.get('location')!, server.url).pathname;
      assert.match(location, /^\/api\/v1\/uploads\/[0-9a-f]{32}$/);
      const first = await patch(location, 0, bytes.subarray(0, 600_000));
      assert.equal(first.status, 204);
      assert.equal(first.headers.get('upload-offset'), '600000');
      const head = await server.fetch(location, { method: 'HEAD', headers: TUS });
      assert.equal(head.headers.get('upload-offset'), '600000');
      const last = await patch(location, 600_000, bytes.subarray(600_000));
      assert.equal(last.status, 204);
      assert.equal(await last.text(), '');
      const { body: asset } = await server.json('GET', `/api/v1/assets/${last.headers.get('asset-id')}`);
      assert.equal(asset.filename, 'big.bin');
      assert.equal(asset.visibility, 'private');
      assert.equal(asset.sha256, sha256(bytes));
      const got = await server.fetch(`/a/${asset.id}`);
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(bytes));
      // The URL of the finished upload keeps answering with its asset, and makes no second one.
      const again = await server.fetch(location, { method: 'HEAD', headers: TUS });
      assert.equal(again.headers.get('asset-id'), asset.id);
    });

    test('an image uploaded with tus is processed like any other', { skip }, async () => {
      const jpeg = await sceneJpeg(320, 240);
      const created = await create(jpeg.length, `filename ${b64('photo.jpg')},filetype ${b64('image/jpeg')}`);
      const location = new URL(created.headers.get('location')!, server.url).pathname;
      const done = await patch(location, 0, jpeg);
      assert.equal(done.status, 204);
      const { body: asset } = await server.json('GET', `/api/v1/assets/${done.headers.get('asset-id')}`);
      assert.equal(asset.contentType, 'image/jpeg');
      const described = await waitFor('image analysis', async () => {
        const { body } = await server.json('GET', `/api/v1/assets/${asset.id}`);
        return body.media ? body : null;
      });
      assert.equal(described.media.width, 320);
    });

    test('discovery (OPTIONS) needs no credential; a credential given is still checked', {
      skip,
    }, async () => {
      const open = await server.fetch('/api/v1/uploads', { method: 'OPTIONS', headers: TUS, key: null });
      assert.equal(open.status, 204);
      assert.equal(open.headers.get('tus-version'), '1.0.0');
      assert.equal(open.headers.get('tus-max-size'), String(server.config.maxUploadBytes));
      const forged = await server.fetch('/api/v1/uploads', {
        method: 'OPTIONS',
        headers: { ...TUS, authorization: 'Bearer cvk_forged' },
        key: null,
      });
      assert.equal(forged.status, 401);
      assert.equal(forged.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
    });

    test('keys, roles and tenants apply: no key 401, viewer 403, another tenant 404', { skip }, async () => {
      const created = await create(10, `filename ${b64('x.txt')}`);
      const location = new URL(created.headers.get('location')!, server.url).pathname;
      const other = await createTenant(server, 'uploads-other');
      for (const method of ['HEAD', 'DELETE'] as const) {
        const res = await server.fetch(location, { method, headers: TUS, key: other.key });
        assert.equal(res.status, 404, method);
      }
      assert.equal((await patch(location, 0, Buffer.from('0123456789'), other.key)).status, 404);
      assert.equal((await server.fetch(location, { method: 'HEAD', headers: TUS, key: null })).status, 401);
      const viewer = await server.json('POST', '/api/v1/keys', { role: 'viewer' });
      assert.equal((await create(10, '', viewer.body.key)).status, 403);
      const tooBig = await server.fetch('/api/v1/uploads', {
        method: 'POST',
        headers: { ...TUS, 'upload-length': String(server.config.maxUploadBytes + 1) },
      });
      assert.equal(tooBig.status, 413);
      assert.equal(tooBig.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    });
  });
}
