import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OUTPUT_FORMATS, type OutputFormat } from '../../../src/grammar/transform-spec.ts';
import {
  acceptSignature,
  negotiateFormat,
  parseAccept,
  quality,
  resolveFormat,
  type SourceImage,
  sourceCompatibleFormat,
} from '../../../src/media/image/negotiate.ts';

// What browsers send for <img> requests.
const CHROME = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
const SAFARI_17 =
  'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
const SAFARI_15 = 'image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5';
const FIREFOX = 'image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
const FIREFOX_93 = 'image/avif,image/webp,*/*';
const CHROME_84 = 'image/webp,image/apng,image/*,*/*;q=0.8';
const IE_11 = 'image/png, image/svg+xml, image/*; q=0.8, */*; q=0.5';
const CURL = '*/*';

const PHOTO: SourceImage = { format: 'jpeg', hasAlpha: false };
const LOGO: SourceImage = { format: 'png', hasAlpha: true };
const ALL = OUTPUT_FORMATS;

function pick(
  accept: string | undefined,
  source = PHOTO,
  allowed: readonly OutputFormat[] = ALL,
): OutputFormat {
  return negotiateFormat(accept, source, allowed).format;
}

describe('negotiateFormat', () => {
  it('serves real browsers the best format they name', () => {
    assert.deepEqual(negotiateFormat(CHROME, PHOTO, ALL), { format: 'avif', varyAccept: true });
    assert.equal(pick(SAFARI_17), 'avif');
    assert.equal(pick(FIREFOX), 'avif');
    assert.equal(pick(FIREFOX_93), 'avif');
    assert.equal(pick(SAFARI_15), 'webp');
    assert.equal(pick(CHROME_84), 'webp');
  });

  it('gives clients that name neither the source-compatible fallback', () => {
    assert.deepEqual(negotiateFormat(CURL, PHOTO, ALL), { format: 'jpeg', varyAccept: true });
    assert.deepEqual(negotiateFormat(undefined, PHOTO, ALL), { format: 'jpeg', varyAccept: true });
    assert.equal(pick(CURL, LOGO), 'png');
    assert.equal(pick(undefined, LOGO), 'png');
    assert.equal(pick('image/*'), 'jpeg');
    assert.equal(pick(''), 'jpeg');
  });

  it('does not let q magnitudes among jpeg and png turn photos into PNGs', () => {
    // IE 11 and Safari rank image/png above image/*; a photo stays a jpeg all the same.
    assert.equal(pick(IE_11), 'jpeg');
    assert.equal(pick(SAFARI_17, PHOTO, ['jpeg', 'png']), 'jpeg');
  });

  it('honours q=0 as "not acceptable"', () => {
    assert.equal(pick('image/avif;q=0,image/webp'), 'webp');
    assert.equal(pick('image/avif;q=0,image/webp;q=0,*/*'), 'jpeg');
    assert.equal(pick(`${CHROME},image/avif;q=0`), 'webp');
    assert.equal(pick('image/jpeg;q=0,image/png'), 'png');
    assert.equal(pick('image/*;q=0,image/webp'), 'webp');
    assert.equal(pick('image/*;q=0,*/*'), 'jpeg');
    assert.equal(pick('image/avif;q=0.000,image/webp;q=0.001'), 'webp');
  });

  it('falls back when nothing acceptable is available (RFC 9110 §12.5.1: disregard the field)', () => {
    assert.deepEqual(negotiateFormat('image/webp;q=0', PHOTO, ALL), { format: 'jpeg', varyAccept: true });
    assert.equal(pick('*/*;q=0'), 'jpeg');
    assert.equal(pick('text/html'), 'jpeg');
    assert.equal(pick('image/jpeg', LOGO), 'png');
    assert.equal(pick('image/png;q=0,*/*', LOGO), 'png');
  });

  it('counts avif and webp only when named, never through wildcards', () => {
    assert.equal(pick('image/*', PHOTO, ['avif', 'webp']), 'webp');
    assert.equal(pick('*/*', LOGO, ['avif', 'webp']), 'webp');
    assert.equal(pick('image/avif', PHOTO, ['avif', 'webp']), 'avif');
  });

  it('never drops transparency to satisfy Accept', () => {
    assert.equal(pick('image/jpeg,image/png;q=0', LOGO), 'png');
    assert.equal(pick(CHROME, LOGO), 'avif');
    assert.equal(pick(SAFARI_15, LOGO), 'webp');
    assert.deepEqual(negotiateFormat(CURL, LOGO, ['jpeg', 'png']), { format: 'png', varyAccept: false });
    assert.deepEqual(negotiateFormat(CURL, LOGO, ['jpeg']), { format: 'jpeg', varyAccept: false });
  });

  it('chooses only among the allowed formats', () => {
    assert.equal(pick(CHROME, PHOTO, ['jpeg', 'png', 'webp']), 'webp');
    assert.equal(pick(CHROME, PHOTO, ['jpeg', 'png']), 'jpeg');
    assert.equal(pick(CHROME, LOGO, ['jpeg', 'png']), 'png');
    assert.equal(pick(CURL, PHOTO, ['png', 'webp']), 'png');
    assert.throws(() => negotiateFormat(CHROME, PHOTO, []), RangeError);
  });

  it('asks for Vary: Accept exactly when another Accept could change the answer', () => {
    assert.equal(negotiateFormat(CHROME, PHOTO, ['jpeg']).varyAccept, false);
    assert.equal(negotiateFormat(CHROME, PHOTO, ['webp']).varyAccept, false);
    assert.equal(negotiateFormat(CURL, PHOTO, ['jpeg', 'png']).varyAccept, true);
    assert.equal(negotiateFormat(CURL, PHOTO, ['jpeg', 'webp']).varyAccept, true);
    assert.equal(negotiateFormat('image/webp;q=0', PHOTO, ALL).varyAccept, true);
  });

  it('reads media types case-insensitively and tolerates odd members', () => {
    assert.equal(pick('IMAGE/AVIF'), 'avif');
    assert.equal(pick('image/avif;Q=0,image/webp'), 'webp');
    assert.equal(pick('image/avif ; q=0 , image/webp'), 'webp');
    assert.equal(pick('garbage, image/webp'), 'webp');
    assert.equal(pick(',,,'), 'jpeg');
    assert.equal(pick('image/avif;q=2'), 'jpeg');
    assert.equal(pick('image/avif;q=0.0001'), 'jpeg');
    assert.equal(pick('image/avif;q=1.000'), 'avif');
    assert.equal(pick('image/avif;q=1.001'), 'jpeg');
    assert.equal(pick('image/avif;q=.5'), 'jpeg');
    assert.equal(pick('image/avif;foo="a,b;q=0";q=0.5'), 'avif');
    assert.equal(pick('image/avif;foo="a,b";q=0,image/webp'), 'webp');
    assert.equal(pick('image/avif;foo'), 'avif');
    assert.equal(pick('*/avif'), 'jpeg');
    assert.equal(pick('image/avif,image/avif;q=0'), 'jpeg');
  });
});

describe('acceptSignature', () => {
  it('is the same for two Accept values only when they negotiate alike', () => {
    const accepts = [
      CHROME,
      SAFARI_17,
      SAFARI_15,
      FIREFOX,
      FIREFOX_93,
      CHROME_84,
      IE_11,
      CURL,
      undefined,
      '',
      'image/webp;q=0',
      'image/avif;q=0,image/webp',
      'image/png',
      'image/jpeg',
      'text/html',
      'IMAGE/AVIF',
    ];
    const sources: SourceImage[] = [
      PHOTO,
      LOGO,
      { format: 'gif', hasAlpha: true },
      { format: 'webp', hasAlpha: false },
    ];
    const configurations: OutputFormat[][] = [
      [...ALL],
      ['jpeg', 'png'],
      ['webp', 'png'],
      ['avif', 'jpeg'],
      ['png'],
    ];
    for (const a of accepts) {
      for (const b of accepts) {
        if (acceptSignature(a) !== acceptSignature(b)) continue;
        const same = sources.every((source) =>
          configurations.every(
            (allowed) =>
              negotiateFormat(a, source, allowed).format === negotiateFormat(b, source, allowed).format,
          ),
        );
        assert.ok(same, `${a} and ${b} share a signature`);
      }
    }
    assert.notEqual(acceptSignature(CHROME), acceptSignature(CURL));
    assert.notEqual(acceptSignature(CURL), acceptSignature(undefined));
  });
});

describe('resolveFormat', () => {
  it('keeps the source format for `source`, without Vary', () => {
    for (const format of OUTPUT_FORMATS) {
      const source = { format, hasAlpha: false };
      assert.deepEqual(resolveFormat('source', CHROME, source, ALL), { format, varyAccept: false });
    }
    assert.equal(resolveFormat('source', undefined, { format: 'png', hasAlpha: false }, ALL).format, 'png');
  });

  it('converts other source formats to jpeg, or png with alpha', () => {
    assert.equal(sourceCompatibleFormat({ format: 'gif', hasAlpha: false }, ALL), 'jpeg');
    assert.equal(sourceCompatibleFormat({ format: 'gif', hasAlpha: true }, ALL), 'png');
    assert.equal(sourceCompatibleFormat({ format: 'heif', hasAlpha: false }, ALL), 'jpeg');
    assert.equal(sourceCompatibleFormat({ format: 'svg', hasAlpha: true }, ALL), 'png');
    assert.equal(sourceCompatibleFormat({ format: 'tiff', hasAlpha: false }, ['webp', 'png']), 'webp');
    assert.equal(sourceCompatibleFormat({ format: 'tiff', hasAlpha: true }, ['jpeg', 'avif']), 'avif');
    assert.equal(sourceCompatibleFormat({ format: 'webp', hasAlpha: true }, ['jpeg', 'png']), 'png');
    assert.equal(sourceCompatibleFormat({ format: 'constructor', hasAlpha: false }, ALL), 'jpeg');
    assert.throws(() => sourceCompatibleFormat(PHOTO, []), RangeError);
  });

  it('passes explicit formats through, without Vary', () => {
    assert.deepEqual(resolveFormat('webp', CURL, PHOTO, ALL), { format: 'webp', varyAccept: false });
    assert.deepEqual(resolveFormat('jpeg', CHROME, LOGO, ALL), { format: 'jpeg', varyAccept: false });
  });

  it('negotiates for `auto`', () => {
    assert.deepEqual(resolveFormat('auto', CHROME, PHOTO, ALL), { format: 'avif', varyAccept: true });
    assert.deepEqual(resolveFormat('auto', CURL, LOGO, ALL), { format: 'png', varyAccept: true });
  });
});

describe('parseAccept', () => {
  it('lists media ranges with their weights', () => {
    assert.deepEqual(parseAccept(CHROME), [
      { type: 'image', subtype: 'avif', q: 1 },
      { type: 'image', subtype: 'webp', q: 1 },
      { type: 'image', subtype: 'apng', q: 1 },
      { type: 'image', subtype: 'svg+xml', q: 1 },
      { type: 'image', subtype: '*', q: 1 },
      { type: '*', subtype: '*', q: 0.8 },
    ]);
    assert.deepEqual(parseAccept('text/html;level=1;q=0.123'), [{ type: 'text', subtype: 'html', q: 0.123 }]);
  });

  it('skips malformed members', () => {
    for (const bad of [
      '',
      'image',
      'image/',
      '/webp',
      'image/web p',
      '*/webp',
      'image/webp;q=',
      'image/webp;q=-1',
    ]) {
      assert.deepEqual(parseAccept(bad), [], bad);
    }
  });
});

describe('quality', () => {
  const ranges = parseAccept('image/*;q=0.5,*/*;q=0.1,image/png;q=0.9');

  it('takes the most specific range', () => {
    assert.equal(quality(ranges, 'png', true), 0.9);
    assert.equal(quality(ranges, 'jpeg', true), 0.5);
    assert.equal(quality(parseAccept('*/*;q=0.1'), 'jpeg', true), 0.1);
    assert.equal(quality(parseAccept('text/*'), 'jpeg', true), 0);
  });

  it('ignores wildcards when told to', () => {
    assert.equal(quality(ranges, 'webp', false), 0);
    assert.equal(quality(parseAccept('image/webp;q=0.3,image/*'), 'webp', false), 0.3);
  });

  it('takes the lower weight of a repeated range, in any order', () => {
    assert.equal(quality(parseAccept('image/webp;q=0.2,image/webp;q=0.7'), 'webp', false), 0.2);
    assert.equal(quality(parseAccept('image/webp;q=0.7,image/webp;q=0.2'), 'webp', false), 0.2);
  });
});
