import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import sharp from 'sharp';
import { launchChromium, skipWithoutChromium, startSite } from '../helpers/browser.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';

/**
 * CORS as a real browser sees it (src/http/cors.ts): Debian's Chromium, driven by playwright-core (which
 * never downloads a browser of its own here), opens a page on one loopback origin and talks to Conveyor on
 * another: a tus upload with tus-js-client and an API key, its Asset-Id read from the final PATCH, the
 * asset's bytes fetched from delivery (and drawn from an `<img crossorigin>` into a canvas it may read),
 * a range request with a validator (preflighted), and the API with Authorization. A page on a third origin,
 * not listed, is refused by the browser, and its preflighted requests never reach a route.
 *
 * In CI (CI=true) the browser must be there (.ci/run installs Debian's `chromium`); elsewhere the test is
 * skipped when it is not.
 */

const TUS_BUNDLE = new URL('../../node_modules/tus-js-client/dist/tus.min.js', import.meta.url);
const PAGE = '<!doctype html><meta charset="utf-8"><title>cors</title><script src="/tus.min.js"></script>';

type Site = Awaited<ReturnType<typeof startSite>>;

const skip = skipWithoutChromium('the browser CORS test');

interface PageArgs {
  api: string;
  key: string;
  bytes: number[];
}

describe('CORS in a real browser', { skip }, () => {
  let allowed: Site;
  let other: Site;
  let server: TestServer;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let context: BrowserContext;
  let png: Buffer;

  before(async () => {
    png = await sharp({ create: { width: 3, height: 2, channels: 4, background: '#ff000080' } })
      .png()
      .toBuffer();
    allowed = await startSite(PAGE, { name: 'tus.min.js', file: TUS_BUNDLE });
    other = await startSite(PAGE, { name: 'tus.min.js', file: TUS_BUNDLE });
    server = await startConveyor(undefined, {
      corsApiOrigins: allowed.origin,
      corsUploadsOrigins: allowed.origin,
      corsDeliveryOrigins: allowed.origin,
    });
    assert.notEqual(new URL(server.url).origin, allowed.origin);
    browser = await launchChromium();
    context = browser.context;
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await allowed?.close();
    await other?.close();
  });

  async function open(origin: string): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => (globalThis as any).tus !== undefined);
    return page;
  }

  it('uploads with tus, reads the Asset-Id, then the bytes from delivery and the asset from the API', async () => {
    const page = await open(allowed.origin);
    const args: PageArgs = { api: server.url, key: server.adminKey, bytes: [...png] };
    const seen = await page.evaluate(async ({ api, key, bytes }: PageArgs) => {
      const { tus, document } = globalThis as any;
      const data = new Uint8Array(bytes);
      const statuses: number[] = [];
      // Two PATCHes: the final one answers 204 with Asset-Id, read through Access-Control-Expose-Headers.
      const assetId: string = await new Promise((resolve, reject) => {
        const upload = new tus.Upload(new Blob([data], { type: 'image/png' }), {
          endpoint: `${api}/api/v1/uploads`,
          headers: { Authorization: `Bearer ${key}` },
          metadata: { filename: 'dot.png', filetype: 'image/png' },
          chunkSize: Math.ceil(data.length / 2),
          addRequestId: true,
          retryDelays: [],
          storeFingerprintForResuming: false,
          onAfterResponse: (_req: unknown, res: any) => {
            statuses.push(res.getStatus());
          },
          onSuccess: ({ lastResponse }: any) => resolve(lastResponse.getHeader('Asset-Id')),
          onError: (error: Error) => reject(new Error(`tus: ${error.message}`)),
        });
        upload.start();
      });

      const delivered = await fetch(`${api}/a/${assetId}`);
      const deliveredBytes = [...new Uint8Array(await delivered.arrayBuffer())];
      // If-None-Match is not CORS-safelisted: this one is preflighted.
      const ranged = await fetch(`${api}/a/${assetId}`, {
        headers: { Range: 'bytes=0-3', 'If-None-Match': '"not-it"' },
      });
      const rangedBytes = [...new Uint8Array(await ranged.arrayBuffer())];

      const described = await fetch(`${api}/api/v1/assets/${assetId}`, {
        headers: { Authorization: `Bearer ${key}` },
      });
      const asset: any = await described.json();

      // A cross-origin image drawn into a canvas that stays readable (not tainted).
      const image = document.createElement('img');
      image.crossOrigin = 'anonymous';
      image.src = `${api}/a/${assetId}`;
      await image.decode();
      const canvas = document.createElement('canvas');
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const drawing = canvas.getContext('2d');
      drawing.drawImage(image, 0, 0);
      const pixel = [...drawing.getImageData(0, 0, 1, 1).data];

      return {
        assetId,
        statuses,
        delivered: { status: delivered.status, bytes: deliveredBytes, etag: delivered.headers.get('etag') },
        ranged: {
          status: ranged.status,
          bytes: rangedBytes,
          contentRange: ranged.headers.get('content-range'),
        },
        described: {
          status: described.status,
          requestId: described.headers.get('x-request-id'),
          asset,
        },
        image: { width: image.naturalWidth, height: image.naturalHeight, pixel },
      };
    }, args);

    assert.match(seen.assetId, /^ast_/);
    // POST 201, then the two PATCHes 204, the last with Asset-Id.
    assert.deepEqual(seen.statuses, [201, 204, 204]);
    assert.equal(seen.delivered.status, 200);
    assert.deepEqual(Buffer.from(seen.delivered.bytes), png);
    assert.ok(seen.delivered.etag, 'ETag is exposed');
    assert.equal(seen.ranged.status, 206);
    assert.deepEqual(Buffer.from(seen.ranged.bytes), png.subarray(0, 4));
    assert.equal(seen.ranged.contentRange, `bytes 0-3/${png.length}`);
    assert.equal(seen.described.status, 200);
    assert.ok(seen.described.requestId, 'X-Request-Id is exposed');
    assert.equal(seen.described.asset.id, seen.assetId);
    assert.equal(seen.described.asset.filename, 'dot.png');
    assert.equal(seen.described.asset.size, png.length);
    assert.equal(seen.image.width, 3);
    assert.equal(seen.image.height, 2);
    assert.equal(seen.image.pixel[0], 255, `red, read back from the canvas: ${seen.image.pixel}`);
    await page.close();
  });

  it("refuses another origin's reads, and never runs its preflighted requests", async () => {
    const assetId: string = (await upload(server, 'keep me', { filename: 'keep.bin' })).id;
    const page = await open(other.origin);
    const args: PageArgs = { api: server.url, key: server.adminKey, bytes: [] };
    const outcomes = await page.evaluate(
      async ({ api, key, id }: PageArgs & { id: string }) => {
        const attempt = async (request: () => Promise<Response>) => {
          try {
            return `answered ${(await request()).status}`;
          } catch (error) {
            return `refused: ${(error as Error).name}`;
          }
        };
        const { tus } = globalThis as any;
        const uploaded = await new Promise<string>((resolve) => {
          new tus.Upload(new Blob(['x']), {
            endpoint: `${api}/api/v1/uploads`,
            headers: { Authorization: `Bearer ${key}` },
            retryDelays: [],
            storeFingerprintForResuming: false,
            onSuccess: () => resolve('uploaded'),
            onError: () => resolve('refused'),
          }).start();
        });
        return {
          delivery: await attempt(() => fetch(`${api}/a/${id}`)),
          api: await attempt(() =>
            fetch(`${api}/api/v1/assets/${id}`, { headers: { Authorization: `Bearer ${key}` } }),
          ),
          remove: await attempt(() =>
            fetch(`${api}/api/v1/assets/${id}`, {
              method: 'DELETE',
              headers: { Authorization: `Bearer ${key}` },
            }),
          ),
          upload: uploaded,
        };
      },
      { ...args, id: assetId },
    );
    assert.deepEqual(outcomes, {
      delivery: 'refused: TypeError',
      api: 'refused: TypeError',
      remove: 'refused: TypeError',
      upload: 'refused',
    });
    // The DELETE's preflight was not answered for that origin, so the browser never sent it.
    const still = await server.json('GET', `/api/v1/assets/${assetId}`);
    assert.equal(still.status, 200);
    await page.close();
  });
});
