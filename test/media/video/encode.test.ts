import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { attemptFilter, encodeRendition, presetFamilyOf } from '../../../src/media/video/encode.ts';
import { chooseEncoder, type EncodeAttempt, fallbackChain } from '../../../src/media/video/fallback.ts';
import { isComplete, segmentDurations } from '../../../src/media/video/hls/media.ts';
import { detectEncoders, forgetEncoderDetection } from '../../../src/media/video/hwaccel.ts';
import { planLadder, type Rendition } from '../../../src/media/video/ladder.ts';
import { probeVideo } from '../../../src/media/video/probe.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../../helpers/video-fixtures.ts';

const run = promisify(execFile);
const FAKE_GPU = new URL('../../fixtures/fake-gpu-ffmpeg.sh', import.meta.url).pathname;
const skip = skipWithoutFfmpeg();

/** 3 s of 426x240 at 30 fps with a tone: two rungs (120p, 240p) of 1 s segments. */
const SOURCE = { width: 426, height: 240, frameRate: 30, hasAudio: true, durationMs: 3000 };
const LADDER = {
  heights: [120, 240],
  segmentSeconds: 1,
  maxFrameRate: 60,
  highFrameRateHeight: 720,
  sourceRungPercent: 10,
};

describe('encoding one rendition to HLS', { skip }, () => {
  let dir: TempDir;
  let source: string;
  let rungs: Rendition[];

  before(async () => {
    dir = await makeTempDir('conveyor-encode-');
    source = join(dir.path, 'source.mp4');
    await run('ffmpeg', [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=426x240:rate=30:duration=3',
      '-f',
      'lavfi',
      '-i',
      'sine=frequency=440:sample_rate=48000:duration=3',
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-pix_fmt',
      'yuv420p',
      '-c:a',
      'aac',
      '-shortest',
      source,
    ]);
    rungs = planLadder(SOURCE, LADDER);
    assert.deepEqual(
      rungs.map((r) => r.name),
      ['120p', '240p'],
    );
  });
  after(async () => {
    forgetEncoderDetection();
    await dir?.cleanup();
  });

  it('writes a complete VOD playlist, an init segment and 1 s segments at the rung’s size', async () => {
    const report = await detectEncoders({ ffmpegPath: 'ffmpeg', mode: 'off', codecs: ['h264'] });
    const attempts = fallbackChain(chooseEncoder(report, 'h264'), report);
    assert.deepEqual(
      attempts.map((a) => a.encoder),
      ['libx264'],
    );
    for (const rung of rungs) {
      const fractions: number[] = [];
      const out = join(dir.path, rung.name);
      await mkdir(out);
      const encoded = await encodeRendition({
        source,
        durationMs: SOURCE.durationMs,
        hasAudio: true,
        rung,
        codec: 'h264',
        preset: 'fast',
        attempts,
        dir: out,
        segmentFormat: 'fmp4',
        run: {},
        onProgress: (fraction) => fractions.push(fraction),
      });
      assert.deepEqual(encoded.fallbacks, []);
      assert.equal(encoded.files[0], 'index.m3u8');
      assert.equal(encoded.files[1], 'init.mp4');
      assert.deepEqual(encoded.files.slice(2), ['seg_00000.m4s', 'seg_00001.m4s', 'seg_00002.m4s']);
      const playlist = await readFile(join(encoded.dir, 'index.m3u8'), 'utf8');
      assert.ok(isComplete(playlist));
      assert.match(playlist, /#EXT-X-PLAYLIST-TYPE:VOD/);
      assert.match(playlist, /#EXT-X-MAP:URI="init.mp4"/);
      for (const duration of segmentDurations(playlist))
        assert.ok(Math.abs(duration - 1) < 0.05, `${duration}`);
      assert.ok(fractions.length > 0 && fractions.every((f) => f >= 0 && f <= 1));
      // The playlist plays as a whole: ffprobe reads it through the HLS demuxer.
      const info = await probeVideo(join(encoded.dir, 'index.m3u8'));
      assert.equal(info.video?.codec, 'h264');
      assert.deepEqual([info.video?.width, info.video?.height], [rung.width, rung.height]);
      assert.equal(info.audio?.codec, 'aac');
    }
  });

  it('falls back from a hardware encoder that fails on real work to the CPU, in fresh folders', async () => {
    forgetEncoderDetection();
    const noNodes = join(dir.path, 'dri');
    await mkdir(noNodes);
    const report = await detectEncoders({ ffmpegPath: FAKE_GPU, renderNodesDir: noNodes, codecs: ['h264'] });
    const chosen = chooseEncoder(report, 'h264');
    assert.equal(chosen.encoder, 'h264_nvenc', 'the fake GPU passes its trial');
    const out = join(dir.path, 'fallback');
    await mkdir(out);
    const seen: string[] = [];
    const encoded = await encodeRendition({
      source,
      durationMs: SOURCE.durationMs,
      hasAudio: true,
      rung: rungs[0]!,
      codec: 'h264',
      preset: 'fast',
      attempts: fallbackChain(chosen, report),
      dir: out,
      segmentFormat: 'fmp4',
      run: { ffmpegPath: FAKE_GPU },
      onFallback: (fallback) => seen.push(`${fallback.from} -> ${fallback.to}`),
    });
    assert.equal(encoded.attempt.encoder, 'libx264');
    assert.deepEqual(
      seen,
      encoded.fallbacks.map((f) => `${f.from} -> ${f.to}`),
    );
    assert.equal(seen.at(-1)?.endsWith('-> libx264'), true, seen.join('; '));
    assert.ok(isComplete(await readFile(join(encoded.dir, 'index.m3u8'), 'utf8')));
  });

  it('names each encoder by the preset family that configures it', () => {
    assert.equal(presetFamilyOf('libx264'), 'x264');
    assert.equal(presetFamilyOf('h264_nvenc'), 'nvenc');
    assert.equal(presetFamilyOf('libsvtav1'), 'svt-av1');
    assert.throws(() => presetFamilyOf('h264_v4l2m2m'), /no preset knows/);
    const rung = rungs[0]!;
    const hw: EncodeAttempt = {
      name: 'h264_nvenc:hw_decode',
      step: 'hw_decode',
      family: 'nvenc',
      codec: 'h264',
      encoder: 'h264_nvenc',
      inputArgs: [],
      scaleFilter: 'scale_cuda',
      uploadFilters: [],
    };
    assert.equal(attemptFilter(rung, hw, 'nvenc'), `fps=30,scale_cuda=${rung.width}:${rung.height}`);
    assert.match(
      attemptFilter(rung, { ...hw, step: 'sw_decode', scaleFilter: 'scale' }, 'nvenc'),
      /^fps=30,scale=/,
    );
  });
});
