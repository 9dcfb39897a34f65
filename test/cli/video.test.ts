import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type Run, runCli } from '../helpers/child.ts';
import { startConveyor, type TestServer } from '../helpers/conveyor.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg, truncatedMp4 } from '../helpers/video-fixtures.ts';

const run = promisify(execFile);

const show = (r: Run) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/**
 * `conveyor video`: the real CLI as a child process against a server in this process, whose worker
 * encodes a tiny clip's ladder (two renditions).
 */
describe('conveyor video', () => {
  const skip = skipWithoutFfmpeg();
  let server: TestServer;
  let dir: TempDir;
  let clip: string;
  let origin: Server;
  let env: Record<string, string>;

  before(async () => {
    if (skip) return;
    dir = await makeTempDir('conveyor-cli-video-');
    clip = join(dir.path, 'clip.mp4');
    await run('ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error'],
      ...['-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25:duration=2'],
      ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=2'],
      ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest'],
      clip,
    ]);
    server = await startConveyor(undefined, {
      serveWorkers: true,
      jobPollMs: 20,
      jobHeartbeatMs: 50,
      jobProgressIntervalMs: 0,
      videoHeights: '90,180',
      videoSegmentSeconds: 1,
      videoPreset: 'fast',
      videoHwaccel: 'off',
      // The loopback origin below serves the clip for the URL case.
      ingestAllowAddresses: '127.0.0.1/32',
    });
    // A loopback origin serving the clip as a video, for the URL case.
    const bytes = await readFile(clip);
    origin = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': bytes.length });
      res.end(bytes);
    });
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    env = { CONVEYOR_URL: server.url, CONVEYOR_API_KEY: server.adminKey };
  });
  after(async () => {
    origin?.close();
    await server?.close();
    await dir?.cleanup();
  });

  test('a file: uploaded, its ladder followed with progress by stage, the asset and result printed', {
    skip,
  }, async () => {
    const r = await runCli(['video', clip], env);
    assert.equal(r.code, 0, show(r));
    // Not a terminal: one plain line per stage seen (and per 10 % within one), ending at done 100 %. The
    // CLI polls, so which of the job's quick stages it sees depends on timing; the last line does not.
    const lines = r.stderr.trim().split('\n');
    for (const line of lines) assert.match(line, /^video: [\w -]+ \d+%( \((\d+ fps, )?[\d.]+x\))?$/, show(r));
    assert.equal(lines.at(-1), 'video: done 100%', show(r));
    assert.ok(!r.stderr.includes('\r'));
    assert.match(r.stdout, /^state +succeeded$/m);
    assert.match(r.stdout, /^content type +video\/mp4$/m);
    assert.match(r.stdout, /^result +\{.*"encoded":2/m);
  });

  test('a URL with --json and --no-progress: ingested, one document, nothing on stderr', {
    skip,
  }, async () => {
    const { port } = origin.address() as AddressInfo;
    const r = await runCli(['video', `http://127.0.0.1:${port}/clip.mp4`, '--json', '--no-progress'], env);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stderr, '');
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.asset.contentType, 'video/mp4');
    assert.equal(doc.job.state, 'succeeded');
    assert.equal(doc.job.error, null);
    // The same content as the file's: its ladder was already complete, nothing was encoded again.
    assert.deepEqual([doc.job.result.renditions.length, doc.job.result.encoded], [2, 0]);
    const job = await server.json('GET', `/api/v1/jobs/${doc.job.id}`);
    assert.equal(job.body.payload.assetId, doc.asset.id);
  });

  test('a video whose ladder fails: exit 1 with the job’s error code', { skip }, async () => {
    const r = await runCli(['video', await truncatedMp4(), '--no-progress'], env);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /^conveyor: video job \S+ ended dead: video_corrupt: /m, show(r));
    assert.match(r.stdout, /^state +dead$/m);
  });

  test('content that is not video: exit 2, it has no ladder job', { skip }, async () => {
    const text = join(dir.path, 'notes.txt');
    await writeFile(text, 'not a video');
    const r = await runCli(['video', text], env);
    assert.equal(r.code, 2, show(r));
    assert.match(
      r.stderr,
      /has no video\.ladder job: its content \(text\/plain[^)]*\) is not video/,
      show(r),
    );
  });
});
