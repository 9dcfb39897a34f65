import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  BACKENDS,
  createTenant,
  skipIfNoPostgres,
  startConveyor,
  type TestServer,
  upload,
} from '../helpers/conveyor.ts';
import { LADDER_SETTINGS, makeClip, playlistUris, videoJob } from '../helpers/hls.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../helpers/video-fixtures.ts';

const IMMUTABLE = 'public, max-age=31536000, immutable';
const M3U8 = 'application/vnd.apple.mpegurl';

/** What one fetched file of a ladder answered. */
interface Fetched {
  url: string;
  status: number;
  type: string | null;
  cacheControl: string | null;
  nosniff: string | null;
  etag: string | null;
  body: Buffer;
}

/**
 * Fetches the master at `url` and every file it leads to (media playlists, then their init and media
 * segments), following the URIs exactly as written, as a player does. Answers every response by URL.
 */
async function crawl(url: string, headers: Record<string, string> = {}): Promise<Fetched[]> {
  const seen: Fetched[] = [];
  const get = async (target: string): Promise<Fetched> => {
    const res = await fetch(target, { headers });
    const fetched = {
      url: target,
      status: res.status,
      type: res.headers.get('content-type'),
      cacheControl: res.headers.get('cache-control'),
      nosniff: res.headers.get('x-content-type-options'),
      etag: res.headers.get('etag'),
      body: Buffer.from(await res.arrayBuffer()),
    };
    seen.push(fetched);
    return fetched;
  };
  const master = await get(url);
  assert.equal(master.status, 200, `${url}: ${master.body}`);
  for (const uri of playlistUris(master.body.toString())) {
    const media = await get(new URL(uri, url).href);
    assert.equal(media.status, 200, `${media.url}: ${media.body}`);
    for (const file of playlistUris(media.body.toString())) await get(new URL(file, media.url).href);
  }
  return seen;
}

const kindOf = (url: string) => new URL(url).pathname.split('.').pop();

for (const backend of BACKENDS) {
  describe(`video delivery: the HLS ladder over HTTP (${backend.database} + ${backend.storage})`, async () => {
    const skip = (await skipIfNoPostgres(backend.database)) || skipWithoutFfmpeg();
    let server: TestServer;
    let dir: TempDir;
    let pub: any;
    let priv: any;
    let pubVersion: string;
    let privVersion: string;

    before(async () => {
      if (skip) return;
      dir = await makeTempDir('conveyor-video-delivery-');
      const clip = await makeClip(dir.path, 2);
      server = await startConveyor(backend, LADDER_SETTINGS);
      // The same bytes twice: the ladder is encoded once and serves both assets.
      pub = await upload(server, clip, { filename: 'clip.mp4', contentType: 'video/mp4' });
      priv = await upload(server, clip, {
        filename: 'secret.mp4',
        contentType: 'video/mp4',
        visibility: 'private',
      });
      for (const asset of [pub, priv]) {
        const job = await videoJob(server, asset.id);
        assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
      }
      // Versions are published snapshots (POST /publish); the latest URL follows the asset.
      const publish = async (id: string) =>
        (await server.json('POST', `/api/v1/assets/${id}/publish`)).body.id as string;
      pubVersion = await publish(pub.id);
      privVersion = await publish(priv.id);
    });
    after(async () => {
      await server?.close();
      await dir?.cleanup();
    });

    test('a public version: master, media playlists, init and segments, immutable, 304, ranges', {
      skip,
    }, async () => {
      const master = `${server.url}/v/${pubVersion}/hls/master.m3u8`;
      const files = await crawl(master, {});
      const types: Record<string, string> = {
        m3u8: M3U8,
        mp4: 'video/mp4',
        m4s: 'video/iso.segment',
      };
      assert.equal(files.filter((f) => kindOf(f.url) === 'm3u8').length, 3);
      assert.equal(files.filter((f) => kindOf(f.url) === 'mp4').length, 2);
      assert.ok(files.filter((f) => kindOf(f.url) === 'm4s').length >= 4);
      for (const f of files) {
        assert.equal(f.status, 200, f.url);
        assert.equal(f.type, types[kindOf(f.url)!], f.url);
        assert.equal(f.cacheControl, IMMUTABLE, f.url);
        assert.equal(f.nosniff, 'nosniff', f.url);
        assert.match(f.etag ?? '', /^"[0-9a-f]{64}"$/, f.url);
      }
      assert.deepEqual(playlistUris(files[0]!.body.toString()).sort(), [
        'h264-120p/index.m3u8',
        'h264-240p/index.m3u8',
      ]);

      const segment = files.find((f) => kindOf(f.url) === 'm4s')!;
      const again = await fetch(segment.url, { headers: { 'if-none-match': segment.etag! } });
      assert.equal(again.status, 304);
      assert.equal(again.headers.get('cache-control'), IMMUTABLE);
      const part = await fetch(segment.url, { headers: { range: 'bytes=0-7' } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get('content-range'), `bytes 0-7/${segment.body.length}`);
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), segment.body.subarray(0, 8));
      const head = await fetch(master, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(files[0]!.body.length));
      const masterAgain = await fetch(master, { headers: { 'if-none-match': files[0]!.etag! } });
      assert.equal(masterAgain.status, 304);
    });

    test("the asset's latest URL: the same ladder under the latest policy; what is not served is 404", {
      skip,
    }, async () => {
      const latest = await crawl(`${server.url}/a/${pub.id}/hls/master.m3u8`);
      const pinned = await crawl(`${server.url}/v/${pubVersion}/hls/master.m3u8`);
      assert.deepEqual(
        latest.map((f) => f.body),
        pinned.map((f) => f.body),
      );
      for (const f of latest) {
        assert.equal(f.status, 200, f.url);
        assert.match(f.cacheControl ?? '', /^public, max-age=\d+, s-maxage=\d+/, f.url);
      }
      for (const path of [
        'h264-240p/rendition.json',
        'h264-240p/seg_99999.m4s',
        'h264-240p%2Findex.m3u8',
        'h264-240p//index.m3u8',
        'nope.m3u8',
      ]) {
        const res = await fetch(`${server.url}/a/${pub.id}/hls/${path}`);
        assert.equal(res.status, 404, path);
        await res.arrayBuffer();
      }
    });

    test('a private video: 404 without a grant; a token or a prefix signature opens every file it names', {
      skip,
    }, async () => {
      const base = `${server.url}/a/${priv.id}/hls/master.m3u8`;
      const none = await fetch(base);
      const unknown = await fetch(`${server.url}/a/ast_00000000000000000000000000/hls/master.m3u8`);
      assert.equal(none.status, 404);
      assert.equal(unknown.status, 404);
      assert.equal(((await none.json()) as any).detail, ((await unknown.json()) as any).detail);

      const token = (await server.json('POST', `/api/v1/assets/${priv.id}/tokens`, { ttlSeconds: 600 })).body
        .token as string;
      const signed = async (body: object) => {
        const res = await server.json('POST', `/api/v1/assets/${priv.id}/signed-url`, body);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return res.body.url as string;
      };
      const grants: [string, string, string][] = [
        ['token', `${base}?token=${token}`, `token=${token}`],
        ['prefix signature', await signed({ ttlSeconds: 600, prefix: 'hls' }), 'scope='],
        [
          "a version's prefix signature",
          await signed({ ttlSeconds: 600, prefix: 'hls', versionId: privVersion }),
          'scope=',
        ],
      ];
      for (const [what, url, mark] of grants) {
        const files = await crawl(url);
        assert.ok(files.length >= 9, what);
        const query = new URL(url).search.slice(1);
        for (const f of files) {
          assert.equal(f.status, 200, `${what}: ${f.url}`);
          assert.equal(f.cacheControl, 'private, no-store', f.url);
          assert.ok(f.url.endsWith(`?${query}`), `${what}: ${f.url} carries the grant`);
          assert.ok(f.url.includes(mark), f.url);
          if (kindOf(f.url.split('?')[0]!) === 'm3u8') {
            for (const uri of playlistUris(f.body.toString())) assert.ok(uri.endsWith(`?${query}`), uri);
          }
        }
      }

      // A tampered prefix signature, one for another folder, and a single-path one open nothing here.
      const prefixed = new URL(grants[1]![1]);
      const tampered = new URL(prefixed);
      const sig = tampered.searchParams.get('sig')!;
      tampered.searchParams.set('sig', (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1));
      const otherScope = new URL(prefixed);
      otherScope.searchParams.set('scope', `/a/${pub.id}/hls/`);
      const single = new URL(await signed({ ttlSeconds: 600 }));
      const singleHere = `${base}${single.search}`;
      const segmentUrl = new URL(`/a/${priv.id}/hls/h264-240p/seg_00000.m4s${prefixed.search}`, server.url);
      const widened = new URL(prefixed);
      widened.pathname = `/a/${priv.id}`;
      for (const url of [tampered.href, otherScope.href, singleHere, widened.href]) {
        const res = await fetch(url);
        assert.equal(res.status, 404, url);
        await res.arrayBuffer();
      }
      assert.equal((await fetch(segmentUrl)).status, 200);

      // The owner's Authorization opens it (without rewriting), another tenant's key does not.
      const owner = await fetch(base, { headers: { authorization: `Bearer ${server.adminKey}` } });
      assert.equal(owner.status, 200);
      assert.deepEqual(playlistUris(await owner.text()).sort(), [
        'h264-120p/index.m3u8',
        'h264-240p/index.m3u8',
      ]);
      const other = await createTenant(server, 'video-other');
      const stranger = await fetch(base, { headers: { authorization: `Bearer ${other.key}` } });
      assert.equal(stranger.status, 404);
      await stranger.arrayBuffer();
    });

    test('content whose ladder is not complete answers 404, never a partial master', { skip }, async () => {
      const text = await upload(server, 'not a video', { filename: 'a.txt', contentType: 'text/plain' });
      const { video } = server.conveyor.media;
      for (const state of ['none', 'encoding']) {
        if (state === 'encoding') await video.store.begin(text.sha256, 'pending');
        for (const path of ['master.m3u8', 'h264-240p/index.m3u8']) {
          const res = await fetch(`${server.url}/a/${text.id}/hls/${path}`);
          assert.equal(res.status, 404, `${state}: ${path}`);
          assert.equal(res.headers.get('cache-control'), 'no-store');
          await res.arrayBuffer();
        }
      }
    });
  });
}
