import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../../../src/config/config.ts';
import {
  type SpriteSettings,
  spriteFilter,
  spriteLayout,
  spriteSettings,
  spriteVtt,
  timestamp,
} from '../../../../src/media/video/hls/sprite-vtt.ts';

const SETTINGS: SpriteSettings = spriteSettings(loadConfig({}, {}));
const HD = { width: 1920, height: 1080 };

/** The cues of a WebVTT file: start and end in ms and the text. */
function cues(vtt: string): { start: number; end: number; text: string }[] {
  const ms = (t: string) => {
    const [h, m, s] = t.split(':');
    return Math.round((Number(h) * 3600 + Number(m) * 60 + Number(s)) * 1000);
  };
  return vtt
    .split('\n\n')
    .slice(1)
    .filter((block) => block.trim() !== '')
    .map((block) => {
      const [timing, text, ...rest] = block.replace(/\n+$/, '').split('\n');
      assert.equal(rest.length, 0, `one line of text per cue: ${JSON.stringify(block)}`);
      const match = /^(\d{2,}:\d{2}:\d{2}\.\d{3}) --> (\d{2,}:\d{2}:\d{2}\.\d{3})$/.exec(timing!);
      assert.ok(match, `a cue timing line: ${timing}`);
      return { start: ms(match[1]!), end: ms(match[2]!), text: text! };
    });
}

describe('spriteLayout', () => {
  it('has the defaults: 100 tiles at most, 2 s apart at least, 160 px, 10 columns', () => {
    assert.deepEqual(SETTINGS, { maxTiles: 100, minIntervalSeconds: 2, tileSize: 160, columns: 10 });
  });

  it('lays a short video out in one row', () => {
    assert.deepEqual(spriteLayout(10_000, HD, SETTINGS), {
      intervalSeconds: 2,
      count: 5,
      columns: 5,
      rows: 1,
      tileWidth: 160,
      tileHeight: 90,
      width: 800,
      height: 90,
    });
  });

  it('stretches the interval to keep a long video within the tile count', () => {
    const hour = spriteLayout(3_600_000, HD, SETTINGS);
    assert.deepEqual([hour.intervalSeconds, hour.count, hour.columns, hour.rows], [36, 100, 10, 10]);
    assert.deepEqual([hour.width, hour.height], [1600, 900]);
    const more = spriteLayout(3_601_000, HD, SETTINGS);
    assert.deepEqual([more.intervalSeconds, more.count, more.rows], [37, 98, 10]);
    for (const ms of [1, 999, 2000, 2001, 199_999, 200_000, 200_001, 86_400_000]) {
      const layout = spriteLayout(ms, HD, SETTINGS);
      assert.ok(layout.count <= SETTINGS.maxTiles && layout.count >= 1, String(ms));
      assert.ok(layout.count * layout.intervalSeconds * 1000 >= ms, String(ms));
      assert.ok((layout.count - 1) * layout.intervalSeconds * 1000 < ms, String(ms));
      assert.ok(layout.columns * layout.rows >= layout.count, String(ms));
    }
  });

  it('keeps the aspect ratio with the longer side at the tile size, both sides even', () => {
    const size = (display: { width: number; height: number }, tileSize = 160) => {
      const l = spriteLayout(10_000, display, { ...SETTINGS, tileSize });
      return `${l.tileWidth}x${l.tileHeight}`;
    };
    assert.equal(size(HD), '160x90');
    assert.equal(size({ width: 1080, height: 1920 }), '90x160');
    assert.equal(size({ width: 1279, height: 719 }), '160x90');
    assert.equal(size({ width: 640, height: 480 }), '160x120');
    assert.equal(size({ width: 500, height: 500 }), '160x160');
    assert.equal(size(HD, 161), '160x90');
    assert.equal(size({ width: 4000, height: 10 }), '160x2');
  });

  it('refuses an empty video', () => {
    assert.throws(() => spriteLayout(0, HD, SETTINGS), RangeError);
    assert.throws(() => spriteLayout(Number.NaN, HD, SETTINGS), RangeError);
    assert.throws(() => spriteLayout(1000, { width: 0, height: 10 }, SETTINGS), RangeError);
  });
});

describe('spriteVtt', () => {
  it('writes one cue per tile with its place on the sheet', () => {
    const layout = spriteLayout(9_500, HD, { ...SETTINGS, columns: 2 });
    assert.equal(
      spriteVtt(layout, 9_500, 'sprite.jpg'),
      [
        'WEBVTT',
        '',
        '00:00:00.000 --> 00:00:02.000',
        'sprite.jpg#xywh=0,0,160,90',
        '',
        '00:00:02.000 --> 00:00:04.000',
        'sprite.jpg#xywh=160,0,160,90',
        '',
        '00:00:04.000 --> 00:00:06.000',
        'sprite.jpg#xywh=0,90,160,90',
        '',
        '00:00:06.000 --> 00:00:08.000',
        'sprite.jpg#xywh=160,90,160,90',
        '',
        '00:00:08.000 --> 00:00:09.500',
        'sprite.jpg#xywh=0,180,160,90',
        '',
      ].join('\n'),
    );
  });

  it('covers the whole video without gaps, the last cue ending at the duration', () => {
    for (const ms of [1, 1999, 2000, 123_456, 3_600_000, 7_260_123]) {
      const layout = spriteLayout(ms, HD, SETTINGS);
      const list = cues(spriteVtt(layout, ms, 'sprite.jpg'));
      assert.equal(list.length, layout.count);
      assert.equal(list[0]!.start, 0);
      assert.equal(list.at(-1)!.end, ms);
      for (let i = 1; i < list.length; i++) assert.equal(list[i]!.start, list[i - 1]!.end);
      for (const cue of list) assert.ok(cue.end > cue.start);
      for (const [i, cue] of list.entries()) {
        const [x, y, w, h] = cue.text.split('#xywh=')[1]!.split(',').map(Number);
        assert.deepEqual(
          [x, y, w, h],
          [
            (i % layout.columns) * layout.tileWidth,
            Math.floor(i / layout.columns) * layout.tileHeight,
            layout.tileWidth,
            layout.tileHeight,
          ],
        );
        assert.ok(x! + w! <= layout.width && y! + h! <= layout.height);
      }
    }
  });

  it('writes a signed sprite URI as given, the fragment after its query', () => {
    const uri = 'https://cdn.example/v/ver_1/sprite.jpg?exp=1700000000&kid=k1&sig=abc';
    const list = cues(spriteVtt(spriteLayout(3000, HD, SETTINGS), 3000, uri));
    assert.equal(list[0]!.text, `${uri}#xywh=0,0,160,90`);
  });

  it('refuses a URI that cannot stand in a cue', () => {
    const layout = spriteLayout(3000, HD, SETTINGS);
    for (const bad of ['', 'a#b', 'a\nb', 'a\rb', 'a-->b']) {
      assert.throws(() => spriteVtt(layout, 3000, bad), /sprite URI/, JSON.stringify(bad));
    }
  });
});

describe('timestamp', () => {
  it('writes hours, minutes, seconds and milliseconds', () => {
    assert.equal(timestamp(0), '00:00:00.000');
    assert.equal(timestamp(1), '00:00:00.001');
    assert.equal(timestamp(59_999), '00:00:59.999');
    assert.equal(timestamp(3_723_004), '01:02:03.004');
    assert.equal(timestamp(360_000_000), '100:00:00.000');
    assert.equal(timestamp(1500.4), '00:00:01.500');
  });
});

const ffmpegHere = (() => {
  try {
    execFileSync('ffmpeg', ['-hide_banner', '-version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env['CI'] === 'true') throw new Error('ffmpeg is required in CI');
    return false;
  }
})();

describe('spriteFilter', { skip: ffmpegHere ? false : 'ffmpeg is not installed' }, () => {
  it('names the filters the layout needs', () => {
    const layout = spriteLayout(3000, HD, { ...SETTINGS, minIntervalSeconds: 1 });
    assert.equal(spriteFilter(layout), 'fps=1/1,scale=160:90,setsar=1,tile=3x1');
  });

  it('draws a sheet of the layout size with ffmpeg', () => {
    const dir = mkdtempSync(join(tmpdir(), 'conveyor-sprite-'));
    try {
      const layout = spriteLayout(
        3000,
        { width: 320, height: 180 },
        { ...SETTINGS, minIntervalSeconds: 1, columns: 2 },
      );
      const out = join(dir, 'sprite.jpg');
      execFileSync('ffmpeg', [
        ...[
          '-hide_banner',
          '-loglevel',
          'error',
          '-f',
          'lavfi',
          '-i',
          'testsrc2=size=320x180:rate=10:duration=3',
        ],
        ...['-filter:v', spriteFilter(layout), '-frames:v', '1', out],
      ]);
      const probe = execFileSync('ffprobe', [
        ...['-v', 'error', '-show_entries', 'stream=width,height', '-of', 'csv=p=0', out],
      ]).toString();
      assert.equal(probe.trim(), `${layout.width},${layout.height}`);
      assert.deepEqual([layout.width, layout.height], [320, 180]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
