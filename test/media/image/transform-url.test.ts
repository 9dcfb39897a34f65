import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type SigningKey, signPath, verifyPathSignature } from '../../../src/delivery/signed-url.ts';
import {
  authorizeTransform,
  buildTransformUrl,
  DEFAULT_TRANSFORM_LIMITS,
  parseTransformPath,
  signTransformPath,
  type TransformPresets,
  type TransformRequest,
  TransformUrlError,
  verifyTransformSignature,
} from '../../../src/media/image/transform-url.ts';

const SECRET = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const KEY: SigningKey = { id: 'k2025', secret: SECRET };
const OLD: SigningKey = { id: 'k2024', secret: Buffer.alloc(32, 0x42) };
const KEYS = [KEY, OLD];
const ID = 'ver_01jd3m5x8k9q2w7e4r6t0y1v3h';
const SIGNED_PART = `/w:512,h:512,g:attention,q:80/${ID}.webp`;
const LIMITS = DEFAULT_TRANSFORM_LIMITS;
const PRESETS: TransformPresets = {
  thumb: { width: 200, height: 200, fit: 'cover', gravity: 'attention', format: 'webp', dpr: 1 },
};
const SPEC: TransformRequest = {
  width: 512,
  height: 512,
  fit: 'cover',
  gravity: 'attention',
  quality: 80,
  format: 'webp',
  dpr: 1,
};

function flip(s: string, at: number): string {
  const c = s[at] === 'A' ? 'B' : 'A';
  return s.slice(0, at) + c + s.slice(at + 1);
}

function parse(path: string) {
  return parseTransformPath(path, LIMITS, PRESETS);
}

function refused(path: string, option?: string): void {
  assert.throws(
    () => parse(path),
    (e: unknown) => e instanceof TransformUrlError && e.status === 400 && e.option === option,
    path,
  );
}

describe('signTransformPath', () => {
  it('matches the documented scheme (known-answer vectors, checked with openssl)', () => {
    // printf 'k2025\n/w:512,h:512,g:attention,q:80/ver_01jd3m5x8k9q2w7e4r6t0y1v3h.webp' |
    //   openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f -binary | head -c 16 | base64 | tr '+/' '-_' |
    //   tr -d =
    assert.equal(signTransformPath(SIGNED_PART, KEY), 'k2025.x-OBL4wpvxfpo0txwZrAMQ');
    // The same with 'k2025\n/preset:thumb,f:webp/ast_01jd3m5x8k9q2w7e4r6t0y1v3h'.
    assert.equal(
      signTransformPath('/preset:thumb,f:webp/ast_01jd3m5x8k9q2w7e4r6t0y1v3h', KEY),
      'k2025.73qUsPPyAfzngCTau8AyDg',
    );
  });

  it('is the header comment worked example, end to end', () => {
    const url = `/t/k2025.x-OBL4wpvxfpo0txwZrAMQ${SIGNED_PART}`;
    assert.equal(buildTransformUrl(SPEC, ID, KEY, 'webp'), url);
    assert.equal(authorizeTransform(parse(url), KEYS, false), 'signed');
  });

  it('always writes kid, a dot and 22 base64url characters', () => {
    for (const path of ['/', '/a', '/f:source/x', `/${'w:1,'.repeat(60)}/x`]) {
      assert.match(signTransformPath(path, KEY), /^k2025\.[A-Za-z0-9_-]{22}$/);
    }
  });

  it('refuses key ids that could not round-trip, and an empty secret', () => {
    for (const id of ['', 'a\nb', 'a b', 'k/1', 'ü', 'x'.repeat(65)]) {
      assert.throws(
        () => signTransformPath(SIGNED_PART, { id, secret: SECRET }),
        TypeError,
        JSON.stringify(id),
      );
    }
    assert.throws(() => signTransformPath(SIGNED_PART, { id: 'k', secret: Buffer.alloc(0) }), TypeError);
  });

  it('refuses to sign what no request target carries: no leading slash, LF, space, non-ASCII', () => {
    for (const path of ['', 'w:1/x', '/w:1/x\n', '/w:1 /x', '/ü', '/\t', '/\u007f']) {
      assert.throws(() => signTransformPath(path, KEY), TypeError, JSON.stringify(path));
    }
  });
});

describe('verifyTransformSignature', () => {
  const segment = signTransformPath(SIGNED_PART, KEY);
  const sig = segment.slice('k2025.'.length);

  it('accepts a genuine signature', () => {
    assert.equal(verifyTransformSignature(segment, SIGNED_PART, KEYS), 'valid');
  });

  it('reports the unsigned marker without judging it', () => {
    assert.equal(verifyTransformSignature('_', SIGNED_PART, KEYS), 'unsigned');
    assert.equal(verifyTransformSignature('_', '', []), 'unsigned');
    assert.equal(verifyTransformSignature('__', SIGNED_PART, KEYS), 'invalid');
  });

  it('rejects tampered options, id and extension, byte for byte', () => {
    for (const part of [
      `/w:513,h:512,g:attention,q:80/${ID}.webp`,
      `/h:512,w:512,g:attention,q:80/${ID}.webp`,
      `/w:512,h:512,g:attention,q:80,f:webp/${ID}.webp`,
      `/w:512,h:512,g:attention,q:80/${ID}.avif`,
      `/w:512,h:512,g:attention,q:80/${ID}`,
      `/w:512,h:512,g:attention,q:80/ver_01jd3m5x8k9q2w7e4r6t0y1v3j.webp`,
      `/w:512,h:512,g:attention,q:80/${ID}.webp/`,
      `/w:512%2Ch:512,g:attention,q:80/${ID}.webp`,
      `${SIGNED_PART}\n`,
      '',
    ]) {
      assert.equal(verifyTransformSignature(segment, part, KEYS), 'invalid', part);
    }
  });

  it('rejects a tampered signature, in any position', () => {
    for (let i = 0; i < sig.length; i++) {
      assert.equal(
        verifyTransformSignature(`k2025.${flip(sig, i)}`, SIGNED_PART, KEYS),
        'invalid',
        `at ${i}`,
      );
    }
  });

  it('rejects a non-canonical base64url spelling of the right bytes', () => {
    // 22 characters carry 132 bits for 128: the last character's low 4 bits are padding.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const variant = sig.slice(0, 21) + alphabet[alphabet.indexOf(sig.at(-1)!) ^ 1];
    assert.deepEqual(Buffer.from(variant, 'base64url'), Buffer.from(sig, 'base64url'));
    assert.equal(verifyTransformSignature(`k2025.${variant}`, SIGNED_PART, KEYS), 'invalid');
  });

  it('rejects a signature presented under another kid, or an unknown one', () => {
    assert.equal(verifyTransformSignature(`k2024.${sig}`, SIGNED_PART, KEYS), 'invalid');
    assert.equal(verifyTransformSignature(`k2026.${sig}`, SIGNED_PART, KEYS), 'invalid');
    assert.equal(
      verifyTransformSignature(segment, SIGNED_PART, [{ id: 'k2025', secret: Buffer.alloc(32, 1) }]),
      'invalid',
    );
  });

  it('finds the key by kid, so rotated keys keep verifying while listed', () => {
    const old = signTransformPath(SIGNED_PART, OLD);
    assert.equal(verifyTransformSignature(old, SIGNED_PART, [KEY, OLD]), 'valid');
    assert.equal(verifyTransformSignature(old, SIGNED_PART, [OLD]), 'valid');
    assert.equal(verifyTransformSignature(old, SIGNED_PART, [KEY]), 'invalid');
    assert.equal(verifyTransformSignature(segment, SIGNED_PART, []), 'invalid');
  });

  it('splits kid and sig at the last dot, so kids may contain dots', () => {
    const dotted: SigningKey = { id: 'prod.2025.1', secret: SECRET };
    const s = signTransformPath(SIGNED_PART, dotted);
    assert.equal(verifyTransformSignature(s, SIGNED_PART, [dotted]), 'valid');
    assert.equal(
      verifyTransformSignature(s.replace('prod.2025.1', 'prod.2025'), SIGNED_PART, [dotted]),
      'invalid',
    );
  });

  it('never verifies against an empty secret', () => {
    const empty: SigningKey = { id: 'k', secret: Buffer.alloc(0) };
    const forged = `k.${signTransformPath(SIGNED_PART, { id: 'k', secret: Buffer.alloc(1) }).slice(2)}`;
    assert.equal(verifyTransformSignature(forged, SIGNED_PART, [empty]), 'invalid');
  });

  it('rejects malformed segments without throwing', () => {
    for (const bad of [
      '',
      '.',
      'k2025',
      'k2025.',
      `.${sig}`,
      sig,
      `k2025.${sig.slice(0, 21)}`,
      `k2025.${sig}A`,
      `k2025.${sig}=`,
      `k2025.${sig.replace(/-/g, '+').replace(/_/g, '/')}`,
      `k2025.${sig.slice(0, 21)}é`,
      `k 2025.${sig}`,
      `${'k'.repeat(65)}.${sig}`,
      `k2025.${createFullSig()}`,
    ]) {
      assert.equal(verifyTransformSignature(bad, SIGNED_PART, KEYS), 'invalid', bad);
    }
  });

  it('shares keys with signed delivery URLs without either scheme accepting the other', () => {
    const delivery = signPath(SIGNED_PART, 1_767_225_600, KEY);
    assert.equal(verifyTransformSignature(`k2025.${delivery.sig}`, SIGNED_PART, KEYS), 'invalid');
    assert.equal(
      verifyTransformSignature(`k2025.${delivery.sig.slice(0, 22)}`, SIGNED_PART, KEYS),
      'invalid',
    );
    assert.equal(
      verifyPathSignature(SIGNED_PART, { ...delivery, sig: sig.padEnd(43, 'A') }, KEYS, 0),
      'invalid',
    );
  });
});

function createFullSig(): string {
  return signPath(SIGNED_PART, 0, KEY).sig;
}

describe('parseTransformPath', () => {
  it('splits signature, signed part, options, id and extension', () => {
    const path = `/t/k2025.x-OBL4wpvxfpo0txwZrAMQ${SIGNED_PART}`;
    assert.deepEqual(parse(path), {
      signature: 'k2025.x-OBL4wpvxfpo0txwZrAMQ',
      signedPart: SIGNED_PART,
      id: ID,
      ext: 'webp',
      spec: SPEC,
      preset: undefined,
      formatGiven: false,
    });
  });

  it('keeps the source format by default', () => {
    assert.equal(parse(`/t/_/w:10/${ID}`).spec.format, 'source');
    assert.equal(parse(`/t/_/w:10/${ID}`).ext, undefined);
  });

  it('takes the format from the extension', () => {
    for (const [ext, format] of [
      ['jpg', 'jpeg'],
      ['jpeg', 'jpeg'],
      ['png', 'png'],
      ['webp', 'webp'],
      ['avif', 'avif'],
    ] as const) {
      const parsed = parse(`/t/_/w:10/${ID}.${ext}`);
      assert.equal(parsed.spec.format, format);
      assert.equal(parsed.ext, ext);
    }
    assert.equal(parse(`/t/_/w:10,f:jpeg/${ID}.jpg`).spec.format, 'jpeg');
    assert.equal(parse(`/t/_/preset:thumb/${ID}.png`).spec.format, 'png');
  });

  it('refuses an extension that contradicts f:', () => {
    refused(`/t/_/w:10,f:png/${ID}.webp`, 'f');
    refused(`/t/_/w:10,f:auto/${ID}.webp`, 'f');
    refused(`/t/_/w:10,f:source/${ID}.webp`, 'f');
    refused(`/t/_/preset:thumb,f:avif/${ID}.webp`, 'f');
  });

  it('refuses unknown or disabled extensions', () => {
    for (const file of [
      `${ID}.gif`,
      `${ID}.JPG`,
      `${ID}.`,
      `${ID}.webp.webp`,
      `${ID}.jpg%00`,
      `${ID}.constructor`,
    ]) {
      refused(`/t/_/w:10/${file}`, 'ext');
    }
    const noAvif = { ...LIMITS, formats: ['jpeg', 'png', 'webp'] as const };
    assert.throws(
      () => parseTransformPath(`/t/_/w:10/${ID}.avif`, noAvif, PRESETS),
      (e: unknown) => e instanceof TransformUrlError && e.option === 'ext',
    );
  });

  it('refuses malformed ids', () => {
    for (const id of ['', '.webp', 'a~b', 'a%20b', 'ü', 'a:b', 'x'.repeat(101)]) refused(`/t/_/w:10/${id}`);
    assert.equal(parse(`/t/_/w:10/${'x'.repeat(100)}`).id, 'x'.repeat(100));
    assert.equal(parse('/t/_/w:10/ast_A-z_9').id, 'ast_A-z_9');
  });

  it('refuses paths of another shape', () => {
    for (const path of [
      '',
      '/',
      '/t',
      '/t/',
      '/t/_',
      '/t/_/w:10',
      `/t/_/w:10/${ID}/`,
      `/t/_/w:10/${ID}/x`,
      `/t//w:10/${ID}`,
      `/t/_//${ID}`,
      `//t/_/w:10/${ID}`,
      `/T/_/w:10/${ID}`,
      `/a/_/w:10/${ID}`,
      `t/_/w:10/${ID}`,
    ]) {
      refused(path);
    }
  });

  it('passes option errors through, naming the key', () => {
    refused(`/t/_/w:0512/${ID}`, 'w');
    refused(`/t/_/fit:squash/${ID}`, 'fit');
    refused(`/t/_/q:101/${ID}`, 'q');
    refused(`/t/_/${'w:1,'.repeat(2500)}/${ID}`);
  });

  it('keeps the signed part exactly as received', () => {
    assert.equal(parse(`/t/anything.at-all/h:5,w:5/${ID}.jpeg`).signedPart, `/h:5,w:5/${ID}.jpeg`);
  });
});

describe('authorizeTransform', () => {
  const presetUrl = `/t/_/preset:thumb/${ID}`;

  it('admits signed requests, presets or not, whatever the unsigned policy', () => {
    assert.equal(authorizeTransform(parse(buildTransformUrl(SPEC, ID, KEY)), KEYS, false), 'signed');
    assert.equal(
      authorizeTransform(parse(buildTransformUrl({ preset: 'thumb' }, ID, KEY)), KEYS, false),
      'signed',
    );
  });

  it('admits unsigned presets only when allowed', () => {
    assert.equal(authorizeTransform(parse(presetUrl), KEYS, true), 'unsigned-preset');
    assert.equal(
      authorizeTransform(parse(`/t/_/preset:thumb,f:avif/${ID}.avif`), KEYS, true),
      'unsigned-preset',
    );
    assert.equal(authorizeTransform(parse(presetUrl), KEYS, false), 'denied');
  });

  it('never admits unsigned options', () => {
    assert.equal(
      authorizeTransform(parse(`/t/_/w:200,h:200,g:attention,f:webp/${ID}`), KEYS, true),
      'denied',
    );
    assert.equal(authorizeTransform(parse(`/t/_/f:source/${ID}`), KEYS, true), 'denied');
  });

  it('denies tampered URLs', () => {
    const url = buildTransformUrl(SPEC, ID, KEY);
    const tampered = [
      url.replace('w:512', 'w:513'),
      url.replace('q:80', 'q:81'),
      url.replace(ID, 'ast_01jd3m5x8k9q2w7e4r6t0y1v3h'),
      url.replace('k2025.', 'k2024.'),
      url.replace('k2025.', 'k2026.'),
      `${url.slice(0, 10)}${url[10] === 'A' ? 'B' : 'A'}${url.slice(11)}`,
      url.replace(/\/t\/[^/]+/, '/t/_'),
      `${url}.webp`,
    ];
    for (const t of tampered) assert.equal(authorizeTransform(parse(t), KEYS, true), 'denied', t);
  });
});

describe('buildTransformUrl', () => {
  it('writes canonical options, so equal requests get equal URLs', () => {
    const url = buildTransformUrl({ ...SPEC, format: 'source' }, ID, KEY);
    assert.match(url, /^\/t\/k2025\.[A-Za-z0-9_-]{22}\/w:512,h:512,g:attention,q:80\/ver_[0-9a-z]+$/);
    const again = parse(url).spec;
    assert.equal(buildTransformUrl(again, ID, KEY), url);
  });

  it('round-trips through the parser', () => {
    const specs: TransformRequest[] = [
      SPEC,
      { fit: 'inside', gravity: { x: 0.3, y: 0.7 }, format: 'auto', dpr: 2.5, width: 300 },
      { fit: 'cover', gravity: 'center', format: 'source', dpr: 1 },
      { fit: 'fill', gravity: 'south', format: 'png', dpr: 1, height: 64, blur: 0.5, sharpen: 2 },
    ];
    for (const spec of specs) {
      const parsed = parse(buildTransformUrl(spec, ID, KEY));
      assert.deepEqual(parsed.spec, spec);
      assert.equal(authorizeTransform(parsed, KEYS, false), 'signed');
    }
  });

  it('puts the format in the extension when given one', () => {
    assert.match(buildTransformUrl(SPEC, ID, KEY, 'webp'), /\/w:512,h:512,g:attention,q:80\/ver_\w+\.webp$/);
    assert.match(buildTransformUrl({ ...SPEC, format: 'source' }, ID, KEY, 'jpg'), /q:80\/ver_\w+\.jpg$/);
    const bare: TransformRequest = { fit: 'cover', gravity: 'center', format: 'source', dpr: 1 };
    const url = buildTransformUrl(bare, ID, KEY, 'webp');
    assert.match(url, /\/f:webp\/ver_\w+\.webp$/);
    assert.equal(parse(url).spec.format, 'webp');
    assert.throws(() => buildTransformUrl(SPEC, ID, KEY, 'png'), RangeError);
    assert.throws(() => buildTransformUrl({ ...SPEC, format: 'auto' }, ID, KEY, 'png'), RangeError);
  });

  it('writes presets, signed or not', () => {
    assert.equal(buildTransformUrl({ preset: 'thumb' }, ID, null), `/t/_/preset:thumb/${ID}`);
    assert.equal(
      buildTransformUrl({ preset: 'thumb', format: 'avif' }, ID, null),
      `/t/_/preset:thumb,f:avif/${ID}`,
    );
    assert.equal(
      buildTransformUrl({ preset: 'thumb', format: 'avif' }, ID, null, 'avif'),
      `/t/_/preset:thumb/${ID}.avif`,
    );
    assert.equal(
      buildTransformUrl({ preset: 'thumb', format: 'webp' }, 'ast_01jd3m5x8k9q2w7e4r6t0y1v3h', KEY),
      '/t/k2025.73qUsPPyAfzngCTau8AyDg/preset:thumb,f:webp/ast_01jd3m5x8k9q2w7e4r6t0y1v3h',
    );
    assert.throws(() => buildTransformUrl({ preset: 'thumb', format: 'png' }, ID, null, 'avif'), RangeError);
    assert.throws(() => buildTransformUrl({ preset: 'a/b' }, ID, null), RangeError);
  });

  it('signs everything that is not a preset', () => {
    assert.throws(() => buildTransformUrl(SPEC, ID, null), TypeError);
  });

  it('refuses ids and extensions outside the grammar', () => {
    for (const id of ['', 'a.b', 'a/b', 'x'.repeat(101), 'ü']) {
      assert.throws(() => buildTransformUrl(SPEC, id, KEY), TypeError, id);
    }
    assert.throws(() => buildTransformUrl(SPEC, ID, KEY, 'gif' as never), TypeError);
    assert.throws(() => buildTransformUrl(SPEC, ID, KEY, 'toString' as never), TypeError);
  });
});
