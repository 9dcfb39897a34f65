import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { videoSettings } from '../../../src/config/video-settings.ts';
import {
  candidatesFor,
  detectEncoders,
  detectOptionsFrom,
  type EncoderReport,
  ForcedEncoderError,
  forgetEncoderDetection,
  HARDWARE_FAMILIES,
  listRenderNodes,
  parseEncoderList,
  parseHwaccelList,
  rankFamilies,
  stderrTail,
  trialArgs,
} from '../../../src/media/video/hwaccel.ts';
import { encoderAvailability, encoderHealth } from '../../../src/media/video/hwaccel-report.ts';
import { checkHealth } from '../../../src/ops/health.ts';
import { Metrics } from '../../../src/ops/metrics.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../../helpers/video-fixtures.ts';

const FFMPEG = '/usr/bin/ffmpeg';
const FAKE_GPU = new URL('../../fixtures/fake-gpu-ffmpeg.sh', import.meta.url).pathname;

const skip = skipWithoutFfmpeg();
/** Most tests prove one or two codecs: each trial encode is a process start. */
const H264 = ['h264'] as const;
const H264_HEVC = ['h264', 'hevc'] as const;

/** The video encoders this ffmpeg lists, as detection reads them. */
const listed = skip
  ? new Set<string>()
  : parseEncoderList(execFileSync(FFMPEG, ['-hide_banner', '-encoders'], { encoding: 'utf8' }));

const ENCODERS_SAMPLE = `Encoders:
 V..... = Video
 A..... = Audio
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V....D h264_nvenc           NVIDIA NVENC H.264 encoder (codec h264)
 V..... h264_qsv             H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (Intel Quick Sync Video acceleration) (codec h264)
 V....D h264_vaapi           H.264/AVC (VAAPI) (codec h264)
 V....D h264_videotoolbox    VideoToolbox H.264 Encoder (codec h264)
 V..... libsvtav1            SVT-AV1(Scalable Video Technology for AV1) encoder (codec av1)
 A....D aac                  AAC (Advanced Audio Coding)
`;

describe('encoder detection: reading ffmpeg', () => {
  it('lists the video encoders after the legend, not audio ones or the legend itself', () => {
    assert.deepEqual(
      [...parseEncoderList(ENCODERS_SAMPLE)],
      ['libx264', 'h264_nvenc', 'h264_qsv', 'h264_vaapi', 'h264_videotoolbox', 'libsvtav1'],
    );
    assert.deepEqual(parseHwaccelList('Hardware acceleration methods:\nvdpau\ncuda\nvaapi\n\n'), [
      'vdpau',
      'cuda',
      'vaapi',
    ]);
  });

  it('offers candidates best first, by the mode, and VideoToolbox only on macOS', () => {
    const names = (mode: Parameters<typeof candidatesFor>[1], platform: NodeJS.Platform) =>
      candidatesFor(parseEncoderList(ENCODERS_SAMPLE), mode, platform).map((c) => c.encoder);
    assert.deepEqual(names('auto', 'linux'), [
      'h264_nvenc',
      'h264_qsv',
      'h264_vaapi',
      'libx264',
      'libsvtav1',
    ]);
    assert.deepEqual(names('auto', 'darwin'), [
      'h264_nvenc',
      'h264_qsv',
      'h264_vaapi',
      'h264_videotoolbox',
      'libx264',
      'libsvtav1',
    ]);
    assert.deepEqual(names('off', 'linux'), ['libx264', 'libsvtav1']);
    assert.deepEqual(names('vaapi', 'linux'), [
      'h264_vaapi',
      'h264_nvenc',
      'h264_qsv',
      'libx264',
      'libsvtav1',
    ]);
    assert.deepEqual(rankFamilies('qsv'), ['qsv', 'nvenc', 'vaapi', 'videotoolbox', 'cpu']);
  });

  it('trial-encodes a lavfi pattern, uploading to the VAAPI device for VAAPI', () => {
    const vaapi = trialArgs({ encoder: 'h264_vaapi', family: 'vaapi', codec: 'h264' }, '/dev/dri/renderD128');
    assert.deepEqual(vaapi.slice(vaapi.indexOf('-vaapi_device'), vaapi.indexOf('-vaapi_device') + 2), [
      '-vaapi_device',
      '/dev/dri/renderD128',
    ]);
    assert.ok(vaapi.indexOf('-vaapi_device') < vaapi.indexOf('-i'), 'the device is opened before the input');
    assert.equal(vaapi[vaapi.indexOf('-vf') + 1], 'format=nv12,hwupload');
    const nvenc = trialArgs({ encoder: 'h264_nvenc', family: 'nvenc', codec: 'h264' }, null);
    assert.ok(!nvenc.includes('-vf') && !nvenc.includes('-vaapi_device'));
    assert.deepEqual(nvenc.slice(-5), ['-c:v', 'h264_nvenc', '-f', 'null', '-']);
  });

  it('keeps the last lines of stderr, on one line, without context addresses', () => {
    const tail = stderrTail(
      'banner\n\n[h264_nvenc @ 0x55ae50d2a000] Cannot load libcuda.so.1\nError initializing output stream 0:0\n',
    );
    assert.equal(
      tail,
      'banner | [h264_nvenc] Cannot load libcuda.so.1 | Error initializing output stream 0:0',
    );
    assert.equal(stderrTail('x'.repeat(600), 100).length, 100);
  });

  it('lists render nodes in numeric order, ignoring the card nodes', async () => {
    const dir = await makeTempDir('dri-');
    try {
      for (const name of ['renderD129', 'card0', 'renderD128', 'renderD1000'])
        await writeFile(join(dir.path, name), '');
      assert.deepEqual(await listRenderNodes(dir.path), [
        join(dir.path, 'renderD128'),
        join(dir.path, 'renderD129'),
        join(dir.path, 'renderD1000'),
      ]);
      assert.deepEqual(await listRenderNodes(join(dir.path, 'absent')), []);
    } finally {
      await dir.cleanup();
    }
  });

  it('takes its modes from the settings, with the cache under the data dir by default', () => {
    assert.deepEqual(videoSettings.videoHwaccel.values, ['auto', 'off', ...HARDWARE_FAMILIES]);
    const options = detectOptionsFrom(
      {
        dataDir: '/var/conveyor',
        videoHwaccel: 'auto',
        videoVaapiDevice: undefined,
        videoHwaccelTrialTimeoutMs: 5000,
        videoHwaccelCacheFile: undefined,
      },
      '/usr/bin/ffmpeg',
    );
    assert.equal(options.cacheFile, '/var/conveyor/video-encoders.json');
    assert.equal(options.timeoutMs, 5000);
  });
});

describe('encoder detection with a real ffmpeg', { skip }, () => {
  let dir: TempDir;
  let noNodes: string;
  before(async () => {
    dir = await makeTempDir('hwaccel-');
    noNodes = join(dir.path, 'dri');
    await mkdir(noNodes);
  });
  after(async () => {
    delete process.env['FAKE_GPU_LOG'];
    await dir?.cleanup();
  });

  it('refuses the hardware encoders ffmpeg lists on a machine without a GPU, and proves the CPU ones', async () => {
    const report = await detectEncoders({ ffmpegPath: FFMPEG });
    const nodes = await listRenderNodes();
    const failed = new Map(report.failed.map((f) => [f.encoder, f.reason]));
    const proven = report.proven.map((c) => c.encoder);
    for (const encoder of ['h264_nvenc', 'h264_qsv', 'h264_vaapi'].filter((e) => listed.has(e))) {
      assert.ok(proven.includes(encoder) || failed.has(encoder), `${encoder} is neither proven nor failed`);
    }
    // Without a GPU (this machine, CI), nothing listed for one is proven, and each says why.
    if (!existsSync('/dev/nvidiactl') && listed.has('h264_nvenc')) {
      assert.match(failed.get('h264_nvenc') ?? '', /\S/);
      assert.ok(!proven.includes('h264_nvenc'));
    }
    if (nodes.length === 0) {
      for (const encoder of ['h264_qsv', 'h264_vaapi'].filter((e) => listed.has(e))) {
        assert.ok(!proven.includes(encoder), `${encoder} proven without a render node`);
      }
      if (listed.has('h264_vaapi')) assert.match(failed.get('h264_vaapi') ?? '', /no DRM render node/);
      assert.equal(report.best.h264?.encoder, 'libx264');
    }
    assert.ok(proven.includes('libx264'));
    if (listed.has('libsvtav1')) assert.equal(report.best.av1?.encoder, 'libsvtav1');
    if (listed.has('libvpx-vp9')) assert.ok(proven.includes('libvpx-vp9'));
    assert.ok(report.hwaccels.length > 0);

    const again = await detectEncoders({ ffmpegPath: FFMPEG });
    assert.equal(again, report, 'one detection per process');

    const health = encoderHealth(report);
    assert.equal(health.status, 'healthy');
    assert.equal(health.encoders?.best['h264'], report.best.h264?.encoder);
    assert.deepEqual(health.encoders?.proven, proven);
  });

  it('proves an encoder whose trial encode succeeds (the fake GPU) and ranks it first', async () => {
    const report = await detectEncoders({ ffmpegPath: FAKE_GPU, renderNodesDir: noNodes, codecs: H264_HEVC });
    assert.equal(report.best.h264?.encoder, 'h264_nvenc');
    assert.equal(report.proven[0]?.encoder, 'h264_nvenc');
    if (listed.has('hevc_nvenc')) assert.ok(report.failed.some((f) => f.encoder === 'hevc_nvenc'));
    assert.ok(report.proven.some((c) => c.encoder === 'libx264'));
  });

  it('shows the detection in /health and in the metrics', async () => {
    const report = await detectEncoders({ ffmpegPath: FAKE_GPU, renderNodesDir: noNodes, codecs: H264_HEVC });
    const health = await checkHealth({
      config: { healthHealthyPercent: 95, healthDegradedPercent: 80, healthWindowMinutes: 5 } as never,
      monitor: {} as never,
      // Without the database the job engine is not asked, which keeps this to the encoders.
      ready: async () => ({ database: 'failed' }),
      scope: 'all',
      encoders: () => encoderHealth(report),
    });
    const component = health.components.find((c) => c.name === 'encoders');
    assert.equal(component?.status, 'healthy');
    assert.equal(component?.encoders?.best['h264'], 'h264_nvenc');
    assert.ok(component?.encoders?.failed.every((f) => f.reason.length > 0));
    const without = await checkHealth({
      config: { healthHealthyPercent: 95, healthDegradedPercent: 80, healthWindowMinutes: 5 } as never,
      monitor: {} as never,
      ready: async () => ({ database: 'failed' }),
      scope: 'all',
    });
    assert.ok(!without.components.some((c) => c.name === 'encoders'));

    const metrics = new Metrics();
    metrics.observeEncoders(encoderAvailability(report));
    metrics.countEncodeFallback({ from: 'h264_nvenc:sw_decode', to: 'libx264' });
    const { body } = await metrics.render();
    assert.match(
      body,
      /conveyor_video_encoder_available\{encoder="h264_nvenc",family="nvenc",codec="h264"\} 1/,
    );
    assert.match(body, /conveyor_video_encoder_available\{encoder="libx264",family="cpu",codec="h264"\} 1/);
    if (listed.has('hevc_nvenc'))
      assert.match(
        body,
        /conveyor_video_encoder_available\{encoder="hevc_nvenc",family="nvenc",codec="hevc"\} 0/,
      );
    assert.match(body, /conveyor_video_encode_fallbacks_total\{from="h264_nvenc:sw_decode",to="libx264"\} 1/);
  });

  it('with videoHwaccel=off tries no hardware encoder at all', async () => {
    const log = join(dir.path, 'off.log');
    process.env['FAKE_GPU_LOG'] = log;
    const report = await detectEncoders({
      ffmpegPath: FAKE_GPU,
      renderNodesDir: noNodes,
      mode: 'off',
      codecs: H264,
    });
    delete process.env['FAKE_GPU_LOG'];
    assert.equal(report.best.h264?.encoder, 'libx264');
    assert.ok(report.proven.every((c) => c.family === 'cpu'));
    assert.deepEqual(report.failed, []);
    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    assert.ok(lines.some((line) => line.includes('libx264')));
    assert.ok(!lines.some((line) => /nvenc|qsv|vaapi/.test(line)), lines.join('\n'));
  });

  it('fails loudly when a forced family proves none of its encoders, and ranks it first when it does', async () => {
    if (listed.has('h264_nvenc') && !existsSync('/dev/nvidiactl')) {
      await assert.rejects(
        detectEncoders({ ffmpegPath: FFMPEG, mode: 'nvenc', codecs: H264 }),
        (error: unknown) =>
          error instanceof ForcedEncoderError &&
          /CONVEYOR_VIDEO_HWACCEL=nvenc/.test(error.message) &&
          /h264_nvenc: \S/.test(error.message),
      );
    }
    await assert.rejects(
      detectEncoders({ ffmpegPath: FFMPEG, mode: 'vaapi', renderNodesDir: noNodes, codecs: H264 }),
      /no DRM render node/,
    );
    await assert.rejects(
      detectEncoders({ ffmpegPath: FFMPEG, mode: 'videotoolbox', platform: 'linux', codecs: H264 }),
      /it lists none/,
    );
    const forced = await detectEncoders({
      ffmpegPath: FAKE_GPU,
      mode: 'nvenc',
      renderNodesDir: noNodes,
      codecs: H264,
    });
    assert.equal(forced.best.h264?.encoder, 'h264_nvenc');

    // A forced family that failed is not cached: the next start tries it again.
    const cacheFile = join(dir.path, 'forced', 'video-encoders.json');
    await assert.rejects(
      detectEncoders({ ffmpegPath: FFMPEG, mode: 'vaapi', renderNodesDir: noNodes, codecs: H264, cacheFile }),
      ForcedEncoderError,
    );
    assert.ok(!existsSync(cacheFile));
  });

  it('reuses the cache file while the binary is unchanged, and runs the trials again when it changes', async () => {
    const binary = join(dir.path, 'bin', 'ffmpeg');
    await mkdir(join(dir.path, 'bin'));
    await copyFile(FAKE_GPU, binary);
    const cacheFile = join(dir.path, 'data', 'video-encoders.json');
    const log = join(dir.path, 'cache.log');
    process.env['FAKE_GPU_LOG'] = log;
    const options = { ffmpegPath: binary, renderNodesDir: noNodes, cacheFile, codecs: H264 };
    const runs = async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    try {
      const first = await detectEncoders(options);
      assert.equal(first.source, 'trials');
      assert.ok(
        (await runs()).some((line) => line.includes('testsrc2')),
        'trial encodes ran',
      );
      assert.ok(existsSync(cacheFile));

      await rm(log);
      forgetEncoderDetection();
      const second = await detectEncoders(options);
      assert.equal(second.source, 'cache');
      assert.deepEqual(await runs(), [], 'ffmpeg ran with an unchanged binary');
      assert.deepEqual(second.proven, first.proven);
      assert.deepEqual(second.failed, first.failed);

      // Another mode is another key: a cache of `auto` is not an answer for `off`.
      forgetEncoderDetection();
      const off = await detectEncoders({ ...options, mode: 'off' });
      assert.equal(off.source, 'trials');

      await rm(log);
      await appendFile(binary, '# a new build\n');
      forgetEncoderDetection();
      const third = await detectEncoders(options);
      assert.equal(third.source, 'trials');
      assert.ok(
        (await runs()).some((line) => line.includes('testsrc2')),
        'the changed binary was not tried',
      );

      await writeFile(cacheFile, '{"key": garbled');
      await rm(log);
      forgetEncoderDetection();
      const fourth = await detectEncoders(options);
      assert.equal(fourth.source, 'trials');
      assert.ok((await runs()).length > 0);
      assert.doesNotThrow(() => JSON.parse(readFileSync(cacheFile, 'utf8')), 'the garbled file is replaced');
    } finally {
      delete process.env['FAKE_GPU_LOG'];
    }
  });

  it('reports a missing ffmpeg as unhealthy instead of throwing', async () => {
    const report: EncoderReport = await detectEncoders({ ffmpegPath: join(dir.path, 'no-such-ffmpeg') });
    assert.match(report.listingError ?? '', /ENOENT/);
    assert.deepEqual(report.proven, []);
    assert.equal(encoderHealth(report).status, 'unhealthy');
  });
});
