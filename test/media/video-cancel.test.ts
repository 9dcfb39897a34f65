import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { VIDEO_JOB } from '../../src/media/video-job.ts';
import { BACKENDS, skipIfNoPostgres, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../helpers/video-fixtures.ts';
import { ffmpegRuns, gone, RECORDING_FFMPEG, recordingFfmpeg } from '../helpers/video-runs.ts';

const run = promisify(execFile);

/** The video job of an asset, as it is now (once there is one). */
async function videoJob(server: TestServer, assetId: string): Promise<any> {
  return waitFor(`the video job of ${assetId}`, async () => {
    const { body } = await server.json('GET', `/api/v1/jobs?type=${VIDEO_JOB}&limit=100`);
    return body.items.find((j: any) => j.payload.assetId === assetId);
  });
}

for (const backend of BACKENDS) {
  describe(`cancelling a video job (${backend.database} + ${backend.storage})`, async () => {
    const skip = (await skipIfNoPostgres(backend.database)) || skipWithoutFfmpeg();
    let server: TestServer;
    let dir: TempDir;
    let clip: Buffer;
    let work: string;
    let log: string;

    before(async () => {
      if (skip) return;
      dir = await makeTempDir('conveyor-video-cancel-');
      work = join(dir.path, 'work');
      const path = join(dir.path, 'clip.mp4');
      // 3 s of 320x180: two renditions (90p, 180p). The recording ffmpeg encodes at the clip's own pace
      // (`-re`), so each rendition's ffmpeg runs about 3 s, whatever the machine: long enough to be
      // cancelled mid-encode, and cheap on CPU.
      await run('ffmpeg', [
        ...['-hide_banner', '-loglevel', 'error'],
        ...['-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25:duration=3'],
        ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=3'],
        ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest'],
        path,
      ]);
      clip = await readFile(path);
      await mkdir(work);
      log = join(dir.path, 'ffmpeg.log');
      Object.assign(process.env, recordingFfmpeg(log));
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        jobProgressIntervalMs: 0,
        ffmpegPath: RECORDING_FFMPEG,
        videoWorkDir: work,
        videoHeights: '90,180',
        videoSegmentSeconds: 1,
        videoPreset: 'fast',
        videoHwaccel: 'off',
      });
    });
    after(async () => {
      await server?.close();
      await dir?.cleanup();
    });

    test('cancel stops ffmpeg within 2 s, removes the working folder and keeps only finished renditions', {
      skip,
      timeout: 60_000,
    }, async (t) => {
      const asset = await upload(server, clip, { filename: 'clip.mp4', contentType: 'video/mp4' });
      const job = await videoJob(server, asset.id);
      const second = 'h264-180p';

      // The second rendition is encoding: its ffmpeg is running (the wrapper logged it) and the job says so.
      const encoding = await waitFor(
        `${second} encoding`,
        async () => {
          const view = (await server.json('GET', `/api/v1/jobs/${job.id}`)).body;
          if (view.state !== 'active' || view.progress?.stage !== `encoding ${second}`) return null;
          return (await ffmpegRuns(log)).find((r) => r.rendition === second);
        },
        60_000,
      );
      const store = server.conveyor.media.video.store;
      const ladders = async () =>
        server.conveyor.db.kysely
          .selectFrom('video_ladders')
          .selectAll()
          .where('source_sha256', '=', asset.sha256)
          .execute();
      const [ladder] = await ladders();
      const finished = (await store.files(asset.sha256, ladder!.ladder)).map((f) => f.path).sort();
      assert.ok(finished.includes('h264-90p/index.m3u8'), finished.join(' '));

      const cancelled = await server.json('POST', `/api/v1/jobs/${job.id}/cancel`);
      assert.equal(cancelled.status, 200);
      const answered = performance.now();
      assert.equal(cancelled.body.state, 'cancelled');
      // The bound: ffmpeg is gone within 2 s of the cancel (a graceful `q`, then SIGKILL after
      // CONVEYOR_VIDEO_CANCEL_GRACE_MS, 1.5 s by default). Measured from the cancel's answer to the
      // process's end as `kill(pid, 0)` sees it.
      await waitFor('ffmpeg to exit', async () => gone(encoding.pid), 30_000);
      const took = performance.now() - answered;
      t.diagnostic(`ffmpeg exited ${took.toFixed(0)} ms after the cancel's answer`);
      assert.ok(took <= 2000, `ffmpeg exited ${took.toFixed(0)} ms after the cancel`);

      await waitFor('the working folder to be emptied', async () => (await readdir(work)).length === 0);
      const view = (await server.json('GET', `/api/v1/jobs/${job.id}`)).body;
      assert.equal(view.state, 'cancelled');
      // Nothing of the cancelled rendition was stored, the finished one is kept whole, and no ladder is
      // complete.
      const after = (await store.files(asset.sha256, ladder!.ladder)).map((f) => f.path).sort();
      assert.deepEqual(after, finished);
      // The ladder's own files (poster, sprite), made before the renditions, and the finished rendition.
      const ladderFiles = ['poster.jpg', 'sprite.jpg', 'sprite.vtt'];
      assert.ok(
        after.every((path) => path.startsWith('h264-90p/') || ladderFiles.includes(path)),
        after.join(' '),
      );
      assert.ok((await ladders()).every((l) => l.state !== 'complete'));

      // Run again, the job starts after the kept rendition: only the cancelled one is encoded.
      const retried = await server.json('POST', `/api/v1/jobs/${job.id}/retry`);
      assert.equal(retried.status, 200);
      const done = await waitFor(
        'the retried job to end',
        async () => {
          const again = (await server.json('GET', `/api/v1/jobs/${job.id}`)).body;
          return ['succeeded', 'dead'].includes(again.state) ? again : null;
        },
        60_000,
      );
      assert.equal(done.state, 'succeeded', JSON.stringify(done.errors));
      assert.equal(done.result.encoded, 1);
      const runs = await ffmpegRuns(log);
      assert.equal(runs.filter((r) => r.rendition === 'h264-90p').length, 1);
      assert.equal(runs.filter((r) => r.rendition === second).length, 2);
      assert.equal((await ladders())[0]!.state, 'complete');
      await waitFor('the working folder to be emptied', async () => (await readdir(work)).length === 0);
    });
  });
}
