import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { PermanentJobError } from '../../../src/jobs/types.ts';
import {
  chooseEncoder,
  classifyEncodeFailure,
  type EncodeAttempt,
  encodeWithFallback,
  type Fallback,
  fallbackChain,
} from '../../../src/media/video/fallback.ts';
import { detectEncoders, type EncoderReport } from '../../../src/media/video/hwaccel.ts';
import { makeTempDir } from '../../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../../helpers/video-fixtures.ts';

const run = promisify(execFile);
const FFMPEG = '/usr/bin/ffmpeg';
const FFPROBE = '/usr/bin/ffprobe';
const FAKE_GPU = new URL('../../fixtures/fake-gpu-ffmpeg.sh', import.meta.url).pathname;

/** A report as detection answers it, with the given encoders proven. */
function report(proven: EncoderReport['proven'], extra: Partial<EncoderReport> = {}): EncoderReport {
  const best: EncoderReport['best'] = {};
  for (const c of proven) best[c.codec] ??= c;
  return {
    mode: 'auto',
    ffmpegPath: 'ffmpeg',
    detectedAt: '2024-01-01T00:00:00.000Z',
    source: 'trials',
    hwaccels: ['vdpau', 'cuda', 'vaapi', 'qsv'],
    renderNodes: ['/dev/dri/renderD128'],
    vaapiDevice: '/dev/dri/renderD128',
    listingError: null,
    proven,
    failed: [],
    best,
    ...extra,
  };
}
const NVENC = { encoder: 'h264_nvenc', family: 'nvenc', codec: 'h264' } as const;
const QSV = { encoder: 'h264_qsv', family: 'qsv', codec: 'h264' } as const;
const VAAPI = { encoder: 'h264_vaapi', family: 'vaapi', codec: 'h264' } as const;
const X264 = { encoder: 'libx264', family: 'cpu', codec: 'h264' } as const;

describe('the fallback chain', () => {
  it('tries hardware decode + encode, then software decode + hardware encode, then the CPU', () => {
    const attempts = fallbackChain(NVENC, report([NVENC, X264]));
    assert.deepEqual(
      attempts.map((a) => [a.name, a.step, a.encoder, a.scaleFilter]),
      [
        ['h264_nvenc:hw_decode', 'hw_decode', 'h264_nvenc', 'scale_cuda'],
        ['h264_nvenc:sw_decode', 'sw_decode', 'h264_nvenc', 'scale'],
        ['libx264', 'cpu', 'libx264', 'scale'],
      ],
    );
    assert.deepEqual(attempts[0]?.inputArgs, ['-hwaccel', 'cuda', '-hwaccel_output_format', 'cuda']);
    assert.deepEqual(attempts[1]?.inputArgs, []);
    // Without the hwaccel in ffmpeg's list, there is no hardware-decode attempt.
    const noCuda = fallbackChain(NVENC, report([NVENC, X264], { hwaccels: ['vaapi'] }));
    assert.deepEqual(
      noCuda.map((a) => a.name),
      ['h264_nvenc:sw_decode', 'libx264'],
    );
  });

  it('opens the VAAPI device and uploads software frames to it; QSV decodes in software', () => {
    const [hw, sw] = fallbackChain(VAAPI, report([VAAPI, X264]));
    assert.deepEqual(hw?.inputArgs, [
      '-hwaccel',
      'vaapi',
      '-hwaccel_device',
      '/dev/dri/renderD128',
      '-hwaccel_output_format',
      'vaapi',
    ]);
    assert.equal(hw?.scaleFilter, 'scale_vaapi');
    assert.deepEqual(sw?.inputArgs, ['-vaapi_device', '/dev/dri/renderD128']);
    assert.deepEqual(sw?.uploadFilters, ['format=nv12', 'hwupload']);
    assert.deepEqual(
      fallbackChain(QSV, report([QSV, X264])).map((a) => a.name),
      ['h264_qsv:sw_decode', 'libx264'],
    );
  });

  it('is the CPU alone for a CPU encoder, and ends on hardware when no CPU encoder is proven', () => {
    assert.deepEqual(
      fallbackChain(X264, report([X264])).map((a) => a.name),
      ['libx264'],
    );
    assert.deepEqual(
      fallbackChain(NVENC, report([NVENC])).map((a) => a.name),
      ['h264_nvenc:hw_decode', 'h264_nvenc:sw_decode'],
    );
  });

  it('fails a job whose codec no encoder proved, permanently and with its own code', () => {
    const r = report([X264], {
      failed: [{ encoder: 'libsvtav1', family: 'cpu', codec: 'av1', reason: 'Unknown encoder' }],
    });
    assert.equal(chooseEncoder(r, 'h264'), r.best.h264);
    assert.throws(
      () => chooseEncoder(r, 'av1'),
      (error: unknown) =>
        error instanceof PermanentJobError &&
        error.code === 'video_encoder_unavailable' &&
        /libsvtav1: Unknown encoder/.test(error.message),
    );
  });
});

describe('classifying a failed encode', () => {
  const failure = (stderr: string, extra: object = {}) =>
    Object.assign(new Error('Command failed'), { stderr, ...extra });

  it('gives hardware messages to the hardware, input messages to the input, a cancel to nobody', () => {
    assert.equal(classifyEncodeFailure(failure('[h264_nvenc @ 0x1] OpenEncodeSessionEx failed')), 'hardware');
    assert.equal(classifyEncodeFailure(failure('Device creation failed: -542398533.')), 'hardware');
    assert.equal(classifyEncodeFailure(failure('[AVHWDeviceContext] No VA display found')), 'hardware');
    assert.equal(classifyEncodeFailure(failure('in.mp4: Invalid data found when processing input')), 'input');
    assert.equal(classifyEncodeFailure(failure('out.mp4: No space left on device')), 'input');
    assert.equal(classifyEncodeFailure(failure('', { code: 'ENOENT' })), 'input');
    assert.equal(
      classifyEncodeFailure(failure('Conversion failed!')),
      'hardware',
      'unknown counts as hardware',
    );
    const aborted = new AbortController();
    aborted.abort();
    assert.equal(classifyEncodeFailure(failure('OpenEncodeSessionEx failed'), aborted.signal), 'cancelled');
    assert.equal(classifyEncodeFailure(Object.assign(new Error('x'), { name: 'AbortError' })), 'cancelled');
  });
});

describe('encodeWithFallback', () => {
  const attempts = fallbackChain(NVENC, report([NVENC, X264]));
  const hardware = Object.assign(new Error('failed'), {
    stderr: '[h264_nvenc @ 0x1] No capable devices found',
  });

  it('moves on after a hardware failure and records each step', async () => {
    const tried: string[] = [];
    const told: Fallback[] = [];
    const outcome = await encodeWithFallback(
      attempts,
      async (attempt) => {
        tried.push(attempt.name);
        if (attempt.family !== 'cpu') throw hardware;
        return 'encoded';
      },
      { onFallback: (f) => told.push(f) },
    );
    assert.equal(outcome.result, 'encoded');
    assert.equal(outcome.attempt.encoder, 'libx264');
    assert.deepEqual(tried, ['h264_nvenc:hw_decode', 'h264_nvenc:sw_decode', 'libx264']);
    assert.deepEqual(outcome.fallbacks, [
      {
        from: 'h264_nvenc:hw_decode',
        to: 'h264_nvenc:sw_decode',
        reason: '[h264_nvenc] No capable devices found',
      },
      { from: 'h264_nvenc:sw_decode', to: 'libx264', reason: '[h264_nvenc] No capable devices found' },
    ]);
    assert.deepEqual(told, outcome.fallbacks);
  });

  it('stops at a bad input, a cancel, or the last attempt, with that error', async () => {
    const input = Object.assign(new Error('bad'), {
      stderr: 'x.mp4: Invalid data found when processing input',
    });
    const tried: string[] = [];
    await assert.rejects(
      encodeWithFallback(attempts, async (a) => {
        tried.push(a.name);
        throw input;
      }),
      (error) => error === input,
    );
    assert.deepEqual(tried, ['h264_nvenc:hw_decode']);

    const controller = new AbortController();
    const cancelled = encodeWithFallback(
      attempts,
      async () => {
        controller.abort(new Error('cancelled by the user'));
        throw hardware;
      },
      { signal: controller.signal },
    );
    await assert.rejects(cancelled, (error) => error === hardware);

    const cpuFailure = Object.assign(new Error('cpu'), { stderr: 'Conversion failed!' });
    const calls: EncodeAttempt[] = [];
    await assert.rejects(
      encodeWithFallback(attempts, async (a) => {
        calls.push(a);
        throw a.family === 'cpu' ? cpuFailure : hardware;
      }),
      (error) => error === cpuFailure,
    );
    assert.equal(calls.length, 3);
  });
});

describe('a real encode on a GPU that passed its trial and then fails', { skip: skipWithoutFfmpeg() }, () => {
  it('ends on the CPU with a valid H.264 stream and the fallbacks recorded', async () => {
    const dir = await makeTempDir('fallback-');
    try {
      const source = join(dir.path, 'source.mp4');
      await run(FFMPEG, [
        ...['-hide_banner', '-nostdin', '-loglevel', 'error'],
        ...['-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25', '-t', '1'],
        ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', source],
      ]);
      const detected = await detectEncoders({
        ffmpegPath: FAKE_GPU,
        renderNodesDir: join(dir.path, 'no-dri'),
        codecs: ['h264'],
      });
      const chosen = chooseEncoder(detected, 'h264');
      assert.equal(chosen.encoder, 'h264_nvenc', 'the fake GPU passes its trial');

      // A minimal runner: the job hands in the real one (progress, cancel, temporary outputs).
      const output = join(dir.path, 'out.mp4');
      const outcome = await encodeWithFallback(fallbackChain(chosen, detected), async (attempt) => {
        const filters = [`${attempt.scaleFilter}=-2:144`, ...attempt.uploadFilters].join(',');
        await run(FAKE_GPU, [
          ...['-hide_banner', '-nostdin', '-loglevel', 'error', '-y'],
          ...attempt.inputArgs,
          ...['-i', source, '-vf', filters, '-c:v', attempt.encoder],
          ...(attempt.encoder === 'libx264' ? ['-preset', 'ultrafast'] : []),
          output,
        ]);
        return output;
      });

      assert.equal(outcome.attempt.encoder, 'libx264');
      assert.deepEqual(
        outcome.fallbacks.map((f) => [f.from, f.to]),
        [
          ['h264_nvenc:hw_decode', 'h264_nvenc:sw_decode'],
          ['h264_nvenc:sw_decode', 'libx264'],
        ],
      );
      assert.match(outcome.fallbacks[0]?.reason ?? '', /No device available for decoder: device type cuda/);
      assert.match(outcome.fallbacks[1]?.reason ?? '', /OpenEncodeSessionEx failed/);

      const probe = await run(FFPROBE, [
        ...['-v', 'error', '-count_frames', '-select_streams', 'v:0'],
        ...['-show_entries', 'stream=codec_name,height,nb_read_frames', '-of', 'json', output],
      ]);
      const [stream] = JSON.parse(probe.stdout).streams;
      assert.equal(stream.codec_name, 'h264');
      assert.equal(stream.height, 144);
      assert.equal(Number(stream.nb_read_frames), 25);
    } finally {
      await dir.cleanup();
    }
  });
});
