import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config/config.ts';
import { chunkFilter, planSpans } from '../../src/media/video/chunks.ts';
import { encodeRendition, MEDIA_PLAYLIST } from '../../src/media/video/encode.ts';
import { ladderSettings, planLadder } from '../../src/media/video/ladder.ts';
import { CHUNK_JOB } from '../../src/media/video-chunks.ts';
import { VIDEO_JOB } from '../../src/media/video-job.ts';
import { CHILD_GUARD_MS, spawnConveyor } from '../helpers/child.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../helpers/video-fixtures.ts';

const run = promisify(execFile);

describe('chunk spans', () => {
  test('lie on the segment grid, whole segments each, the last to the end', () => {
    // 29.97 fps and 4 s segments: a segment is 120 frames, 1001/250 s.
    const spans = planSpans(65_000, { num: 1001, den: 250 }, { chunkSeconds: 10, maxCount: 100 });
    assert.deepEqual(
      spans.map((s) => [s.start, s.end]),
      [
        [0, 12.012],
        [12.012, 24.024],
        [24.024, 36.036],
        [36.036, 48.048],
        [48.048, 60.06],
        [60.06, null],
      ],
    );
  });

  test('grow past the asked length when there would be too many, and one chunk is one span', () => {
    const many = planSpans(3_600_000, { num: 2, den: 1 }, { chunkSeconds: 2, maxCount: 10 });
    assert.equal(many.length, 10);
    assert.equal(many[1]!.start, 360);
    assert.equal(planSpans(9_000, { num: 2, den: 1 }, { chunkSeconds: 30, maxCount: 10 }).length, 1);
  });

  test("a chunk's filter cuts its span by timestamp and starts the rung's frame grid at 0", () => {
    const rung = planLadder(
      { width: 640, height: 360, frameRate: 30, hasAudio: true },
      {
        heights: [360],
        segmentSeconds: 2,
        maxFrameRate: 60,
        highFrameRateHeight: 720,
        sourceRungPercent: 10,
      },
    )[0]!;
    assert.equal(
      chunkFilter({ index: 1, start: 4, end: 8 }, 1.4, rung),
      'trim=start=5.399:end=9.399,setpts=PTS-5.4/TB,fps=30:start_time=0,scale=640:360,setsar=1,format=yuv420p',
    );
  });
});

/** ffprobe's packets of one stream of a playlist or file: [pts_time, keyframe] in presentation order. */
async function packets(path: string, stream: 'v:0' | 'a:0'): Promise<[number, boolean][]> {
  const { stdout } = await run('ffprobe', [
    ...['-v', 'error', '-select_streams', stream],
    ...['-show_entries', 'packet=pts_time,flags', '-of', 'csv=p=0', path],
  ]);
  return stdout
    .trim()
    .split('\n')
    .map((line): [number, boolean] => {
      const [pts, flags] = line.split(',');
      return [Number(pts), flags!.startsWith('K')];
    })
    .sort((a, b) => a[0] - b[0]);
}

/**
 * A long video encoded in chunks by two `conveyor worker` processes on the server's SQLite file, against
 * the same renditions encoded whole by the same code: every video packet at the same timestamp, the same
 * keyframes, the same audio packets (no gap, no duplicate frame, no drift at the seams).
 */
describe('a video encoded in chunks by two worker processes', () => {
  const skip = skipWithoutFfmpeg();
  let server: TestServer;
  let dir: TempDir;
  let clipPath: string;
  const workers: ReturnType<typeof spawnConveyor>[] = [];
  // 13 s at 25 fps, keyframes every 2.4 s (off the 2 s segment grid), 2 s segments and 4 s chunks:
  // four chunks, the last one short, every piece cut at a keyframe before its span.
  const settings = {
    CONVEYOR_VIDEO_HEIGHTS: '90,180',
    CONVEYOR_VIDEO_SEGMENT_SECONDS: '2',
    CONVEYOR_VIDEO_PRESET: 'fast',
    CONVEYOR_VIDEO_HWACCEL: 'off',
    CONVEYOR_VIDEO_QUALITY_ANALYSIS: 'false',
    CONVEYOR_VIDEO_CHUNK_MIN_SECONDS: '5',
    CONVEYOR_VIDEO_CHUNK_SECONDS: '4',
  };

  before(async () => {
    if (skip) return;
    dir = await makeTempDir('conveyor-video-chunks-');
    clipPath = join(dir.path, 'clip.mp4');
    await run('ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error'],
      ...['-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25:duration=13'],
      ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=13'],
      ...['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '60', '-keyint_min', '60', '-sc_threshold', '0'],
      ...['-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', clipPath],
    ]);
    server = await startConveyor({ database: 'sqlite', storage: 'fs' }, { serveWorkers: false });
  });
  after(async () => {
    for (const { child } of workers) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
    }
    await server?.close();
    await dir?.cleanup();
  });

  test('joins renditions equal to whole encodes', { skip, timeout: 2 * CHILD_GUARD_MS }, async () => {
    for (let i = 0; i < 2; i++) {
      workers.push(
        spawnConveyor('worker', {
          CONVEYOR_DATA_DIR: server.config.dataDir,
          CONVEYOR_LOG_LEVEL: 'warn',
          CONVEYOR_JOB_POLL_MS: '20',
          CONVEYOR_JOB_HEARTBEAT_MS: '50',
          CONVEYOR_JOB_PROGRESS_INTERVAL_MS: '0',
          CONVEYOR_WORKER_CONCURRENCY: '1',
          ...settings,
        }),
      );
    }
    const asset = await upload(server, await readFile(clipPath), {
      filename: 'clip.mp4',
      contentType: 'video/mp4',
    });
    const jobs = async (type: string) => {
      const { body } = await server.json('GET', `/api/v1/jobs?type=${type}&limit=100`);
      return body.items as any[];
    };
    const ladderJob = await waitFor(
      'the ladder job to end',
      async () => {
        const job = (await jobs(VIDEO_JOB)).find((j) => j.payload.assetId === asset.id);
        return job && ['succeeded', 'dead'].includes(job.state) ? job : null;
      },
      CHILD_GUARD_MS,
    );
    assert.equal(
      ladderJob.state,
      'succeeded',
      `${JSON.stringify(ladderJob.errors)}\n${workers.map((w) => w.output()).join('\n')}`,
    );
    assert.equal(ladderJob.attempts, 1, 'waiting for the chunks used no attempt');
    const chunks = (await jobs(CHUNK_JOB)).filter((j) => j.parentId === ladderJob.id);
    assert.deepEqual(chunks.map((j) => j.payload.index).sort(), [0, 1, 2, 3]);
    assert.ok(
      chunks.every((j) => j.state === 'succeeded' && j.result.encoded === 2),
      JSON.stringify(chunks),
    );

    // The chunk files are gone with the completed ladder; its renditions are complete.
    const store = server.conveyor.media.video.store;
    const files = await store.files(asset.sha256, ladderJob.result.ladder);
    assert.deepEqual(
      files.filter((f) => f.path.startsWith('chunks/')),
      [],
    );

    // Each rendition, as stored, against the same rendition encoded whole from the same source.
    const config = loadConfig({ ...settings, CONVEYOR_DATA_DIR: dir.path });
    const rungs = planLadder(
      { width: 320, height: 180, frameRate: 25, hasAudio: true },
      ladderSettings(config),
    );
    assert.equal(rungs.length, 2);
    for (const rung of rungs) {
      const name = `h264-${rung.name}`;
      const joined = join(dir.path, `joined-${name}`);
      await mkdir(joined);
      for (const file of files.filter((f) => f.rendition === name)) {
        await pipeline(
          await server.conveyor.store.get(file.sha256),
          createWriteStream(join(joined, file.path.slice(name.length + 1))),
        );
      }
      const whole = join(dir.path, `whole-${name}`);
      await mkdir(whole);
      const encoded = await encodeRendition({
        source: clipPath,
        durationMs: 13_000,
        hasAudio: true,
        rung,
        codec: 'h264',
        preset: 'fast',
        attempts: [
          {
            name: 'libx264',
            step: 'cpu',
            family: 'cpu',
            codec: 'h264',
            encoder: 'libx264',
            inputArgs: [],
            scaleFilter: 'scale',
            uploadFilters: [],
          },
        ],
        dir: whole,
        segmentFormat: 'fmp4',
        run: {},
      });
      const a = join(joined, MEDIA_PLAYLIST);
      const b = join(encoded.dir, MEDIA_PLAYLIST);
      const [videoA, videoB] = [await packets(a, 'v:0'), await packets(b, 'v:0')];
      assert.equal(videoA.length, 13 * 25, `${name}: every frame, once`);
      assert.deepEqual(videoA, videoB, `${name}: video packets and keyframes`);
      const [audioA, audioB] = [await packets(a, 'a:0'), await packets(b, 'a:0')];
      assert.deepEqual(
        audioA.map(([pts]) => pts),
        audioB.map(([pts]) => pts),
        `${name}: audio packets`,
      );
      const extinf = (text: string) => text.split('\n').filter((l) => l.startsWith('#EXTINF'));
      assert.deepEqual(
        extinf(await readFile(a, 'utf8')),
        extinf(await readFile(b, 'utf8')),
        `${name}: segments`,
      );
    }
  });
});
