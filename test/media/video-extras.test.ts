import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { measureLoudness } from '../../src/media/video/loudness.ts';
import { probeVideo } from '../../src/media/video/probe.ts';
import { VIDEO_JOB } from '../../src/media/video-job.ts';
import { BACKENDS, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { makeClip } from '../helpers/hls.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../helpers/video-fixtures.ts';

const run = promisify(execFile);

/** The target of CONVEYOR_VIDEO_LOUDNORM here; the clip's tone measures about -21.8 LUFS. */
const TARGET_LUFS = -16;

/** A job, once it has ended. */
async function ended(server: TestServer, id: string): Promise<any> {
  return waitFor(
    `job ${id}`,
    async () => {
      const { body } = await server.json('GET', `/api/v1/jobs/${id}`);
      return ['succeeded', 'dead'].includes(body.state) ? body : null;
    },
    120_000,
  );
}

/** The id of the video job of an asset (the one the upload queued). */
async function videoJobId(server: TestServer, assetId: string): Promise<string> {
  return waitFor(`video job of ${assetId}`, async () => {
    const { body } = await server.json('GET', `/api/v1/jobs?type=${VIDEO_JOB}&limit=100`);
    return body.items.find((j: any) => j.payload.assetId === assetId)?.id ?? null;
  });
}

/** The ffprobe size of an image or video file. */
async function sizeOf(path: string): Promise<{ width: number; height: number; codec: string }> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_streams', '-of', 'json', path]);
  const stream = JSON.parse(stdout).streams[0];
  return { width: stream.width, height: stream.height, codec: stream.codec_name };
}

/** The top-level MP4 boxes of a file, in order (each: 32-bit size, 4-byte type; size 1: 64-bit size). */
function topBoxes(data: Buffer): string[] {
  const boxes: string[] = [];
  for (let at = 0; at + 8 <= data.length; ) {
    let size = data.readUInt32BE(at);
    boxes.push(data.toString('latin1', at + 4, at + 8));
    if (size === 1) size = Number(data.readBigUInt64BE(at + 8));
    if (size === 0) break;
    at += size;
  }
  return boxes;
}

// The heavier checks (quality decodes, loudness, the retry) run on one backend: they test ffmpeg runs
// and the job's steps, which do not depend on the database or the blob store; test/media/video-job.test.ts
// runs the ladder with its extra files on both.
const backend = BACKENDS[0]!;

describe(`video ladder extras (${backend.database} + ${backend.storage})`, () => {
  const skip = skipWithoutFfmpeg();
  let server: TestServer;
  let dir: TempDir;
  let clip: Buffer;

  before(async () => {
    if (skip) return;
    dir = await makeTempDir('conveyor-video-extras-');
    // 3 s of 426x240 at 30 fps with a 440 Hz tone: rungs 120p and 240p.
    clip = await makeClip(dir.path, 3);
    server = await startConveyor(backend, {
      serveWorkers: true,
      jobPollMs: 20,
      jobHeartbeatMs: 50,
      videoHeights: '120,240',
      videoSegmentSeconds: 1,
      videoPreset: 'fast',
      videoHwaccel: 'off',
      videoFallbackHeight: 200,
      videoLoudnorm: String(TARGET_LUFS),
    });
  });
  after(async () => {
    await server?.close();
    await dir?.cleanup();
  });

  /** A stored file of a ladder, written to the temporary folder. */
  async function fetchFile(sha256: string, ladder: string, path: string): Promise<string> {
    const file = await server.conveyor.media.video.store.file(sha256, ladder, path);
    assert.ok(file, `${path} is stored`);
    const target = join(dir.path, `${ladder}-${path.replaceAll('/', '_')}`);
    await pipeline(await server.conveyor.store.get(file.sha256), createWriteStream(target));
    return target;
  }

  let asset: { id: string; sha256: string };
  let job: any;

  test('the job makes the poster, the sprite, the MP4 fallback, quality scores and loudness', {
    skip,
  }, async () => {
    asset = await upload(server, clip, { filename: 'clip.mp4', contentType: 'video/mp4' });
    job = await ended(server, await videoJobId(server, asset.id));
    assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
    const { result } = job;
    const { store } = server.conveyor.media.video;
    assert.deepEqual(
      [result.poster, result.sprite, result.spriteVtt, result.fallback],
      ['poster.jpg', 'sprite.jpg', 'sprite.vtt', 'fallback.mp4'],
    );
    assert.equal(result.encoder, 'libx264');

    const types = new Map(
      (await store.files(asset.sha256, result.ladder)).map((f) => [f.path, f.contentType]),
    );
    assert.equal(types.get('poster.jpg'), 'image/jpeg');
    assert.equal(types.get('sprite.jpg'), 'image/jpeg');
    assert.equal(types.get('sprite.vtt'), 'text/vtt');
    assert.equal(types.get('fallback.mp4'), 'video/mp4');

    // The poster: a JPEG of the top rung's size.
    const top = result.renditions.find((r: any) => r.name === 'h264-240p');
    assert.deepEqual(await sizeOf(await fetchFile(asset.sha256, result.ladder, 'poster.jpg')), {
      width: top.width,
      height: top.height,
      codec: 'mjpeg',
    });

    // The sprite: 3 s at one tile per 2 s is 2 tiles of 160x90 side by side; the cues cover 0..3 s.
    assert.deepEqual(await sizeOf(await fetchFile(asset.sha256, result.ladder, 'sprite.jpg')), {
      width: 320,
      height: 90,
      codec: 'mjpeg',
    });
    const vtt = await readFile(await fetchFile(asset.sha256, result.ladder, 'sprite.vtt'), 'utf8');
    const cues = [...vtt.matchAll(/^(\S+) --> (\S+)\n(\S+)$/gm)].map((m) => m.slice(1));
    assert.equal(cues[0]?.[0], '00:00:00.000');
    assert.deepEqual(cues.at(-1), ['00:00:02.000', '00:00:03.000', 'sprite.jpg#xywh=160,0,160,90']);
    assert.equal(cues[0]?.[2], 'sprite.jpg#xywh=0,0,160,90');
    for (let i = 1; i < cues.length; i++) assert.equal(cues[i]![0], cues[i - 1]![1]);

    // The fallback: the 120p rendition (the one at or under 200), remuxed, moov before mdat.
    const mp4 = await fetchFile(asset.sha256, result.ladder, 'fallback.mp4');
    const boxes = topBoxes(await readFile(mp4));
    assert.ok(boxes.indexOf('moov') >= 0 && boxes.indexOf('moov') < boxes.indexOf('mdat'), boxes.join(' '));
    const probed = await probeVideo(mp4, {});
    assert.ok(Math.abs(probed.durationMs! - 3000) < 150, `duration ${probed.durationMs}`);
    assert.deepEqual([probed.video?.displayWidth, probed.video?.displayHeight], [214, 120]);
    assert.equal(probed.audio?.codec, 'aac');

    // Quality: present on every rendition, and sane for the top rung.
    for (const r of result.renditions) {
      assert.equal(r.quality.vmaf, null, 'this ffmpeg has no libvmaf');
      assert.ok(r.quality.ssim > 0.5 && r.quality.ssim <= 1, `${r.name} SSIM ${r.quality.ssim}`);
      assert.ok(r.quality.psnr > 15, `${r.name} PSNR ${r.quality.psnr}`);
    }
    assert.ok(top.quality.psnr > 20, `top PSNR ${top.quality.psnr}`);
    const stored = await server.conveyor.media.video.store.find(asset.sha256, result.ladder);
    assert.deepEqual(
      (stored!.renditions as any[]).map((r) => r.quality),
      result.renditions.map((r: any) => r.quality),
    );

    // Loudness of the source on video_info; the renditions normalised to the target.
    const info = await store.getInfo(asset.sha256);
    const loudness = info!.loudness as any;
    assert.ok(loudness.integratedLufs < -19 && loudness.integratedLufs > -25, JSON.stringify(loudness));
    assert.equal(typeof loudness.thresholdLufs, 'number');
    const out = await measureLoudness(mp4, probed);
    assert.ok(Math.abs(out!.integratedLufs! - TARGET_LUFS) <= 1.5, `fallback at ${out!.integratedLufs} LUFS`);
  });

  test('a retried job stores nothing twice: only the missing files are made again', { skip }, async () => {
    const { store } = server.conveyor.media.video;
    const { ladder } = job.result;
    const before = await store.files(asset.sha256, ladder);
    // As if an attempt had stopped after storing the renditions and the sprite, before the poster and
    // the fallback: the retry makes those two, the fallback from the rendition fetched from the store.
    const remade = ['fallback.mp4', 'poster.jpg'];
    await server.conveyor.db.kysely
      .deleteFrom('video_files')
      .where('source_sha256', '=', asset.sha256)
      .where('ladder', '=', ladder)
      .where('path', 'in', remade)
      .execute();
    await server.conveyor.db.kysely
      .updateTable('video_ladders')
      .set({ state: 'encoding', master: null, completed_at: null })
      .where('source_sha256', '=', asset.sha256)
      .where('ladder', '=', ladder)
      .execute();
    const again = await server.json('POST', '/api/v1/jobs', {
      type: VIDEO_JOB,
      payload: { assetId: asset.id, sha256: asset.sha256 },
    });
    assert.equal(again.status, 202);
    const retried = await ended(server, again.body.id);
    assert.equal(retried.state, 'succeeded', JSON.stringify(retried.errors));
    assert.equal(retried.result.encoded, 0);
    assert.deepEqual(retried.result.renditions, job.result.renditions);
    const afterwards = await store.files(asset.sha256, ladder);
    assert.deepEqual(
      afterwards.map((f) => f.path),
      before.map((f) => f.path),
    );
    for (const file of afterwards) {
      const first = before.find((f) => f.path === file.path)!;
      if (remade.includes(file.path)) assert.ok(file.createdAt >= first.createdAt);
      else assert.deepEqual(file, first, `${file.path} is the first attempt's`);
    }
    const mp4 = await fetchFile(asset.sha256, ladder, 'fallback.mp4');
    assert.ok(Math.abs((await probeVideo(mp4, {})).durationMs! - 3000) < 150);
    assert.equal((await store.find(asset.sha256, ladder))?.state, 'complete');
  });
});
