import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ForcedEncoderError } from '../../../src/media/video/hwaccel.ts';
import { startConveyor } from '../../helpers/conveyor.ts';
import { waitFor } from '../../helpers/jobs.ts';
import { skipWithoutFfmpeg } from '../../helpers/video-fixtures.ts';

describe('encoder detection at worker start', () => {
  const skip = skipWithoutFfmpeg();

  test('health and metrics show the encoders before any video job', { skip }, async () => {
    const server = await startConveyor(
      { database: 'sqlite', storage: 'fs' },
      { serveWorkers: true, videoDetectEncodersAtStart: true, videoHwaccel: 'off', videoCodecs: 'h264' },
    );
    try {
      const encoders = await waitFor('the encoders component', async () => {
        const { body } = await server.json('GET', '/api/v1/health');
        return body.components.find((c: any) => c.name === 'encoders');
      });
      assert.equal(encoders.status, 'healthy', JSON.stringify(encoders));
      assert.equal(encoders.encoders.best.h264, 'libx264');
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(
        metrics,
        /conveyor_video_encoder_available\{encoder="libx264",family="cpu",codec="h264"\} 1/,
      );
      const { body } = await server.json('GET', '/api/v1/jobs?limit=10');
      assert.deepEqual(body.items, [], 'no job ran');
    } finally {
      await server.close();
    }
  });

  test('a forced family that proves none of its encoders fails the start', { skip }, async () => {
    // VideoToolbox is macOS's: on Linux ffmpeg lists none of its encoders, whatever the machine has.
    await assert.rejects(
      startConveyor(
        { database: 'sqlite', storage: 'fs' },
        { serveWorkers: true, videoDetectEncodersAtStart: true, videoHwaccel: 'videotoolbox' },
      ),
      (error: unknown) =>
        error instanceof ForcedEncoderError && /CONVEYOR_VIDEO_HWACCEL=videotoolbox/.test(error.message),
    );
  });
});
