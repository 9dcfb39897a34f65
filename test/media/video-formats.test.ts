import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import HLS from 'hls-parser';
import { VIDEO_JOB } from '../../src/media/video-job.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { makeClip, playlistUris, videoJob } from '../helpers/hls.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../helpers/video-fixtures.ts';

/** Every URI of the master and its media playlists, fetched from `master`'s URL: [url, content type]. */
async function crawl(master: string): Promise<{ master: string; fetched: [string, string][] }> {
  const text = await (await fetch(master)).text();
  const fetched: [string, string][] = [];
  for (const uri of playlistUris(text)) {
    const media = new URL(uri, master).href;
    const res = await fetch(media);
    assert.equal(res.status, 200, media);
    fetched.push([media, res.headers.get('content-type')!]);
    for (const part of playlistUris(await res.text())) {
      const url = new URL(part, media).href;
      const file = await fetch(url);
      assert.equal(file.status, 200, url);
      await file.arrayBuffer();
      fetched.push([url, file.headers.get('content-type')!]);
    }
  }
  return { master: text, fetched };
}

const BASE = {
  serveWorkers: true,
  jobPollMs: 20,
  jobHeartbeatMs: 50,
  videoHeights: '120',
  videoSegmentSeconds: 1,
  videoPreset: 'fast',
  videoHwaccel: 'off',
  videoQualityAnalysis: false,
} as const;

describe('a ladder in H.264, AV1 and VP9, with a per-job preset', () => {
  const skip = skipWithoutFfmpeg();
  let server: TestServer;
  let dir: TempDir;

  before(async () => {
    if (skip) return;
    dir = await makeTempDir('conveyor-video-codecs-');
    server = await startConveyor(
      { database: 'sqlite', storage: 'fs' },
      { ...BASE, videoCodecs: 'h264,av1,vp9' },
    );
  });
  after(async () => {
    await server?.close();
    await dir?.cleanup();
  });

  test('encodes every codec, lists each in the master with its codec string, and serves it', {
    skip,
  }, async () => {
    const asset = await upload(server, await makeClip(dir.path, 2), {
      filename: 'clip.mp4',
      contentType: 'video/mp4',
    });
    const job = await videoJob(server, asset.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
    const { body: view } = await server.json('GET', `/api/v1/assets/${asset.id}`);
    assert.deepEqual(
      view.video.renditions.map((r: any) => [r.name, r.encoder]),
      [
        ['h264-120p', 'libx264'],
        ['av1-120p', 'libsvtav1'],
        ['vp9-120p', 'libvpx-vp9'],
      ],
    );
    assert.equal(view.video.encoder, 'libx264,libsvtav1,libvpx-vp9');
    const { master, fetched } = await crawl(view.video.urls.master);
    const parsed = HLS.parse(master) as HLS.types.MasterPlaylist;
    const codecs = parsed.variants.map((v) => v.codecs?.split(',')[0]?.split('.')[0]);
    assert.deepEqual(codecs, ['avc1', 'av01', 'vp09']);
    for (const [url, type] of fetched) {
      if (url.endsWith('.m4s')) assert.equal(type, 'video/iso.segment', url);
      if (url.endsWith('.m3u8')) assert.equal(type, 'application/vnd.apple.mpegurl', url);
    }
    assert.ok(fetched.some(([url]) => /av1-120p\/seg_\d+\.m4s$/.test(url)));
    assert.ok(fetched.some(([url]) => /vp9-120p\/init\.mp4$/.test(url)));

    // The same content again with a preset of its own (the job API's per-job override): a ladder of its
    // own beside the first, made with the smaller preset's settings.
    const { status, body: queued } = await server.json('POST', '/api/v1/jobs', {
      type: VIDEO_JOB,
      payload: { assetId: asset.id, sha256: asset.sha256, preset: 'small' },
    });
    assert.equal(status, 202, JSON.stringify(queued));
    const small = await waitFor(
      'the small preset job',
      async () => {
        const { body } = await server.json('GET', `/api/v1/jobs/${queued.id}`);
        return ['succeeded', 'dead'].includes(body.state) && body;
      },
      120_000,
    );
    assert.equal(small.state, 'succeeded', JSON.stringify(small.errors));
    assert.notEqual(small.result.ladder, job.result.ladder);
    // The asset's latest URL follows the newest complete ladder: now the small one.
    const { body: after } = await server.json('GET', `/api/v1/assets/${asset.id}`);
    const bytes = (v: any, name: string) => v.video.renditions.find((r: any) => r.name === name).bytes;
    for (const name of ['h264-120p', 'av1-120p', 'vp9-120p']) {
      assert.ok(bytes(after, name) < bytes(view, name), `${name}: small (${bytes(after, name)}) under fast`);
    }
  });
});

describe('a ladder in MPEG-TS segments', () => {
  const skip = skipWithoutFfmpeg();
  let server: TestServer;
  let dir: TempDir;

  before(async () => {
    if (skip) return;
    dir = await makeTempDir('conveyor-video-ts-');
    server = await startConveyor(
      { database: 'sqlite', storage: 'fs' },
      { ...BASE, videoSegmentFormat: 'mpegts' },
    );
  });
  after(async () => {
    await server?.close();
    await dir?.cleanup();
  });

  test('writes .ts segments without an init segment and serves them as video/mp2t', { skip }, async () => {
    const asset = await upload(server, await makeClip(dir.path, 2), {
      filename: 'clip.mp4',
      contentType: 'video/mp4',
    });
    const job = await videoJob(server, asset.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
    const { body: view } = await server.json('GET', `/api/v1/assets/${asset.id}`);
    const { master, fetched } = await crawl(view.video.urls.master);
    const parsed = HLS.parse(master) as HLS.types.MasterPlaylist;
    assert.deepEqual(
      parsed.variants.map((v) => v.codecs?.split(',').map((c) => c.split('.')[0])),
      [['avc1', 'mp4a']],
    );
    const segments = fetched.filter(([url]) => !url.endsWith('.m3u8'));
    assert.ok(segments.length >= 2, JSON.stringify(fetched));
    for (const [url, type] of segments) {
      assert.match(url, /\/seg_\d+\.ts$/);
      assert.equal(type, 'video/mp2t', url);
    }
    const media = await (await fetch(fetched[0]![0])).text();
    assert.doesNotMatch(media, /#EXT-X-MAP/);
  });

  test('is refused at start for codecs MPEG-TS segments do not carry', async () => {
    await assert.rejects(
      startConveyor(
        { database: 'sqlite', storage: 'fs' },
        { ...BASE, videoSegmentFormat: 'mpegts', videoCodecs: 'h264,vp9' },
      ),
      /CONVEYOR_VIDEO_SEGMENT_FORMAT: mpegts carries only h264, not vp9/,
    );
  });
});
