import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as HLS from 'hls-parser';
import { loadConfig } from '../../../../src/config/config.ts';
import {
  type MasterVariant,
  masterOptions,
  quotedString,
  uriLine,
  writeMaster,
} from '../../../../src/media/video/hls/master.ts';

HLS.setOptions({ strictMode: true });

function variant(bandwidth: number, over: Partial<MasterVariant> = {}): MasterVariant {
  return {
    bandwidth,
    averageBandwidth: Math.round(bandwidth * 0.6),
    codecs: ['avc1.64001f', 'mp4a.40.2'],
    width: 1280,
    height: 720,
    frameRate: 30,
    uri: `${bandwidth}.m3u8`,
    ...over,
  };
}

const LADDER = [
  variant(7_000_000, { width: 1920, height: 1080, codecs: ['avc1.640028', 'mp4a.40.2'] }),
  variant(450_000, { width: 426, height: 240, codecs: ['avc1.640015', 'mp4a.40.2'] }),
  variant(3_500_000),
  variant(1_600_000, { width: 854, height: 480 }),
  variant(950_000, { width: 640, height: 360, codecs: ['avc1.64001e', 'mp4a.40.2'] }),
];

function parseMaster(text: string): HLS.types.MasterPlaylist {
  const playlist = HLS.parse(text);
  assert.ok(playlist.isMasterPlaylist);
  return playlist as HLS.types.MasterPlaylist;
}

describe('writeMaster', () => {
  it('writes the header, one EXT-X-STREAM-INF per variant and its URI line', () => {
    const text = writeMaster([variant(3_500_000)], { segments: 'fmp4', startBandwidth: 0 });
    assert.equal(
      text,
      [
        '#EXTM3U',
        '#EXT-X-VERSION:7',
        '#EXT-X-INDEPENDENT-SEGMENTS',
        '#EXT-X-STREAM-INF:BANDWIDTH=3500000,AVERAGE-BANDWIDTH=2100000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000',
        '3500000.m3u8',
        '',
      ].join('\n'),
    );
  });

  it('parses with a strict HLS parser, every attribute as given', () => {
    const master = parseMaster(writeMaster(LADDER, { segments: 'fmp4', startBandwidth: 0 }));
    assert.equal(master.version, 7);
    assert.equal(master.independentSegments, true);
    assert.equal(master.variants.length, LADDER.length);
    for (const v of master.variants) {
      const given = LADDER.find((g) => g.uri === v.uri)!;
      assert.equal(v.bandwidth, given.bandwidth);
      assert.equal(v.averageBandwidth, given.averageBandwidth);
      assert.equal(v.codecs, given.codecs.join(','));
      assert.deepEqual(v.resolution, { width: given.width, height: given.height });
      assert.equal(v.frameRate, given.frameRate);
    }
  });

  it('takes its options from the settings', () => {
    assert.deepEqual(masterOptions(loadConfig({}, {})), { segments: 'fmp4', startBandwidth: 1_500_000 });
    const ts = loadConfig({ CONVEYOR_VIDEO_SEGMENT_FORMAT: 'mpegts', CONVEYOR_VIDEO_START_BITRATE: '0' }, {});
    assert.deepEqual(masterOptions(ts), { segments: 'mpegts', startBandwidth: 0 });
  });

  it('says version 3 for MPEG-TS media playlists', () => {
    const text = writeMaster([variant(1_000_000)], { segments: 'mpegts', startBandwidth: 0 });
    assert.match(text, /^#EXTM3U\n#EXT-X-VERSION:3\n/);
    assert.equal(parseMaster(text).version, 3);
  });

  it('lists variants by rising BANDWIDTH when no start is asked for', () => {
    const master = parseMaster(writeMaster(LADDER, { segments: 'fmp4', startBandwidth: 0 }));
    assert.deepEqual(
      master.variants.map((v) => v.bandwidth),
      [450_000, 950_000, 1_600_000, 3_500_000, 7_000_000],
    );
  });

  it('lists first the highest variant within the start bandwidth, then the rest rising', () => {
    const order = (start: number) =>
      parseMaster(writeMaster(LADDER, { segments: 'fmp4', startBandwidth: start })).variants.map(
        (v) => v.bandwidth,
      );
    assert.deepEqual(order(1_500_000), [950_000, 450_000, 1_600_000, 3_500_000, 7_000_000]);
    assert.deepEqual(order(1_600_000), [1_600_000, 450_000, 950_000, 3_500_000, 7_000_000]);
    assert.deepEqual(order(100_000_000), [7_000_000, 450_000, 950_000, 1_600_000, 3_500_000]);
    // Nothing small enough: the lowest starts, which is the rising order.
    assert.deepEqual(order(100_000), [450_000, 950_000, 1_600_000, 3_500_000, 7_000_000]);
  });

  it('starts on H.264 when the ladder has other codecs too', () => {
    const av1 = LADDER.map((v) => ({
      ...v,
      bandwidth: Math.round(v.bandwidth * 0.6),
      codecs: ['av01.0.08M.08', 'mp4a.40.2'],
      uri: `av1-${v.uri}`,
    }));
    const master = parseMaster(
      writeMaster([...LADDER, ...av1], { segments: 'fmp4', startBandwidth: 1_500_000 }),
    );
    assert.equal(master.variants[0]!.uri, '950000.m3u8');
    const rest = master.variants.slice(1).map((v) => v.bandwidth);
    assert.deepEqual(
      rest,
      [...rest].sort((a, b) => a - b),
    );
    assert.equal(master.variants.length, 10);
    // An AV1-only ladder starts on AV1.
    const only = parseMaster(writeMaster(av1, { segments: 'fmp4', startBandwidth: 1_500_000 }));
    assert.equal(only.variants[0]!.bandwidth, 960_000);
  });

  it('writes FRAME-RATE to three decimals', () => {
    for (const [rate, text] of [
      [30000 / 1001, '29.970'],
      [60000 / 1001, '59.940'],
      [24000 / 1001, '23.976'],
      [25, '25.000'],
      [12.5, '12.500'],
    ] as const) {
      const out = writeMaster([variant(1, { frameRate: rate })], { segments: 'fmp4', startBandwidth: 0 });
      assert.match(out, new RegExp(`,FRAME-RATE=${text.replace('.', '\\.')}\\n`), text);
    }
  });

  it('writes the caller URIs as given, signed queries included', () => {
    const uri = 'https://cdn.example/v/ver_1/hls/720p/index.m3u8?exp=1700000000&kid=k1&sig=abc_-';
    const master = parseMaster(
      writeMaster([variant(1_000_000, { uri })], { segments: 'fmp4', startBandwidth: 0 }),
    );
    assert.equal(master.variants[0]!.uri, uri);
  });

  it('refuses what it cannot write', () => {
    const write = (v: MasterVariant) => () => writeMaster([v], { segments: 'fmp4', startBandwidth: 0 });
    assert.throws(() => writeMaster([], { segments: 'fmp4', startBandwidth: 0 }), /at least one variant/);
    assert.throws(write(variant(1, { codecs: ['avc1"x'] })), /codec string/);
    assert.throws(write(variant(1, { codecs: ['avc1.64001f,mp4a.40.2'] })), /codec string/);
    assert.throws(write(variant(1, { codecs: [] })), /at least one codec/);
    assert.throws(write(variant(1, { uri: 'a\nb.m3u8' })), /URI line/);
    assert.throws(write(variant(1, { uri: '#EXT-X-ENDLIST' })), /URI line/);
    assert.throws(write(variant(1, { uri: '' })), /URI line/);
    assert.throws(write(variant(1, { uri: ' a.m3u8' })), /URI line/);
    assert.throws(write(variant(1.5)), /whole number/);
    assert.throws(write(variant(-1)), /whole number/);
    assert.throws(write(variant(1, { averageBandwidth: Number.NaN })), /whole number/);
    assert.throws(write(variant(1, { width: 12.5 })), /whole number/);
    assert.throws(write(variant(1, { frameRate: 0 })), /frame rate/);
  });
});

describe('quotedString and uriLine', () => {
  it('refuses a double quote, CR or LF in a quoted-string: there is no escape', () => {
    assert.equal(quotedString('init.mp4?sig=a,b'), '"init.mp4?sig=a,b"');
    for (const bad of ['a"b', 'a\rb', 'a\nb', '"']) assert.throws(() => quotedString(bad), /quoted-string/);
  });

  it('refuses URI lines that would read as something else', () => {
    assert.equal(uriLine('seg_001.m4s?token=abc'), 'seg_001.m4s?token=abc');
    for (const bad of ['', '#x', 'a\r', 'a\nb', 'a ', '\tb']) assert.throws(() => uriLine(bad), /URI line/);
  });
});
