import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { VIDEO_JOB } from '../../src/media/video-job.ts';
import { CHILD_GUARD_MS, spawnConveyor } from '../helpers/child.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../helpers/video-fixtures.ts';
import { ffmpegRuns, gone, RECORDING_FFMPEG, recordingFfmpeg } from '../helpers/video-runs.ts';

const run = promisify(execFile);

type Worker = ReturnType<typeof spawnConveyor>;

/**
 * A worker killed mid-ladder: two `conveyor worker` processes on the server's SQLite file (the database
 * is the only thing they share with it and each other, as on separate hosts). The one that took the job
 * is SIGKILLed while it encodes the second of three renditions; the job's lease then expires (1 s here),
 * the other worker's rescuer returns it to the queue, and that worker resumes at the unfinished rendition.
 * Both start at once, so that the test waits for one start-up only.
 */
describe('a video job resumes after its worker is killed', () => {
  const skip = skipWithoutFfmpeg();
  let server: TestServer;
  let dir: TempDir;
  let clip: Buffer;
  let log: string;
  let work: string;
  const workers: Worker[] = [];

  before(async () => {
    if (skip) return;
    dir = await makeTempDir('conveyor-video-resume-');
    const path = join(dir.path, 'clip.mp4');
    // 2 s of 320x180, three renditions (90p, 120p, 180p); the recording ffmpeg encodes at the clip's own
    // pace, so each rendition's encode lasts about 2 s and the test can catch the second one running.
    await run('ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error'],
      ...['-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25:duration=2'],
      ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=2'],
      ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest'],
      path,
    ]);
    clip = await readFile(path);
    log = join(dir.path, 'ffmpeg.log');
    work = join(dir.path, 'work');
    await mkdir(work);
    // An API-only server: every job runs in a worker process.
    server = await startConveyor({ database: 'sqlite', storage: 'fs' }, { serveWorkers: false });
  });
  after(async () => {
    for (const { child } of workers) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }
    }
    // The killed worker's ffmpeg was orphaned; it ends by itself, but not necessarily before the test.
    for (const { pid } of log ? await ffmpegRuns(log) : []) {
      if (!gone(pid)) process.kill(pid, 'SIGKILL');
    }
    await server?.close();
    await dir?.cleanup();
  });

  const startWorker = (): Worker => {
    const worker = spawnConveyor('worker', {
      CONVEYOR_DATA_DIR: server.config.dataDir,
      CONVEYOR_LOG_LEVEL: 'warn',
      CONVEYOR_JOB_POLL_MS: '20',
      CONVEYOR_JOB_HEARTBEAT_MS: '50',
      CONVEYOR_JOB_PROGRESS_INTERVAL_MS: '0',
      // The shortest lease there is, and no backoff: the killed worker's job comes back about 1 s later.
      CONVEYOR_JOB_LEASE_MS: '1000',
      CONVEYOR_JOB_RETRY_BASE_MS: '0',
      CONVEYOR_FFMPEG_PATH: RECORDING_FFMPEG,
      CONVEYOR_VIDEO_WORK_DIR: work,
      CONVEYOR_VIDEO_HEIGHTS: '90,120,180',
      CONVEYOR_VIDEO_SEGMENT_SECONDS: '1',
      CONVEYOR_VIDEO_PRESET: 'fast',
      CONVEYOR_VIDEO_HWACCEL: 'off',
      ...recordingFfmpeg(log),
    });
    workers.push(worker);
    return worker;
  };

  test('at the first unfinished rendition: the finished one is neither encoded nor stored again', {
    skip,
    timeout: 3 * CHILD_GUARD_MS,
  }, async () => {
    const asset = await upload(server, clip, { filename: 'clip.mp4', contentType: 'video/mp4' });
    const jobView = async () => {
      const { body } = await server.json('GET', `/api/v1/jobs?type=${VIDEO_JOB}&limit=100`);
      return body.items.find((j: any) => j.payload.assetId === asset.id);
    };
    const db = server.conveyor.db.kysely;
    const files = () =>
      db
        .selectFrom('video_files')
        .selectAll()
        .where('source_sha256', '=', asset.sha256)
        .orderBy('path')
        .execute();

    const pair = [startWorker(), startWorker()];
    const [firstName, secondName] = ['h264-90p', 'h264-120p'];
    // The first rendition is stored (its measurements are its last file) and the second's ffmpeg runs.
    const encoding = await waitFor(
      `${secondName} encoding while ${firstName} is stored`,
      async () => {
        const job = await jobView();
        if (job?.progress?.stage !== `encoding ${secondName}`) return null;
        const stored = await files();
        if (!stored.some((f) => f.path === `${firstName}/rendition.json`)) return null;
        return (await ffmpegRuns(log)).find((r) => r.rendition === secondName);
      },
      CHILD_GUARD_MS,
    );
    const stored = await files();
    // The first rendition's files, and the ladder's own (poster, sprite: no rendition), made before it.
    assert.ok(stored.some((f) => f.rendition === firstName));
    assert.ok(
      stored.every((f) => f.rendition === firstName || f.rendition === null),
      JSON.stringify(stored),
    );
    // The worker that runs the job is the encoding ffmpeg's parent (the wrapper exec'd ffmpeg in place).
    const parent = Number((await run('ps', ['-o', 'ppid=', '-p', String(encoding.pid)])).stdout.trim());
    const first = pair.find((w) => w.child.pid === parent);
    const second = pair.find((w) => w !== first)!;
    assert.ok(first, `no worker is the parent (${parent}) of ffmpeg ${encoding.pid}`);
    const exited = once(first.child, 'exit');
    first.child.kill('SIGKILL');
    await exited;
    // The orphaned ffmpeg is stopped too: were it to finish, it would store nothing (no worker reads it).
    if (!gone(encoding.pid)) process.kill(encoding.pid, 'SIGKILL');

    const job = await waitFor(
      'the job to end on the second worker',
      async () => {
        const view = await jobView();
        return ['succeeded', 'dead'].includes(view.state) ? view : null;
      },
      CHILD_GUARD_MS,
    );
    assert.equal(job.state, 'succeeded', `${JSON.stringify(job.errors)}\n${second.output()}`);
    assert.equal(job.attempts, 2);
    assert.equal(job.errors.at(-1)?.code, 'lease_expired');
    assert.equal(job.result.renditions.length, 3);
    assert.equal(job.result.encoded, 2);

    // The first rendition's rows are the very ones the killed worker stored: same content, same time.
    const kept = (await files()).filter((f) => f.rendition === firstName);
    assert.deepEqual(
      kept,
      stored.filter((f) => f.rendition === firstName),
    );
    // And its encode ran once; the interrupted one ran again, the third once.
    const runs = await ffmpegRuns(log);
    const count = (name: string) => runs.filter((r) => r.rendition === name).length;
    assert.deepEqual([count(firstName), count(secondName), count('h264-180p')], [1, 2, 1]);
    const ladder = await server.conveyor.media.video.store.find(asset.sha256, job.result.ladder);
    assert.equal(ladder?.state, 'complete');
    // The killed worker's working folder went in the second worker's sweep, the second's own at its end.
    assert.deepEqual(await readdir(work), []);
  });
});
