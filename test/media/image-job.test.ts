import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { BACKENDS, skipIfNoPostgres, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { pngBomb, sceneJpeg } from './image/sample-images.ts';

const CHROME_ACCEPT = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';

/** The image job of an asset, once it has ended. */
async function imageJob(server: TestServer, assetId: string): Promise<any> {
  return waitFor(
    `image job of ${assetId}`,
    async () => {
      const { body } = await server.json('GET', '/api/v1/jobs?type=image.process&limit=100');
      const job = body.items.find((j: any) => j.payload.assetId === assetId);
      return job && ['succeeded', 'dead'].includes(job.state) ? job : null;
    },
    30_000,
  );
}

async function bytesOf(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer());
}

for (const backend of BACKENDS) {
  describe(`image pipeline (${backend.database} + ${backend.storage})`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    let photo: any;

    before(async () => {
      if (skip) return;
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        // Small presets and no AVIF variants keep the suite quick; the transforms below do render AVIF.
        imagePresets: 'thumb=w:64,h:64,fit:cover,g:attention;small=w:200,fit:inside',
        imageVariantFormats: 'webp,jpeg',
        transformConcurrency: 1,
        // Metadata stays known between two requests however slow the machine (the at-once check below).
        deliveryMetadataTtlMs: 60_000,
        transformQueueSize: 2,
      });
      photo = await upload(server, await sceneJpeg(640, 480), {
        filename: 'photo.jpg',
        contentType: 'image/jpeg',
      });
    });
    after(() => server?.close());

    test('an uploaded image is analysed and gets its variants, listed on the asset', { skip }, async () => {
      const job = await imageJob(server, photo.id);
      assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
      assert.equal(job.result.variants, 4);
      const { body } = await server.json('GET', `/api/v1/assets/${photo.id}`);
      assert.equal(body.media.width, 640);
      assert.equal(body.media.height, 480);
      assert.equal(body.media.format, 'jpeg');
      assert.match(body.media.dominantColor, /^#[0-9a-f]{6}$/);
      assert.match(body.media.phash, /^[0-9a-f]{16}$/);
      assert.ok(body.media.thumbhash.length > 10);
      assert.equal(body.media.blurhash.length, 28);
      assert.deepEqual(
        body.variants.map((v: any) => `${v.preset}.${v.format} ${v.width}x${v.height}`).sort(),
        ['small.jpeg 200x150', 'small.webp 200x150', 'thumb.jpeg 64x64', 'thumb.webp 64x64'],
      );
      const list = await server.json('GET', '/api/v1/assets?limit=10');
      assert.equal(list.body.items.find((a: any) => a.id === photo.id).variants.length, 4);
    });

    test('variants are served under the asset URL (mutable) and the version URL (immutable)', {
      skip,
    }, async () => {
      await imageJob(server, photo.id);
      const thumb = await fetch(`${photo.url}/thumb.webp`);
      assert.equal(thumb.status, 200);
      assert.equal(thumb.headers.get('content-type'), 'image/webp');
      assert.match(thumb.headers.get('cache-control')!, /max-age=60/);
      const meta = await sharp(await bytesOf(thumb)).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['webp', 64, 64]);
      const etag = thumb.headers.get('etag')!;
      const again = await fetch(`${photo.url}/thumb.webp`, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304);

      const version = await server.json('POST', `/api/v1/assets/${photo.id}/publish`);
      const pinned = await fetch(`${version.body.url}/small.jpg`);
      assert.equal(pinned.status, 200);
      assert.equal(pinned.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      const versions = await server.json('GET', `/api/v1/assets/${photo.id}/versions`);
      assert.equal(versions.body.items[0].variants.length, 4);
      assert.match(versions.body.items[0].variants[0].url, /\/v\/ver_/);

      assert.equal((await fetch(`${photo.url}/huge.webp`)).status, 404);
      assert.equal((await fetch(`${photo.url}/thumb.gif`)).status, 404);

      // The CDN's variant requests take the delivery shortcut, answered at once when known, and exactly
      // as the Fastify route answers them (an Authorization header sends a request there).
      const fast = server.conveyor.app.fastDelivery;
      const { handled, atOnce } = fast;
      const shortcut = await fetch(`${photo.url}/thumb.webp`);
      assert.equal(fast.handled, handled + 1);
      assert.equal(fast.atOnce, atOnce + 1, 'the variant was known: answered from memory');
      const routed = await fetch(`${photo.url}/thumb.webp`, {
        headers: { authorization: `Bearer ${server.adminKey}` },
      });
      assert.equal(fast.handled, handled + 1, 'with Authorization: Fastify');
      for (const name of [
        'etag',
        'cache-control',
        'content-type',
        'content-length',
        'last-modified',
        'vary',
      ]) {
        assert.equal(shortcut.headers.get(name), routed.headers.get(name), name);
      }
      assert.ok((await bytesOf(shortcut)).equals(await bytesOf(routed)));
    });

    test('a decompression bomb and a truncated image end dead, with nothing derived', { skip }, async () => {
      const bomb = await upload(server, pngBomb(50_000, 50_000), {
        filename: 'bomb.png',
        contentType: 'image/png',
      });
      const bombJob = await imageJob(server, bomb.id);
      assert.equal(bombJob.state, 'dead');
      assert.equal(bombJob.attempts, 1);
      assert.equal(bombJob.errors[0].code, 'image_too_large');

      const whole = await sceneJpeg(400, 300, 'b');
      const cut = await upload(server, whole.subarray(0, Math.floor(whole.length / 2)), {
        filename: 'cut.jpg',
        contentType: 'image/jpeg',
      });
      const cutJob = await imageJob(server, cut.id);
      assert.equal(cutJob.state, 'dead');
      assert.equal(cutJob.errors[0].code, 'image_corrupt');
      for (const asset of [bomb, cut]) {
        const { body } = await server.json('GET', `/api/v1/assets/${asset.id}`);
        assert.equal(body.media, null);
        assert.deepEqual(body.variants, []);
      }
    });

    test('signed transforms: dimensions and format by decoding; tampering is refused', { skip }, async () => {
      const signed = await server.json('POST', `/api/v1/assets/${photo.id}/transform-url`, {
        width: 100,
        height: 100,
        fit: 'cover',
        format: 'png',
      });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const res = await fetch(signed.body.url);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'image/png');
      const meta = await sharp(await bytesOf(res)).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['png', 100, 100]);

      // Answered by the delivery shortcut, and the same as through Fastify (an Authorization header
      // sends a request there).
      const fast = server.conveyor.app.fastDelivery;
      const before = fast.handled;
      const shortcut = await fetch(signed.body.url);
      assert.equal(fast.handled, before + 1);
      const routed = await fetch(signed.body.url, {
        headers: { authorization: `Bearer ${server.adminKey}` },
      });
      assert.equal(fast.handled, before + 1);
      for (const name of ['etag', 'cache-control', 'content-type', 'content-length', 'last-modified']) {
        assert.equal(shortcut.headers.get(name), routed.headers.get(name), name);
      }
      const shortcutBytes = await bytesOf(shortcut);
      assert.ok(shortcutBytes.equals(await bytesOf(routed)));

      // Once stored and looked up, the output is known in memory: answered at once, the same.
      await server.conveyor.media.transforms.settled();
      await fetch(signed.body.url);
      const atOnce = fast.atOnce;
      const known = await fetch(signed.body.url);
      assert.equal(fast.atOnce, atOnce + 1, 'answered from memory');
      for (const name of ['etag', 'cache-control', 'content-type', 'content-length', 'last-modified']) {
        assert.equal(known.headers.get(name), shortcut.headers.get(name), name);
      }
      assert.ok((await bytesOf(known)).equals(shortcutBytes));

      const path: string = signed.body.path;
      const sig = path.split('/')[2]!;
      const flipped = sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A');
      const tampered = [
        path.replace(sig, flipped),
        path.replace('w:100', 'w:101'),
        // Another id: its last character changed (ids are random, so choose one it does not end with).
        path.replace(photo.id, photo.id.slice(0, -1) + (photo.id.endsWith('x') ? 'y' : 'x')),
        path.replace(/^\/t\/[^/]+/, '/t/_'),
      ];
      for (const bad of tampered) {
        const answer = await fetch(server.url + bad);
        assert.equal(answer.status, 403, bad);
        assert.equal(answer.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      }
      assert.equal((await fetch(`${server.url}/t/x.y/w:0/${photo.id}`)).status, 400);
      assert.equal((await fetch(`${signed.body.url}?x=1`)).status, 400);
    });

    test('format auto follows Accept, with Vary: Accept', { skip }, async () => {
      const signed = await server.json('POST', `/api/v1/assets/${photo.id}/transform-url`, {
        width: 120,
        format: 'auto',
      });
      const cases: [string | undefined, string][] = [
        [CHROME_ACCEPT, 'avif'],
        ['image/webp,*/*', 'webp'],
        ['*/*', 'jpeg'],
        [undefined, 'jpeg'],
      ];
      for (const [accept, format] of cases) {
        const res = await fetch(signed.body.url, { headers: accept ? { accept } : {} });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('vary'), 'Accept');
        const meta = await sharp(await bytesOf(res)).metadata();
        assert.equal(meta.format === 'heif' ? 'avif' : meta.format, format, String(accept));
        assert.equal(meta.width, 120);
      }
    });

    test('identical concurrent requests render once; a burst past the queue gets 503 and the server stays up', {
      skip,
    }, async () => {
      const transforms = server.conveyor.media.transforms;
      const signed = await server.json('POST', `/api/v1/assets/${photo.id}/transform-url`, {
        width: 33,
        format: 'webp',
      });
      const before = transforms.renders;
      const same = await Promise.all(Array.from({ length: 6 }, () => fetch(signed.body.url)));
      assert.deepEqual(
        same.map((r) => r.status),
        [200, 200, 200, 200, 200, 200],
      );
      assert.equal(transforms.renders - before, 1);
      const etags = new Set(same.map((r) => r.headers.get('etag')));
      assert.equal(etags.size, 1);

      const urls = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const r = await server.json('POST', `/api/v1/assets/${photo.id}/transform-url`, {
            width: 300 + i,
            format: 'avif',
          });
          return r.body.url as string;
        }),
      );
      const burst = await Promise.all(urls.map((url) => fetch(url)));
      const statuses = burst.map((r) => r.status);
      assert.ok(statuses.includes(503), String(statuses));
      assert.ok(statuses.includes(200), String(statuses));
      for (const r of burst.filter((r) => r.status === 503)) assert.equal(r.headers.get('retry-after'), '1');
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    });
  });
}
