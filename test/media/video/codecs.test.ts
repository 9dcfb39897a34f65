import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  bitDepth,
  codecList,
  codecString,
  h264Level,
  h264LevelName,
  vp9Level,
} from '../../../src/media/video/codecs.ts';

describe('codecString: H.264 (RFC 6381 avc1.PPCCLL)', () => {
  it('writes profile_idc, the constraint flags and level_idc in hex', () => {
    assert.equal(codecString({ codec: 'h264', profile: 'High', level: 31 }), 'avc1.64001f');
    assert.equal(codecString({ codec: 'h264', profile: 'High', level: 40 }), 'avc1.640028');
    assert.equal(codecString({ codec: 'h264', profile: 'High', level: 51 }), 'avc1.640033');
    assert.equal(codecString({ codec: 'h264', profile: 'Main', level: 30 }), 'avc1.4d401e');
    assert.equal(codecString({ codec: 'h264', profile: 'Constrained Baseline', level: 30 }), 'avc1.42c01e');
    assert.equal(codecString({ codec: 'h264', profile: 'Baseline', level: 13 }), 'avc1.42000d');
    assert.equal(codecString({ codec: 'h264', profile: 'High 10', level: 10 }), 'avc1.6e000a');
    assert.equal(codecString({ codec: 'h264', profile: 'High 4:2:2', level: 41 }), 'avc1.7a0029');
    assert.equal(codecString({ codec: 'h264', profile: 'High 4:4:4 Predictive', level: 52 }), 'avc1.f40034');
    assert.equal(codecString({ codec: 'h264', profile: 'High 10 Intra', level: 40 }), 'avc1.6e1028');
  });

  it('takes the constraint byte from the SPS when the caller has it', () => {
    assert.equal(
      codecString({ codec: 'h264', profile: 'Constrained Baseline', level: 30, constraintFlags: 0xe0 }),
      'avc1.42e01e',
    );
  });

  it('refuses profiles and levels it does not know', () => {
    assert.throws(() => codecString({ codec: 'h264', profile: 'Super', level: 31 }), /profile/);
    assert.throws(() => codecString({ codec: 'h264', level: 31 }), /profile/);
    assert.throws(() => codecString({ codec: 'h264', profile: 'High', level: -99 }), /level/);
    assert.throws(() => codecString({ codec: 'h264', profile: 'High' }), /level/);
    assert.throws(() => codecString({ codec: 'h264', profile: 'High', level: 3.1 }), /level/);
  });
});

describe('codecString: AAC (mp4a.40.AOT)', () => {
  it('names the audio object type', () => {
    assert.equal(codecString({ codec: 'aac', profile: 'LC' }), 'mp4a.40.2');
    assert.equal(codecString({ codec: 'aac', profile: 'HE-AAC' }), 'mp4a.40.5');
    assert.equal(codecString({ codec: 'aac', profile: 'HE-AACv2' }), 'mp4a.40.29');
    assert.equal(codecString({ codec: 'aac', profile: 'Main' }), 'mp4a.40.1');
    assert.throws(() => codecString({ codec: 'aac', profile: 'XX' }), /AAC profile/);
    assert.throws(() => codecString({ codec: 'aac' }), /AAC profile/);
  });
});

describe('codecString: AV1 (av01.P.LLT.DD)', () => {
  it('writes profile, seq_level_idx, tier and bit depth', () => {
    assert.equal(
      codecString({ codec: 'av1', profile: 'Main', level: 8, pixFmt: 'yuv420p' }),
      'av01.0.08M.08',
    );
    assert.equal(
      codecString({ codec: 'av1', profile: 'Main', level: 0, pixFmt: 'yuv420p10le' }),
      'av01.0.00M.10',
    );
    assert.equal(
      codecString({ codec: 'av1', profile: 'Main', level: 13, pixFmt: 'yuv420p' }),
      'av01.0.13M.08',
    );
    assert.equal(
      codecString({ codec: 'av1', profile: 'High', level: 12, tier: 'H', pixFmt: 'yuv444p' }),
      'av01.1.12H.08',
    );
    assert.equal(
      codecString({ codec: 'av1', profile: 'Professional', level: 31, pixFmt: 'yuv422p12le' }),
      'av01.2.31M.12',
    );
  });

  it('refuses what is not an AV1 level or profile', () => {
    assert.throws(() => codecString({ codec: 'av1', profile: 'Main', level: -99 }), /seq_level_idx/);
    assert.throws(() => codecString({ codec: 'av1', profile: 'Main', level: 24 }), /seq_level_idx/);
    assert.throws(() => codecString({ codec: 'av1', profile: 'Main' }), /seq_level_idx/);
    assert.throws(() => codecString({ codec: 'av1', profile: 'Other', level: 8 }), /AV1 profile/);
  });
});

describe('codecString: VP9 (vp09.PP.LL.DD)', () => {
  it('derives the level libvpx leaves out from the picture', () => {
    const hd = { codec: 'vp9', profile: 'Profile 0', level: -99, pixFmt: 'yuv420p', frameRate: 30 };
    assert.equal(codecString({ ...hd, width: 1920, height: 1080 }), 'vp09.00.40.08');
    assert.equal(codecString({ ...hd, width: 1280, height: 720 }), 'vp09.00.31.08');
    assert.equal(codecString({ ...hd, width: 640, height: 360 }), 'vp09.00.21.08');
    assert.equal(codecString({ ...hd, width: 160, height: 90 }), 'vp09.00.10.08');
    assert.equal(codecString({ ...hd, width: 3840, height: 2160, frameRate: 60 }), 'vp09.00.51.08');
  });

  it('keeps a level the stream declares, and writes profile and depth', () => {
    assert.equal(
      codecString({ codec: 'vp9', profile: 'Profile 2', level: 41, pixFmt: 'yuv420p10le' }),
      'vp09.02.41.10',
    );
    assert.equal(
      codecString({
        codec: 'vp9',
        profile: 'Profile 0',
        level: 30,
        width: 1920,
        height: 1080,
        frameRate: 60,
      }),
      'vp09.00.30.08',
    );
  });

  it('needs the picture when the level is unknown', () => {
    assert.throws(() => codecString({ codec: 'vp9', profile: 'Profile 0', level: -99 }), /width, height/);
    assert.throws(() => codecString({ codec: 'vp9', profile: 'High', level: 30 }), /VP9 profile/);
  });
});

describe('codecString: others', () => {
  it('refuses codecs the ladder does not write', () => {
    assert.throws(() => codecString({ codec: 'hevc', profile: 'Main', level: 93 }), /hevc/);
    assert.throws(() => codecString({ codec: 'opus' }), /opus/);
  });

  it('lists a rendition video first, as given', () => {
    assert.deepEqual(
      codecList([
        { codec: 'h264', profile: 'High', level: 40 },
        { codec: 'aac', profile: 'LC' },
      ]),
      ['avc1.640028', 'mp4a.40.2'],
    );
  });
});

describe('h264Level (Table A-1, High profile)', () => {
  it('picks the lowest level that holds the picture and its rate', () => {
    const cases: [number, number, number, number][] = [
      [426, 240, 30, 21],
      [640, 360, 30, 30],
      [854, 480, 30, 31],
      [1280, 720, 30, 31],
      [1280, 720, 60, 32],
      [1920, 1080, 30, 40],
      [1920, 1080, 60, 42],
      [1080, 1920, 30, 40],
      [2560, 1440, 30, 50],
      [2560, 1440, 60, 51],
      [3840, 2160, 30, 51],
      [3840, 2160, 60, 52],
      [7680, 4320, 30, 60],
      [160, 90, 24, 10],
    ];
    for (const [width, height, frameRate, level] of cases) {
      assert.equal(h264Level({ width, height, frameRate }), level, `${width}x${height}@${frameRate}`);
    }
  });

  it('rises for the max rate and buffer, at 1250 bits per unit', () => {
    assert.equal(h264Level({ width: 1280, height: 720, frameRate: 30, bitrate: 17_500_000 }), 31);
    assert.equal(h264Level({ width: 1280, height: 720, frameRate: 30, bitrate: 17_500_001 }), 32);
    assert.equal(h264Level({ width: 1920, height: 1080, frameRate: 30, bitrate: 30_000_000 }), 41);
    assert.equal(h264Level({ width: 1920, height: 1080, frameRate: 30, buffer: 31_250_001 }), 41);
    assert.equal(h264Level({ width: 160, height: 90, frameRate: 24, bitrate: 600_000 }), 13);
  });

  it('bounds each side by Sqrt(MaxFS * 8) macroblocks', () => {
    // 4000x16 is only 250 macroblocks, but 250 across needs level 4's 256.
    assert.equal(h264Level({ width: 4000, height: 16, frameRate: 1 }), 40);
  });

  it('refuses what no level holds', () => {
    assert.throws(() => h264Level({ width: 8192, height: 8192, frameRate: 120 }), RangeError);
  });

  it('writes level names as encoders take them', () => {
    assert.equal(h264LevelName(31), '3.1');
    assert.equal(h264LevelName(40), '4.0');
    assert.equal(h264LevelName(10), '1.0');
  });
});

describe('vp9Level', () => {
  it('bounds size, breadth, sample rate and, when given, bit rate', () => {
    assert.equal(vp9Level({ width: 1920, height: 1080, frameRate: 60 }), 41);
    assert.equal(vp9Level({ width: 4000, height: 200, frameRate: 30 }), 40);
    assert.equal(vp9Level({ width: 1280, height: 720, frameRate: 30, bitrate: 12_000_000 }), 31);
    assert.equal(vp9Level({ width: 1280, height: 720, frameRate: 30, bitrate: 12_000_001 }), 40);
    assert.throws(() => vp9Level({ width: 20000, height: 20000, frameRate: 30 }), RangeError);
  });
});

describe('bitDepth', () => {
  it('reads the depth from ffmpeg pixel format names', () => {
    for (const [fmt, depth] of [
      ['yuv420p', 8],
      ['yuvj420p', 8],
      ['nv12', 8],
      ['yuv420p10le', 10],
      ['yuv420p10be', 10],
      ['p010le', 10],
      ['yuv422p12le', 12],
      ['gray10le', 10],
    ] as const) {
      assert.equal(bitDepth(fmt), depth, fmt);
    }
    assert.equal(bitDepth(undefined), 8);
  });
});
