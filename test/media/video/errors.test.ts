import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { catalog } from '../../../src/errors.ts';
import { PermanentJobError } from '../../../src/jobs/types.ts';
import { asJobError, VIDEO_ERROR_CODES, VideoError } from '../../../src/media/video/errors.ts';

describe('VideoError', () => {
  it('uses catalog codes that are job failures only (no HTTP status)', () => {
    for (const code of VIDEO_ERROR_CODES) {
      assert.ok(Object.hasOwn(catalog, code), code);
      assert.equal(catalog[code].status, null, code);
    }
  });

  it('retries what the machine caused and not what the input did, unless told otherwise', () => {
    assert.equal(new VideoError('video_tool_missing', 'x').retryable, true);
    assert.equal(new VideoError('video_process_killed', 'x').retryable, true);
    assert.equal(new VideoError('video_corrupt', 'x').retryable, false);
    assert.equal(new VideoError('video_process_failed', 'x').retryable, false);
    assert.equal(new VideoError('video_process_failed', 'x', { retryable: true }).retryable, true);
  });

  it('keeps its details, its process end and its cause', () => {
    const cause = new Error('below');
    const process = { tool: 'ffmpeg', exitCode: 1, signal: null, stderrTail: 'boom\n' };
    const error = new VideoError('video_process_failed', 'failed', { details: { a: 1 }, process, cause });
    assert.equal(error.name, 'VideoError');
    assert.deepEqual(error.details, { a: 1 });
    assert.deepEqual(error.process, process);
    assert.equal(error.cause, cause);
  });

  it('becomes a PermanentJobError for the engine only when retrying cannot help', () => {
    const permanent = asJobError(new VideoError('video_no_video', 'audio only'));
    assert.ok(permanent instanceof PermanentJobError);
    assert.equal(permanent.code, 'video_no_video');
    assert.equal(permanent.message, 'audio only');
    const transient = new VideoError('video_tool_missing', 'no ffmpeg');
    assert.equal(asJobError(transient), transient);
    const other = new Error('bug');
    assert.equal(asJobError(other), other);
  });
});
