import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import { fileTypeFromBuffer } from 'file-type/core';

/** How many leading bytes are inspected: enough for every signature file-type knows. */
export const SNIFF_BYTES = 4100;

/**
 * Reads up to `bytes` from the front of `source` and answers them together with a stream that yields the
 * whole content again (the head, then the rest), so the type can be sniffed before the body is stored
 * without buffering more than the head.
 */
export async function peek(source: Readable, bytes = SNIFF_BYTES): Promise<{ head: Buffer; body: Readable }> {
  const chunks: Buffer[] = [];
  let length = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= bytes) finish();
    };
    const onEnd = () => finish();
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
    };
    const finish = () => {
      cleanup();
      source.pause();
      resolve();
    };
    source.on('data', onData);
    source.once('end', onEnd);
    source.once('error', onError);
  });
  const head = Buffer.concat(chunks);
  const body = new PassThrough({ highWaterMark: 256 * 1024 });
  body.write(head);
  if (source.readableEnded) {
    body.end();
  } else {
    source.on('error', (error) => body.destroy(error));
    source.pipe(body);
    source.resume();
  }
  return { head: head.subarray(0, bytes), body };
}

/**
 * Types a client may declare for text content. Anything that is text but not declared as one of these is
 * stored as text/plain: a browser must never be told that an upload is HTML or script unless the uploader
 * said so, and even then delivery adds a sandboxing Content-Security-Policy (see `isActiveContent`).
 */
const DECLARABLE_TEXT = new Set([
  'text/plain',
  'text/csv',
  'text/markdown',
  'text/css',
  'text/html',
  'text/xml',
  'text/vtt',
  'application/json',
  'application/xml',
  'application/javascript',
  'text/javascript',
  'image/svg+xml',
  'application/x-mpegurl',
  'application/vnd.apple.mpegurl',
  'application/dash+xml',
]);

/** The content type to store: sniffed from the bytes; the client's declaration only picks among text types. */
export async function sniffContentType(head: Buffer, declared: string | undefined): Promise<string> {
  const detected = await fileTypeFromBuffer(head);
  if (detected) return detected.mime;
  const essence = declared?.split(';')[0]?.trim().toLowerCase();
  if (isText(head)) {
    if (essence && DECLARABLE_TEXT.has(essence))
      return essence.startsWith('text/') ? `${essence}; charset=utf-8` : essence;
    return 'text/plain; charset=utf-8';
  }
  return 'application/octet-stream';
}

/**
 * Types a browser may run script or a plugin in when it opens them, or that script may be loaded from:
 * delivery serves them with `Content-Security-Policy: sandbox` (or as attachments, `deliveryActiveContent`)
 * so that a tenant's upload cannot act as the origin. Conveyor stores only what it sniffs or a declarable
 * text type (above); the list also covers the families a future declarable type could fall in.
 */
const ACTIVE_TYPES = new Set([
  // Documents with script.
  'text/html',
  'application/xhtml+xml',
  // XML is rendered as a document: elements in the XHTML namespace run their script, and an
  // <?xml-stylesheet?> XSLT can turn it into HTML. Every `+xml` type (RFC 6839 §4.1) too, below: SVG,
  // MathML, XSLT, RSS, Atom.
  'text/xml',
  'application/xml',
  'text/xsl',
  'text/xml-external-parsed-entity',
  'application/xml-external-parsed-entity',
  // Script. Opened directly it shows as text, but a page or worker of the origin could load it.
  'text/javascript',
  'application/javascript',
  'application/x-javascript',
  'text/ecmascript',
  'application/ecmascript',
  // PDF viewers run the document's JavaScript (PDFium and pdf.js a subset of Acrobat's) and submit its forms.
  'application/pdf',
  // Flash ran with the rights of the origin that served it; gone from current browsers, not from every client.
  'application/x-shockwave-flash',
  'application/futuresplash',
]);

/**
 * Whether `contentType` is active content (`ACTIVE_TYPES`). RFC 9110 §8.3.1: "The type and subtype tokens
 * are case-insensitive."
 */
export function isActiveContent(contentType: string): boolean {
  const essence = contentType.split(';')[0]!.trim().toLowerCase();
  return ACTIVE_TYPES.has(essence) || essence.endsWith('+xml');
}

/** UTF-8 without NUL bytes; a multi-byte character cut off at the end of the head still counts as text. */
function isText(head: Buffer): boolean {
  if (head.includes(0)) return false;
  let end = head.length;
  // Drop an incomplete trailing UTF-8 sequence (at most 3 bytes) before validating.
  for (let i = 1; i <= 3 && i <= head.length; i++) {
    const byte = head[head.length - i]!;
    if ((byte & 0xc0) === 0xc0) {
      const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      if (need > i) end = head.length - i;
      break;
    }
    if ((byte & 0x80) === 0) break;
  }
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(0, end));
    return true;
  } catch {
    return false;
  }
}
