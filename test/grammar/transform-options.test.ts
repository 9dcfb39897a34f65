import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConveyorError } from '../../src/errors.ts';
import {
  cacheKey,
  DEFAULT_TRANSFORM_LIMITS,
  devicePixels,
  formatOptions,
  formatPreset,
  parseOptions,
  type TransformLimits,
  type TransformPresets,
  type TransformRequest,
  TransformUrlError,
} from '../../src/grammar/transform-options.ts';

const LIMITS: TransformLimits = { ...DEFAULT_TRANSFORM_LIMITS };
const PRESETS: TransformPresets = {
  thumb: { width: 200, height: 200, fit: 'cover', gravity: 'attention', format: 'webp', dpr: 1 },
  hero: { width: 1600, fit: 'inside', gravity: 'center', format: 'source', dpr: 1, quality: 70 },
};
const SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const BASE: TransformRequest = { fit: 'cover', gravity: 'center', format: 'source', dpr: 1 };

function spec(text: string, limits = LIMITS): TransformRequest {
  return parseOptions(text, limits, PRESETS).spec;
}

/** Asserts that `text` is refused with a TransformUrlError about `option`. */
function refused(text: string, option: string | undefined, limits = LIMITS): void {
  assert.throws(
    () => parseOptions(text, limits, PRESETS),
    (e: unknown) => {
      assert.ok(e instanceof TransformUrlError, `${text}: ${String(e)}`);
      assert.ok(e instanceof ConveyorError);
      assert.equal(e.status, 400);
      assert.equal(e.option, option, `${text}: ${e.message}`);
      assert.deepEqual(e.extra, option === undefined ? {} : { option });
      if (option !== undefined) assert.match(e.message, new RegExp(`\\b${option}\\b`), text);
      return true;
    },
    text,
  );
}

describe('parseOptions', () => {
  it('reads every key', () => {
    assert.deepEqual(spec('w:512,h:256,fit:contain,g:attention,q:80,f:webp,dpr:2,blur:3,sharpen:1.5'), {
      width: 512,
      height: 256,
      fit: 'contain',
      gravity: 'attention',
      quality: 80,
      format: 'webp',
      dpr: 2,
      blur: 3,
      sharpen: 1.5,
    });
  });

  it('fills in the defaults', () => {
    assert.deepEqual(spec('w:100'), { ...BASE, width: 100 });
    assert.deepEqual(spec('f:source'), BASE);
  });

  it('accepts the keys in any order', () => {
    const canonical = spec('w:512,h:512,fit:cover,g:attention,q:80,f:webp,dpr:2,blur:3,sharpen:1');
    assert.deepEqual(spec('sharpen:1,blur:3,dpr:2,f:webp,q:80,g:attention,fit:cover,h:512,w:512'), canonical);
    assert.deepEqual(spec('g:attention,dpr:2,w:512,sharpen:1,q:80,h:512,blur:3,f:webp'), canonical);
  });

  it('reads focal points', () => {
    assert.deepEqual(spec('g:fp:0.3:0.7').gravity, { x: 0.3, y: 0.7 });
    assert.deepEqual(spec('g:fp:0:1').gravity, { x: 0, y: 1 });
    assert.deepEqual(spec('g:fp:0.125:0.999').gravity, { x: 0.125, y: 0.999 });
    for (const bad of [
      'g:fp',
      'g:fp:',
      'g:fp:0.5',
      'g:fp:0.5:',
      'g:fp:0.5:0.5:0.5',
      'g:fp:1.1:0',
      'g:fp:0:-0',
    ]) {
      refused(bad, 'g');
    }
    refused('g:fp:0.5:1.0', 'g');
    refused('g:fp:.5:0', 'g');
  });

  it('knows every fit, gravity and format, and nothing else', () => {
    for (const fit of ['cover', 'contain', 'fill', 'inside', 'outside'])
      assert.equal(spec(`fit:${fit}`).fit, fit);
    for (const g of ['center', 'north', 'northeast', 'east', 'southeast', 'south', 'southwest', 'west']) {
      assert.equal(spec(`g:${g}`).gravity, g);
    }
    for (const g of ['northwest', 'attention', 'entropy']) assert.equal(spec(`g:${g}`).gravity, g);
    for (const f of ['jpeg', 'png', 'webp', 'avif', 'auto', 'source']) assert.equal(spec(`f:${f}`).format, f);
    refused('fit:squash', 'fit');
    refused('fit:Cover', 'fit');
    refused('g:centre', 'g');
    refused('g:smart', 'g');
    refused('f:jpg', 'f');
    refused('f:gif', 'f');
    refused('f:WEBP', 'f');
  });

  it('holds each number to its range', () => {
    const cases: [string, string, string][] = [
      // key, lowest accepted, highest accepted
      ['w', '1', '4096'],
      ['h', '1', '4096'],
      ['q', '1', '100'],
      ['dpr', '1', '4'],
      ['blur', '0.3', '100'],
      ['sharpen', '0.3', '10'],
    ];
    for (const [key, low, high] of cases) {
      assert.doesNotThrow(() => spec(`${key}:${low}`), key);
      assert.doesNotThrow(() => spec(`${key}:${high}`), key);
    }
    for (const text of ['w:0', 'w:4097', 'h:0', 'h:4097', 'q:0', 'q:101', 'dpr:0.999', 'dpr:4.001']) {
      refused(text, text.split(':')[0]);
    }
    for (const text of ['blur:0.299', 'blur:0', 'blur:100.001', 'sharpen:0.2', 'sharpen:10.5', 'dpr:0']) {
      refused(text, text.split(':')[0]);
    }
  });

  it('takes its upper bounds from the limits', () => {
    const tight = { ...LIMITS, maxWidth: 800, maxHeight: 600, maxDpr: 2, maxBlur: 5, maxSharpen: 2 };
    assert.equal(spec('w:800,h:600,dpr:1', tight).width, 800);
    for (const text of ['w:801', 'h:601', 'dpr:2.5', 'blur:5.5', 'sharpen:2.001'])
      refused(text, text.split(':')[0], tight);
    assert.equal(spec('dpr:2.5', LIMITS).dpr, 2.5);
  });

  it('bounds device pixels, w × dpr and h × dpr, rounded', () => {
    assert.equal(spec('w:2048,dpr:2').width, 2048);
    refused('w:2049,dpr:2', 'w');
    refused('h:1366,dpr:3', 'h');
    assert.equal(spec('h:1365,dpr:3').height, 1365);
    // 100 × 1.1 is 110.00000000000001 in binary floating point; rounding keeps it within a limit of 110.
    assert.equal(spec('w:100,dpr:1.1', { ...LIMITS, maxWidth: 110 }).width, 100);
    assert.equal(devicePixels(100, 1.1), 110);
    assert.equal(devicePixels(333, 1.5), 500);
  });

  it('admits one spelling per number', () => {
    for (const w of [
      '0512',
      '1e3',
      '512.0',
      '512.',
      '+512',
      '-1',
      ' 512',
      '0x200',
      '5_12',
      'abc',
      '１２',
      '',
    ]) {
      refused(`w:${w}`, 'w');
    }
    for (const dpr of ['1.50', '01.5', '.5', '1.', '1.2345', '1e0', '+2', '2.000', 'Infinity', 'NaN']) {
      refused(`dpr:${dpr}`, 'dpr');
    }
    assert.equal(spec('dpr:2.625').dpr, 2.625);
    refused('q:080', 'q');
    refused('w:99999999999999999999999', 'w');
  });

  it('refuses unknown, repeated and empty options', () => {
    refused('width:100', 'width');
    refused('W:100', 'W');
    refused('x:1', 'x');
    refused('w', 'w');
    refused('w:', 'w');
    refused('w:1,w:1', 'w');
    refused('w:1,h:2,w:3', 'w');
    refused('fit:cover,fit:cover', 'fit');
    refused('', undefined);
    refused(',', undefined);
    refused('w:1,,h:2', undefined);
    refused(',w:1', undefined);
    refused('w:1,', undefined);
    refused(':1', undefined);
  });

  it('refuses characters outside the grammar, including percent-encoding and unicode', () => {
    const cases: [string, string | undefined][] = [
      ['w:100%2Ch:100', 'w'],
      ['w:100 ', 'w'],
      ['w:1;h:2', 'w'],
      ['w:１００', 'w'],
      ['g:cénter', 'g'],
      ['w:1\n', 'w'],
      ['w:1/h:2', 'w'],
      ['w:1,h:+2', 'h'],
      ['w=100', undefined],
      ['%77:100', undefined],
      ['ü:1', undefined],
      ['w:1,x y:2', undefined],
    ];
    for (const [text, option] of cases) refused(text, option);
  });

  it('limits the length of the segment before reading it', () => {
    refused('w:1,'.repeat(2560), undefined);
    refused(`g:${'x'.repeat(10_000)}`, undefined);
    assert.throws(() => parseOptions('w:1,'.repeat(2560), LIMITS), /10240 characters; at most 256/);
    const text = `w:1,q:${'9'.repeat(250)}`;
    assert.equal(text.length, 256);
    refused(text, 'q');
    refused(`${text}9`, undefined);
  });

  it('keeps problem details short whatever the input', () => {
    try {
      parseOptions(`fit:${'a'.repeat(200)}`, LIMITS);
      assert.fail('accepted');
    } catch (e) {
      assert.ok(e instanceof TransformUrlError);
      assert.ok(e.message.length < 150, e.message);
    }
  });

  it('refuses formats the server does not render', () => {
    const noAvif = { ...LIMITS, formats: ['jpeg', 'png', 'webp'] as const };
    refused('f:avif', 'f', noAvif);
    assert.equal(spec('f:auto', noAvif).format, 'auto');
    assert.equal(spec('f:source', noAvif).format, 'source');
  });
});

describe('presets', () => {
  it('expand to the configured request', () => {
    assert.deepEqual(parseOptions('preset:thumb', LIMITS, PRESETS), {
      spec: PRESETS.thumb,
      preset: 'thumb',
      formatGiven: false,
    });
  });

  it('take an f: override and nothing else', () => {
    assert.deepEqual(parseOptions('preset:thumb,f:avif', LIMITS, PRESETS).spec, {
      ...PRESETS.thumb,
      format: 'avif',
    });
    assert.equal(parseOptions('f:auto,preset:hero', LIMITS, PRESETS).spec.format, 'auto');
    refused('preset:thumb,w:100', 'w');
    refused('q:50,preset:thumb', 'q');
    refused('preset:thumb,preset:hero', 'preset');
  });

  it('must exist, own properties only', () => {
    for (const name of ['nope', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'Thumb']) {
      refused(`preset:${name}`, 'preset');
    }
    assert.throws(() => parseOptions('preset:thumb', LIMITS), TransformUrlError);
  });

  it('does not hand out the configured object', () => {
    const parsed = parseOptions('preset:thumb', LIMITS, PRESETS).spec;
    parsed.format = 'png';
    assert.equal(PRESETS.thumb!.format, 'webp');
  });
});

describe('formatOptions', () => {
  it('writes the canonical order and leaves out defaults', () => {
    const s = spec('sharpen:1,blur:3,dpr:2,f:webp,q:80,g:attention,fit:contain,h:512,w:512');
    assert.equal(formatOptions(s), 'w:512,h:512,fit:contain,g:attention,q:80,f:webp,dpr:2,blur:3,sharpen:1');
    assert.equal(formatOptions(spec('fit:cover,g:center,f:source,dpr:1,w:10')), 'w:10');
    assert.equal(formatOptions(spec('g:fp:0.3:0.7')), 'g:fp:0.3:0.7');
  });

  it('writes f:source when everything is a default', () => {
    assert.equal(formatOptions(BASE), 'f:source');
    assert.equal(formatOptions(spec('dpr:1')), 'f:source');
  });

  it('round-trips: format, parse, format', () => {
    const texts = [
      'w:512',
      'h:1',
      'w:4096,h:4096',
      'fit:outside,g:entropy',
      'g:fp:0:0.001',
      'q:1,f:avif',
      'f:auto,dpr:1.5',
      'dpr:4,blur:0.3,sharpen:10',
      'w:512,h:512,fit:inside,g:northwest,q:100,f:jpeg,dpr:2.625,blur:99.999,sharpen:0.301',
      'f:source',
    ];
    for (const text of texts) {
      const s = spec(text);
      assert.equal(formatOptions(s), text);
      assert.deepEqual(spec(formatOptions(s)), s);
    }
  });

  it('refuses values that have no canonical spelling', () => {
    const bad: Partial<TransformRequest>[] = [
      { width: 0 },
      { width: 1.5 },
      { height: Number.NaN },
      { quality: 101 },
      { dpr: 0.5 },
      { dpr: 1.0001 },
      { blur: 0.1 + 0.2 },
      { blur: 1e-7 },
      { blur: 1e21 },
      { sharpen: Number.POSITIVE_INFINITY },
      { gravity: { x: 1.5, y: 0 } },
      { gravity: 'centre' as never },
      { fit: 'squash' as never },
      { format: 'gif' as never },
    ];
    for (const patch of bad) {
      assert.throws(() => formatOptions({ ...BASE, ...patch }), RangeError, JSON.stringify(patch));
    }
  });

  it('writes presets', () => {
    assert.equal(formatPreset('thumb'), 'preset:thumb');
    assert.equal(formatPreset('thumb', 'webp'), 'preset:thumb,f:webp');
    assert.throws(() => formatPreset('a,b'), RangeError);
    assert.throws(() => formatPreset('thumb', 'gif' as never), RangeError);
  });
});

describe('cacheKey', () => {
  const key = (text: string) => cacheKey({ ...spec(text), format: 'webp' }, SHA);

  it('spells out every default after the source hash', () => {
    assert.equal(key('w:512'), `t1/${SHA}/w:512,fit:cover,g:center,f:webp,dpr:1`);
    assert.equal(
      key('w:512,h:512,g:fp:0.3:0.7,q:80,dpr:2,blur:3,sharpen:1'),
      `t1/${SHA}/w:512,h:512,fit:cover,g:fp:0.3:0.7,q:80,f:webp,dpr:2,blur:3,sharpen:1`,
    );
  });

  it('is the same for every spelling of the same request', () => {
    const expected = key('w:400,h:300');
    for (const text of [
      'h:300,w:400',
      'w:400,h:300,fit:cover',
      'g:center,dpr:1,h:300,w:400',
      'w:400,f:auto,h:300',
    ]) {
      assert.equal(key(text), expected, text);
    }
    assert.equal(cacheKey({ ...spec('preset:thumb'), format: 'webp' }, SHA), key('w:200,h:200,g:attention'));
  });

  it('differs when anything that changes the bytes differs', () => {
    const keys = [
      'w:400',
      'w:401',
      'h:400',
      'w:400,fit:contain',
      'w:400,q:80',
      'w:400,dpr:2',
      'w:400,blur:1',
    ].map(key);
    keys.push(cacheKey({ ...spec('w:400'), format: 'avif' }, SHA));
    keys.push(cacheKey({ ...spec('w:400'), format: 'webp' }, SHA.replace('e3', 'e4')));
    assert.equal(new Set(keys).size, keys.length);
  });

  it('refuses unresolved formats and malformed hashes', () => {
    assert.throws(() => cacheKey({ ...BASE, format: 'auto' as never }, SHA), RangeError);
    assert.throws(() => cacheKey({ ...BASE, format: 'source' as never }, SHA), RangeError);
    for (const sha of ['', SHA.toUpperCase(), SHA.slice(1), `${SHA}0`, `${SHA.slice(0, 63)}g`]) {
      assert.throws(() => cacheKey({ ...BASE, format: 'png' }, sha), TypeError, sha);
    }
  });
});
