import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ByteRange } from '../storage/blob-store.ts';

export interface MultipartByterangesOptions {
  /** Satisfiable ranges within `size`, in the order the parts are to be sent. */
  ranges: ByteRange[];
  /** Complete length of the representation, for each part's Content-Range. */
  size: number;
  /** The representation's media type, repeated in every part. */
  contentType: string;
  /** From newBoundary(), or any 1–70 characters of RFC 2046 bcharsnospace. */
  boundary: string;
  /** Opens exactly the bytes of one range; called once per part, when that part is reached. */
  open: (r: ByteRange) => Promise<Readable>;
}

export interface MultipartByteranges {
  /** The value for the response's Content-Type field. */
  contentType: string;
  /** Exact body length in bytes, known before any part is opened. */
  contentLength: number;
  body: Readable;
}

// RFC 2046 §5.1.1: bcharsnospace := DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-" / "." / "/" /
// ":" / "=" / "?"; "boundary := 0*69<bchars> bcharsnospace". We never emit a space, and we refuse the
// characters that would force the parameter into a quoted-string: RFC 9110 §14.6 warns that "some
// existing implementations handle a quoted boundary string incorrectly".
const BOUNDARY = /^[0-9A-Za-z'+_\-.]{1,70}$/;
// Field values may not contain CR, LF or NUL, and anything outside visible ASCII has no portable meaning.
const FIELD_VALUE = /^[\t\x20-\x7e]*$/;

/** A fresh boundary: 32 lowercase hex digits (128 random bits), so it cannot plausibly occur in a part. */
export function newBoundary(): string {
  return randomBytes(16).toString('hex');
}

/**
 * Builds a multipart/byteranges body (RFC 9110 §14.6) for several ranges of one representation:
 *
 *   --<boundary>CRLF
 *   Content-Type: <type>CRLF
 *   Content-Range: bytes <start>-<end>/<size>CRLF
 *   CRLF
 *   <bytes>CRLF
 *   --<boundary>CRLF
 *   ...
 *   <bytes>CRLF
 *   --<boundary>--CRLF
 *
 * Each CRLF before a `--<boundary>` belongs to the delimiter, not to the part: RFC 2046 §5.1.1, "the
 * initial CRLF is considered to be attached to the boundary delimiter line rather than part of the
 * preceding part." The first delimiter needs none because there is no preamble.
 *
 * Parts are opened one at a time, in order, only once the consumer has drained the previous one, and
 * streamed through without being collected. A part whose stream delivers more or fewer bytes than its
 * range makes the body fail (destroyed with an error) rather than silently contradict Content-Length.
 */
export function multipartByteranges(opts: MultipartByterangesOptions): MultipartByteranges {
  const { ranges, size, contentType, boundary, open } = opts;
  if (!BOUNDARY.test(boundary)) {
    throw new TypeError(`unusable multipart boundary: ${JSON.stringify(boundary)}`);
  }
  if (!FIELD_VALUE.test(contentType)) {
    throw new TypeError(`unusable content type: ${JSON.stringify(contentType)}`);
  }
  if (ranges.length === 0) throw new RangeError('multipart/byteranges needs at least one range');
  for (const r of ranges) {
    if (!(Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end) && r.start >= 0 && r.start <= r.end)) {
      throw new RangeError(`invalid range ${r.start}-${r.end}`);
    }
    if (r.end >= size) throw new RangeError(`range ${r.start}-${r.end} lies outside ${size} bytes`);
  }

  // RFC 9110 §15.3.7.2: "Within the header area of each body part in the multipart content, the server
  // MUST generate a Content-Range header field corresponding to the range being enclosed in that body
  // part. If the selected representation would have had a Content-Type header field in a 200 (OK)
  // response, the server SHOULD generate that same Content-Type header field in the header area of each
  // body part."
  const heads = ranges.map((r, i) =>
    Buffer.from(
      `${i === 0 ? '' : '\r\n'}--${boundary}\r\n` +
        `Content-Type: ${contentType}\r\n` +
        `Content-Range: bytes ${r.start}-${r.end}/${size}\r\n\r\n`,
      'latin1',
    ),
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');
  let contentLength = tail.length;
  for (let i = 0; i < ranges.length; i++) contentLength += heads[i]!.length + partLength(ranges[i]!);

  async function* generate(): AsyncGenerator<Buffer> {
    for (let i = 0; i < ranges.length; i++) {
      const range = ranges[i]!;
      yield heads[i]!;
      const expected = partLength(range);
      let sent = 0;
      const part = await open(range);
      // for await destroys the part stream if the body is destroyed mid-part (client gone).
      for await (const chunk of part) {
        const bytes = toBuffer(chunk);
        sent += bytes.length;
        if (sent > expected) {
          throw new Error(`part ${range.start}-${range.end} delivered more than ${expected} bytes`);
        }
        yield bytes;
      }
      if (sent !== expected) {
        throw new Error(`part ${range.start}-${range.end} ended after ${sent} of ${expected} bytes`);
      }
    }
    yield tail;
  }

  return {
    // RFC 9110 §15.3.7.2: "If multiple parts are being transferred, the server generating the 206 response
    // MUST generate "multipart/byteranges" content and a Content-Type header field containing the
    // "multipart/byteranges" media type and its required boundary parameter."
    contentType: `multipart/byteranges; boundary=${boundary}`,
    contentLength,
    body: Readable.from(generate(), { objectMode: false }),
  };
}

function partLength(r: ByteRange): number {
  return r.end - r.start + 1;
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError('part stream yielded a chunk that is not bytes');
}
