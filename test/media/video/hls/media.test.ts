import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as HLS from 'hls-parser';
import {
  isComplete,
  measureBandwidth,
  mediaSegments,
  overlongSegments,
  rewriteMediaPlaylist,
  segmentDurations,
  targetDuration,
  type UriSite,
} from '../../../../src/media/video/hls/media.ts';

HLS.setOptions({ strictMode: true });

// As ffmpeg 5.1's hls muxer writes an fMP4 VOD playlist.
const FMP4 = [
  '#EXTM3U',
  '#EXT-X-VERSION:7',
  '#EXT-X-TARGETDURATION:4',
  '#EXT-X-MEDIA-SEQUENCE:0',
  '#EXT-X-PLAYLIST-TYPE:VOD',
  '#EXT-X-INDEPENDENT-SEGMENTS',
  '#EXT-X-MAP:URI="init.mp4"',
  '#EXTINF:4.004000,',
  'seg_000.m4s',
  '#EXTINF:4.004000,',
  'seg_001.m4s',
  '#EXTINF:1.501500,',
  'seg_002.m4s',
  '#EXT-X-ENDLIST',
  '',
].join('\n');

const sign = (uri: string) => `${uri}?exp=1700000000&kid=k1&sig=Zm9v`;

function parseMedia(text: string): HLS.types.MediaPlaylist {
  const playlist = HLS.parse(text);
  assert.ok(!playlist.isMasterPlaylist);
  return playlist as HLS.types.MediaPlaylist;
}

describe('rewriteMediaPlaylist', () => {
  it('maps every segment and the init segment, and keeps every other byte', () => {
    const out = rewriteMediaPlaylist(FMP4, sign);
    assert.equal(
      out,
      FMP4.replace('URI="init.mp4"', `URI="${sign('init.mp4')}"`)
        .replace('seg_000.m4s', sign('seg_000.m4s'))
        .replace('seg_001.m4s', sign('seg_001.m4s'))
        .replace('seg_002.m4s', sign('seg_002.m4s')),
    );
    const media = parseMedia(out);
    assert.deepEqual(
      media.segments.map((s) => s.uri),
      ['seg_000.m4s', 'seg_001.m4s', 'seg_002.m4s'].map(sign),
    );
    assert.equal(media.segments[0]!.map.uri, sign('init.mp4'));
    assert.equal(media.endlist, true);
    assert.equal(media.targetDuration, 4);
  });

  it('tells the mapper where each URI stands', () => {
    const seen: [string, UriSite][] = [];
    rewriteMediaPlaylist(FMP4, (uri, site) => {
      seen.push([uri, site]);
      return uri;
    });
    assert.deepEqual(seen, [
      ['init.mp4', { kind: 'attribute', tag: 'EXT-X-MAP' }],
      ['seg_000.m4s', { kind: 'segment' }],
      ['seg_001.m4s', { kind: 'segment' }],
      ['seg_002.m4s', { kind: 'segment' }],
    ]);
  });

  it('is the identity with the identity map, CRLF and blank lines included', () => {
    const crlf = `${FMP4.replaceAll('\n', '\r\n')}\r\n\r\n`;
    assert.equal(
      rewriteMediaPlaylist(crlf, (u) => u),
      crlf,
    );
    const signed = rewriteMediaPlaylist(crlf, sign);
    assert.equal(signed.split('\r\n').length, crlf.split('\r\n').length);
    assert.ok(!/[^\r]\n/.test(signed));
  });

  it('reads attribute-lists, quoted commas included, and leaves the other attributes alone', () => {
    const text = '#EXTM3U\n#EXT-X-MAP:BYTERANGE="720@0",URI="init,v1.mp4"\n#EXTINF:4,\nsingle.mp4\n';
    assert.equal(
      rewriteMediaPlaylist(text, (u) => `${u}?t=1`),
      '#EXTM3U\n#EXT-X-MAP:BYTERANGE="720@0",URI="init,v1.mp4?t=1"\n#EXTINF:4,\nsingle.mp4?t=1\n',
    );
  });

  it('rewrites the URI of the other tags that carry one, and no tag that does not', () => {
    const text = [
      '#EXTM3U',
      '#EXT-X-KEY:METHOD=AES-128,URI="key.bin",IV=0x1',
      '#EXT-X-KEY:METHOD=NONE',
      '#EXTINF:4,title with URI="not-a-uri"',
      'a.ts',
      '#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z',
      '# a comment',
      '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p.mp4"',
      '',
    ].join('\n');
    const out = rewriteMediaPlaylist(text, (u) => `/x/${u}`);
    assert.equal(
      out,
      text
        .replace('"key.bin"', '"/x/key.bin"')
        .replace('\na.ts', '\n/x/a.ts')
        .replace('"p.mp4"', '"/x/p.mp4"'),
    );
  });

  it('refuses a mapped URI it cannot write', () => {
    assert.throws(() => rewriteMediaPlaylist(FMP4, (u) => `${u}"`), /quoted-string/);
    assert.throws(
      () => rewriteMediaPlaylist(FMP4, (u) => (u.endsWith('.m4s') ? `${u}\n#EXT-X-ENDLIST` : u)),
      /URI line/,
    );
    assert.throws(() => rewriteMediaPlaylist(FMP4, (u) => (u.endsWith('.m4s') ? '#x' : u)), /URI line/);
  });

  it('refuses a malformed attribute-list', () => {
    for (const line of [
      '#EXT-X-MAP:URI=init.mp4',
      '#EXT-X-MAP:URI="init.mp4',
      '#EXT-X-MAP:uri="init.mp4"',
      '#EXT-X-MAP:URI="a"x',
    ]) {
      assert.throws(
        () => rewriteMediaPlaylist(`#EXTM3U\n${line}\n`, (u) => u),
        /attribute-list|quoted-string/,
        line,
      );
    }
  });
});

describe('isComplete', () => {
  it('is true exactly when the EXT-X-ENDLIST tag is there', () => {
    assert.equal(isComplete(FMP4), true);
    assert.equal(isComplete(FMP4.replace('#EXT-X-ENDLIST\n', '')), false);
    assert.equal(isComplete(FMP4.replace('#EXT-X-ENDLIST', '#ext-x-endlist')), false);
    assert.equal(isComplete(FMP4.replaceAll('\n', '\r\n')), true);
    assert.equal(isComplete(''), false);
  });
});

describe('segments and durations', () => {
  it('reads each segment with its EXTINF, as a strict parser does', () => {
    assert.deepEqual(mediaSegments(FMP4), [
      { uri: 'seg_000.m4s', duration: 4.004 },
      { uri: 'seg_001.m4s', duration: 4.004 },
      { uri: 'seg_002.m4s', duration: 1.5015 },
    ]);
    assert.deepEqual(
      segmentDurations(FMP4),
      parseMedia(FMP4).segments.map((s) => s.duration),
    );
    assert.deepEqual(segmentDurations('#EXTM3U\n#EXTINF:10\na.ts\n#EXTINF:9.5,t\nb.ts\n'), [10, 9.5]);
  });

  it('refuses segments without a readable EXTINF', () => {
    assert.throws(() => mediaSegments('#EXTM3U\na.ts\n'), /no EXTINF/);
    assert.throws(() => mediaSegments('#EXTM3U\n#EXTINF:abc,\na.ts\n'), /malformed EXTINF/);
    assert.throws(() => mediaSegments('#EXTM3U\n#EXTINF:-1,\na.ts\n'), /malformed EXTINF/);
  });

  it('reads the target duration and finds segments that break it', () => {
    assert.equal(targetDuration(FMP4), 4);
    assert.equal(targetDuration('#EXTM3U\n'), null);
    assert.deepEqual(overlongSegments(FMP4), []);
    // 4.5 rounds to 5 (JavaScript and RFC 8216 both round half up here), past a target of 4.
    const long = FMP4.replace('#EXTINF:1.501500,', '#EXTINF:4.500000,');
    assert.deepEqual(overlongSegments(long), [{ uri: 'seg_002.m4s', duration: 4.5 }]);
    assert.equal(overlongSegments(FMP4.replace('#EXT-X-TARGETDURATION:4\n', '')).length, 3);
  });
});

describe('measureBandwidth', () => {
  it('takes the peak over windows of 0.5 to 1.5 target durations, and the plain average', () => {
    const segments = [
      { duration: 4, bytes: 500_000 }, // 1.0 Mbit/s
      { duration: 4, bytes: 1_000_000 }, // 2.0 Mbit/s
      { duration: 4, bytes: 750_000 }, // 1.5 Mbit/s
    ];
    assert.deepEqual(measureBandwidth(segments, 4), { peak: 2_000_000, average: 1_500_000 });
  });

  it('lets a short last segment count only with its neighbour', () => {
    // The last second alone runs at 8 Mbit/s, but 1 s is under half the 4 s target: it counts in the
    // 5 s window with the segment before it, (1,000,000 + 1,000,000) x 8 / 5 = 3.2 Mbit/s.
    const segments = [
      { duration: 4, bytes: 1_000_000 },
      { duration: 1, bytes: 1_000_000 },
    ];
    assert.deepEqual(measureBandwidth(segments, 4), { peak: 3_200_000, average: 3_200_000 });
  });

  it('falls back to the busiest single segment when no window fits', () => {
    assert.deepEqual(measureBandwidth([{ duration: 1, bytes: 1000 }], 4), { peak: 8000, average: 8000 });
    const long = [
      { duration: 10, bytes: 1_000_000 },
      { duration: 10, bytes: 2_000_000 },
    ];
    assert.deepEqual(measureBandwidth(long, 4), { peak: 1_600_000, average: 1_200_000 });
  });

  it('rounds up, so BANDWIDTH never understates', () => {
    assert.deepEqual(measureBandwidth([{ duration: 3, bytes: 1 }], 4), { peak: 3, average: 3 });
  });

  it('refuses no segments or impossible ones', () => {
    assert.throws(() => measureBandwidth([], 4), /no segments/);
    assert.throws(() => measureBandwidth([{ duration: 0, bytes: 1 }], 4), /not a segment/);
    assert.throws(() => measureBandwidth([{ duration: 1, bytes: -1 }], 4), /not a segment/);
  });
});
