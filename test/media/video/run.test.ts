import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VideoError } from '../../../src/media/video/errors.ts';
import { ffmpegArgs, safePath } from '../../../src/media/video/ffmpeg-args.ts';
import {
  type FfmpegProgress,
  ProgressParser,
  progressMessage,
  runFfmpeg,
  runFfprobe,
  STDERR_TAIL_BYTES,
} from '../../../src/media/video/run.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';
import { copyOf, h264AacMp4, skipWithoutFfmpeg } from '../../helpers/video-fixtures.ts';

const skip = skipWithoutFfmpeg();

/** A source that runs for ten minutes unless stopped: `-re` reads it at its own pace. */
const endless = { path: 'testsrc2=size=160x90:rate=25:duration=600', format: 'lavfi', options: ['-re'] };

/** Whether a process with this id exists (signal 0 tests for it without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    assert.equal((error as NodeJS.ErrnoException).code, 'ESRCH');
    return false;
  }
}

/** A stand-in "ffmpeg": Node running `script`, for behaviour a real ffmpeg cannot be made to show. */
function fake(script: string) {
  return { tool: process.execPath, args: ['-e', script] };
}

async function videoError(promise: Promise<unknown>): Promise<VideoError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof VideoError, `expected a VideoError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a rejection');
}

describe('ProgressParser', () => {
  it('assembles blocks from pieces cut anywhere, with N/A as null', () => {
    const seen: FfmpegProgress[] = [];
    const parser = new ProgressParser((p) => seen.push(p));
    const stream =
      'frame=0\nfps=0.00\nstream_0_0_q=0.0\nbitrate=N/A\ntotal_size=N/A\nout_time_us=N/A\nout_time_ms=N/A\n' +
      'out_time=N/A\ndup_frames=0\ndrop_frames=0\nspeed=N/A\nprogress=continue\n' +
      'frame=50\nfps=0.0\ntotal_size=1234\nout_time_us=2000000\nout_time=00:00:02.000000\nspeed=41.7x\nprogress=end\n';
    for (let i = 0; i < stream.length; i += 7) parser.push(stream.slice(i, i + 7));
    assert.deepEqual(seen, [
      { frame: 0, fps: 0, outTimeUs: null, speed: null, totalSizeBytes: null, progress: 'continue' },
      { frame: 50, fps: 0, outTimeUs: 2_000_000, speed: 41.7, totalSizeBytes: 1234, progress: 'end' },
    ]);
  });

  it('falls back on out_time, clamps a negative start and ignores lines that are not key=value', () => {
    const seen: FfmpegProgress[] = [];
    const parser = new ProgressParser((p) => seen.push(p));
    parser.push('garbage\n=x\nout_time_us=N/A\nout_time=00:01:02.500000\nprogress=continue\n');
    parser.push('out_time_us=-23220\nprogress=continue\n');
    assert.equal(seen[0]?.outTimeUs, 62_500_000);
    assert.equal(seen[1]?.outTimeUs, 0);
  });
});

describe('progressMessage', () => {
  it('says the frames per second and the speed that ffmpeg reported', () => {
    assert.equal(progressMessage({ fps: 87.4, speed: 2.9 }), '87 fps, 2.9x');
    assert.equal(progressMessage({ fps: null, speed: 0.5 }), '0.5x');
    assert.equal(progressMessage({ fps: null, speed: null }), undefined);
    assert.equal(progressMessage({ fps: 0, speed: 1.5 }), '1.5x', 'before ffmpeg has timed any frame');
  });
});

describe('runFfmpeg', { skip }, () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('conveyor-video-run-');
  });
  after(() => tmp.cleanup());

  it('reports progress from a real encode, ending with progress=end', async () => {
    const seen: FfmpegProgress[] = [];
    const args = ffmpegArgs({
      inputs: [{ path: 'testsrc2=size=160x90:rate=25:duration=2', format: 'lavfi' }],
      outputs: [{ path: join(tmp.path, 'out.mp4'), options: ['-c:v', 'libx264', '-preset', 'ultrafast'] }],
    });
    const result = await runFfmpeg(args, { onProgress: (p) => seen.push(p) });
    const last = seen.at(-1);
    assert.equal(last?.progress, 'end');
    assert.deepEqual(result.lastProgress, last);
    assert.equal(last?.frame, 50);
    // Within a frame (40 ms) of the two seconds encoded.
    assert.ok(Math.abs((last?.outTimeUs ?? 0) - 2_000_000) <= 40_000, `out_time_us ${last?.outTimeUs}`);
    assert.ok((last?.totalSizeBytes ?? 0) > 0);
    assert.ok(seen.slice(0, -1).every((p) => p.progress === 'continue'));
  });

  it('stops ffmpeg on abort and rejects with the reason once the process is gone', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled by the test');
    let pid = 0;
    const run = runFfmpeg(ffmpegArgs({ inputs: [endless], outputs: [{ path: '-', format: 'null' }] }), {
      signal: controller.signal,
      onSpawn: (p) => {
        pid = p;
      },
      // The first progress block says ffmpeg is transcoding, where it reads `q`.
      onProgress: () => controller.abort(reason),
    });
    await assert.rejects(run, (error) => error === reason);
    assert.ok(pid > 0);
    assert.equal(alive(pid), false);
  });

  it('kills with SIGKILL what does not stop on q within the grace period', async () => {
    const controller = new AbortController();
    const { tool, args } = fake('setInterval(() => {}, 1000)');
    let pid = 0;
    const run = runFfmpeg(args, {
      ffmpegPath: tool,
      cancelGraceMs: 50,
      signal: controller.signal,
      onSpawn: (p) => {
        pid = p;
        controller.abort(new Error('stop'));
      },
    });
    await assert.rejects(run, { message: 'stop' });
    assert.equal(alive(pid), false);
  });

  it('does not start when the signal is already aborted', async () => {
    let spawned = false;
    const run = runFfmpeg(['-version'], {
      signal: AbortSignal.abort(new Error('early')),
      onSpawn: () => (spawned = true),
    });
    await assert.rejects(run, { message: 'early' });
    assert.equal(spawned, false);
  });

  it('stops a run past its time limit with video_timeout', async () => {
    let pid = 0;
    const run = runFfmpeg(ffmpegArgs({ inputs: [endless], outputs: [{ path: '-', format: 'null' }] }), {
      timeLimitMs: 200,
      onSpawn: (p) => {
        pid = p;
      },
    });
    const error = await videoError(run);
    assert.equal(error.code, 'video_timeout');
    assert.equal(error.retryable, false);
    assert.equal(alive(pid), false);
  });

  it('rejects a failed encode with its exit status and the end of stderr', async () => {
    const args = ffmpegArgs({
      inputs: [{ path: 'testsrc2=duration=1', format: 'lavfi' }],
      outputs: [{ path: join(tmp.path, 'bad.mp4'), options: ['-c:v', 'no_such_encoder'] }],
    });
    const error = await videoError(runFfmpeg(args));
    assert.equal(error.code, 'video_process_failed');
    assert.equal(error.retryable, false);
    assert.notEqual(error.process?.exitCode, 0);
    assert.equal(error.process?.signal, null);
    assert.match(error.process?.stderrTail ?? '', /Unknown encoder 'no_such_encoder'/);
    assert.match(error.message, /no_such_encoder/);
  });

  it('is no success when ffmpeg is killed, though its HLS playlist looks finished', async () => {
    const playlist = join(tmp.path, 'killed.m3u8');
    const args = ffmpegArgs({
      inputs: [endless],
      outputs: [
        {
          path: playlist,
          format: 'hls',
          options: ['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-hls_time', '1'],
        },
      ],
    });
    // SIGTERM: ffmpeg closes its outputs properly and exits 255.
    let pid = 0;
    let sent = false;
    const terminated = await videoError(
      runFfmpeg(args, {
        onSpawn: (p) => {
          pid = p;
        },
        onProgress: (p) => {
          if ((p.outTimeUs ?? 0) > 0 && !sent) {
            sent = true;
            process.kill(pid, 'SIGTERM');
          }
        },
      }),
    );
    assert.equal(terminated.code, 'video_process_failed');
    assert.equal(terminated.process?.exitCode, 255);
    assert.match(await readFile(playlist, 'utf8'), /#EXT-X-ENDLIST/);

    // SIGKILL: no exit status at all; a crash, so worth another try.
    sent = false;
    const killed = await videoError(
      runFfmpeg(args, {
        onSpawn: (p) => {
          pid = p;
        },
        onProgress: () => {
          if (!sent) process.kill(pid, 'SIGKILL');
          sent = true;
        },
      }),
    );
    assert.equal(killed.code, 'video_process_killed');
    assert.equal(killed.process?.signal, 'SIGKILL');
    assert.equal(killed.retryable, true);
  });

  it('keeps only the end of a long stderr, and retries a machine out of space', async () => {
    const { tool, args } = fake(
      "process.stderr.write('x'.repeat(100000) + '\\nav_interleaved_write_frame(): No space left on device\\n'); process.exitCode = 1",
    );
    const error = await videoError(runFfmpeg(args, { ffmpegPath: tool }));
    const tail = error.process?.stderrTail ?? '';
    assert.ok(tail.length <= STDERR_TAIL_BYTES, `${tail.length} bytes kept`);
    assert.match(tail, /No space left on device\n$/);
    assert.equal(error.code, 'video_process_failed');
    assert.equal(error.retryable, true);
  });

  it('names a missing binary as video_tool_missing', async () => {
    const error = await videoError(runFfmpeg(['-version'], { ffmpegPath: '/nonexistent/ffmpeg' }));
    assert.equal(error.code, 'video_tool_missing');
    assert.equal(error.retryable, true);
    assert.match(error.message, /\/nonexistent\/ffmpeg/);
  });
});

describe('runFfprobe', { skip }, () => {
  const lavfi = ['-f', 'lavfi', '-i', 'testsrc2=size=160x90:duration=1'];

  it('answers the parsed JSON', async () => {
    const json = (await runFfprobe(['-v', 'error', '-print_format', 'json', '-show_streams', ...lavfi])) as {
      streams: { width: number }[];
    };
    assert.equal(json.streams[0]?.width, 160);
  });

  it('refuses output that is not JSON or too large', async () => {
    const text = await videoError(runFfprobe(['-v', 'error', '-show_streams', ...lavfi]));
    assert.equal(text.code, 'video_process_failed');
    const large = await videoError(
      runFfprobe(['-v', 'error', '-print_format', 'json', '-show_streams', ...lavfi], {
        maxOutputBytes: 100,
      }),
    );
    assert.equal(large.code, 'video_process_failed');
    assert.match(large.message, /more than 100 bytes/);
  });

  it('reads a file whose name starts with a dash as that file', async () => {
    const path = await copyOf(h264AacMp4(), '-i.mp4');
    const json = (await runFfprobe(
      ['-v', 'error', '-print_format', 'json', '-show_format', safePath(basename(path))],
      {
        cwd: dirname(path),
      },
    )) as { format: { filename: string } };
    assert.equal(json.format.filename, 'file:-i.mp4');
  });

  it('names a missing binary as video_tool_missing', async () => {
    const error = await videoError(runFfprobe(['-version'], { ffprobePath: 'no-such-ffprobe-here' }));
    assert.equal(error.code, 'video_tool_missing');
  });
});
