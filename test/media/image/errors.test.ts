import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PermanentJobError } from '../../../src/jobs/types.ts';
import { classifySharpError, ImageError } from '../../../src/media/image/errors.ts';

describe('ImageError', () => {
  it('is a PermanentJobError, so the job engine dead-letters it without retrying', () => {
    const error = new ImageError('image_corrupt', 'broken', { details: { at: 12 } });
    assert.ok(error instanceof PermanentJobError);
    assert.ok(error instanceof Error);
    assert.equal(error.code, 'image_corrupt');
    assert.equal(error.permanent, true);
    assert.equal(error.name, 'ImageError');
    assert.deepEqual(error.details, { at: 12 });
  });
});

describe('classifySharpError', () => {
  const code = (message: string) => {
    const result = classifySharpError(new Error(message));
    return result instanceof ImageError ? result.code : 'untouched';
  };

  it('recognises the limits libvips enforces and unsupported input', () => {
    assert.equal(code('Input image exceeds pixel limit'), 'image_too_large');
    assert.equal(code('Input buffer contains unsupported image format'), 'image_unsupported');
    assert.equal(code('timeout: 33% complete'), 'image_timeout');
  });

  it('counts decoder failures as corrupt input', () => {
    for (const message of [
      'VipsJpeg: premature end of JPEG image',
      'Input buffer has corrupt header: VipsJpeg: premature end of JPEG image',
      'Input Buffer is empty',
      'Unknown error',
      'gifload: no frames in GIF\nmore detail',
    ]) {
      assert.equal(code(message), 'image_corrupt', message);
    }
    const error = classifySharpError(new Error('VipsJpeg: bad\nsecond line')) as ImageError;
    assert.equal(error.message, 'The image data is damaged: VipsJpeg: bad');
    assert.ok(error.cause instanceof Error);
  });

  it('leaves environment failures and programming errors retryable and untouched', () => {
    for (const message of [
      'Input file is missing: /tmp/x.jpg',
      'vips_malloc: out of memory --- size == 1MB',
      "EMFILE: too many open files, open '/tmp/x'",
      'ENOSPC: no space left on device',
      'Expected positive integer for width but received -1 of type number',
      'Invalid value for option',
    ]) {
      assert.equal(code(message), 'untouched', message);
    }
    const image = new ImageError('image_too_large', 'x');
    assert.equal(classifySharpError(image), image);
    assert.equal(classifySharpError('a string'), 'a string');
  });
});
