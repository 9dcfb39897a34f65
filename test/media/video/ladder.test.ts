import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../../src/config/config.ts';
import {
  audioBitrate,
  bitrates,
  frameRateFactor,
  frameRateText,
  gopFrames,
  hlsTime,
  type LadderSettings,
  type LadderSource,
  ladderSettings,
  planLadder,
  type Rendition,
  toFrameRate,
} from '../../../src/media/video/ladder.ts';

const SETTINGS: LadderSettings = ladderSettings(loadConfig({}, {}));

function plan(source: Partial<LadderSource> & Pick<LadderSource, 'width' | 'height'>, settings = SETTINGS) {
  return planLadder({ frameRate: 30, hasAudio: true, ...source }, settings);
}

function sizes(rungs: Rendition[]): string[] {
  return rungs.map((r) => `${r.width}x${r.height}`);
}

function rates(rungs: Rendition[]): string[] {
  return rungs.map((r) => frameRateText(r.frameRate));
}

describe('planLadder: which rungs', () => {
  it('has the default heights 240 to 2160', () => {
    assert.deepEqual(SETTINGS.heights, [240, 360, 480, 720, 1080, 1440, 2160]);
    assert.equal(SETTINGS.segmentSeconds, 4);
    assert.equal(SETTINGS.maxFrameRate, 60);
  });

  it('gives a 1080p source the five rungs up to 1080, exactly on its own size', () => {
    const rungs = plan({ width: 1920, height: 1080 });
    assert.deepEqual(sizes(rungs), ['426x240', '640x360', '854x480', '1280x720', '1920x1080']);
    assert.deepEqual(
      rungs.map((r) => r.name),
      ['240p', '360p', '480p', '720p', '1080p'],
    );
  });

  it('adds 1440 and 2160 only for sources that reach them', () => {
    assert.deepEqual(sizes(plan({ width: 2560, height: 1440 })).slice(-2), ['1920x1080', '2560x1440']);
    const uhd = plan({ width: 3840, height: 2160 });
    assert.deepEqual(sizes(uhd), [
      '426x240',
      '640x360',
      '854x480',
      '1280x720',
      '1920x1080',
      '2560x1440',
      '3840x2160',
    ]);
  });

  it('never upscales: every rung fits inside the source', () => {
    for (const [w, h] of [
      [1920, 1080],
      [1279, 719],
      [1080, 1920],
      [640, 480],
      [3840, 2160],
      [4096, 2160],
      [7680, 4320],
      [321, 241],
      [160, 90],
    ] as const) {
      for (const r of plan({ width: w, height: h })) {
        assert.ok(r.width <= w && r.height <= h, `${r.width}x${r.height} inside ${w}x${h}`);
      }
    }
  });

  it('ladders a portrait video on its shorter side: its 720p is 720x1280', () => {
    const rungs = plan({ width: 1080, height: 1920 });
    assert.deepEqual(sizes(rungs), ['240x426', '360x640', '480x854', '720x1280', '1080x1920']);
    assert.equal(rungs[3]!.name, '720p');
  });

  it('gives an odd-sized source even sizes and its own size as the top rung', () => {
    // 719 lines: 720 is out of reach, 480 is far below, so 718 (even, not above the source) is added.
    const rungs = plan({ width: 1279, height: 719 });
    assert.deepEqual(sizes(rungs), ['426x240', '640x360', '854x480', '1278x718']);
    for (const r of rungs) assert.ok(r.width % 2 === 0 && r.height % 2 === 0);
    assert.equal(rungs.at(-1)!.name, '718p');
  });

  it('adds the own-size rung only past the percent setting', () => {
    // 1188 lines is exactly 10 % above 1080: not more than 10 %.
    assert.deepEqual(sizes(plan({ width: 2112, height: 1188 })).at(-1), '1920x1080');
    assert.deepEqual(sizes(plan({ width: 2134, height: 1200 })).slice(-2), ['1920x1080', '2134x1200']);
    assert.deepEqual(sizes(plan({ width: 1956, height: 1100 })).at(-1), '1920x1080');
    // 0 % adds it for any size between two rungs; a large percent never does.
    assert.deepEqual(
      sizes(plan({ width: 1956, height: 1100 }, { ...SETTINGS, sourceRungPercent: 0 })).slice(-2),
      ['1920x1080', '1956x1100'],
    );
    assert.deepEqual(
      sizes(plan({ width: 1279, height: 719 }, { ...SETTINGS, sourceRungPercent: 1000 })).at(-1),
      '854x480',
    );
  });

  it('gives no own-size rung to a source above every configured rung', () => {
    const rungs = plan({ width: 7680, height: 4320 });
    assert.equal(rungs.at(-1)!.name, '2160p');
    assert.deepEqual(sizes(rungs).at(-1), '3840x2160');
    const capped = plan({ width: 1920, height: 1080 }, { ...SETTINGS, heights: [240, 480] });
    assert.deepEqual(sizes(capped), ['426x240', '854x480']);
  });

  it('gives a source below 240 lines one rendition at its own (even) size', () => {
    assert.deepEqual(sizes(plan({ width: 160, height: 90 })), ['160x90']);
    assert.deepEqual(sizes(plan({ width: 99, height: 57 })), ['98x56']);
    assert.deepEqual(sizes(plan({ width: 90, height: 160 })), ['90x160']);
    assert.deepEqual(sizes(plan({ width: 2, height: 2 })), ['2x2']);
    assert.equal(plan({ width: 160, height: 90 })[0]!.name, '90p');
  });

  it('treats a source between 240 and 360 like any other: 240 plus its own size', () => {
    assert.deepEqual(sizes(plan({ width: 480, height: 270 })), ['426x240', '480x270']);
    assert.deepEqual(sizes(plan({ width: 426, height: 250 })), ['408x240']);
  });

  it('keeps 4:3 and other aspect ratios', () => {
    assert.deepEqual(sizes(plan({ width: 640, height: 480 })), ['320x240', '480x360', '640x480']);
    assert.deepEqual(sizes(plan({ width: 1440, height: 1080 })).at(-1), '1440x1080');
    // A square picture: both sides equal on every rung.
    for (const r of plan({ width: 1080, height: 1080 })) assert.equal(r.width, r.height);
  });

  it('takes the heights in any order, once each', () => {
    const rungs = plan({ width: 1920, height: 1080 }, { ...SETTINGS, heights: [720, 240, 720, 480] });
    assert.deepEqual(sizes(rungs), ['426x240', '854x480', '1280x720']);
  });

  it('refuses what cannot be laddered', () => {
    assert.throws(() => plan({ width: 1, height: 100 }), RangeError);
    assert.throws(() => plan({ width: 100.5, height: 100 }), RangeError);
    assert.throws(() => plan({ width: 100, height: 100, frameRate: 0 }), RangeError);
    assert.throws(() => plan({ width: 100, height: 100, frameRate: Number.NaN }), RangeError);
    assert.throws(() => plan({ width: 100, height: 100, frameRate: Number.POSITIVE_INFINITY }), RangeError);
  });
});

describe('planLadder: frame rates', () => {
  it('keeps 23.976, 24, 25, 29.97 and 30 on every rung, exactly', () => {
    for (const [fps, text] of [
      [23.976, '24000/1001'],
      [23.98, '24000/1001'],
      [24, '24'],
      [25, '25'],
      [29.97, '30000/1001'],
      [30, '30'],
    ] as const) {
      const rungs = plan({ width: 1920, height: 1080, frameRate: fps });
      assert.deepEqual(rates(rungs), Array(5).fill(text), String(fps));
    }
  });

  it('halves rates above 30 below 720 lines: 59.94, 60, 50, 48', () => {
    for (const [fps, low, high] of [
      [59.94, '30000/1001', '60000/1001'],
      [60, '30', '60'],
      [50, '25', '50'],
      [48, '24', '48'],
    ] as const) {
      const rungs = plan({ width: 1920, height: 1080, frameRate: fps });
      assert.deepEqual(rates(rungs), [low, low, low, high, high], String(fps));
    }
  });

  it('divides rates above the cap by a whole number: 120 -> 60, 100 -> 50, 144 -> 48', () => {
    for (const [fps, high, low] of [
      [120, '60', '30'],
      [119.88, '60000/1001', '30000/1001'],
      [100, '50', '25'],
      [144, '48', '24'],
      [90, '45', '45/2'],
    ] as const) {
      const rungs = plan({ width: 1280, height: 720, frameRate: fps });
      assert.deepEqual(rates(rungs), [low, low, low, high], String(fps));
    }
    const capped = plan({ width: 1280, height: 720, frameRate: 60 }, { ...SETTINGS, maxFrameRate: 25 });
    assert.deepEqual(rates(capped), ['20', '20', '20', '20']);
  });

  it('applies the 720-line rule to the shorter side of a portrait video', () => {
    const rungs = plan({ width: 1080, height: 1920, frameRate: 60 });
    assert.deepEqual(rates(rungs), ['30', '30', '30', '60', '60']);
  });

  it('moves the line with its setting', () => {
    const all = plan({ width: 1920, height: 1080, frameRate: 60 }, { ...SETTINGS, highFrameRateHeight: 0 });
    assert.deepEqual(rates(all), ['60', '60', '60', '60', '60']);
    const top = plan(
      { width: 1920, height: 1080, frameRate: 60 },
      { ...SETTINGS, highFrameRateHeight: 1080 },
    );
    assert.deepEqual(rates(top), ['30', '30', '30', '30', '60']);
  });

  it('reads measured rates as exact fractions', () => {
    assert.deepEqual(toFrameRate(29.97002997), { num: 30000, den: 1001 });
    assert.deepEqual(toFrameRate(59.94), { num: 60000, den: 1001 });
    assert.deepEqual(toFrameRate(29.99), { num: 30, den: 1 });
    assert.deepEqual(toFrameRate(30.01), { num: 30, den: 1 });
    assert.deepEqual(toFrameRate(12.5), { num: 25, den: 2 });
    assert.deepEqual(toFrameRate(15.123), { num: 15123, den: 1000 });
    assert.deepEqual(toFrameRate(0.5), { num: 1, den: 2 });
  });
});

describe('planLadder: GOP', () => {
  it('is segment x frame rate, rounded, the same duration on every rung', () => {
    for (const [fps, frames] of [
      [24, 96],
      [25, 100],
      [30, 120],
      [23.976, 96],
      [29.97, 120],
      [50, 200],
      [60, 240],
    ] as const) {
      const rungs = plan({ width: 1920, height: 1080, frameRate: fps });
      const top = rungs.at(-1)!;
      assert.equal(top.gopFrames, frames, String(fps));
      const seconds = rungs.map((r) => (r.gopFrames * r.frameRate.den) / r.frameRate.num);
      for (const s of seconds) assert.ok(Math.abs(s - seconds[0]!) < 1e-9, `${fps}: ${seconds.join(', ')}`);
    }
  });

  it('rounds to whole frames, and to whole GOPs of the slower rungs', () => {
    assert.equal(gopFrames({ num: 243, den: 10 }, 4), 97); // 97.2 frames
    assert.equal(gopFrames({ num: 30000, den: 1001 }, 0.25), 7); // 7.49
    assert.equal(gopFrames({ num: 60000, den: 1001 }, 0.25, 2), 14); // 14.99 in pairs
    assert.equal(gopFrames({ num: 50, den: 1 }, 0.1, 2), 6); // 5 frames: 6 in pairs, not 4
    assert.equal(gopFrames({ num: 24, den: 1 }, 4), 96);
    assert.equal(gopFrames({ num: 1, den: 2 }, 1), 1);
    assert.equal(gopFrames({ num: 100, den: 1 }, 0.01, 4), 4);
    const rungs = plan({ width: 1920, height: 1080, frameRate: 59.94 }, { ...SETTINGS, segmentSeconds: 6 });
    assert.deepEqual(
      rungs.map((r) => r.gopFrames),
      [180, 180, 180, 360, 360],
    );
  });

  it('makes a segment exactly one GOP long, the same on every rung', () => {
    const at2997 = plan({ width: 1920, height: 1080, frameRate: 29.97 });
    for (const r of at2997) assert.deepEqual(r.segmentDuration, { num: 1001, den: 250 }); // 4.004 s
    for (const r of plan({ width: 1920, height: 1080, frameRate: 30 })) {
      assert.deepEqual(r.segmentDuration, { num: 4, den: 1 });
    }
    const odd = plan({ width: 1280, height: 720, frameRate: 24.3 });
    for (const r of odd) assert.deepEqual(r.segmentDuration, { num: 970, den: 243 }); // 97 frames
    // Keyframe k is at the same instant on every rung, full rate or halved.
    for (const source of [59.94, 60, 50, 48, 29.97, 23.976, 120, 100]) {
      const rungs = plan({ width: 1920, height: 1080, frameRate: source });
      for (const r of rungs) {
        const frames = { num: r.gopFrames * r.frameRate.den, den: r.frameRate.num };
        assert.equal(
          frames.num * r.segmentDuration.den,
          frames.den * r.segmentDuration.num,
          `${source} ${r.name}`,
        );
        assert.ok(Number.isInteger(r.gopFrames) && r.gopFrames > 0);
      }
    }
  });

  it('gives the hls muxer a segment time half a frame short of the GOP', () => {
    const [r] = plan({ width: 1280, height: 720, frameRate: 29.97 });
    assert.equal(hlsTime(r!), '3.987316'); // 4.004 - 0.01668
    assert.equal(hlsTime(plan({ width: 1280, height: 720, frameRate: 25 })[0]!), '3.98');
  });

  it('follows the segment length', () => {
    for (const seconds of [1, 2, 4, 6, 10]) {
      const rungs = plan(
        { width: 1280, height: 720, frameRate: 30 },
        { ...SETTINGS, segmentSeconds: seconds },
      );
      for (const r of rungs) assert.equal(r.gopFrames, 30 * seconds);
    }
  });

  it('writes rates as ffmpeg takes them', () => {
    assert.equal(frameRateText({ num: 30, den: 1 }), '30');
    assert.equal(frameRateText({ num: 30000, den: 1001 }), '30000/1001');
  });
});

describe('planLadder: bit rates', () => {
  it('takes the table on its rungs, max 1.5x and buffer 2x the average', () => {
    const rungs = plan({ width: 1920, height: 1080, frameRate: 30 });
    assert.deepEqual(
      rungs.map((r) => r.bitrates.h264.target / 1000),
      [300, 700, 1200, 3000, 6000],
    );
    const r720 = rungs[3]!;
    assert.deepEqual(r720.bitrates.h264, { target: 3_000_000, max: 4_500_000, buffer: 6_000_000 });
    assert.deepEqual(rungs[4]!.bitrates.h264, { target: 6_000_000, max: 9_000_000, buffer: 12_000_000 });
    for (const r of rungs) {
      for (const codec of ['h264', 'av1', 'vp9'] as const) {
        const b = r.bitrates[codec];
        assert.ok(Math.abs(b.max / b.target - 1.5) < 0.01, `${r.name} ${codec}`);
        assert.ok(Math.abs(b.buffer / b.target - 2) < 0.01, `${r.name} ${codec}`);
      }
    }
  });

  it('keeps a 4 s segment peak within 200 % of the average (HLS Authoring Spec 1.19)', () => {
    for (const r of plan({ width: 3840, height: 2160 })) {
      const b = r.bitrates.h264;
      assert.ok((b.max * 4 + b.buffer) / 4 <= 2 * b.target + 1000, r.name);
    }
  });

  it('gives AV1 and VP9 fewer bits than H.264, AV1 the fewest', () => {
    for (const r of plan({ width: 3840, height: 2160, frameRate: 60 })) {
      assert.ok(r.bitrates.av1.target < r.bitrates.vp9.target, r.name);
      assert.ok(r.bitrates.vp9.target < r.bitrates.h264.target, r.name);
    }
  });

  it('rises with the picture: a higher rung never gets fewer bits', () => {
    for (const source of [
      { width: 3840, height: 2160 },
      { width: 1080, height: 1920 },
      { width: 1279, height: 719 },
    ]) {
      const rungs = plan(source);
      for (let i = 1; i < rungs.length; i++) {
        assert.ok(rungs[i]!.bitrates.h264.target > rungs[i - 1]!.bitrates.h264.target);
      }
    }
  });

  it('prices a portrait rung like its landscape twin', () => {
    const portrait = plan({ width: 1080, height: 1920 });
    const landscape = plan({ width: 1920, height: 1080 });
    assert.deepEqual(
      portrait.map((r) => r.bitrates),
      landscape.map((r) => r.bitrates),
    );
  });

  it('interpolates between rows by pixels and scales below the table', () => {
    const mid = bitrates('h264', (1280 * 720 + 1920 * 1080) / 2, 30);
    assert.equal(mid.target, 4_500_000);
    const tiny = bitrates('h264', 213 * 120, 30);
    assert.ok(Math.abs(tiny.target - 75_000) <= 1000);
    const beyond = bitrates('h264', 2 * 3840 * 2160, 30);
    assert.equal(beyond.target, 36_000_000);
  });

  it('scales for frame rates above 30: 1.5x at 60', () => {
    assert.equal(frameRateFactor(24), 1);
    assert.equal(frameRateFactor(30), 1);
    assert.equal(frameRateFactor(60), 1.5);
    assert.ok(Math.abs(frameRateFactor(50) - 4 / 3) < 1e-12);
    const at60 = plan({ width: 1280, height: 720, frameRate: 60 }).at(-1)!;
    assert.equal(at60.bitrates.h264.target, 4_500_000);
    const at5994 = plan({ width: 1280, height: 720, frameRate: 59.94 }).at(-1)!;
    assert.ok(at5994.bitrates.h264.target < 4_500_000 && at5994.bitrates.h264.target > 4_400_000);
    // The halved low rungs are priced at their own, halved rate.
    assert.equal(plan({ width: 1280, height: 720, frameRate: 60 })[1]!.bitrates.h264.target, 700_000);
  });
});

describe('planLadder: audio', () => {
  it('gives AAC 64k below 360, 96k at 360, 128k from 480', () => {
    const rungs = plan({ width: 1920, height: 1080 });
    assert.deepEqual(
      rungs.map((r) => r.audioBitrate),
      [64_000, 96_000, 128_000, 128_000, 128_000],
    );
    assert.equal(audioBitrate(90), 64_000);
  });

  it('gives no audio to a silent source', () => {
    for (const r of plan({ width: 1920, height: 1080, hasAudio: false })) assert.equal(r.audioBitrate, null);
  });
});

describe('ladder settings', () => {
  it('reads the heights as an even, rising list without repeats', () => {
    const config = loadConfig({ CONVEYOR_VIDEO_HEIGHTS: '720, 240,720,1080' }, {});
    assert.deepEqual(config.videoHeights, [240, 720, 1080]);
    for (const bad of [',', '241', '0', 'abc', '240,-360', '9000', '240.5']) {
      assert.throws(() => loadConfig({ CONVEYOR_VIDEO_HEIGHTS: bad }, {}), /CONVEYOR_VIDEO_HEIGHTS/, bad);
    }
  });

  it('reads the codecs, H.264 alone by default', () => {
    assert.deepEqual(loadConfig({}, {}).videoCodecs, ['h264']);
    assert.deepEqual(loadConfig({ CONVEYOR_VIDEO_CODECS: 'h264,av1,av1' }, {}).videoCodecs, ['h264', 'av1']);
    for (const bad of [',', 'hevc', 'h264,mpeg2']) {
      assert.throws(() => loadConfig({ CONVEYOR_VIDEO_CODECS: bad }, {}), /CONVEYOR_VIDEO_CODECS/, bad);
    }
  });
});
