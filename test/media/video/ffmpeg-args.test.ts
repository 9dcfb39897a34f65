import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ffmpegArgs, safePath, seconds } from '../../../src/media/video/ffmpeg-args.ts';

const GLOBAL = ['-hide_banner', '-nostats', '-loglevel', 'error', '-progress', 'pipe:1'];

describe('ffmpegArgs', () => {
  it('puts the global flags first, input options before -i and output options before the output', () => {
    const args = ffmpegArgs({
      inputs: [{ path: '/in/source.mp4', seekSeconds: 12.5, durationSeconds: 4 }],
      outputs: [
        {
          path: '/out/720.mp4',
          maps: ['0:v:0', '0:a:0?'],
          videoFilter: 'scale=-2:720',
          audioFilter: 'aresample=48000',
          options: ['-c:v', 'libx264', '-crf', '23', '-c:a', 'aac'],
        },
      ],
    });
    assert.deepEqual(args, [
      ...GLOBAL,
      '-y',
      ...['-ss', '12.5', '-t', '4', '-i', '/in/source.mp4'],
      ...['-map', '0:v:0', '-map', '0:a:0?', '-vf', 'scale=-2:720', '-af', 'aresample=48000'],
      ...['-c:v', 'libx264', '-crf', '23', '-c:a', 'aac', '/out/720.mp4'],
    ]);
  });

  it('passes hardware and other input options through as they are, and a lavfi graph verbatim', () => {
    const args = ffmpegArgs({
      globalOptions: ['-init_hw_device', 'vaapi=va:/dev/dri/renderD128'],
      inputs: [
        { path: 'in.mkv', options: ['-hwaccel', 'vaapi', '-hwaccel_output_format', 'vaapi'] },
        { path: 'sine=frequency=440:duration=2', format: 'lavfi' },
      ],
      outputs: [{ path: 'out.mp4' }],
    });
    assert.deepEqual(args, [
      ...GLOBAL,
      '-y',
      ...['-init_hw_device', 'vaapi=va:/dev/dri/renderD128'],
      ...['-hwaccel', 'vaapi', '-hwaccel_output_format', 'vaapi', '-i', 'in.mkv'],
      ...['-f', 'lavfi', '-i', 'sine=frequency=440:duration=2'],
      'out.mp4',
    ]);
  });

  it('places -filter_complex after the inputs and serves several outputs in order', () => {
    const args = ffmpegArgs({
      inputs: [{ path: 'in.mp4' }],
      filterComplex: '[0:v]split=2[a][b];[a]scale=-2:360[v360];[b]scale=-2:720[v720]',
      outputs: [
        { path: 'hls/360/index.m3u8', maps: ['[v360]'], format: 'hls', options: ['-hls_time', '4'] },
        { path: 'hls/720/index.m3u8', maps: ['[v720]'], format: 'hls', options: ['-hls_time', '4'] },
      ],
    });
    assert.deepEqual(args, [
      ...GLOBAL,
      '-y',
      ...['-i', 'in.mp4'],
      ...['-filter_complex', '[0:v]split=2[a][b];[a]scale=-2:360[v360];[b]scale=-2:720[v720]'],
      ...['-map', '[v360]', '-hls_time', '4', '-f', 'hls', 'hls/360/index.m3u8'],
      ...['-map', '[v720]', '-hls_time', '4', '-f', 'hls', 'hls/720/index.m3u8'],
    ]);
  });

  it('writes no -y when nothing is written to a file, and the log level asked for', () => {
    const args = ffmpegArgs({
      logLevel: 'info',
      globalOptions: ['-xerror'],
      inputs: [{ path: 'in.mp4' }],
      outputs: [{ path: '-', format: 'null', audioFilter: 'ebur128=peak=true' }],
    });
    assert.deepEqual(args, [
      ...['-hide_banner', '-nostats', '-loglevel', 'info', '-progress', 'pipe:1'],
      '-xerror',
      ...['-i', 'in.mp4', '-af', 'ebur128=peak=true', '-f', 'null', '-'],
    ]);
  });

  it('never lets a file name be read as an option or a protocol', () => {
    const args = ffmpegArgs({
      inputs: [{ path: '-i' }, { path: 'concat:a.mp4|b.mp4' }],
      outputs: [{ path: '-y.mp4' }],
    });
    assert.deepEqual(args.slice(GLOBAL.length), [
      '-y',
      ...['-i', 'file:-i', '-i', 'file:concat:a.mp4|b.mp4'],
      'file:-y.mp4',
    ]);
  });
});

describe('safePath', () => {
  it('leaves ordinary paths alone and prefixes file: to the others', () => {
    assert.equal(safePath('/data/a:b.mp4'), '/data/a:b.mp4');
    assert.equal(safePath('clip.mp4'), 'clip.mp4');
    assert.equal(safePath('./-x.mp4'), './-x.mp4');
    assert.equal(safePath('-x.mp4'), 'file:-x.mp4');
    assert.equal(safePath('pipe:0'), 'file:pipe:0');
    assert.equal(safePath('C:\\video.mp4'), 'file:C:\\video.mp4');
    assert.equal(safePath('file:-x.mp4'), 'file:-x.mp4');
  });
});

describe('seconds', () => {
  it('writes plain decimals to the microsecond, never an exponent', () => {
    assert.equal(seconds(0), '0');
    assert.equal(seconds(4), '4');
    assert.equal(seconds(1.5), '1.5');
    assert.equal(seconds(1e-7), '0');
    assert.equal(seconds(0.000001), '0.000001');
    assert.equal(seconds(1e21 / 1e12), '1000000000');
    assert.equal(seconds(-2.25), '-2.25');
    assert.equal(seconds(-1e-9), '0');
    assert.throws(() => seconds(Number.NaN), RangeError);
  });
});
