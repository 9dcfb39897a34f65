import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import HLS from 'hls-parser';
import { BACKENDS, skipIfNoPostgres, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { makeClip, videoJob } from '../helpers/hls.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg, truncatedMp4 } from '../helpers/video-fixtures.ts';

for (const backend of BACKENDS) {
  describe(`video ladder job (${backend.database} + ${backend.storage})`, async () => {
    const skip = (await skipIfNoPostgres(backend.database)) || skipWithoutFfmpeg();
    let server: TestServer;
    let dir: TempDir;
    let clip: Buffer;

    before(async () => {
      if (skip) return;
      dir = await makeTempDir('conveyor-video-job-');
      // 3 s of 426x240 at 30 fps with a tone: a ladder of 120p and 240p with 1 s segments.
      clip = await makeClip(dir.path, 3);
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        videoHeights: '120,240',
        videoSegmentSeconds: 1,
        videoPreset: 'fast',
        videoHwaccel: 'off',
        // Quality analysis (test/media/video-extras.test.ts) costs two decodes a rendition; off here.
        videoQualityAnalysis: false,
      });
    });
    after(async () => {
      await server?.close();
      await dir?.cleanup();
    });

    test('an uploaded video gets its HLS ladder: renditions stored whole, then the master', {
      skip,
    }, async () => {
      const asset = await upload(server, clip, { filename: 'clip.mp4', contentType: 'video/mp4' });
      assert.equal(asset.contentType, 'video/mp4');
      const job = await videoJob(server, asset.id);
      assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
      assert.deepEqual(
        job.result.renditions.map((r: any) => [r.name, r.width, r.height, r.quality]),
        [
          ['h264-120p', 214, 120, null],
          ['h264-240p', 426, 240, null],
        ],
      );
      assert.equal(job.result.encoded, 2);
      assert.deepEqual(job.result.fallbacks, []);
      // The in-process worker proved its encoders at this first video job: health and metrics show them.
      const health = await server.json('GET', '/api/v1/health');
      const encoders = health.body.components.find((c: any) => c.name === 'encoders');
      assert.equal(encoders?.status, 'healthy', JSON.stringify(health.body));
      assert.equal(encoders.encoders.best.h264, 'libx264');
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(
        metrics,
        /conveyor_video_encoder_available\{encoder="libx264",family="cpu",codec="h264"\} 1/,
      );
      assert.equal(job.result.encoder, 'libx264');
      assert.equal(job.progress.percent, 100);

      const { video } = server.conveyor.media;
      const ladder = await video.store.find(asset.sha256, job.result.ladder);
      assert.equal(ladder?.state, 'complete');
      const master = HLS.parse(ladder!.master!) as HLS.types.MasterPlaylist;
      assert.equal(master.isMasterPlaylist, true);
      const variants = master.variants.map((v) => ({
        uri: v.uri,
        resolution: v.resolution,
        codecs: v.codecs,
      }));
      assert.deepEqual(variants.map((v) => v.uri).sort(), ['h264-120p/index.m3u8', 'h264-240p/index.m3u8']);
      for (const variant of master.variants) {
        assert.match(variant.codecs ?? '', /^avc1\.64[0-9a-f]{4},mp4a\.40\.2$/);
        assert.ok(variant.bandwidth > 0 && (variant.averageBandwidth ?? 0) > 0);
        assert.ok(variant.averageBandwidth! <= variant.bandwidth);
      }
      const files = (await video.store.files(asset.sha256, job.result.ladder)).map((f) => f.path);
      for (const name of ['h264-120p', 'h264-240p']) {
        for (const file of ['index.m3u8', 'init.mp4', 'seg_00000.m4s', 'seg_00002.m4s', 'rendition.json']) {
          assert.ok(files.includes(`${name}/${file}`), `${name}/${file} in ${files.join(' ')}`);
        }
      }
      for (const file of ['poster.jpg', 'sprite.jpg', 'sprite.vtt', 'fallback.mp4']) {
        assert.ok(files.includes(file), `${file} in ${files.join(' ')}`);
      }
      // The asset shows the video: probe, ladder, renditions with their measurements, encoder and URLs.
      const view = (await server.json('GET', `/api/v1/assets/${asset.id}`)).body;
      assert.equal(view.video.state, 'complete');
      assert.deepEqual([view.video.width, view.video.height, view.video.hasAudio], [426, 240, true]);
      assert.deepEqual(
        view.video.renditions.map((r: any) => [r.name, r.width, r.height, r.bandwidth > 0]),
        [
          ['h264-120p', 214, 120, true],
          ['h264-240p', 426, 240, true],
        ],
      );
      assert.equal(view.video.encoder, 'libx264');
      assert.equal(view.video.urls.master, `${asset.url}/hls/master.m3u8`);
      for (const url of Object.values(view.video.urls) as string[]) {
        const res = await fetch(url);
        assert.equal(res.status, 200, url);
        await res.arrayBuffer();
      }
      const listed = (await server.json('GET', '/api/v1/assets?contentType=video/')).body.items;
      assert.equal(listed.find((a: any) => a.id === asset.id)?.video.state, 'complete');
      const text = await upload(server, 'not a video', { filename: 'a.txt', contentType: 'text/plain' });
      assert.equal((await server.json('GET', `/api/v1/assets/${text.id}`)).body.video, null);
      const info = await video.store.getInfo(asset.sha256);
      assert.deepEqual([info?.width, info?.height, info?.hasAudio], [426, 240, true]);
      assert.ok(Math.abs(info!.durationMs - 3000) < 100);
      assert.equal(typeof (info!.loudness as any)?.integratedLufs, 'number');
    });

    test('identical content is encoded once, whoever uploads it', { skip }, async () => {
      const twin = await upload(server, clip, { filename: 'twin.mp4', contentType: 'video/mp4' });
      const job = await videoJob(server, twin.id);
      assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
      assert.equal(job.result.encoded, 0);
      assert.equal(job.result.renditions.length, 2);
      assert.equal(job.result.poster, 'poster.jpg');
    });

    test('a video cut short ends dead as corrupt, with no ladder left complete', { skip }, async () => {
      const cut = await upload(server, await readFile(await truncatedMp4()), {
        filename: 'cut.mp4',
        contentType: 'video/mp4',
      });
      const job = await videoJob(server, cut.id);
      assert.equal(job.state, 'dead');
      assert.equal(job.errors.at(-1).code, 'video_corrupt');
      const ladders = await server.conveyor.db.kysely
        .selectFrom('video_ladders')
        .selectAll()
        .where('source_sha256', '=', cut.sha256)
        .execute();
      assert.deepEqual(ladders, []);
    });
  });
}
