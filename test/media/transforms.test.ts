import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { assertProblem, readAnswer } from '../helpers/http.ts';

describe('transforms the image library refuses', () => {
  let server: TestServer;

  before(async () => {
    server = await startConveyor(undefined, { imageTimeoutSeconds: 1 });
  });
  after(() => server?.close());

  test('a render past the image time limit is a 422 image_timeout, not a 500', async () => {
    // A flat PNG decodes in no time; a Gaussian blur of sigma 100 over 16 MP takes seconds.
    const flat = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: '#888' } })
      .png({ compressionLevel: 1 })
      .toBuffer();
    const source = await upload(server, flat, { filename: 'flat.png', contentType: 'image/png' });
    const signed = await server.json('POST', `/api/v1/assets/${source.id}/transform-url`, {
      blur: 100,
      format: 'jpeg',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    assertProblem(await readAnswer(await fetch(signed.body.url)), 422, 'image_timeout');
  });
});
