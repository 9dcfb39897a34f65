import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { loadConfig } from '../../../src/config/config.ts';
import { VideoError, type VideoErrorCode } from '../../../src/media/video/errors.ts';
import {
  checkVideo,
  type VideoLimits,
  verifyDecodable,
  videoLimits,
} from '../../../src/media/video/limits.ts';
import { probeVideo, type VideoInfo } from '../../../src/media/video/probe.ts';
import { skipWithoutFfmpeg, VIDEO_FIXTURES, type VideoFixture } from '../../helpers/video-fixtures.ts';

const skip = skipWithoutFfmpeg();
const defaults = videoLimits(loadConfig({}));

/** Each fixture probed once for the whole file: every probe is a process. */
const probes = new Map<string, Promise<VideoInfo>>();
function probed(name: VideoFixture): Promise<VideoInfo> {
  let info = probes.get(name);
  if (info === undefined) {
    info = VIDEO_FIXTURES[name]().then((path) => probeVideo(path));
    probes.set(name, info);
  }
  return info;
}

function refusal(info: VideoInfo, limits: Partial<VideoLimits>): VideoErrorCode | 'accepted' {
  try {
    checkVideo(info, { ...defaults, ...limits });
    return 'accepted';
  } catch (error) {
    assert.ok(error instanceof VideoError, String(error));
    assert.equal(error.retryable, false);
    return error.code;
  }
}

describe('checkVideo', { skip }, () => {
  const info: Record<string, VideoInfo> = {};
  before(async () => {
    const names = [
      'h264AacMp4',
      'h264AacMkv',
      'h264AacMov',
      'vp9OpusWebm',
      'rotated90Mp4',
      'oddSizeMp4',
      'variableFrameRateMp4',
      'noAudioMp4',
      'audioOnlyM4a',
    ] as const;
    await Promise.all(
      names.map(async (name) => {
        info[name] = await probed(name);
      }),
    );
  });
  const mp4 = () => info['h264AacMp4']!;

  it('accepts every ordinary fixture with the default settings, a video without sound included', () => {
    for (const [name, i] of Object.entries(info)) {
      if (name !== 'audioOnlyM4a') assert.equal(refusal(i, {}), 'accepted', name);
    }
  });

  it('refuses no duration as unreadable, and audio without video', () => {
    assert.equal(refusal({ ...mp4(), durationMs: null }, {}), 'video_unreadable');
    assert.equal(refusal({ ...mp4(), durationMs: 0 }, {}), 'video_unreadable');
    assert.equal(refusal(info['audioOnlyM4a']!, {}), 'video_no_video');
  });

  it('refuses a video without audio only when audio is required', () => {
    assert.equal(refusal(info['noAudioMp4']!, { requireAudio: true }), 'video_no_audio');
    assert.equal(refusal(mp4(), { requireAudio: true }), 'accepted');
  });

  it('refuses past each size limit, on the stored size', () => {
    assert.equal(refusal(mp4(), { maxWidth: 159 }), 'video_too_large');
    assert.equal(refusal(mp4(), { maxHeight: 89 }), 'video_too_large');
    assert.equal(refusal(mp4(), { maxPixels: 160 * 90 - 1 }), 'video_too_large');
    assert.equal(refusal(mp4(), { maxWidth: 160, maxHeight: 90, maxPixels: 160 * 90 }), 'accepted');
    // Displayed 90x160, stored 160x90.
    assert.equal(refusal(info['rotated90Mp4']!, { maxWidth: 159 }), 'video_too_large');
    assert.equal(refusal(info['oddSizeMp4']!, { maxWidth: 1280, maxHeight: 720 }), 'accepted');
  });

  it('refuses a longer video and a larger file', () => {
    assert.equal(refusal(mp4(), { maxDurationSeconds: 1 }), 'video_too_long');
    assert.equal(refusal(mp4(), { maxDurationSeconds: 2 }), 'accepted');
    assert.equal(refusal(mp4(), { maxBytes: (mp4().sizeBytes ?? 0) - 1 }), 'video_file_too_large');
  });

  it('refuses containers and codecs that are not listed', () => {
    assert.equal(refusal(info['h264AacMkv']!, { containers: ['mp4', 'webm'] }), 'video_unsupported');
    assert.equal(refusal(info['vp9OpusWebm']!, { containers: ['mp4', 'webm'] }), 'accepted');
    assert.equal(refusal(mp4(), { codecs: ['vp9'] }), 'video_unsupported');
    assert.equal(refusal(mp4(), { audioCodecs: ['opus'] }), 'video_unsupported');
    assert.equal(refusal(info['noAudioMp4']!, { audioCodecs: [] }), 'accepted');
    try {
      checkVideo(mp4(), { ...defaults, audioCodecs: ['opus'] });
    } catch (error) {
      assert.deepEqual((error as VideoError).details, { audioCodec: 'aac', accepted: ['opus'] });
    }
  });
});

describe('verifyDecodable', { skip }, () => {
  const verify = async (name: VideoFixture, tailSeconds: number) => {
    const { durationMs } = await probed(name);
    return verifyDecodable(await VIDEO_FIXTURES[name](), { durationMs, tailSeconds });
  };

  it('passes intact files, decoding the end or all of them', async () => {
    await verify('h264AacMp4', 1);
    await verify('vp9OpusWebm', 0);
    await verify('variableFrameRateMp4', 0);
  });

  it('finds a file cut short as video_corrupt, from its end or from the start', async () => {
    for (const tail of [1, 0]) {
      await assert.rejects(verify('truncatedMp4', tail), (error) => {
        assert.ok(error instanceof VideoError, String(error));
        assert.equal(error.code, 'video_corrupt');
        assert.equal(error.retryable, false);
        return true;
      });
    }
  });
});

describe('every fixture through probe, limits and the decode check', { skip }, () => {
  it('fails with nothing but VideoErrors, each with the expected code', async () => {
    const expected: Partial<Record<VideoFixture, VideoErrorCode | 'accepted'>> = {
      h264AacMp4: 'accepted',
      rotated90Mp4: 'accepted',
      oddSizeMp4: 'accepted',
      noAudioMp4: 'accepted',
      silentAudioMp4: 'accepted',
      audioOnlyM4a: 'video_no_video',
      truncatedMp4: 'video_corrupt',
      garbageFile: 'video_unreadable',
      emptyFile: 'video_unreadable',
    };
    const outcomes = await Promise.all(
      (Object.keys(expected) as VideoFixture[]).map(async (name) => {
        try {
          const i = await probed(name);
          checkVideo(i, defaults);
          await verifyDecodable(await VIDEO_FIXTURES[name](), { durationMs: i.durationMs, tailSeconds: 10 });
          return [name, 'accepted'];
        } catch (error) {
          assert.ok(error instanceof VideoError, `${name}: ${String(error)}`);
          return [name, error.code];
        }
      }),
    );
    assert.deepEqual(Object.fromEntries(outcomes), expected);
  });
});
