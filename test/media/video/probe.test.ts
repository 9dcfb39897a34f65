import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { VideoError } from '../../../src/media/video/errors.ts';
import { parseProbe, probeVideo, type VideoInfo } from '../../../src/media/video/probe.ts';
import {
  CLIP,
  emptyFile,
  garbageFile,
  h264AacMp4,
  skipWithoutFfmpeg,
  VIDEO_FIXTURES,
} from '../../helpers/video-fixtures.ts';

const skip = skipWithoutFfmpeg();
/** One frame of the common clip, in milliseconds: the tolerance of a duration. */
const FRAME_MS = 1000 / CLIP.fps;

async function probeError(path: string): Promise<VideoError> {
  try {
    await probeVideo(path);
  } catch (error) {
    assert.ok(error instanceof VideoError, `expected a VideoError, got ${String(error)}`);
    return error;
  }
  assert.fail(`${path} probed`);
}

describe('probeVideo', { skip }, () => {
  const info: Record<string, VideoInfo> = {};
  before(async () => {
    // Made and probed side by side: each is an ffmpeg and an ffprobe run.
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
      'truncatedMp4',
    ] as const;
    await Promise.all(
      names.map(async (name) => {
        info[name] = await probeVideo(await VIDEO_FIXTURES[name]());
      }),
    );
  });

  const clip = (i: VideoInfo | undefined) => {
    assert.ok(i?.video && i.audio);
    assert.ok(Math.abs((i.durationMs ?? 0) - CLIP.seconds * 1000) <= FRAME_MS, `duration ${i.durationMs}`);
    assert.equal(i.video.width, CLIP.width);
    assert.equal(i.video.height, CLIP.height);
    assert.equal(i.video.fps, CLIP.fps);
    assert.deepEqual(i.video.frameRate, { num: CLIP.fps, den: 1 });
    assert.equal(i.video.variableFrameRate, false);
    assert.equal(i.audio.sampleRate, CLIP.sampleRate);
    assert.equal(i.audio.channels, CLIP.channels);
    assert.equal(i.audio.channelLayout, 'stereo');
    assert.deepEqual(i.streams, {
      total: 2,
      video: 1,
      audio: 1,
      subtitle: 0,
      data: 0,
      attachment: 0,
      attachedPictures: 0,
    });
    return { ...i, video: i.video, audio: i.audio };
  };

  it('reads an H.264 + AAC MP4', () => {
    const i = clip(info['h264AacMp4']);
    assert.equal(i.container, 'mp4');
    assert.equal(i.formatName, 'mov,mp4,m4a,3gp,3g2,mj2');
    assert.ok((i.sizeBytes ?? 0) > 0 && (i.bitRate ?? 0) > 0);
    assert.equal(i.video.codec, 'h264');
    assert.equal(i.video.profile, 'Constrained Baseline');
    assert.equal(i.video.pixFmt, 'yuv420p');
    assert.equal(typeof i.video.level, 'number');
    assert.equal(i.video.rotation, 0);
    assert.equal(i.video.displayWidth, CLIP.width);
    assert.equal(i.video.sampleAspectRatio, null);
    assert.ok((i.video.bitRate ?? 0) > 0);
    assert.equal(i.video.frameCount, CLIP.fps * CLIP.seconds);
    assert.equal(i.audio.codec, 'aac');
    assert.equal(i.audio.profile, 'LC');
    assert.ok((i.audio.bitRate ?? 0) > 0);
  });

  it('tells the containers the demuxers share apart: mov, matroska and webm', () => {
    assert.equal(clip(info['h264AacMov']).container, 'mov');
    assert.equal(clip(info['h264AacMkv']).container, 'matroska');
    const webm = clip(info['vp9OpusWebm']);
    assert.equal(webm.container, 'webm');
    assert.equal(webm.formatName, 'matroska,webm');
    assert.equal(webm.video.codec, 'vp9');
    assert.equal(webm.audio.codec, 'opus');
  });

  it('turns a portrait recording: rotation 90 swaps the display size', () => {
    const i = clip(info['rotated90Mp4']);
    assert.equal(i.video.rotation, 90);
    assert.equal(i.video.width, CLIP.width);
    assert.equal(i.video.displayWidth, CLIP.height);
    assert.equal(i.video.displayHeight, CLIP.width);
  });

  it('keeps an odd frame size', () => {
    const i = info['oddSizeMp4'];
    assert.equal(i?.video?.width, 1279);
    assert.equal(i?.video?.height, 719);
    assert.equal(i?.video?.pixFmt, 'yuv444p');
    assert.equal(i?.video?.profile, 'High 4:4:4 Predictive');
    assert.equal(i?.video?.sampleAspectRatio, null);
  });

  it('flags a variable frame rate', () => {
    const video = info['variableFrameRateMp4']?.video;
    assert.equal(video?.variableFrameRate, true);
    assert.equal(video?.frameCount, 45);
    // 45 frames over 2.5 s (ffprobe's average uses the last frame's start).
    assert.ok(
      video?.fps !== null && video?.fps !== undefined && video.fps > 15 && video.fps < 25,
      `${video?.fps}`,
    );
  });

  it('reports a video without audio, and audio without video', () => {
    const silent = info['noAudioMp4'];
    assert.equal(silent?.audio, null);
    assert.equal(silent?.streams.audio, 0);
    assert.equal(silent?.video?.codec, 'h264');
    const audio = info['audioOnlyM4a'];
    assert.equal(audio?.video, null);
    assert.equal(audio?.streams.video, 0);
    assert.equal(audio?.container, 'm4a');
    assert.equal(audio?.audio?.codec, 'aac');
  });

  it('cannot see a cut-off file behind an index in front: that is the decode check', () => {
    const i = clip(info['truncatedMp4']);
    assert.equal(i.durationMs, CLIP.seconds * 1000);
  });

  it('refuses garbage and an empty file as video_unreadable', async () => {
    const garbage = await probeError(await garbageFile());
    assert.equal(garbage.code, 'video_unreadable');
    assert.equal(garbage.retryable, false);
    assert.match(garbage.message, /Invalid data/);
    const empty = await probeError(await emptyFile());
    assert.equal(empty.code, 'video_unreadable');
  });

  it('names a missing ffprobe, and lets a missing file be an fs error', async () => {
    await assert.rejects(probeVideo(await h264AacMp4(), { ffprobePath: '/nonexistent/ffprobe' }), {
      code: 'video_tool_missing',
    });
    await assert.rejects(probeVideo(join(await h264AacMp4(), '..', 'absent.mp4')), {
      code: 'ENOENT',
    });
  });
});

describe('parseProbe', () => {
  it('answers an empty description of anything that is not ffprobe JSON', () => {
    for (const json of [null, 42, 'x', [], { streams: 'x', format: [] }, { streams: [null, 7, 'x'] }]) {
      const i = parseProbe(json);
      assert.equal(i.durationMs, null);
      assert.equal(i.video, null);
      assert.equal(i.audio, null);
      assert.equal(i.formatName, 'unknown');
    }
  });

  it('reads N/A, strings for numbers and zero denominators as unknown', () => {
    const i = parseProbe({
      format: { format_name: 'avi', duration: 'N/A', size: 'N/A', bit_rate: '-5' },
      streams: [
        {
          codec_type: 'video',
          codec_name: 'mpeg4',
          width: '640',
          height: 'N/A',
          level: -99,
          avg_frame_rate: '0/0',
          r_frame_rate: '25/0',
          sample_aspect_ratio: '0:1',
          duration: '12.5',
          nb_frames: 'N/A',
        },
      ],
    });
    assert.equal(i.container, 'avi');
    assert.equal(i.durationMs, 12_500);
    assert.equal(i.sizeBytes, null);
    assert.equal(i.bitRate, null);
    assert.equal(i.video?.width, 640);
    assert.equal(i.video?.height, 0);
    assert.equal(i.video?.level, null);
    assert.equal(i.video?.frameRate, null);
    assert.equal(i.video?.fps, null);
    assert.equal(i.video?.variableFrameRate, false);
    assert.equal(i.video?.sampleAspectRatio, null);
    assert.equal(i.video?.frameCount, null);
  });

  it('takes rotation from the display matrix, else the legacy tag, clockwise', () => {
    const rotation = (stream: Record<string, unknown>) =>
      parseProbe({ streams: [{ codec_type: 'video', width: 1920, height: 1080, ...stream }] }).video;
    const matrix = (r: unknown) => ({ side_data_list: [{ side_data_type: 'Display Matrix', rotation: r }] });
    assert.equal(rotation(matrix(-90))?.rotation, 90);
    assert.equal(rotation(matrix('-90.00'))?.rotation, 90);
    assert.equal(rotation(matrix(90))?.rotation, 270);
    assert.equal(rotation(matrix(180))?.displayWidth, 1920);
    assert.equal(rotation(matrix(-89.7))?.displayWidth, 1080);
    assert.equal(rotation(matrix(45))?.rotation, 315);
    assert.equal(rotation(matrix(45))?.displayWidth, 1920);
    assert.equal(rotation({ tags: { rotate: '90' } })?.rotation, 90);
    assert.equal(rotation({ tags: { rotate: '90' } })?.displayHeight, 1920);
    assert.equal(rotation({ ...matrix(0), tags: { rotate: '90' } })?.rotation, 0);
    assert.equal(rotation(matrix('N/A'))?.rotation, 0);
  });

  it('does not count cover art as video', () => {
    const i = parseProbe({
      format: { format_name: 'mp3', duration: '180.0' },
      streams: [
        { index: 0, codec_type: 'audio', codec_name: 'mp3', channels: 2, sample_rate: '44100' },
        { index: 1, codec_type: 'video', codec_name: 'mjpeg', disposition: { attached_pic: 1 } },
      ],
    });
    assert.equal(i.video, null);
    assert.equal(i.streams.video, 0);
    assert.equal(i.streams.attachedPictures, 1);
    assert.equal(i.audio?.sampleRate, 44_100);
  });

  it('tells a variable frame rate from interlaced video reporting its field rate', () => {
    const video = (stream: Record<string, unknown>) =>
      parseProbe({ streams: [{ codec_type: 'video', width: 720, height: 576, ...stream }] }).video;
    assert.equal(
      video({ avg_frame_rate: '25/1', r_frame_rate: '50/1', field_order: 'tt' })?.variableFrameRate,
      false,
    );
    assert.equal(video({ avg_frame_rate: '25/1', r_frame_rate: '50/1' })?.variableFrameRate, true);
    assert.equal(video({ avg_frame_rate: '2997/100', r_frame_rate: '30000/1001' })?.variableFrameRate, false);
    assert.deepEqual(video({ avg_frame_rate: '0/0', r_frame_rate: '30000/1001' })?.frameRate, {
      num: 30_000,
      den: 1001,
    });
  });

  it('names the ISO family by brand, and Matroska with other codecs matroska', () => {
    const container = (brand: string | undefined, format = 'mov,mp4,m4a,3gp,3g2,mj2') =>
      parseProbe({ format: { format_name: format, ...(brand ? { tags: { major_brand: brand } } : {}) } })
        .container;
    assert.equal(container('isom'), 'mp4');
    assert.equal(container('mp42'), 'mp4');
    assert.equal(container('qt  '), 'mov');
    assert.equal(container(undefined), 'mov');
    assert.equal(container('M4V '), 'm4v');
    assert.equal(container('3gp5'), '3gp');
    assert.equal(container('isom', 'matroska,webm'), 'matroska');
    assert.equal(container(undefined, 'mpegts'), 'mpegts');
  });
});
