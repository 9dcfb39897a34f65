import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { measureLoudness, parseEbur128Summary } from '../../../src/media/video/loudness.ts';
import { probeVideo } from '../../../src/media/video/probe.ts';
import { h264AacMp4, noAudioMp4, silentAudioMp4, skipWithoutFfmpeg } from '../../helpers/video-fixtures.ts';

const skip = skipWithoutFfmpeg();

const SUMMARY = `[Parsed_ebur128_0 @ 0x55a46b0bc340] Summary:

  Integrated loudness:
    I:         -21.8 LUFS
    Threshold: -31.8 LUFS

  Loudness range:
    LRA:         0.5 LU
    Threshold: -41.8 LUFS
    LRA low:   -21.8 LUFS
    LRA high:  -21.3 LUFS

  True peak:
    Peak:      -16.1 dBFS
`;

describe('parseEbur128Summary', () => {
  it('reads the four figures of the summary', () => {
    assert.deepEqual(parseEbur128Summary(`Input #0, lavfi\n${SUMMARY}`), {
      integratedLufs: -21.8,
      thresholdLufs: -31.8,
      loudnessRangeLu: 0.5,
      truePeakDbtp: -16.1,
    });
  });

  it('answers silence (all gated, -inf peak) as null figures, and no summary as null', () => {
    const silence = SUMMARY.replace(
      '-21.8 LUFS\n    Threshold: -31.8',
      '-70.0 LUFS\n    Threshold:   0.0',
    ).replace('-16.1 dBFS', '-inf dBFS');
    assert.deepEqual(parseEbur128Summary(silence), {
      integratedLufs: null,
      thresholdLufs: null,
      loudnessRangeLu: 0.5,
      truePeakDbtp: null,
    });
    assert.equal(parseEbur128Summary('Error opening input'), null);
    assert.equal(parseEbur128Summary('Summary:\n garbage'), null);
  });
});

describe('measureLoudness', { skip }, () => {
  it('measures the sine of the common clip', async () => {
    const path = await h264AacMp4();
    const loudness = await measureLoudness(path, await probeVideo(path));
    assert.ok(loudness !== null);
    const { integratedLufs, truePeakDbtp, loudnessRangeLu, thresholdLufs } = loudness;
    // A steady sine at 1/8 of full scale: about -21 LUFS, a constant level (no range), peak near -18 dBTP.
    assert.ok(integratedLufs !== null && integratedLufs > -30 && integratedLufs < -10, `I ${integratedLufs}`);
    assert.ok(thresholdLufs !== null && Math.abs(thresholdLufs - (integratedLufs - 10)) < 0.2);
    assert.ok(truePeakDbtp !== null && truePeakDbtp > -30 && truePeakDbtp < 0, `TP ${truePeakDbtp}`);
    assert.ok(
      loudnessRangeLu !== null && loudnessRangeLu >= 0 && loudnessRangeLu < 1,
      `LRA ${loudnessRangeLu}`,
    );
  });

  it('answers null without an audio stream, and null figures for digital silence', async () => {
    const silentVideo = await noAudioMp4();
    assert.equal(await measureLoudness(silentVideo, await probeVideo(silentVideo)), null);
    const silence = await silentAudioMp4();
    const loudness = await measureLoudness(silence, await probeVideo(silence));
    assert.equal(loudness?.integratedLufs, null);
    assert.equal(loudness?.truePeakDbtp, null);
  });
});
