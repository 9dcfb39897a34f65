/**
 * The errors the image library reports about an image. Each one is about the input itself (or about
 * what it would turn into), so trying again cannot help: they extend the job engine's
 * PermanentJobError, which sends the job straight to dead instead of retrying, and carry
 * `permanent: true` for callers that look at the flag instead.
 *
 * Anything else that escapes the library (a missing file, the machine out of memory, a programming
 * error) is deliberately left as it is: those may well succeed on another attempt.
 *
 * Suggested mapping to the HTTP error catalog:
 *   IMAGE_TOO_LARGE, IMAGE_TOO_MANY_FRAMES  413 payload_too_large
 *   IMAGE_UNSUPPORTED                       415 unsupported_media_type
 *   IMAGE_CORRUPT                           400 bad_request (or 422 if the catalog grows one)
 *   IMAGE_OUTPUT_TOO_LARGE, IMAGE_TIMEOUT   the request asked for more than the limits allow: 400
 */
import { PermanentJobError } from '../../jobs/types.ts';

export const IMAGE_ERROR_CODES = [
  /**
   * More pixels (width x height of one frame) than `maxInputPixels`, or a step whose estimated working
   * memory (cost.ts) is above `maxWorkingBytes`.
   */
  'IMAGE_TOO_LARGE',
  /** More pages or animation frames than `maxFrames`. */
  'IMAGE_TOO_MANY_FRAMES',
  /** Not an image, or a format outside the configured allow-list. */
  'IMAGE_UNSUPPORTED',
  /** A recognised format whose header or pixel data is damaged or truncated. */
  'IMAGE_CORRUPT',
  /** The encoded output is larger than `maxOutputBytes`. */
  'IMAGE_OUTPUT_TOO_LARGE',
  /** libvips gave up after `timeoutSeconds` of work on one pipeline. */
  'IMAGE_TIMEOUT',
] as const;
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
    return new ImageError('IMAGE_TOO_LARGE', 'The image has more pixels than allowed', { cause: error });
  }
  if (/unsupported image format/i.test(message)) {
    return new ImageError('IMAGE_UNSUPPORTED', 'The data is not an image in a supported format', {
      cause: error,
    });
  }
  if (/^timeout/i.test(message)) {
    return new ImageError('IMAGE_TIMEOUT', 'Processing the image took longer than allowed', { cause: error });
  }
  return new ImageError('IMAGE_CORRUPT', `The image data is damaged: ${firstLine(message)}`, {
    cause: error,
  });
}

function firstLine(message: string): string {
  return message.split('\n', 1)[0]!.slice(0, 200);
}
