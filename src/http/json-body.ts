import type { FastifyInstance } from 'fastify';
import { ConveyorError } from '../errors.ts';

const OPEN_OBJECT = 0x7b; // {
const OPEN_ARRAY = 0x5b; // [
const CLOSE_OBJECT = 0x7d; // }
const CLOSE_ARRAY = 0x5d; // ]
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \

/**
 * Whether `text` opens more than `max` objects and arrays inside one another. One pass, no recursion, no
 * parse: brackets inside strings are skipped. Malformed text is left to JSON.parse to refuse.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Skip the string: to the next quote that no backslash escapes.
      for (i++; i < length; i++) {
        const s = text.charCodeAt(i);
        if (s === BACKSLASH) i++;
        else if (s === QUOTE) break;
      }
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > max) return true;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
    }
  }
  return false;
}

/**
 * JSON request bodies through Fastify's own parser (which refuses `__proto__` and `constructor.prototype`
 * keys), after a depth check. JSON.parse copes with any depth, but what walks the value afterwards does
 * not: JSON.stringify, validation and structured clones recurse, and 5,000 levels (30 KB) overflow the
 * stack, which would be a 500 in the middle of an enqueue rather than a 400 at the door.
 */
export function boundJsonDepth(app: FastifyInstance, maxDepth: number): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (jsonDepthExceeds(text, maxDepth)) {
      done(
        new ConveyorError(
          'bad_request',
          `The JSON body nests objects and arrays more than ${maxDepth} deep`,
          {
            extra: { limit: maxDepth },
          },
        ),
        undefined,
      );
      return;
    }
    parse(request, text, done);
  });
}
