/**
 * The errors the image library reports about an image. Each one is about the input itself (or about
 * what it would turn into), so trying again cannot help: they extend the job engine's
 * PermanentJobError, which sends the job straight to dead instead of retrying, and carry
 * `permanent: true` for callers that look at the flag instead.
 *
 * Their codes are entries of the error catalog (src/errors.ts), with the status a transform of the
 * image answers: too large, too many frames or too large an output 413, unsupported 415, corrupt or
 * too slow to process 422.
 *
 * Anything else that escapes the library (a missing file, the machine out of memory, a programming
 * error) is deliberately left as it is: those may well succeed on another attempt.
 */
import type { ProblemCode } from '../../errors.ts';
import { PermanentJobError } from '../../jobs/types.ts';

export const IMAGE_ERROR_CODES = [
  /**
   * More pixels (width x height of one frame) than `maxInputPixels`, or a step whose estimated working
   * memory (cost.ts) is above `maxWorkingBytes`.
   */
  'image_too_large',
  /** More pages or animation frames than `maxFrames`. */
  'image_too_many_frames',
  /** Not an image, or a format outside the configured allow-list. */
  'image_unsupported',
  /** A recognised format whose header or pixel data is damaged or truncated. */
  'image_corrupt',
  /** The encoded output is larger than `maxOutputBytes`. */
  'image_output_too_large',
  /** libvips gave up after `timeoutSeconds` of work on one pipeline. */
  'image_timeout',
] as const satisfies readonly ProblemCode[];
export type ImageErrorCode = (typeof IMAGE_ERROR_CODES)[number];

export class ImageError extends PermanentJobError {
  override readonly code: ImageErrorCode;
  readonly permanent = true as const;
  /** Machine-readable facts for the problem document or the dead job's record (limit, actual, ...). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ImageErrorCode,
    message: string,
    options: { details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, code);
    this.name = 'ImageError';
    this.code = code;
    this.details = options.details ?? {};
    if (options.cause !== undefined) this.cause = options.cause;
  }
}

// libvips and sharp report everything as plain Errors; the wording is all there is to go on. These are
// the messages that mean "the environment failed", which must stay retryable.
const ENVIRONMENT =
  /Input file is missing|out of memory|unable to allocate|ENOMEM|EMFILE|ENFILE|ENOSPC|EACCES/i;
// sharp's own argument validation: a bug in the caller, not a property of the image.
const PROGRAMMING = /^Expected |^Invalid /;

/**
 * Turns an error thrown by sharp while reading or processing an input into an ImageError, or returns it
 * untouched when it is not about the image. Unknown decoder messages count as corrupt input: libvips
 * words its loaders' failures in many ways ("VipsJpeg: ...", "gifload: ...", "TIFFReadDirectory: ..."),
 * and an image that failed to decode once fails the same way every time.
 */
export function classifySharpError(error: unknown): unknown {
  if (error instanceof ImageError || !(error instanceof Error)) return error;
  const message = error.message;
  if (ENVIRONMENT.test(message) || PROGRAMMING.test(message)) return error;
  if (/exceeds pixel limit/i.test(message)) {
    return new ImageError('image_too_large', 'The image has more pixels than allowed', { cause: error });
  }
  if (/unsupported image format/i.test(message)) {
    return new ImageError('image_unsupported', 'The data is not an image in a supported format', {
      cause: error,
    });
  }
  if (/^timeout/i.test(message)) {
    return new ImageError('image_timeout', 'Processing the image took longer than allowed', { cause: error });
  }
  return new ImageError('image_corrupt', `The image data is damaged: ${firstLine(message)}`, {
    cause: error,
  });
}

function firstLine(message: string): string {
  return message.split('\n', 1)[0]!.slice(0, 200);
}
