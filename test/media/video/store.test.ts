import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { PermanentJobError } from '../../../src/jobs/types.ts';
import { ladderKey } from '../../../src/media/video/keys.ts';
import { type OutputFile, VideoStore, VideoStoreError } from '../../../src/media/video/store.ts';
import type { BlobStore } from '../../../src/storage/blob-store.ts';
import {
  BACKENDS,
  skipIfNoPostgres,
  startConveyor,
  type TestServer,
  upload,
} from '../../helpers/conveyor.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';

/**
 * The video store on both backends: a ladder's files are blobs written through the ledger, a rendition
 * is stored wholly or not at all (the checkpoint a resumed job starts from), a master is recorded only
 * once every rendition it names is stored, and garbage collection follows the source content.
 */
const LADDER = ladderKey({
  codec: 'h264',
  preset: 'balanced',
  heights: [240, 360],
  segment: 4,
  container: 'fmp4',
});

/** The blob store with `stage` replaced (a Proxy, so the store's private fields keep working). */
function withStage(inner: BlobStore, stage: BlobStore['stage']): BlobStore {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'stage') return stage;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function readBlob(store: BlobStore, sha256: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(sha256)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

for (const backend of BACKENDS) {
  describe(`VideoStore (${backend.database} + ${backend.storage})`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    let dir: TempDir;
    let made = 0;

    before(async () => {
      if (skip) return;
      server = await startConveyor(backend);
      dir = await makeTempDir('conveyor-video-store-');
    });
    after(async () => {
      await server?.close();
      await dir?.cleanup();
    });

    function videoStore(
      options: { store?: BlobStore; maxFileBytes?: number; concurrency?: number } = {},
    ): VideoStore {
      const { db, store, ledger, config } = server.conveyor;
      return new VideoStore({
        db: db.kysely,
        store: options.store ?? store,
        ledger,
        config: {
          videoStoreMaxFileBytes: options.maxFileBytes ?? config.videoStoreMaxFileBytes,
          videoStoreConcurrency: options.concurrency ?? config.videoStoreConcurrency,
        },
      });
    }

    /** The content of a fresh asset: a source no collection takes away while the test runs. */
    async function source(): Promise<string> {
      const asset = await upload(server, `video source ${++made} ${randomBytes(8).toString('hex')}`);
      return asset.sha256;
    }

    /** Writes a rendition's files (init, `segments` segments, playlist) and describes them. */
    async function renditionFiles(name: string, segments = 2): Promise<OutputFile[]> {
      const files: OutputFile[] = [];
      const add = async (path: string, contentType: string) => {
        const file = join(dir.path, `${++made}-${path.replaceAll('/', '_')}`);
        await writeFile(file, `${name} ${path} ${randomBytes(4).toString('hex')}`);
        files.push({ path, contentType, file });
      };
      await add(`${name}/init.mp4`, 'video/mp4');
      for (let i = 1; i <= segments; i++) {
        await add(`${name}/seg_${String(i).padStart(5, '0')}.m4s`, 'video/iso.segment');
      }
      await add(`${name}/index.m3u8`, 'application/vnd.apple.mpegurl');
      return files;
    }

    test('begin, putRendition, putFiles and complete make a ladder whose files are blobs', {
      skip,
    }, async () => {
      const videos = videoStore();
      const src = await source();
      const started = await videos.begin(src, LADDER);
      assert.equal(started.ladder.state, 'encoding');
      assert.equal(started.ladder.master, null);
      assert.deepEqual(started.completeRenditions, []);

      const low = await renditionFiles('240p');
      const rows = await videos.putRendition(src, LADDER, '240p', low);
      assert.deepEqual(
        rows.map((r) => [r.path, r.rendition, r.contentType]),
        [
          ['240p/index.m3u8', '240p', 'application/vnd.apple.mpegurl'],
          ['240p/init.mp4', '240p', 'video/mp4'],
          ['240p/seg_00001.m4s', '240p', 'video/iso.segment'],
          ['240p/seg_00002.m4s', '240p', 'video/iso.segment'],
        ],
      );
      await videos.putRendition(src, LADDER, '360p', await renditionFiles('360p'));
      const poster = join(dir.path, 'poster.jpg');
      await writeFile(poster, 'not really a jpeg');
      await videos.putFiles(src, LADDER, [{ path: 'poster.jpg', contentType: 'image/jpeg', file: poster }]);

      const segment = await videos.file(src, LADDER, '240p/seg_00001.m4s');
      assert.ok(segment);
      assert.equal(segment.sha256, await sha256Of(low[1]!.file));
      const bytes = await readBlob(server.conveyor.store, segment.sha256);
      assert.match(bytes, /^240p 240p\/seg_00001\.m4s /);
      assert.equal(segment.size, Buffer.byteLength(bytes));
      assert.equal(await videos.file(src, LADDER, 'missing.m4s'), undefined);

      const master = '#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n';
      const renditions = [
        { name: '240p', height: 240, bandwidth: 400_000, ssim: 0.98 },
        { name: '360p', height: 360, bandwidth: 800_000, ssim: 0.97 },
      ];
      const fallbacks = [{ from: 'h264_nvenc', to: 'libx264', reason: 'no device' }];
      const done = await videos.complete(src, LADDER, { master, renditions, encoder: 'libx264', fallbacks });
      assert.equal(done.state, 'complete');
      assert.equal(done.master, master);
      assert.deepEqual(done.renditions, renditions);
      assert.equal(done.encoder, 'libx264');
      assert.deepEqual(done.fallbacks, fallbacks);
      assert.ok(done.completedAt);
      assert.deepEqual(await videos.find(src, LADDER), done);
      assert.equal((await videos.files(src, LADDER)).length, 9);
      assert.deepEqual(
        (await videos.files(src, LADDER, '360p')).map((f) => f.path),
        ['360p/index.m3u8', '360p/init.mp4', '360p/seg_00001.m4s', '360p/seg_00002.m4s'],
      );

      // Completing again keeps the first master; re-putting a stored rendition stores nothing.
      const again = await videos.complete(src, LADDER, { master: '#EXTM3U\n', renditions, encoder: 'x' });
      assert.equal(again.master, master);
      let staged = 0;
      const counting = videoStore({
        store: withStage(server.conveyor.store, (body, options) => {
          staged++;
          return server.conveyor.store.stage(body, options);
        }),
      });
      assert.deepEqual(await counting.putRendition(src, LADDER, '240p', await renditionFiles('240p')), rows);
      assert.equal(staged, 0);
    });

    test('a resumed ladder starts after the renditions already stored (the checkpoint)', {
      skip,
    }, async () => {
      const src = await source();
      const first = videoStore();
      await first.begin(src, LADDER);
      await first.putRendition(src, LADDER, '240p', await renditionFiles('240p'));
      await first.putRendition(src, LADDER, '360p', await renditionFiles('360p'));
      await first.fail(src, LADDER, 'worker killed');
      assert.equal((await first.find(src, LADDER))?.state, 'failed');

      // Another worker (another store) begins the same ladder again.
      const resumed = await videoStore().begin(src, LADDER);
      assert.equal(resumed.ladder.state, 'encoding');
      assert.equal(resumed.ladder.error, null);
      assert.deepEqual(resumed.completeRenditions, ['240p', '360p']);
    });

    test('a store failing midway leaves no rows of the rendition, and a retry stores it', {
      skip,
    }, async () => {
      const src = await source();
      const store = server.conveyor.store;
      let calls = 0;
      const failing = withStage(store, (body, options) => {
        if (++calls !== 3) return store.stage(body, options);
        // The third file breaks after its first chunk, as a disk or a connection to S3 would.
        const broken = (async function* () {
          for await (const chunk of body) {
            yield chunk as Buffer;
            throw new Error('storage went away');
          }
        })();
        return store.stage(Readable.from(broken), options);
      });
      const files = await renditionFiles('240p', 4);
      await videoStore().begin(src, LADDER);
      await assert.rejects(
        videoStore({ store: failing, concurrency: 2 }).putRendition(src, LADDER, '240p', files),
        {
          message: 'storage went away',
        },
      );
      assert.ok(calls >= 3);
      assert.deepEqual(await videoStore().files(src, LADDER), []);
      assert.deepEqual((await videoStore().begin(src, LADDER)).completeRenditions, []);

      const rows = await videoStore().putRendition(src, LADDER, '240p', files);
      assert.equal(rows.length, 6);
      assert.deepEqual((await videoStore().begin(src, LADDER)).completeRenditions, ['240p']);
    });

    test('two workers storing one rendition at once leave the rows of one of them', { skip }, async () => {
      const src = await source();
      await videoStore().begin(src, LADDER);
      const mine = await renditionFiles('240p', 3);
      const theirs = await renditionFiles('240p', 3);
      const [a, b] = await Promise.all([
        videoStore().putRendition(src, LADDER, '240p', mine),
        videoStore().putRendition(src, LADDER, '240p', theirs),
      ]);
      assert.deepEqual(a, b);
      const hashes = async (files: OutputFile[]) => Promise.all(files.map((f) => sha256Of(f.file)));
      const stored = new Set(a.map((f) => f.sha256));
      const whose = [await hashes(mine), await hashes(theirs)].filter((set) =>
        set.every((h) => stored.has(h)),
      );
      assert.equal(whose.length, 1, 'every row comes from the same writer');
    });

    test('complete refuses while a rendition it names has no files', { skip }, async () => {
      const videos = videoStore();
      const src = await source();
      await videos.begin(src, LADDER);
      await videos.putRendition(src, LADDER, '240p', await renditionFiles('240p'));
      const result = {
        master: '#EXTM3U\n',
        renditions: [{ name: '240p' }, { name: '360p' }],
        encoder: 'libx264',
      };
      await assert.rejects(videos.complete(src, LADDER, result), (error: unknown) => {
        assert.ok(error instanceof VideoStoreError);
        assert.equal(error.reason, 'missing_renditions');
        assert.deepEqual(error.missing, ['360p']);
        return true;
      });
      const ladder = await videos.find(src, LADDER);
      assert.equal(ladder?.state, 'encoding');
      assert.equal(ladder?.master, null);

      await videos.putRendition(src, LADDER, '360p', await renditionFiles('360p'));
      assert.equal((await videos.complete(src, LADDER, result)).state, 'complete');
      // A complete ladder takes no new outputs, and a late failure report does not undo it.
      await assert.rejects(videos.putRendition(src, LADDER, '480p', await renditionFiles('480p')), {
        name: 'VideoStoreError',
        reason: 'not_encoding',
      });
      assert.equal((await videos.fail(src, LADDER, 'lost lease'))?.state, 'complete');
    });

    test('writes are refused without a ladder, at a bad or taken path, and above the size limit', {
      skip,
    }, async () => {
      const videos = videoStore();
      const src = await source();
      const files = await renditionFiles('240p');
      await assert.rejects(videos.putRendition(src, LADDER, '240p', files), { reason: 'no_ladder' });
      await videos.begin(src, LADDER);
      await assert.rejects(
        videos.putRendition(src, LADDER, '240p', [{ ...files[0]!, path: '../x' }]),
        TypeError,
      );
      await assert.rejects(videos.putRendition(src, LADDER, '../240p', files), TypeError);
      await videos.putRendition(src, LADDER, '240p', files);
      await assert.rejects(videos.putRendition(src, LADDER, '360p', files), { reason: 'path_taken' });

      await assert.rejects(
        videoStore({ maxFileBytes: 8 }).putRendition(src, LADDER, '360p', await renditionFiles('360p')),
        (error: unknown) => error instanceof PermanentJobError && error.code === 'video_output_too_large',
      );
      assert.deepEqual((await videos.files(src, LADDER, '360p')).length, 0);

      const aborted = AbortSignal.abort();
      await assert.rejects(
        videos.putRendition(src, LADDER, '360p', await renditionFiles('360p'), { signal: aborted }),
        { name: 'AbortError' },
      );
      assert.deepEqual((await videos.files(src, LADDER, '360p')).length, 0);
    });

    test('identical content of two assets shares one ladder', { skip }, async () => {
      const bytes = `shared video ${randomBytes(8).toString('hex')}`;
      const a = await upload(server, bytes);
      const b = await upload(server, bytes);
      assert.notEqual(a.id, b.id);
      assert.equal(a.sha256, b.sha256);
      const videos = videoStore();
      await videos.begin(a.sha256, LADDER);
      await videos.putRendition(a.sha256, LADDER, '240p', await renditionFiles('240p'));
      const fromB = await videos.begin(b.sha256, LADDER);
      assert.deepEqual(fromB.completeRenditions, ['240p']);
    });

    test('a file larger than any buffer is streamed into the store in small chunks', { skip }, async () => {
      const big = join(dir.path, 'fallback.mp4');
      const handle = await open(big, 'w');
      const block = randomBytes(1024 * 1024);
      for (let i = 0; i < 20; i++) {
        block[0] = i;
        await handle.write(block);
      }
      await handle.close();

      const store = server.conveyor.store;
      let largest = 0;
      let total = 0;
      const measuring = withStage(store, (body, options) => {
        const measured = (async function* () {
          for await (const chunk of body) {
            largest = Math.max(largest, (chunk as Buffer).length);
            total += (chunk as Buffer).length;
            yield chunk as Buffer;
          }
        })();
        return store.stage(Readable.from(measured), options);
      });
      const src = await source();
      const videos = videoStore({ store: measuring });
      await videos.begin(src, LADDER);
      const [row] = await videos.putFiles(src, LADDER, [
        { path: 'fallback.mp4', contentType: 'video/mp4', file: big },
      ]);
      assert.equal(total, 20 * 1024 * 1024);
      assert.ok(largest <= 1024 * 1024, `chunks of at most 1 MiB reach the store, not ${largest} bytes`);
      assert.equal(row?.size, 20 * 1024 * 1024);
      assert.equal(row?.sha256, await sha256Of(big));
      assert.equal((await store.stat(row!.sha256))?.size, 20 * 1024 * 1024);
    });

    test('probe results are stored by content and replaced by a new probe', { skip }, async () => {
      const videos = videoStore();
      const src = await source();
      assert.equal(await videos.getInfo(src), undefined);
      const info = {
        sha256: src,
        probe: { format: { format_name: 'mov,mp4' }, streams: [{ codec_type: 'video' }] },
        durationMs: 2_000,
        width: 320,
        height: 180,
        hasAudio: true,
        container: 'mp4',
        videoCodec: 'h264',
        audioCodec: 'aac',
        loudness: null,
        createdAt: 1_000,
      };
      await videos.putInfo(info);
      assert.deepEqual(await videos.getInfo(src), info);
      await videos.putInfo({ ...info, loudness: { integrated: -23.1 }, createdAt: 2_000 });
      assert.deepEqual(await videos.getInfo(src), { ...info, loudness: { integrated: -23.1 } });
    });

    test('garbage collection keeps a ladder while its content is referenced, then removes it all', {
      skip,
    }, async () => {
      const { db, store, ledger } = server.conveyor;
      const bytes = `collected video ${randomBytes(8).toString('hex')}`;
      const a = await upload(server, bytes);
      const b = await upload(server, bytes);
      const src = a.sha256;
      const videos = videoStore();
      await videos.begin(src, LADDER);
      await videos.putRendition(src, LADDER, '240p', await renditionFiles('240p'));
      const vtt = join(dir.path, 'sprite.vtt');
      await writeFile(vtt, `WEBVTT\n\n${randomBytes(4).toString('hex')}\n`);
      await videos.putFiles(src, LADDER, [{ path: 'sprite.vtt', contentType: 'text/vtt', file: vtt }]);
      await videos.complete(src, LADDER, {
        master: '#EXTM3U\n',
        renditions: [{ name: '240p' }],
        encoder: 'libx264',
      });
      await videos.putInfo({
        sha256: src,
        probe: {},
        durationMs: 1,
        width: 2,
        height: 2,
        hasAudio: false,
        container: 'mp4',
        videoCodec: 'h264',
        audioCodec: null,
        loudness: null,
      });
      const blobs = (await videos.files(src, LADDER)).map((f) => f.sha256);
      assert.equal(blobs.length, 5);
      const present = async () =>
        (await Promise.all(blobs.map((sha) => store.stat(sha)))).filter(Boolean).length;

      assert.equal((await server.json('DELETE', `/api/v1/assets/${a.id}`)).status, 204);
      await ledger.collect(0);
      assert.equal(
        (await videos.find(src, LADDER))?.state,
        'complete',
        'the other asset still has the content',
      );
      assert.ok(await videos.getInfo(src));
      assert.equal(await present(), 5);

      assert.equal((await server.json('DELETE', `/api/v1/assets/${b.id}`)).status, 204);
      await ledger.collect(0);
      assert.equal(await videos.find(src, LADDER), undefined);
      assert.equal(await videos.getInfo(src), undefined);
      assert.deepEqual(await videos.files(src, LADDER), []);
      assert.equal(await present(), 0, "the ladder's blobs are collected with its content");
      const rows = await db.kysely
        .selectFrom('blobs')
        .select('sha256')
        .where('sha256', 'in', blobs)
        .execute();
      assert.deepEqual(rows, []);
    });
  });
}

describe('ladderKey', () => {
  test('is short, and equal for equal settings however they are written', () => {
    const key = ladderKey({ codec: 'h264', heights: [240, 360], segment: 4 });
    assert.match(key, /^[0-9a-f]{16}$/);
    assert.equal(key, ladderKey({ segment: 4, heights: [240, 360], codec: 'h264', extra: undefined }));
    assert.notEqual(key, ladderKey({ codec: 'h264', heights: [240, 360], segment: 6 }));
    assert.notEqual(key, ladderKey({ codec: 'av1', heights: [240, 360], segment: 4 }));
  });
});
