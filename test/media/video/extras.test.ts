import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../../src/config/config.ts';
import { parseLoudnormTarget } from '../../../src/config/video-settings.ts';
import {
  fallbackRendition,
  loudnormFilter,
  parseQuality,
  posterSeconds,
  qualityGraph,
} from '../../../src/media/video/extras.ts';
import { ladderSettings, planLadder } from '../../../src/media/video/ladder.ts';

const rungs = planLadder(
  { width: 1920, height: 1080, frameRate: 30, hasAudio: true },
  ladderSettings(loadConfig({}, {})),
);

describe('poster time', () => {
  it('is a tenth of the video, at most 1 s, and 0 for a clip under 1 s', () => {
    assert.equal(posterSeconds(3000), 0.3);
    assert.equal(posterSeconds(60_000), 1);
    assert.equal(posterSeconds(999), 0);
  });
});

describe('fallback rendition', () => {
  const jobs = (codecs: ('h264' | 'av1')[]) =>
    codecs.flatMap((codec) => rungs.map((rung) => ({ codec, rung, name: `${codec}-${rung.name}` })));

  it('is the H.264 rung at or just under the height, else the smallest', () => {
    assert.equal(fallbackRendition(jobs(['av1', 'h264']), 480).name, 'h264-480p');
    assert.equal(fallbackRendition(jobs(['h264']), 500).name, 'h264-480p');
    assert.equal(fallbackRendition(jobs(['h264']), 100).name, 'h264-240p');
    assert.equal(fallbackRendition(jobs(['av1']), 720).name, 'av1-720p');
  });
});

describe('quality', () => {
  it('parses the summaries ssim, psnr and libvmaf log', () => {
    const log = [
      '[Parsed_ssim_4 @ 0x55] SSIM Y:0.981 (17.2) U:0.990 (20.0) V:0.989 (19.6) All:0.984123 (17.9)',
      '[Parsed_psnr_5 @ 0x56] PSNR y:38.1 u:42.7 v:42.3 average:39.25 min:37.2 max:41.0',
      '[Parsed_libvmaf_6 @ 0x57] VMAF score: 93.1',
    ].join('\n');
    assert.deepEqual(parseQuality(log), { ssim: 0.984123, psnr: 39.25, vmaf: 93.1 });
    assert.deepEqual(parseQuality('[Parsed_psnr_5 @ 0x1] PSNR y:inf average:inf min:inf max:inf'), {
      ssim: null,
      psnr: null,
      vmaf: null,
    });
  });

  it('scales the rendition up to the source and gives the source the rendition frame rate', () => {
    const { graph, outputs } = qualityGraph(rungs[0]!, { width: 1920, height: 1080 }, false);
    assert.match(graph, /^\[0:v:0\]setpts=PTS-STARTPTS,scale=1920:1080/);
    assert.match(graph, /\[1:v:0\]fps=30,setpts=PTS-STARTPTS,scale=1920:1080/);
    assert.deepEqual(outputs, ['[ssim]', '[psnr]']);
    assert.match(qualityGraph(rungs[0]!, { width: 1920, height: 1080 }, true).graph, /\[d2\]\[r2\]libvmaf/);
  });
});

describe('loudness normalisation', () => {
  it('parses the target, with loudnorm defaults for TP and LRA', () => {
    assert.equal(parseLoudnormTarget(''), null);
    assert.deepEqual(parseLoudnormTarget('-16'), {
      integratedLufs: -16,
      truePeakDbtp: -1.5,
      loudnessRangeLu: 11,
    });
    assert.deepEqual(parseLoudnormTarget('-23,-2,7'), {
      integratedLufs: -23,
      truePeakDbtp: -2,
      loudnessRangeLu: 7,
    });
    for (const bad of ['16', 'loud', '-16,1', '-16,-1,0', '-16,-1,7,1']) {
      assert.throws(() => parseLoudnormTarget(bad), /expected/, bad);
    }
  });

  it('builds the second pass from the first pass figures, and nothing for silence', () => {
    const target = { integratedLufs: -16, truePeakDbtp: -1.5, loudnessRangeLu: 11 };
    const measured = { integratedLufs: -21.8, thresholdLufs: -31.8, loudnessRangeLu: 0, truePeakDbtp: -16.1 };
    assert.equal(
      loudnormFilter(target, measured),
      'loudnorm=I=-16:TP=-1.5:LRA=11:measured_I=-21.80:measured_TP=-16.10:measured_LRA=0.00:' +
        'measured_thresh=-31.80:linear=true:print_format=none',
    );
    assert.equal(loudnormFilter(null, measured), null);
    assert.equal(loudnormFilter(target, null), null);
    assert.equal(loudnormFilter(target, { ...measured, integratedLufs: null, thresholdLufs: null }), null);
  });
});
